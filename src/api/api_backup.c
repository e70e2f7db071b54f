/*
 * api_backup.c
 *		SQL functions on backups: backup, restore, verify_backup,
 *		schedule_backups, unschedule_backups.
 *
 * A deployment's jobs run one at a time in the order they were queued, so
 * a backup asked for while another backup (or any job) of the deployment
 * runs waits its turn.
 */
#include "postgres.h"

#include "fmgr.h"
#include "libpq-fe.h"
#include "miscadmin.h"
#include "postmaster/postmaster.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "api.h"
#include "catalog.h"
#include "dborch.h"
#include "spec.h"

PG_FUNCTION_INFO_V1(dborch_backup);
PG_FUNCTION_INFO_V1(dborch_restore);
PG_FUNCTION_INFO_V1(dborch_verify_backup);
PG_FUNCTION_INFO_V1(dborch_schedule_backups);
PG_FUNCTION_INFO_V1(dborch_unschedule_backups);

/* full, diff or incr; Redis backups are full snapshots only. */
static void
check_kind(const char *kind, const char *engine)
{
	if (strcmp(kind, "full") != 0 && strcmp(kind, "diff") != 0 && strcmp(kind, "incr") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid backup kind \"%s\"", dborch_clip(kind, 60)),
				 errhint("Use 'full', 'diff' or 'incr'.")));
	if (strcmp(engine, "redis") == 0 && strcmp(kind, "full") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("Redis deployments only take full backups"),
				 errhint("A Redis backup is an RDB snapshot of the whole dataset: use kind 'full'.")));
}

/* 55000 unless the deployment serves: ready, or degraded. */
static void
check_serving(Deployment *d, const char *what)
{
	if (strcmp(d->status, "ready") != 0 && strcmp(d->status, "degraded") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot %s deployment \"%s\" while it is %s", what, d->name, d->status)));
}

/*
 * dborch.backup(name, kind, verify): queue a backup; with verify, a
 * verification follows it.
 */
Datum
dborch_backup(PG_FUNCTION_ARGS)
{
	char	   *name = api_text_arg(fcinfo, 0, "deployment name");
	char	   *kind = api_text_arg(fcinfo, 1, "kind");
	bool		verify = PG_ARGISNULL(2) ? false : PG_GETARG_BOOL(2);
	ApiCaller	caller;
	Deployment *d;
	int64		backup_id;
	Datum		row;

	api_enter(&caller);
	d = api_deployment(&caller, name, false);
	check_kind(kind, d->engine);
	check_serving(d, "back up");
	backup_id = cat_queue_backup(d, kind, verify);
	cat_event(caller.name, d->id, 0, "backup_requested",
			  psprintf("%s backup " INT64_FORMAT " requested", kind, backup_id), NULL);
	dborch_note_queued_deployment(d->id);
	row = cat_backup_row(backup_id);
	api_leave(&caller);
	PG_RETURN_DATUM(row);
}

/* The backup to restore: the one asked for (of this deployment), or the newest. */
static Backup *
backup_to_restore(Deployment *source, bool given, int64 id)
{
	Backup	   *b = given ? cat_backup(id) : cat_latest_backup(source->id);

	if (b == NULL || b->deployment_id != source->id)
	{
		if (given)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("backup " INT64_FORMAT " of deployment \"%s\" does not exist", id, source->name)));
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("deployment \"%s\" has no backup to restore", source->name),
				 strcmp(source->status, "destroyed") == 0
				 ? errdetail("It was destroyed without a backup kept.")
				 : errhint("Take one with dborch.backup('%s').", source->name)));
	}
	if (strcmp(b->status, "succeeded") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("backup " INT64_FORMAT " is %s", b->id, b->status)));
	return b;
}

/* A point in time inside the recoverable window (PostgreSQL only). */
static void
check_target_time(Deployment *source, const char *target_time)
{
	char	   *from,
			   *to;

	if (strcmp(source->engine, "postgres") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("Redis deployments cannot be restored to a point in time"),
				 errhint("Redis backups are snapshots: restore one of them with backup => id.")));
	if (!cat_recoverable_window(source->id, &from, &to))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("deployment \"%s\" has no backup, so no point in time can be restored",
						source->name)));
	if (!cat_time_between(target_time, from, to ? to : "now"))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("target time %s is outside the recoverable window of deployment \"%s\"",
						target_time, source->name),
				 to ? errdetail("The window is from %s (the end of the first backup kept) to %s.", from, to)
				 : errdetail("The window begins at %s (the end of the first backup kept).", from)));
}

/*
 * dborch.restore(name, backup, target_time, new_name, in_place): restore a
 * backup, or a point in time, into a new deployment new_name (the default),
 * or into the same deployment with in_place.  Returns the deployment the
 * data goes to.
 */
Datum
dborch_restore(PG_FUNCTION_ARGS)
{
	char	   *name = api_text_arg(fcinfo, 0, "deployment name");
	bool		backup_given = !PG_ARGISNULL(1);
	int64		backup_id = backup_given ? PG_GETARG_INT64(1) : 0;
	/* ISO 8601 with the UTC offset, whatever the caller's DateStyle and TimeZone */
	char	   *target_time = PG_ARGISNULL(2) ? NULL
		: pstrdup(timestamptz_to_str(PG_GETARG_TIMESTAMPTZ(2)));
	char	   *new_name = PG_ARGISNULL(3) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(3));
	bool		in_place = PG_ARGISNULL(4) ? false : PG_GETARG_BOOL(4);
	ApiCaller	caller;
	Deployment *source;
	Backup	   *b = NULL;
	int64		target_id;
	int64		job_id;
	char	   *args;
	Datum		row;

	if (backup_given && target_time != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("give either backup or target_time, not both")));
	if (in_place == (new_name != NULL))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg(in_place ? "a restore in place takes no new_name"
						: "restore needs new_name, or in_place => true"),
				 errhint("A restore never overwrites a deployment unless in_place => true is given.")));
	if (new_name != NULL)
		dborch_validate_name("deployment", new_name);

	api_enter(&caller);
	if (backup_given && !in_place)
	{
		/*
		 * A backup id names its deployment, which need not be the latest of
		 * that name: another owner may have deployed the name since the
		 * backup's deployment was destroyed.  Its owner still reaches it.
		 */
		Backup	   *given = cat_backup(backup_id);

		dborch_validate_name("deployment", name);
		if (given == NULL || strcmp(given->deployment, name) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("backup " INT64_FORMAT " of deployment \"%s\" does not exist", backup_id, name)));
		source = api_check_deployment(&caller, name, cat_deployment(given->deployment_id));
	}
	else
		source = api_deployment(&caller, name, true);
	if (target_time != NULL)
		check_target_time(source, target_time);
	else
		b = backup_to_restore(source, backup_given, backup_id);
	/* timestamptz_to_str writes digits, signs, colons, dots and a space: a valid JSON string */
	if (target_time != NULL)
		args = psprintf("{\"source_id\": " INT64_FORMAT ", \"backup_id\": null, \"target_time\": \"%s\"}",
						source->id, target_time);
	else
		args = psprintf("{\"source_id\": " INT64_FORMAT ", \"backup_id\": " INT64_FORMAT ", \"target_time\": null}",
						source->id, b->id);

	if (in_place)
	{
		if (!cat_set_deployment_status(source->id, "restoring", "ready,degraded,down,stopped", NULL))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("cannot restore deployment \"%s\" in place while it is %s",
							source->name, source->status)));
		target_id = source->id;
		job_id = cat_queue_job("restore_in_place", target_id, source->owner, args);
	}
	else
	{
		cat_xact_lock(DBORCH_LOCK_NAME, new_name);
		if (cat_live_deployment(new_name) != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_OBJECT),
					 errmsg("deployment \"%s\" already exists", new_name),
					 errhint("Restore into a new name, or destroy \"%s\" first.", new_name)));
		/* the copy gets the source's spec, replicas included: each counts */
		api_check_quota(caller.name,
						source->memory_bytes * (1 + Max(cat_json_int64(source->spec, "replicas"), 0)),
						true);
		target_id = cat_insert_deployment(new_name, source->engine, caller.name, source->environment,
										  source->spec, source->memory_bytes, NULL);
		job_id = cat_queue_job("restore", target_id, caller.name, args);
	}
	cat_event(caller.name, target_id, job_id, "restore_requested",
			  target_time ? psprintf("restore of \"%s\" to %s requested", source->name, target_time)
			  : psprintf("restore of backup " INT64_FORMAT " of \"%s\" requested", b->id, source->name),
			  NULL);
	dborch_note_queued_deployment(target_id);
	row = cat_deployment_row(target_id);
	api_leave(&caller);
	PG_RETURN_DATUM(row);
}

/* dborch.verify_backup(id): queue a verification of a backup. */
Datum
dborch_verify_backup(PG_FUNCTION_ARGS)
{
	int64		id;
	ApiCaller	caller;
	Backup	   *b;
	int64		job_id;
	Datum		row;

	if (PG_ARGISNULL(0))
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("backup id must not be null")));
	id = PG_GETARG_INT64(0);
	api_enter(&caller);
	b = cat_backup(id);
	if (b == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("backup " INT64_FORMAT " does not exist", id)));
	api_check_owner(&caller, b->owner, psprintf("backup " INT64_FORMAT, id));
	if (strcmp(b->status, "succeeded") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("backup " INT64_FORMAT " is %s", id, b->status)));
	job_id = cat_queue_job("verify", b->deployment_id, b->owner,
						   psprintf("{\"backup_id\": " INT64_FORMAT "}", id));
	cat_event(caller.name, b->deployment_id, job_id, "verify_requested",
			  psprintf("verification of backup " INT64_FORMAT " requested", id), NULL);
	dborch_note_queued_deployment(b->deployment_id);
	row = cat_job_row(job_id);
	api_leave(&caller);
	PG_RETURN_DATUM(row);
}

/* {"full": N, "max_age": "30 days"} into the deployment's retention. */
static void
set_retention(Deployment *d, Jsonb *retention)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	char	   *full = NULL;
	char	   *max_age = NULL;

	if (JB_ROOT_IS_SCALAR(retention) || !JB_ROOT_IS_OBJECT(retention))
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("retention must be a JSON object"),
						errhint("Write it like {\"full\": 7} or {\"max_age\": \"30 days\"}.")));
	it = JsonbIteratorInit(&retention->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		char	   *key;

		if (tok != WJB_KEY)
			continue;
		key = pnstrdup(v.val.string.val, v.val.string.len);
		(void) JsonbIteratorNext(&it, &v, true);
		if (strcmp(key, "full") == 0 && v.type == jbvNumeric)
		{
			full = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v.val.numeric)));
			if (strspn(full, "0123456789") != strlen(full) || atoi(full) < 1 || strlen(full) > 6)
				ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
								errmsg("retention \"full\" must be a whole number of at least 1")));
		}
		else if (strcmp(key, "max_age") == 0 && v.type == jbvString)
		{
			Interval   *age;

			max_age = pnstrdup(v.val.string.val, v.val.string.len);
			age = DatumGetIntervalP(DirectFunctionCall3(interval_in, CStringGetDatum(max_age),
														ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1)));
			/* (pgBackRest counts whole days, at most 9999999 of them) */
			if (spec_interval_ms(age, "retention max_age") < 86400000 ||
				spec_interval_ms(age, "retention max_age") > INT64CONST(36525) * 86400000)
				ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
								errmsg("retention \"max_age\" must be between one day and 100 years")));
		}
		else
			ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							errmsg("invalid retention option \"%s\"", dborch_clip(key, 60)),
							errhint("Use \"full\" (a number of full backups) and \"max_age\" (an interval).")));
	}
	if (full == NULL && max_age == NULL)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("retention needs \"full\" or \"max_age\"")));
	cat_set_backup_retention(d->id, full, max_age);
}

/*
 * A schedule of five cron fields (minute, hour, day of month, month, day
 * of week) or a macro like @daily: pg_cron would also take a sixth field
 * and silently ignore it, or "30 seconds", neither of which dborch means.
 */
static void
check_schedule(const char *schedule)
{
	static const char *const macros[] = {"@hourly", "@daily", "@weekly", "@monthly", "@yearly",
	"@annually", NULL};
	int			fields = 0;
	bool		in_field = false;

	for (const char *const *m = macros; *m; m++)
		if (strcmp(schedule, *m) == 0)
			return;
	for (const char *p = schedule; *p; p++)
	{
		bool		space = (*p == ' ' || *p == '\t');

		if (!space && !isalnum((unsigned char) *p) && strchr("*,-/", *p) == NULL)
			fields = -100;		/* a character no cron field has */
		if (!space && !in_field)
			fields++;
		in_field = !space;
	}
	if (fields != 5)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid schedule \"%s\"", dborch_clip(schedule, 60)),
				 errhint("Give five cron fields (minute hour day-of-month month day-of-week), "
						 "like '0 3 * * *', or @hourly, @daily, @weekly, @monthly, @yearly.")));
}

/*
 * pg_cron runs a job either in a background worker of its own
 * (cron.use_background_workers) or over a libpq connection to cron.host as
 * the job's role, which needs no password to work.  Without background
 * workers, try that connection now: a schedule that can never run is
 * refused here rather than failing every time it is due.
 */
static void
check_cron_can_run(const char *role)
{
	const char *bgw = GetConfigOption("cron.use_background_workers", true, false);
	const char *host = GetConfigOption("cron.host", true, false);
	const char *database = GetConfigOption("cron.database_name", true, false);
	char	   *conninfo;
	PGconn	   *conn;

	if (bgw != NULL && strcmp(bgw, "on") == 0)
		return;
	conninfo = psprintf("host='%s' port=%d dbname='%s' user='%s' connect_timeout=5",
						host ? host : "localhost", PostPortNumber, database ? database : "postgres", role);
	conn = PQconnectdb(conninfo);
	if (PQstatus(conn) != CONNECTION_OK)
	{
		char	   *error = pstrdup(PQerrorMessage(conn));

		PQfinish(conn);
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pg_cron cannot run scheduled jobs on this server"),
				 errdetail("pg_cron connects to %s:%d as \"%s\" to run a job, and gets: %s",
						   host ? host : "localhost", PostPortNumber, role, dborch_clip(error, 300)),
				 errhint("Set cron.use_background_workers = on in postgresql.conf and restart the server "
						 "(scripts/run does), or let that connection in without a password.")));
	}
	PQfinish(conn);
}

/* cat_schedule_backups() in the shape cat_try() calls */
typedef struct ScheduleCall
{
	Deployment *d;
	const char *schedule;
	const char *kind;
	bool		verify;
	Datum		row;
} ScheduleCall;

static void
schedule_call(void *arg)
{
	ScheduleCall *call = arg;

	call->row = cat_schedule_backups(call->d, call->schedule, call->kind, call->verify);
}

/*
 * dborch.schedule_backups(name, schedule, kind, retention, verify): a
 * pg_cron job calling dborch.backup(); retention, when given, applies to
 * the deployment's backups after each one.
 */
Datum
dborch_schedule_backups(PG_FUNCTION_ARGS)
{
	char	   *name = api_text_arg(fcinfo, 0, "deployment name");
	char	   *schedule = api_text_arg(fcinfo, 1, "schedule");
	char	   *kind = api_text_arg(fcinfo, 2, "kind");
	Jsonb	   *retention = PG_ARGISNULL(3) ? NULL : PG_GETARG_JSONB_P(3);
	bool		verify = PG_ARGISNULL(4) ? false : PG_GETARG_BOOL(4);
	ApiCaller	caller;
	Deployment *d;
	ScheduleCall call;
	char	   *error;
	Datum		row;

	check_schedule(schedule);
	api_enter(&caller);
	d = api_deployment(&caller, name, false);
	check_kind(kind, d->engine);
	/* pg_cron runs the job as the role that schedules it: the catalog owner */
	check_cron_can_run(GetUserNameFromId(GetUserId(), false));
	if (retention != NULL)
		set_retention(d, retention);
	/* five fields pg_cron still refuses ("61 * * * *"): its message, not dborch's statement */
	call = (ScheduleCall) {d, schedule, kind, verify, (Datum) 0};
	error = cat_try(schedule_call, &call);
	if (error != NULL && strncmp(error, "invalid schedule", 16) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid schedule \"%s\"", dborch_clip(schedule, 60)),
				 errdetail("pg_cron refuses it: a field is out of range or malformed."),
				 errhint("Minute 0-59, hour 0-23, day of month 1-31, month 1-12, day of week 0-7, "
						 "with *, lists (1,15), ranges (1-5) and steps (*/10).")));
	if (error != NULL)
		ereport(ERROR, (errmsg("%s", error)));
	row = call.row;
	cat_event(caller.name, d->id, 0, "backups_scheduled",
			  psprintf("%s backups scheduled at \"%s\"", kind, schedule), NULL);
	api_leave(&caller);
	PG_RETURN_DATUM(row);
}

/* dborch.unschedule_backups(name, kind): remove schedules; how many. */
Datum
dborch_unschedule_backups(PG_FUNCTION_ARGS)
{
	char	   *name = api_text_arg(fcinfo, 0, "deployment name");
	char	   *kind = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	ApiCaller	caller;
	Deployment *d;
	int			removed;

	api_enter(&caller);
	d = api_deployment(&caller, name, true);
	removed = cat_unschedule_backups(d->id, kind);
	if (removed > 0)
		cat_event(caller.name, d->id, 0, "backups_unscheduled",
				  psprintf("%d backup schedules removed", removed), NULL);
	api_leave(&caller);
	PG_RETURN_INT32(removed);
}
