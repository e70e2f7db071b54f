/*
 * deployment.c
 *		Requests on deployments shared by the SQL API and the launcher.
 */
#include "postgres.h"

#include "dborch.h"
#include "deployment.h"

int64
deployment_request_destroy(Deployment *d, const char *actor, const char *reason,
						   bool drop_backups)
{
	int64		job_id;

	if (strcmp(d->status, "destroyed") == 0)
	{
		/* only its kept backups may be left: their passphrase goes with them */
		if (!drop_backups || cat_secret(d->id, "backup_passphrase") == NULL)
			return 0;
		if ((job_id = cat_unfinished_job(d->id, "destroy")) != 0)
			return job_id;
		job_id = cat_queue_job("destroy", d->id, d->owner, "{\"drop_backups\": true}");
		cat_event(actor, d->id, job_id, "destroy_requested", "drop of the kept backups requested", NULL);
		dborch_note_queued_deployment(d->id);
		return job_id;
	}
	if (strcmp(d->status, "destroying") == 0 &&
		(job_id = cat_unfinished_job(d->id, "destroy")) != 0)
		return job_id;

	cat_cancel_unfinished_jobs(d->id);
	cat_unschedule_backups(d->id, NULL);
	cat_set_deployment_status(d->id, "destroying", NULL, NULL);
	job_id = cat_queue_job("destroy", d->id, d->owner,
						   drop_backups ? "{\"drop_backups\": true}" : NULL);
	cat_event(actor, d->id, job_id, "destroy_requested", reason, NULL);
	dborch_note_queued_deployment(d->id);
	return job_id;
}
