/*
 * api_tenant.c
 *		SQL functions on tenants: create_tenant, drop_tenant, move_tenant,
 *		and the tenant part of connection_string.
 *
 * Quotas: PostgreSQL {"max_connections": N, "storage": "50MB"}, Redis
 * {"max_keys": N, "memory": "16MB"}; normalized, so the same quota written
 * two ways is the same (create_tenant is idempotent like deploy).
 */
#include "postgres.h"

#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "api.h"
#include "catalog.h"
#include "dborch.h"
#include "engine.h"
#include "spec.h"
#include "tenant.h"
#include "tls.h"

PG_FUNCTION_INFO_V1(dborch_create_tenant);
PG_FUNCTION_INFO_V1(dborch_drop_tenant);
PG_FUNCTION_INFO_V1(dborch_move_tenant);

/*
 * Tenant names become role, schema and ACL user names: besides the name
 * rule, those the instances use themselves are refused.
 */
static void
check_tenant_name(const char *name)
{
	dborch_validate_name("tenant", name);
	if (strcmp(name, "postgres") == 0 || strcmp(name, "public") == 0 ||
		strcmp(name, "information_schema") == 0 || strcmp(name, "default") == 0 ||
		strcmp(name, OWNER_LOGIN) == 0 || strcmp(name, REDIS_DBORCH_USER) == 0 ||
		strncmp(name, "pg_", 3) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("tenant name \"%s\" is reserved", name),
				 errdetail("postgres, public, information_schema, default, " OWNER_LOGIN ", "
						   REDIS_DBORCH_USER " and names starting with pg_ are used by the instances themselves.")));
}

static int64
positive_integer(const char *key, JsonbValue *v, int64 max)
{
	char	   *text;
	int64		n;

	if (v->type != jbvNumeric)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("quota \"%s\" must be a number", key)));
	text = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
	if (strspn(text, "0123456789") != strlen(text) || strlen(text) > 15 ||
		(n = strtoi64(text, NULL, 10)) < 1)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("quota \"%s\" must be a whole number of at least 1, not %s", key, text)));
	if (n > max)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("quota \"%s\" must be at most " INT64_FORMAT ", not %s", key, max, text)));
	return n;
}

/* A size of at least 1kB. */
static char *
size_text(const char *key, JsonbValue *v)
{
	int64		bytes;

	if (v->type != jbvString)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("quota \"%s\" must be a size like \"50MB\"", key)));
	bytes = spec_parse_size("quota", key, pnstrdup(v->val.string.val, v->val.string.len));
	if (bytes < 1024)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("quota \"%s\" must be at least 1kB", key)));
	return spec_format_size(bytes);
}

/* The quota of an engine's tenant, normalized to canonical jsonb text. */
static char *
normalize_quota(Jsonb *quota, const char *engine)
{
	bool		pg = strcmp(engine, "postgres") == 0;
	const char *valid = pg ? "max_connections, storage" : "max_keys, memory";
	StringInfoData buf;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;

	if (JB_ROOT_IS_SCALAR(quota) || !JB_ROOT_IS_OBJECT(quota))
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("quota must be a JSON object"),
						errhint("Valid keys for a %s tenant: %s.", engine, valid)));
	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	it = JsonbIteratorInit(&quota->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		char	   *key;

		if (tok != WJB_KEY)
			continue;
		key = pnstrdup(v.val.string.val, v.val.string.len);
		(void) JsonbIteratorNext(&it, &v, true);
		if (buf.len > 1)
			appendStringInfoString(&buf, ", ");
		if (pg && strcmp(key, "max_connections") == 0)
			appendStringInfo(&buf, "\"%s\": " INT64_FORMAT, key, positive_integer(key, &v, 100000));
		else if (pg && strcmp(key, "storage") == 0)
			appendStringInfo(&buf, "\"%s\": \"%s\"", key, size_text(key, &v));
		else if (!pg && strcmp(key, "max_keys") == 0)
			appendStringInfo(&buf, "\"%s\": " INT64_FORMAT, key,
							 positive_integer(key, &v, INT64CONST(1000000000000)));
		else if (!pg && strcmp(key, "memory") == 0)
			appendStringInfo(&buf, "\"%s\": \"%s\"", key, size_text(key, &v));
		else
			ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							errmsg("quota \"%s\" does not fit a %s tenant", dborch_clip(key, 60), engine),
							errhint("Valid keys for a %s tenant: %s.", engine, valid)));
	}
	appendStringInfoChar(&buf, '}');
	return DatumGetCString(DirectFunctionCall1(jsonb_out,
											   DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data))));
}

/* A deployment that can hold tenants now or once its deploy is done. */
static void
check_tenant_host(Deployment *d)
{
	if (strcmp(d->status, "pending") != 0 && strcmp(d->status, "provisioning") != 0 &&
		strcmp(d->status, "ready") != 0 && strcmp(d->status, "degraded") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("deployment \"%s\" is %s", d->name, d->status)));
}

static Tenant *
live_tenant(Deployment *d, const char *name)
{
	Tenant	   *t = cat_live_tenant(d->id, name);

	if (t == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("tenant \"%s\" does not exist in deployment \"%s\"", name, d->name)));
	return t;
}

/*
 * dborch.create_tenant(deployment, tenant, quota): queue a tenant.  The
 * same tenant and quota again returns the existing row (and retries it if
 * it failed); another quota is an error.
 */
Datum
dborch_create_tenant(PG_FUNCTION_ARGS)
{
	char	   *deployment = api_text_arg(fcinfo, 0, "deployment name");
	char	   *name = api_text_arg(fcinfo, 1, "tenant name");
	ApiCaller	caller;
	Deployment *d;
	Tenant	   *t;
	char	   *quota;
	int64		id;
	Datum		row;

	if (PG_ARGISNULL(2))
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("quota must not be null"), errhint("Pass '{}' for no quota.")));
	check_tenant_name(name);
	api_enter(&caller);
	d = api_deployment(&caller, deployment, false);
	quota = normalize_quota(PG_GETARG_JSONB_P(2), d->engine);
	check_tenant_host(d);
	cat_xact_lock(DBORCH_LOCK_NAME, psprintf("%s/%s", d->name, name));
	t = cat_live_tenant(d->id, name);
	if (t != NULL)
	{
		if (strcmp(t->quota, quota) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_OBJECT),
					 errmsg("tenant \"%s\" already exists in deployment \"%s\" with another quota",
							name, d->name),
					 errdetail("Existing: %s. Requested: %s.", t->quota, quota),
					 errhint("To change it, remove it with dborch.drop_tenant('%s', '%s') and create it again.",
							 d->name, name)));
		if (strcmp(t->status, "failed") == 0)
		{
			cat_tenant_set_status(t->id, "pending", NULL);
			cat_queue_tenants_job(d);
			dborch_note_queued_deployment(d->id);
		}
		row = cat_tenant_row(t->id);
		api_leave(&caller);
		PG_RETURN_DATUM(row);
	}
	id = cat_insert_tenant(d, name, quota, false);
	dborch_note_queued_deployment(d->id);
	row = cat_tenant_row(id);
	api_leave(&caller);
	PG_RETURN_DATUM(row);
}

/* dborch.drop_tenant(deployment, tenant): queue its removal, data included. */
Datum
dborch_drop_tenant(PG_FUNCTION_ARGS)
{
	char	   *deployment = api_text_arg(fcinfo, 0, "deployment name");
	char	   *name = api_text_arg(fcinfo, 1, "tenant name");
	ApiCaller	caller;
	Deployment *d;
	Tenant	   *t;
	Datum		row;

	dborch_validate_name("tenant", name);
	api_enter(&caller);
	d = api_deployment(&caller, deployment, false);
	t = live_tenant(d, name);
	if (strcmp(t->status, "moving") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("tenant \"%s\" is being moved", name),
				 errhint("Drop it once the move has finished.")));
	if (strcmp(t->status, "dropping") != 0)
	{
		cat_tenant_set_status(t->id, "dropping", NULL);
		cat_queue_tenants_job(d);
		cat_event(caller.name, d->id, 0, "tenant_drop_requested",
				  psprintf("drop of tenant %s requested", name), NULL);
		dborch_note_queued_deployment(d->id);
	}
	row = cat_tenant_row(t->id);
	api_leave(&caller);
	PG_RETURN_DATUM(row);
}

/*
 * dborch.move_tenant(tenant, source, target): queue the move of a tenant
 * and its data to another deployment of the same engine.
 */
Datum
dborch_move_tenant(PG_FUNCTION_ARGS)
{
	char	   *name = api_text_arg(fcinfo, 0, "tenant name");
	char	   *source_name = api_text_arg(fcinfo, 1, "source");
	char	   *target_name = api_text_arg(fcinfo, 2, "target");
	ApiCaller	caller;
	Deployment *source,
			   *target;
	Tenant	   *t;
	int64		job_id;
	Datum		row;

	dborch_validate_name("tenant", name);
	if (strcmp(source_name, target_name) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cannot move tenant \"%s\" to the deployment it is in", name)));
	api_enter(&caller);
	source = api_deployment(&caller, source_name, false);
	target = api_deployment(&caller, target_name, false);
	if (strcmp(source->engine, target->engine) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cannot move a tenant from a %s deployment to a %s one",
						source->engine, target->engine)));
	t = live_tenant(source, name);
	if (cat_live_tenant(target->id, name) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("deployment \"%s\" already holds a tenant \"%s\"", target->name, name)));
	if (strcmp(t->status, "active") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("tenant \"%s\" is %s", name, t->status)));
	if (strcmp(target->status, "ready") != 0 && strcmp(target->status, "degraded") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("deployment \"%s\" is %s", target->name, target->status)));
	cat_tenant_set_status(t->id, "moving", NULL);
	job_id = cat_queue_job("move_tenant", source->id, source->owner,
						   psprintf("{\"tenant_id\": " INT64_FORMAT ", \"target_id\": " INT64_FORMAT "}",
									t->id, target->id));
	cat_event(caller.name, source->id, job_id, "tenant_move_requested",
			  psprintf("move of tenant %s to %s requested", name, target->name), NULL);
	dborch_note_queued_deployment(source->id);
	row = cat_job_row(job_id);
	api_leave(&caller);
	PG_RETURN_DATUM(row);
}

/*
 * The URI of a tenant: its own user and password; Redis tenants use keys
 * and channels "<tenant>:*" only.
 */
char *
api_tenant_connection_string(Deployment *d, Instance *inst, const char *name)
{
	Tenant	   *t = live_tenant(d, name);

	if (strcmp(t->status, "active") != 0 && strcmp(t->status, "moving") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("tenant \"%s\" is %s", name, t->status),
				 errhint("Wait for its job: SELECT * FROM dborch.jobs WHERE deployment_id = " INT64_FORMAT ".",
						 d->id)));
	if (strcmp(d->engine, "postgres") == 0)
		return psprintf("postgresql://%s:%s@%s:%d/postgres?%s", name, t->password,
						engine_uri_host(inst->host), inst->port, tls_postgres_uri_params());
	return psprintf("redis://%s:%s@%s:%d/0", name, t->password, engine_uri_host(inst->host), inst->port);
}
