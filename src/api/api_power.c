/*
 * api_power.c
 *		SQL functions that stop a deployment on purpose and start it again.
 *		A stopped deployment is not probed: no alert, no automatic restart.
 */
#include "postgres.h"

#include "fmgr.h"

#include "api.h"
#include "catalog.h"
#include "dborch.h"

PG_FUNCTION_INFO_V1(dborch_stop);
PG_FUNCTION_INFO_V1(dborch_start);

/*
 * Move a deployment from one of the statuses in from (comma-separated) to
 * status, queue a job of kind, and return the row.  55000 otherwise.
 */
static Datum
change_power(FunctionCallInfo fcinfo, const char *from, const char *status, const char *kind)
{
	char	   *name = api_text_arg(fcinfo, 0, "deployment name");
	ApiCaller	caller;
	Deployment *d;
	int64		job_id;
	Datum		row;

	api_enter(&caller);
	cat_xact_lock(DBORCH_LOCK_NAME, name);
	d = api_deployment(&caller, name, false);
	if (!cat_set_deployment_status(d->id, status, from, NULL))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot %s deployment \"%s\" while it is %s", kind, name, d->status)));
	/* a recovery in progress is moot once the operator decides */
	cat_cancel_unfinished_jobs(d->id);
	job_id = cat_queue_job(kind, d->id, d->owner, NULL);
	cat_event(caller.name, d->id, job_id, psprintf("%s_requested", kind),
			  psprintf("%s requested", kind), NULL);
	dborch_note_queued_deployment(d->id);
	row = cat_deployment_row(d->id);
	api_leave(&caller);
	PG_RETURN_DATUM(row);
}

/* dborch.stop(name): stop the deployment's processes; its data stays. */
Datum
dborch_stop(PG_FUNCTION_ARGS)
{
	return change_power(fcinfo, "ready,degraded,down", "stopping", "stop");
}

/* dborch.start(name): start a stopped deployment again. */
Datum
dborch_start(PG_FUNCTION_ARGS)
{
	return change_power(fcinfo, "stopped", "starting", "start");
}
