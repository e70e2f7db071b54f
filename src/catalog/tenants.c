/*
 * tenants.c
 *		The catalog's tenants (see catalog.c for how every
 *		statement runs).
 */
#include "postgres.h"

#include <stdarg.h>

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "catalog.h"
#include "catalog_internal.h"
#include "dborch.h"
#include "spec.h"
#include "tenant.h"

/* ---------------------------------------------------------------------
 * Tenants
 * ---------------------------------------------------------------------
 */

#define TENANT_QUERY \
	"SELECT t.id, t.deployment_id, t.deployment, t.name, t.owner, t.engine, t.status," \
	" t.read_only, t.adopt_data, t.quota::text AS quota, s.value AS password," \
	" (t.quota ->> 'max_connections')::bigint AS max_connections, t.quota ->> 'storage' AS storage," \
	" (t.quota ->> 'max_keys')::bigint AS max_keys, t.quota ->> 'memory' AS memory" \
	" FROM dborch.tenants t LEFT JOIN dborch.secrets s" \
	"   ON s.deployment_id = t.deployment_id AND s.name = 'tenant:' || t.name"

static Tenant *
tenant_from(CatResult *r, int row)
{
	Tenant	   *t = palloc0(sizeof(Tenant));
	const char *v;

	t->id = cat_int64(r, row, "id");
	t->deployment_id = cat_int64(r, row, "deployment_id");
	t->deployment = cat_str(r, row, "deployment");
	t->name = cat_str(r, row, "name");
	t->owner = cat_str(r, row, "owner");
	t->engine = cat_str(r, row, "engine");
	t->status = cat_str(r, row, "status");
	t->read_only = strcmp(cat_value(r, row, "read_only"), "t") == 0;
	t->adopt_data = strcmp(cat_value(r, row, "adopt_data"), "t") == 0;
	t->quota = cat_str(r, row, "quota");
	t->password = cat_str(r, row, "password");
	t->max_connections = (v = cat_value(r, row, "max_connections")) ? strtoi64(v, NULL, 10) : -1;
	t->storage_bytes = (v = cat_value(r, row, "storage")) ? spec_parse_size("quota", "storage", v) : -1;
	t->max_keys = (v = cat_value(r, row, "max_keys")) ? strtoi64(v, NULL, 10) : -1;
	t->memory_bytes = (v = cat_value(r, row, "memory")) ? spec_parse_size("quota", "memory", v) : -1;
	return t;
}

static List *
tenants_from(CatResult *r)
{
	List	   *list = NIL;
	int			i;

	for (i = 0; i < r->nrows; i++)
		list = lappend(list, tenant_from(r, i));
	return list;
}

/* The tenant of this name in a deployment that is not dropped, or NULL. */
Tenant *
cat_live_tenant(int64 deployment_id, const char *name)
{
	CatResult  *r = cat_query(TENANT_QUERY " WHERE t.deployment_id = $1::bigint AND t.name = $2"
							  " AND t.status <> 'dropped'",
							  2, cat_i64(deployment_id), name);

	return r->nrows ? tenant_from(r, 0) : NULL;
}

/*
 * The tenants of a deployment that have (or are about to have) a login, with
 * their passwords: what a Redis instance's aclfile holds.
 */
List *
cat_tenants_with_login(int64 deployment_id)
{
	return tenants_from(cat_query(TENANT_QUERY " WHERE t.deployment_id = $1::bigint"
								  " AND t.status IN ('pending', 'active', 'moving')"
								  " AND s.value IS NOT NULL ORDER BY t.id",
								  1, cat_i64(deployment_id)));
}

Tenant *
cat_tenant(int64 id)
{
	CatResult  *r = cat_query(TENANT_QUERY " WHERE t.id = $1::bigint", 1, cat_i64(id));

	return r->nrows ? tenant_from(r, 0) : NULL;
}

/* A deployment's tenants in a status, oldest first. */
List *
cat_tenants_in(int64 deployment_id, const char *status)
{
	return tenants_from(cat_query(TENANT_QUERY " WHERE t.deployment_id = $1::bigint"
								  " AND t.status = $2 ORDER BY t.id",
								  2, cat_i64(deployment_id), status));
}

Datum
cat_tenant_row(int64 id)
{
	return cat_query_datum("SELECT t FROM dborch.tenants t WHERE t.id = $1::bigint", 1, cat_i64(id));
}

/*
 * A pending tenant with its generated password (a secret), and a tenants
 * job for its deployment unless one is queued already: a batch of
 * create_tenant() calls is applied by one job.
 */
int64
cat_insert_tenant(Deployment *d, const char *name, const char *quota, bool adopt_data)
{
	CatResult  *r;
	int64		id;

	r = cat_query("INSERT INTO dborch.tenants (deployment_id, deployment, name, owner, engine,"
				  " quota, key_prefix, adopt_data)"
				  " VALUES ($1::bigint, $2, $3, $4::name, $5, $6::jsonb,"
				  "         CASE WHEN $5 = 'redis' THEN $3 || ':' END, $7::bool)"
				  " RETURNING id",
				  7, cat_i64(d->id), d->name, name, d->owner, d->engine, quota,
				  adopt_data ? "true" : "false");
	id = cat_int64(r, 0, "id");
	cat_set_secret(d->id, psprintf("tenant:%s", name), dborch_random_password(32));
	cat_queue_tenants_job(d);
	return id;
}

/*
 * A deployment's active tenants become pending again, writable (the
 * usage measurement judges the quota anew), for a tenants job to bring
 * them back to their definition; returns how many.
 */
int
cat_tenants_reapply(int64 deployment_id)
{
	return cat_query("UPDATE dborch.tenants SET status = 'pending', read_only = false,"
					 " adopt_data = true, updated_at = pg_catalog.clock_timestamp()"
					 " WHERE deployment_id = $1::bigint AND status = 'active' RETURNING id",
					 1, cat_i64(deployment_id))->nrows;
}

/* Queue a tenants job for a deployment unless one is queued already. */
void
cat_queue_tenants_job(Deployment *d)
{
	CatResult  *r = cat_query("SELECT 1 FROM dborch.jobs WHERE deployment_id = $1::bigint"
							  " AND kind = 'tenants' AND state = 'queued'",
							  1, cat_i64(d->id));

	if (r->nrows == 0)
		cat_queue_job("tenants", d->id, d->owner, NULL);
}

void
cat_tenant_set_status(int64 id, const char *status, const char *error)
{
	cat_query("UPDATE dborch.tenants SET status = $2, last_error = $3,"
			  " updated_at = pg_catalog.clock_timestamp() WHERE id = $1::bigint",
			  3, cat_i64(id), status, error);
}

/* A batch of tenants is active: their rows and one event each, in one statement. */
void
cat_tenants_created(int64 deployment_id, int64 job_id, List *tenants)
{
	StringInfoData ids;
	ListCell   *lc;

	initStringInfo(&ids);
	appendStringInfoChar(&ids, '{');
	foreach(lc, tenants)
		appendStringInfo(&ids, "%s" INT64_FORMAT, ids.len > 1 ? "," : "", ((Tenant *) lfirst(lc))->id);
	appendStringInfoChar(&ids, '}');
	/* a join, not id = ANY ($1): a cached generic plan would not hash the array */
	cat_query("WITH t AS (UPDATE dborch.tenants t SET status = 'active', last_error = NULL,"
			  "   updated_at = pg_catalog.clock_timestamp()"
			  "   FROM pg_catalog.unnest($1::bigint[]) AS u(id)"
			  "   WHERE t.id = u.id RETURNING t.id, t.name, t.quota)"
			  " INSERT INTO dborch.events"
			  " (actor, owner, deployment, deployment_id, job_id, kind, message, detail)"
			  " SELECT $3, d.owner, d.name, d.id, $4::bigint, 'tenant_created',"
			  "   'tenant ' || t.name || ' created',"
			  "   pg_catalog.jsonb_build_object('tenant', t.name, 'quota', t.quota)"
			  " FROM t, dborch.deployments d WHERE d.id = $2::bigint ORDER BY t.id",
			  4, ids.data, cat_i64(deployment_id), DBORCH_ACTOR, cat_i64(job_id));
}

/* A dropped tenant loses its secret; its row stays. */
void
cat_tenant_dropped(int64 id)
{
	cat_query("WITH t AS (UPDATE dborch.tenants SET status = 'dropped',"
			  "   updated_at = pg_catalog.clock_timestamp()"
			  "   WHERE id = $1::bigint RETURNING deployment_id, name)"
			  " DELETE FROM dborch.secrets s USING t"
			  " WHERE s.deployment_id = t.deployment_id AND s.name = 'tenant:' || t.name",
			  1, cat_i64(id));
}

/* The tenants of a destroyed deployment are dropped with it. */
void
cat_drop_tenants_of(int64 deployment_id)
{
	cat_query("UPDATE dborch.tenants SET status = 'dropped', updated_at = pg_catalog.clock_timestamp()"
			  " WHERE deployment_id = $1::bigint AND status <> 'dropped'",
			  1, cat_i64(deployment_id));
}

/* Deployments in service with active tenants that have a quota. */
List *
cat_tenant_usage_deployments(void)
{
	return ids_from(cat_query("SELECT DISTINCT d.id FROM dborch.deployments d"
							  " JOIN dborch.tenants t ON t.deployment_id = d.id"
							  " WHERE t.status = 'active' AND t.quota <> '{}'"
							  " AND d.status IN ('ready', 'degraded') ORDER BY d.id",
							  0));
}

void
cat_tenant_record_usage(int64 id, const char *usage)
{
	cat_query("UPDATE dborch.tenants SET usage = $2::jsonb, usage_at = pg_catalog.clock_timestamp()"
			  " WHERE id = $1::bigint",
			  2, cat_i64(id), usage);
}

/*
 * A tenant went over its quota (read-only) or back under it: the flag, an
 * event, a NOTIFY on dborch_events and an alert (firing or resolved).
 */
void
cat_tenant_quota_changed(int64 id, bool over, const char *reason)
{
	const char *kind = over ? "tenant_over_quota" : "tenant_within_quota";
	CatResult  *r;

	r = cat_query("UPDATE dborch.tenants SET read_only = $2::bool,"
				  " updated_at = pg_catalog.clock_timestamp()"
				  " WHERE id = $1::bigint RETURNING deployment_id, deployment, name",
				  2, cat_i64(id), over ? "true" : "false");
	cat_event_notify(DBORCH_ACTOR, cat_int64(r, 0, "deployment_id"), 0, kind,
					 over ? psprintf("tenant %s is over its quota and read-only: %s", cat_value(r, 0, "name"), reason)
					 : psprintf("tenant %s is within its quota and writable again", cat_value(r, 0, "name")),
					 psprintf("{\"tenant\": \"%s\"}", cat_value(r, 0, "name")));
	cat_add_alert(cat_int64(r, 0, "deployment_id"), 0, over ? "firing" : "resolved",
				  "DborchTenantOverQuota", "warning",
				  psprintf("{\"tenant\": \"%s\"}", cat_value(r, 0, "name")),
				  psprintf("tenant %s of deployment %s is over its quota", cat_value(r, 0, "name"),
						   cat_value(r, 0, "deployment")),
				  reason);
	dborch_wake_launcher_at_commit();
}

/*
 * The move of a tenant is done: its row, name of deployment and password
 * secret switch to the target in one statement.
 */
void
cat_tenant_switch(int64 id, int64 target_id)
{
	cat_query("WITH t AS (SELECT deployment_id AS old, name FROM dborch.tenants WHERE id = $1::bigint),"
			  " s AS (UPDATE dborch.secrets s SET deployment_id = $2::bigint"
			  "       FROM t WHERE s.deployment_id = t.old AND s.name = 'tenant:' || t.name)"
			  " UPDATE dborch.tenants SET deployment_id = $2::bigint,"
			  "   deployment = (SELECT name FROM dborch.deployments WHERE id = $2::bigint),"
			  "   updated_at = pg_catalog.clock_timestamp()"
			  " WHERE id = $1::bigint",
			  2, cat_i64(id), cat_i64(target_id));
}
