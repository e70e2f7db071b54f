/*
 * api_jobs.c
 *		SQL functions on jobs: wait_job and cancel_job.
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/timestamp.h"

#include "api.h"
#include "catalog.h"
#include "dborch.h"
#include "spec.h"

PG_FUNCTION_INFO_V1(dborch_wait_job);
PG_FUNCTION_INFO_V1(dborch_cancel_job);

/* The job with this id that the caller may act on (42704, 42501). */
static Job *
api_job(ApiCaller *caller, int64 id)
{
	Job		   *job = cat_job(id);

	if (job == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("job " INT64_FORMAT " does not exist", id)));
	api_check_owner(caller, job->owner, psprintf("job " INT64_FORMAT, id));
	return job;
}

static bool
job_finished(Job *job)
{
	return strcmp(job->state, "succeeded") == 0 || strcmp(job->state, "failed") == 0 ||
		strcmp(job->state, "cancelled") == 0;
}

/*
 * dborch.wait_job(id, timeout): block until the job has finished; errors if
 * it failed or on timeout.
 */
Datum
dborch_wait_job(PG_FUNCTION_ARGS)
{
	int64		id;
	int64		timeout_ms;
	int64		deadline;
	ApiCaller	caller;
	Job		   *job;
	Datum		row;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("job id and timeout must not be null")));
	id = PG_GETARG_INT64(0);
	timeout_ms = spec_interval_ms(PG_GETARG_INTERVAL_P(1), "timeout");
	deadline = dborch_now_ms() + timeout_ms;

	api_enter(&caller);
	job = api_job(&caller, id);
	api_check_can_wait(job->deployment_id, psprintf("job " INT64_FORMAT, id));

	api_wait_begin();
	while (!job_finished(job = cat_job(id)))
	{
		if (!api_wait_sleep(deadline))
			ereport(ERROR,
					(errcode(ERRCODE_QUERY_CANCELED),
					 errmsg("timed out after " INT64_FORMAT " ms waiting for job " INT64_FORMAT,
							timeout_ms, id),
					 errdetail("It is %s%s%s.", job->state,
							   job->stage ? ", at stage " : "", job->stage ? job->stage : "")));
	}
	api_wait_end();
	if (strcmp(job->state, "failed") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("job " INT64_FORMAT " failed", id),
				 errdetail("%s", job->error ? job->error : "no error recorded")));
	row = cat_job_row(id);
	api_leave(&caller);
	PG_RETURN_DATUM(row);
}

/*
 * dborch.cancel_job(id): a queued job is undone by a worker right away
 * (whatever it would have changed goes back as it was); a running one
 * stops at its next stage and undoes its work.  Destroy jobs cannot be
 * cancelled: a half-destroyed deployment helps no one.
 */
Datum
dborch_cancel_job(PG_FUNCTION_ARGS)
{
	int64		id;
	ApiCaller	caller;
	Job		   *job;
	Datum		row;

	if (PG_ARGISNULL(0))
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("job id must not be null")));
	id = PG_GETARG_INT64(0);

	api_enter(&caller);
	job = api_job(&caller, id);
	if (job_finished(job))
		ereport(NOTICE, (errmsg("job " INT64_FORMAT " has already finished (%s)", id, job->state)));
	else if (strcmp(job->kind, "destroy") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("destroy jobs cannot be cancelled")));
	else if (cat_cancel_job(id, psprintf("%s cancelled by %s", job->kind, caller.name)))
	{
		cat_event(caller.name, job->deployment_id, id, "cancel_requested",
				  psprintf("%s job " INT64_FORMAT " cancel requested", job->kind, id), NULL);
		dborch_wake_launcher_at_commit();
	}
	row = cat_job_row(id);
	api_leave(&caller);
	PG_RETURN_DATUM(row);
}
