/*
 * api_deploy.c
 *		SQL functions on deployments: deploy, wait, destroy, deployment,
 *		connection_string.  Each validates its input, checks ownership, and
 *		writes catalog rows; the slow work happens in job workers after the
 *		transaction commits.
 */
#include "postgres.h"

#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "api.h"
#include "catalog.h"
#include "dborch.h"
#include "deployment.h"
#include "engine.h"
#include "routing.h"
#include "spec.h"
#include "tls.h"

PG_FUNCTION_INFO_V1(dborch_deploy);
PG_FUNCTION_INFO_V1(dborch_wait);
PG_FUNCTION_INFO_V1(dborch_destroy);
PG_FUNCTION_INFO_V1(dborch_deployment);
PG_FUNCTION_INFO_V1(dborch_connection_string);

/*
 * dborch.deploy(name, engine, options): queue a deployment.  The same name
 * and spec again returns the existing row (and retries it if it failed);
 * the same name with another spec is an error.
 */
Datum
dborch_deploy(PG_FUNCTION_ARGS)
{
	char	   *name = api_text_arg(fcinfo, 0, "deployment name");
	char	   *engine_name = api_text_arg(fcinfo, 1, "engine");
	Jsonb	   *options;
	const EngineOps *engine;
	DeploySpec	spec;
	ApiCaller	caller;
	Deployment *d;
	int64		id;
	int64		job_id;
	Datum		row;

	if (PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("options must not be null"),
				 errhint("Pass '{}' for the defaults.")));
	options = PG_GETARG_JSONB_P(2);
	dborch_validate_name("deployment", name);
	engine = engine_get(engine_name);
	if (engine == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown engine \"%s\"", dborch_clip(engine_name, 60)),
				 errhint("Use 'postgres' or 'redis'.")));
	spec_parse(engine, options, &spec);

	api_enter(&caller);
	cat_xact_lock(DBORCH_LOCK_NAME, name);
	d = cat_live_deployment(name);
	if (d != NULL)
	{
		if (!caller.is_admin && strcmp(d->owner, caller.name) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_OBJECT),
					 errmsg("deployment \"%s\" already exists", name),
					 errdetail("The name is taken by a deployment of another role.")));
		if (strcmp(d->status, "destroying") == 0)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("deployment \"%s\" is being destroyed", name),
					 errhint("Wait for it with dborch.wait('%s'), then deploy again.", name)));
		if (strcmp(d->engine, engine->name) != 0 || strcmp(d->spec, spec.json) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_OBJECT),
					 errmsg("deployment \"%s\" already exists with a different spec", name),
					 errdetail("Existing: %s %s. Requested: %s %s.",
							   d->engine, d->spec, engine->name, spec.json),
					 errhint("To change it, remove it with dborch.destroy('%s') and deploy again.", name)));
		if (strcmp(d->status, "failed") == 0)
		{
			/* deploying a failed deployment again retries it; it counts again */
			api_check_quota(d->owner, d->memory_bytes, true);
			cat_set_deployment_status(d->id, "pending", "failed", NULL);
			job_id = cat_queue_job("deploy", d->id, d->owner, NULL);
			cat_event(caller.name, d->id, job_id, "deploy_requested",
					  "deploy requested again after a failure", NULL);
			dborch_note_queued_deployment(d->id);
		}
		row = cat_deployment_row(d->id);
		api_leave(&caller);
		PG_RETURN_DATUM(row);
	}

	/* every instance, replicas too, counts against the memory quota */
	api_check_quota(caller.name, spec.memory_bytes * (1 + spec.replicas), true);
	id = cat_insert_deployment(name, engine->name, caller.name, spec.environment, spec.json,
							   spec.memory_bytes, spec.ttl);
	job_id = cat_queue_job("deploy", id, caller.name, NULL);
	cat_event(caller.name, id, job_id, "deploy_requested",
			  psprintf("%s deployment requested", engine->name), spec.json);
	dborch_note_queued_deployment(id);
	row = cat_deployment_row(id);
	api_leave(&caller);
	PG_RETURN_DATUM(row);
}

static bool
is_transitional(const char *status)
{
	return strcmp(status, "pending") == 0 || strcmp(status, "provisioning") == 0 ||
		strcmp(status, "stopping") == 0 || strcmp(status, "starting") == 0 ||
		strcmp(status, "destroying") == 0 || strcmp(status, "restoring") == 0;
}

/*
 * dborch.wait(name, timeout): block until the deployment leaves pending,
 * provisioning, stopping, starting, restoring and destroying, no scale or
 * failover job of it runs or is due, and the prober has seen each of its
 * running replicas answer (reads are routed to them from then on).  Errors
 * if it failed or on timeout.
 */
Datum
dborch_wait(PG_FUNCTION_ARGS)
{
	char	   *name = api_text_arg(fcinfo, 0, "deployment name");
	int64		timeout_ms;
	int64		deadline;
	ApiCaller	caller;
	Deployment *d;
	int64		job = 0;
	int64		replica = 0;
	Datum		row;

	if (PG_ARGISNULL(1))
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("timeout must not be null")));
	timeout_ms = spec_interval_ms(PG_GETARG_INTERVAL_P(1), "timeout");
	deadline = dborch_now_ms() + timeout_ms;

	api_enter(&caller);
	d = api_deployment(&caller, name, true);
	api_check_can_wait(d->id, psprintf("deployment \"%s\"", name));

	api_wait_begin();
	for (;;)
	{
		d = cat_deployment(d->id);
		if (strcmp(d->status, "failed") == 0)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("deployment \"%s\" failed", name),
					 errdetail("%s", d->last_error ? d->last_error : "no error recorded")));
		if (!is_transitional(d->status) && (job = cat_reshaping_job(d->id)) == 0 &&
			(replica = cat_unprobed_replica(d->id)) == 0)
			break;
		if (!api_wait_sleep(deadline))
			ereport(ERROR,
					(errcode(ERRCODE_QUERY_CANCELED),
					 errmsg("timed out after " INT64_FORMAT " ms waiting for deployment \"%s\"",
							timeout_ms, name),
					 is_transitional(d->status) ? errdetail("It is still %s.", d->status)
					 : job != 0 ? errdetail("Its job " INT64_FORMAT " is not finished.", job)
					 : errdetail("The prober has not yet seen its replica (instance " INT64_FORMAT ") answer.",
								 replica),
					 errhint("Its progress is in dborch.jobs and dborch.events.")));
	}
	api_wait_end();
	row = cat_deployment_row(d->id);
	api_leave(&caller);
	PG_RETURN_DATUM(row);
}

/*
 * dborch.destroy(name, drop_backups): queue the removal of the deployment's
 * processes and data.  Its row (status destroyed), events and, unless
 * drop_backups, backups stay, so it can be restored later; destroy() of a
 * destroyed deployment with drop_backups drops the backups it kept.
 */
Datum
dborch_destroy(PG_FUNCTION_ARGS)
{
	char	   *name = api_text_arg(fcinfo, 0, "deployment name");
	bool		drop_backups = PG_ARGISNULL(1) ? false : PG_GETARG_BOOL(1);
	ApiCaller	caller;
	Deployment *d;
	int64		job;
	Datum		row;

	api_enter(&caller);
	cat_xact_lock(DBORCH_LOCK_NAME, name);
	d = api_deployment(&caller, name, true);
	if (drop_backups && (job = cat_job_reading_backups(d->id)) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("backups of deployment \"%s\" are in use by job " INT64_FORMAT, name, job),
				 errhint("Wait for it with dborch.wait_job(" INT64_FORMAT "), or cancel it with dborch.cancel_job().", job)));
	if (deployment_request_destroy(d, caller.name,
								   drop_backups ? "destroy requested, with its backups" : "destroy requested",
								   drop_backups) == 0)
		ereport(NOTICE,
				(errmsg("deployment \"%s\" is already destroyed", name),
				 drop_backups ? errdetail("It keeps no backups.") : 0));
	row = cat_deployment_row(d->id);
	api_leave(&caller);
	PG_RETURN_DATUM(row);
}

/* dborch.deployment(name): details as jsonb, without credentials. */
Datum
dborch_deployment(PG_FUNCTION_ARGS)
{
	char	   *name = api_text_arg(fcinfo, 0, "deployment name");
	ApiCaller	caller;
	Deployment *d;
	Datum		details;
	char	   *from = NULL,
			   *to = NULL;

	api_enter(&caller);
	d = api_deployment(&caller, name, true);
	(void) cat_recoverable_window(d->id, &from, &to);
	details = cat_deployment_details(d->id, from, to);
	api_leave(&caller);
	PG_RETURN_DATUM(details);
}

/* What a caller can do about a deployment that serves no connection now. */
static int
status_hint(Deployment *d)
{
	if (strcmp(d->status, "failed") == 0)
		return errhint("Its error is in dborch.deployments.last_error; deploy() with the same spec retries it.");
	if (strcmp(d->status, "stopped") == 0)
		return errhint("Start it with dborch.start('%s').", d->name);
	if (strcmp(d->status, "destroyed") == 0 || strcmp(d->status, "destroying") == 0)
		return errhint("A destroyed deployment can be restored from a kept backup with dborch.restore().");
	return errhint("Wait for it with dborch.wait('%s').", d->name);
}

/*
 * A PostgreSQL URI naming the primary and the running replicas, the
 * primary first, with target_session_attrs, so libpq finds the primary (or
 * a standby) itself.
 */
static char *
multi_host_uri(Routes *routes, RouteInstance *primary, const char *attrs)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "postgresql://" OWNER_LOGIN ":%s@%s:%d", routes->password,
					 engine_uri_host(primary->host), primary->port);
	for (int i = 0; i < routes->ninstances; i++)
		if (&routes->instances[i] != primary)
			appendStringInfo(&buf, ",%s:%d", engine_uri_host(routes->instances[i].host),
							 routes->instances[i].port);
	appendStringInfo(&buf, "/postgres?target_session_attrs=%s&%s", attrs, tls_postgres_uri_params());
	return buf.data;
}

/*
 * dborch.connection_string(name, tenant, intent, strategy, multi_host): a
 * URI with credentials, the tenant's when one is named.  intent 'write' is
 * the primary; 'read' a healthy replica by strategy (round_robin,
 * least_connections, response_time), the primary when none is healthy.
 * multi_host (PostgreSQL) lists every instance with target_session_attrs.
 */
Datum
dborch_connection_string(PG_FUNCTION_ARGS)
{
	char	   *name = api_text_arg(fcinfo, 0, "deployment name");
	char	   *tenant = PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *intent = api_text_arg(fcinfo, 2, "intent");
	char	   *strategy = api_text_arg(fcinfo, 3, "strategy");
	bool		multi_host = PG_ARGISNULL(4) ? false : PG_GETARG_BOOL(4);
	bool		read = strcmp(intent, "read") == 0;
	ApiCaller	caller;
	Routes	   *routes;
	Deployment *d;
	RouteInstance *to;
	Instance	inst = {0};
	char	   *uri;

	if (!read && strcmp(intent, "write") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid intent \"%s\"", dborch_clip(intent, 60)),
				 errhint("Use 'write' or 'read'.")));
	if (strcmp(strategy, "round_robin") != 0 && strcmp(strategy, "least_connections") != 0 &&
		strcmp(strategy, "response_time") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid strategy \"%s\"", dborch_clip(strategy, 60)),
				 errhint("Use 'round_robin', 'least_connections' or 'response_time'.")));
	if (tenant != NULL)
		dborch_validate_name("tenant", tenant);

	dborch_validate_name("deployment", name);
	api_enter(&caller);
	routes = routing_lookup(name);
	d = api_check_deployment(&caller, name, routes ? &routes->deployment : NULL);
	if (tenant != NULL && cat_live_tenant(d->id, tenant) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("tenant \"%s\" does not exist in deployment \"%s\"", tenant, name)));
	if (strcmp(d->status, "ready") != 0 && strcmp(d->status, "degraded") != 0 &&
		strcmp(d->status, "down") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("deployment \"%s\" is %s", name, d->status),
				 status_hint(d)));
	if (multi_host && strcmp(d->engine, "postgres") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("multi-host connection strings are for PostgreSQL deployments")));
	to = routing_pick(routes, read, strategy);
	if (to == NULL || routes->password == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("deployment \"%s\" has no running instance", name)));
	inst.id = to->id;
	inst.deployment_id = d->id;
	inst.host = to->host;
	inst.port = to->port;
	if (tenant != NULL)
		uri = api_tenant_connection_string(d, &inst, tenant);
	else if (multi_host)
		uri = multi_host_uri(routes, routing_pick(routes, false, strategy),
							 read ? "prefer-standby" : "read-write");
	else
		uri = engine_get(d->engine)->connection_string(&inst, routes->password);
	api_leave(&caller);
	PG_RETURN_TEXT_P(cstring_to_text(uri));
}
