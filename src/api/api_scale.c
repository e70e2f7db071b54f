/*
 * api_scale.c
 *		SQL functions on the shape of deployments: scale, set_autoscale,
 *		set_maintenance_window; and the maintenance-window arithmetic the
 *		launcher's auto-scaling shares.
 *
 * A PostgreSQL memory change needs restarts.  With a maintenance window
 * set, it waits for the window (a queued job due at the window's start,
 * listed in dborch.pending_changes), or with defer => false is refused
 * outside it; without a window it is applied at once.  Replica counts and
 * Redis memory change at once.
 */
#include "postgres.h"

#include <math.h>

#include "fmgr.h"
#include "lib/stringinfo.h"
#include "pgtime.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "api.h"
#include "catalog.h"
#include "dborch.h"
#include "engine.h"
#include "spec.h"

PG_FUNCTION_INFO_V1(dborch_scale);
PG_FUNCTION_INFO_V1(dborch_set_autoscale);
PG_FUNCTION_INFO_V1(dborch_set_maintenance_window);

#define WEEK_MINUTES (7 * 24 * 60)

static const char *const day_names[] = {"mon", "tue", "wed", "thu", "fri", "sat", "sun"};

/* "sun:02:00" to minutes since Monday 00:00; -1 if malformed. */
static int
parse_week_minute(const char *text, size_t len)
{
	int			day,
				hour,
				minute;
	char		buf[16];

	if (len != 9 || text[3] != ':' || text[6] != ':')
		return -1;
	memcpy(buf, text, 9);
	buf[9] = '\0';
	for (day = 0; day < 7; day++)
		if (pg_strncasecmp(buf, day_names[day], 3) == 0)
			break;
	if (day == 7 || sscanf(buf + 4, "%2d:%2d", &hour, &minute) != 2 ||
		hour < 0 || hour > 23 || minute < 0 || minute > 59)
		return -1;
	return day * 1440 + hour * 60 + minute;
}

/* A window "ddd:hh24:mi-ddd:hh24:mi" as two week minutes; 22023 if malformed. */
static void
parse_window(const char *window, int *start, int *end)
{
	const char *dash = strchr(window, '-');

	*start = dash ? parse_week_minute(window, dash - window) : -1;
	*end = dash ? parse_week_minute(dash + 1, strlen(dash + 1)) : -1;
	if (*start < 0 || *end < 0 || *start == *end)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid maintenance window \"%s\"", dborch_clip(window, 60)),
				 errhint("Write it like 'sun:02:00-sun:04:00' (UTC; days mon, tue, wed, thu, fri, sat, sun, in any case).")));
}

/* Minutes since Monday 00:00 UTC now, with the seconds. */
static double
week_minute_now(void)
{
	struct pg_tm tm;
	fsec_t		fsec;
	int			dow;

	if (timestamp2tm(GetCurrentTimestamp(), NULL, &tm, &fsec, NULL, NULL) != 0)
		elog(ERROR, "dborch: timestamp out of range");
	dow = (j2day(date2j(tm.tm_year, tm.tm_mon, tm.tm_mday)) + 6) % 7;	/* Monday 0 */
	return dow * 1440 + tm.tm_hour * 60 + tm.tm_min + (tm.tm_sec + fsec / 1e6) / 60.0;
}

/*
 * Seconds until the window opens: 0 if it is open now.
 */
static double
seconds_until_window(const char *window)
{
	int			start,
				end;
	double		now = week_minute_now();
	bool		open;

	parse_window(window, &start, &end);
	open = start < end ? (now >= start && now < end) : (now >= start || now < end);
	if (open)
		return 0;
	return fmod(start - now + WEEK_MINUTES, WEEK_MINUTES) * 60.0;
}

/*
 * dborch.scale(name, replicas, memory, defer): change the number of
 * replicas and/or the memory of a deployment.
 */
Datum
dborch_scale(PG_FUNCTION_ARGS)
{
	char	   *name = api_text_arg(fcinfo, 0, "deployment name");
	int			replicas = PG_ARGISNULL(1) ? -1 : PG_GETARG_INT32(1);
	char	   *memory_text = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	bool		defer = PG_ARGISNULL(3) ? true : PG_GETARG_BOOL(3);
	ApiCaller	caller;
	Deployment *d;
	int64		memory = 0;
	Datum		row;

	if (!PG_ARGISNULL(1) && (replicas < 0 || replicas > DBORCH_MAX_REPLICAS))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("replicas must be between 0 and %d", DBORCH_MAX_REPLICAS)));
	if (replicas < 0 && memory_text == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("nothing to change"),
				 errhint("Give replicas, memory, or both.")));

	api_enter(&caller);
	d = api_deployment(&caller, name, false);
	if (strcmp(d->status, "ready") != 0 && strcmp(d->status, "degraded") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot scale deployment \"%s\" while it is %s", name, d->status)));
	if (memory_text != NULL)
	{
		memory = spec_memory_bytes(engine_get(d->engine), "argument", memory_text);
	}

	/* every instance, replicas too, counts against the owner's memory quota */
	{
		int			have = Max(list_length(cat_live_instances(d->id)), 1);
		int			after = replicas >= 0 ? replicas + 1 : have;
		int64		extra = (memory > 0 ? memory : d->memory_bytes) * after - d->memory_bytes * have;

		if (extra > 0)
			api_check_quota(d->owner, extra, false);
	}

	if (replicas >= 0)
	{
		int64		job = cat_queue_job("scale", d->id, d->owner,
										psprintf("{\"replicas\": %d}", replicas));

		cat_event(caller.name, d->id, job, "scale_requested",
				  psprintf("%s requested", dborch_count(replicas, "replica", "replicas")), NULL);
	}
	if (memory > 0)
	{
		double		wait = 0;
		bool		deferred = false;
		char	   *args;
		int64		job;

		/* only PostgreSQL restarts for it */
		if (strcmp(d->engine, "postgres") == 0 && d->maintenance_window != NULL &&
			(wait = seconds_until_window(d->maintenance_window)) > 0)
		{
			if (!defer)
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 errmsg("deployment \"%s\" is outside its maintenance window %s",
								name, d->maintenance_window),
						 errhint("Call it with defer => true to apply it in the window.")));
			deferred = true;
		}
		args = psprintf("{\"memory_bytes\": " INT64_FORMAT ", \"memory\": \"%s\", \"deferred\": %s}",
						memory, spec_format_size(memory), deferred ? "true" : "false");
		job = cat_queue_job_after("scale", d->id, d->owner, args, (int) (wait * 1000), true);
		cat_event(caller.name, d->id, job, "scale_requested",
				  deferred ? psprintf("memory %s requested, applied in the maintenance window %s",
									  spec_format_size(memory), d->maintenance_window)
				  : psprintf("memory %s requested", spec_format_size(memory)),
				  NULL);
	}
	dborch_note_queued_deployment(d->id);
	row = cat_deployment_row(d->id);
	api_leave(&caller);
	PG_RETURN_DATUM(row);
}

/* dborch.set_maintenance_window(name, window): set, or with NULL remove. */
Datum
dborch_set_maintenance_window(PG_FUNCTION_ARGS)
{
	char	   *name = api_text_arg(fcinfo, 0, "deployment name");
	char	   *window = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	ApiCaller	caller;
	Deployment *d;
	int			start,
				end;
	Datum		row;

	if (window != NULL)
	{
		parse_window(window, &start, &end);
		/* stored as "wed:03:00-wed:04:00" however it was typed */
		window = psprintf("%s:%02d:%02d-%s:%02d:%02d", day_names[start / 1440], start % 1440 / 60, start % 60,
						  day_names[end / 1440], end % 1440 / 60, end % 60);
	}
	api_enter(&caller);
	d = api_deployment(&caller, name, false);
	cat_set_maintenance_window(d->id, window);
	cat_event(caller.name, d->id, 0, "maintenance_window",
			  window ? psprintf("maintenance window %s (UTC)", window) : "maintenance window removed", NULL);
	row = cat_deployment_row(d->id);
	api_leave(&caller);
	PG_RETURN_DATUM(row);
}

static double
policy_number(const char *key, JsonbValue *v, double low, double high)
{
	double		n;

	if (v->type != jbvNumeric)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("autoscale \"%s\" must be a number", key)));
	n = DatumGetFloat8(DirectFunctionCall1(numeric_float8, NumericGetDatum(v->val.numeric)));
	if (n < low || n > high)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("autoscale \"%s\" must be between %g and %g", key, low, high)));
	return n;
}

/*
 * dborch.set_autoscale(name, policy): {"metric": "cpu"|"memory"|"connections",
 * "scale_up_at": share, "scale_down_at": share, "min_replicas", "max_replicas",
 * "cooldown": interval}; NULL removes the policy.
 */
Datum
dborch_set_autoscale(PG_FUNCTION_ARGS)
{
	char	   *name = api_text_arg(fcinfo, 0, "deployment name");
	Jsonb	   *policy = PG_ARGISNULL(1) ? NULL : PG_GETARG_JSONB_P(1);
	char	   *metric = NULL;
	double		up = -1,
				down = -1;
	int			min_replicas = 0,
				max_replicas = -1;
	char	   *cooldown = pstrdup("5 minutes");
	ApiCaller	caller;
	Deployment *d;
	Datum		row = (Datum) 0;

	if (policy != NULL)
	{
		JsonbIterator *it;
		JsonbValue	v;
		JsonbIteratorToken tok;

		if (JB_ROOT_IS_SCALAR(policy) || !JB_ROOT_IS_OBJECT(policy))
			ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							errmsg("policy must be a JSON object")));
		it = JsonbIteratorInit(&policy->root);
		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			char	   *key;

			if (tok != WJB_KEY)
				continue;
			key = pnstrdup(v.val.string.val, v.val.string.len);
			(void) JsonbIteratorNext(&it, &v, true);
			if (strcmp(key, "metric") == 0 && v.type == jbvString)
				metric = pnstrdup(v.val.string.val, v.val.string.len);
			else if (strcmp(key, "scale_up_at") == 0)
				up = policy_number(key, &v, 0.01, 1);
			else if (strcmp(key, "scale_down_at") == 0)
				down = policy_number(key, &v, 0, 0.99);
			else if (strcmp(key, "min_replicas") == 0)
				min_replicas = (int) policy_number(key, &v, 0, DBORCH_MAX_REPLICAS);
			else if (strcmp(key, "max_replicas") == 0)
				max_replicas = (int) policy_number(key, &v, 0, DBORCH_MAX_REPLICAS);
			else if (strcmp(key, "cooldown") == 0 && v.type == jbvString)
				cooldown = pnstrdup(v.val.string.val, v.val.string.len);
			else
				ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
								errmsg("invalid autoscale option \"%s\"", dborch_clip(key, 60)),
								errhint("Use metric, scale_up_at, scale_down_at, min_replicas, max_replicas, cooldown.")));
		}
		if (metric == NULL || (strcmp(metric, "cpu") != 0 && strcmp(metric, "memory") != 0 &&
							   strcmp(metric, "connections") != 0))
			ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							errmsg("autoscale needs a metric: cpu, memory or connections")));
		if (up < 0 || down < 0 || down >= up)
			ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							errmsg("autoscale needs scale_up_at above scale_down_at")));
		if (max_replicas < 0 || max_replicas < min_replicas)
			ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							errmsg("autoscale needs max_replicas at least min_replicas")));
		(void) spec_interval_ms(DatumGetIntervalP(DirectFunctionCall3(interval_in, CStringGetDatum(cooldown),
																	  ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1))),
								"cooldown");
	}

	api_enter(&caller);
	d = api_deployment(&caller, name, false);
	if (policy == NULL)
	{
		cat_delete_autoscale(d->id);
		cat_event(caller.name, d->id, 0, "autoscale", "auto-scaling removed", NULL);
		api_leave(&caller);
		PG_RETURN_NULL();
	}
	dborch_wake_launcher_at_commit();	/* it evaluates policies only while some exist */
	row = cat_set_autoscale(d->id, DatumGetCString(DirectFunctionCall1(jsonb_out, JsonbPGetDatum(policy))),
							metric, up, down, min_replicas, max_replicas, cooldown);
	cat_event(caller.name, d->id, 0, "autoscale",
			  psprintf("auto-scaling on %s: up at %.2f, down at %.2f, %d to %d replicas", metric, up, down,
					   min_replicas, max_replicas),
			  NULL);
	api_leave(&caller);
	PG_RETURN_DATUM(row);
}
