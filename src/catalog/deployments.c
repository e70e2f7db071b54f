/*
 * deployments.c
 *		The catalog's deployments, their instances, secrets and the warm pool (see catalog.c for how every
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
 * Deployments
 * ---------------------------------------------------------------------
 */

#define DEPLOYMENT_COLUMNS \
	"d.id, d.name, d.engine, d.owner, d.environment, d.spec::text AS spec, " \
	"d.spec->>'version' AS version, d.memory_bytes, d.status, d.last_error, d.maintenance_window"

static Deployment *
deployment_from(CatResult *r)
{
	Deployment *d;

	if (r->nrows == 0)
		return NULL;
	d = palloc0(sizeof(Deployment));
	d->id = cat_int64(r, 0, "id");
	d->name = cat_str(r, 0, "name");
	d->engine = cat_str(r, 0, "engine");
	d->owner = cat_str(r, 0, "owner");
	d->environment = cat_str(r, 0, "environment");
	d->spec = cat_str(r, 0, "spec");
	d->version = cat_str(r, 0, "version");
	d->memory_bytes = cat_int64(r, 0, "memory_bytes");
	d->status = cat_str(r, 0, "status");
	d->last_error = cat_str(r, 0, "last_error");
	d->maintenance_window = cat_str(r, 0, "maintenance_window");
	return d;
}

/* The deployment of this name that is not destroyed, if any. */
Deployment *
cat_live_deployment(const char *name)
{
	return deployment_from(cat_query("SELECT " DEPLOYMENT_COLUMNS
									 " FROM dborch.deployments d"
									 " WHERE d.name = $1 AND d.status <> 'destroyed'",
									 1, name));
}

/*
 * connection_string's one query: the live deployment of this name, and in
 * *routes a row for each instance a connection may go to (its primary,
 * whatever its status, and its running replicas: instance_id, role, host,
 * port) with the deployment's password, in instance id order (so a
 * multi-host URI and the round-robin turn are the same on every call);
 * instance_id is null when there is none.
 */
Deployment *
cat_live_deployment_routes(const char *name, CatResult **routes)
{
	*routes = cat_query("SELECT " DEPLOYMENT_COLUMNS ","
						" (SELECT s.value FROM dborch.secrets s"
						"   WHERE s.deployment_id = d.id AND s.name = 'password') AS password,"
						" i.id AS instance_id, i.role, i.host, i.port"
						" FROM dborch.deployments d LEFT JOIN dborch.instances i"
						"  ON i.deployment_id = d.id AND i.status <> 'destroyed'"
						"  AND (i.role = 'primary' OR i.status = 'running')"
						" WHERE d.name = $1 AND d.status <> 'destroyed'"
						" ORDER BY i.id",
						1, name);
	return deployment_from(*routes);
}

/* The live deployment of this name, else the last destroyed one. */
Deployment *
cat_latest_deployment(const char *name)
{
	return deployment_from(cat_query("SELECT " DEPLOYMENT_COLUMNS
									 " FROM dborch.deployments d WHERE d.name = $1"
									 " ORDER BY d.status = 'destroyed', d.id DESC LIMIT 1",
									 1, name));
}

Deployment *
cat_deployment(int64 id)
{
	return deployment_from(cat_query("SELECT " DEPLOYMENT_COLUMNS
									 " FROM dborch.deployments d WHERE d.id = $1::bigint",
									 1, cat_i64(id)));
}

/* The deployment as a dborch.deployments composite datum. */
Datum
cat_deployment_row(int64 id)
{
	return cat_query_datum("SELECT d FROM dborch.deployments d WHERE d.id = $1::bigint",
						   1, cat_i64(id));
}

int64
cat_insert_deployment(const char *name, const char *engine, const char *owner,
					  const char *environment, const char *spec,
					  int64 memory_bytes, const char *ttl)
{
	CatResult  *r;

	/* without a ttl the spec holds none (a restore copies another's spec) */
	r = cat_query("INSERT INTO dborch.deployments"
				  " (name, engine, owner, environment, spec, memory_bytes, expires_at)"
				  " VALUES ($1, $2, $3::name, $4,"
				  "         CASE WHEN $7 IS NULL THEN $5::jsonb - 'ttl' ELSE $5::jsonb END,"
				  "         $6::bigint, pg_catalog.now() + $7::interval)"
				  " RETURNING id",
				  7, name, engine, owner, environment, spec, cat_i64(memory_bytes), ttl);
	return cat_int64(r, 0, "id");
}

/*
 * Deployments and memory an owner holds now: a deployment's memory once per
 * live instance, replicas included (failed and destroyed ones hold nothing).
 */
void
cat_owner_usage(const char *owner, int64 *deployments, int64 *memory_bytes)
{
	CatResult  *r = cat_query("SELECT pg_catalog.count(*) AS n,"
							  " coalesce(pg_catalog.sum(d.memory_bytes * GREATEST(1,"
							  "   (SELECT pg_catalog.count(*) FROM dborch.instances i"
							  "     WHERE i.deployment_id = d.id AND i.status <> 'destroyed'))), 0) AS mem"
							  " FROM dborch.deployments d"
							  " WHERE d.owner = $1::name AND d.status NOT IN ('destroyed', 'failed')",
							  1, owner);

	*deployments = cat_int64(r, 0, "n");
	*memory_bytes = cat_int64(r, 0, "mem");
}

/* An owner's limits: its dborch.quotas row, else the GUC defaults. */
void
cat_owner_limits(const char *owner, int64 *max_deployments, int64 *max_memory_bytes)
{
	CatResult  *r = cat_query("SELECT max_deployments, max_memory_bytes"
							  " FROM dborch.quotas WHERE owner = $1::name",
							  1, owner);
	const char *md = cat_value(r, 0, "max_deployments");
	const char *mm = cat_value(r, 0, "max_memory_bytes");

	*max_deployments = md ? strtoi64(md, NULL, 10) : dborch_default_max_deployments;
	*max_memory_bytes = mm ? strtoi64(mm, NULL, 10)
		: (int64) dborch_default_max_memory_mb * 1024 * 1024;
}

/*
 * The owner's quota lock (held until the transaction ends, so that two
 * checks cannot both take the last room), then its usage and limits.
 * Without wait, false when another transaction holds the lock (the
 * launcher never waits for a user's open transaction).
 */
bool
cat_lock_owner_quota(const char *owner, bool wait, int64 *deployments, int64 *memory_bytes,
					 int64 *max_deployments, int64 *max_memory_bytes)
{
	if (wait)
		cat_xact_lock(DBORCH_LOCK_OWNER, owner);
	else if (!cat_try_xact_lock_key(DBORCH_LOCK_OWNER, owner))
		return false;
	cat_owner_usage(owner, deployments, memory_bytes);
	cat_owner_limits(owner, max_deployments, max_memory_bytes);
	return true;
}

/*
 * Set a deployment's status (and last_error when given).  With only_if_in
 * (a comma-separated list), only from one of those statuses; returns whether
 * the row changed.
 */
bool
cat_set_deployment_status(int64 id, const char *status, const char *only_if_in,
						  const char *error)
{
	CatResult  *r;

	r = cat_query("UPDATE dborch.deployments SET status = $2, updated_at = pg_catalog.now(),"
				  " last_error = CASE WHEN $2 = 'failed' THEN coalesce($4, last_error)"
				  "                   WHEN $2 = 'ready' THEN NULL ELSE last_error END,"
				  " ready_at = CASE WHEN $2 = 'ready' THEN coalesce(ready_at, pg_catalog.now())"
				  "                 ELSE ready_at END,"
				  " destroyed_at = CASE WHEN $2 = 'destroyed' THEN pg_catalog.now()"
				  "                     ELSE destroyed_at END"
				  " WHERE id = $1::bigint"
				  " AND ($3 IS NULL OR status = ANY (pg_catalog.string_to_array($3, ',')))",
				  4, cat_i64(id), status, only_if_in, error);
	return r->nrows > 0;
}

void
cat_set_deployment_node(int64 id, const char *node)
{
	cat_query("UPDATE dborch.deployments SET node = $2, updated_at = pg_catalog.now()"
			  " WHERE id = $1::bigint",
			  2, cat_i64(id), node);
}

/*
 * Details of a deployment as jsonb: its row, instances with endpoints
 * (no credentials), and its last job.
 */
Datum
cat_deployment_details(int64 id, const char *window_from, const char *window_to)
{
	return cat_query_datum(
						   "SELECT pg_catalog.jsonb_build_object("
						   "  'id', d.id, 'name', d.name, 'engine', d.engine, 'owner', d.owner,"
						   "  'environment', d.environment, 'status', d.status, 'spec', d.spec,"
						   "  'node', d.node, 'created_at', d.created_at, 'ready_at', d.ready_at,"
						   "  'destroyed_at', d.destroyed_at, 'expires_at', d.expires_at,"
						   "  'last_error', d.last_error,"
						   "  'recoverable_window', CASE WHEN $2::timestamptz IS NOT NULL THEN pg_catalog.jsonb_build_object("
						   "      'from', $2::timestamptz, 'to', $3::timestamptz) END,"
						   "  'instances', coalesce((SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object("
						   "      'id', i.id, 'role', i.role, 'node', i.node, 'host', i.host,"
						   "      'port', i.port, 'pid', i.pid, 'status', i.status,"
						   "      'data_directory', i.data_directory, 'last_probe_at', i.last_probe_at)"
						   "      ORDER BY i.id)"
						   "    FROM dborch.instances i"
						   "    WHERE i.deployment_id = d.id AND i.status <> 'destroyed'), '[]'),"
						   "  'endpoints', coalesce((SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object("
						   "      'role', i.role, 'host', i.host, 'port', i.port,"
						   "      'healthy', i.status = 'running') ORDER BY i.id)"
						   "    FROM dborch.instances i"
						   "    WHERE i.deployment_id = d.id AND i.status <> 'destroyed'), '[]'),"
						   "  'health', pg_catalog.jsonb_build_object("
						   "      'status', d.status,"
						   "      'instances_running', (SELECT pg_catalog.count(*) FROM dborch.instances i"
						   "                            WHERE i.deployment_id = d.id AND i.status = 'running'),"
						   "      'last_probe_at', (SELECT pg_catalog.max(i.last_probe_at) FROM dborch.instances i"
						   "                        WHERE i.deployment_id = d.id)),"
						   "  'last_job', (SELECT pg_catalog.jsonb_build_object('id', j.id, 'kind', j.kind,"
						   "      'state', j.state, 'stage', j.stage, 'attempts', j.attempts,"
						   "      'error', j.error, 'created_at', j.created_at, 'finished_at', j.finished_at)"
						   "    FROM dborch.jobs j WHERE j.deployment_id = d.id ORDER BY j.id DESC LIMIT 1))"
						   " FROM dborch.deployments d WHERE d.id = $1::bigint",
						   3, cat_i64(id), window_from, window_to);
}

/* Live deployments whose TTL has passed, as a list of ids (int64 *). */
List *
cat_expired_deployments(void)
{
	CatResult  *r = cat_query("SELECT id FROM dborch.deployments"
							  " WHERE expires_at <= pg_catalog.now()"
							  " AND status NOT IN ('destroying', 'destroyed')"
							  " ORDER BY expires_at",
							  0);

	return ids_from(r);
}

/* ---------------------------------------------------------------------
 * Instances
 * ---------------------------------------------------------------------
 */

#define INSTANCE_QUERY \
	"SELECT i.id, i.deployment_id, d.name AS deployment_name, d.engine," \
	" d.spec->>'version' AS version, i.role, i.host, i.port, i.data_directory," \
	" i.pid, i.status, d.memory_bytes, d.spec->>'max_connections' AS max_connections," \
	" coalesce((d.spec->>'synchronous')::bool, false) AND i.role = 'primary' AND EXISTS" \
	"   (SELECT 1 FROM dborch.instances r WHERE r.deployment_id = i.deployment_id" \
	"    AND r.role = 'replica' AND r.status IN ('starting', 'running')) AS synchronous," \
	" d.spec->>'backup_compression' AS backup_compression," \
	" (SELECT pg_catalog.string_agg(a, ' ') FROM pg_catalog.jsonb_array_elements_text(d.spec->'allow') a) AS allow" \
	" FROM dborch.instances i JOIN dborch.deployments d ON d.id = i.deployment_id"

static Instance *
instance_from(CatResult *r, int row)
{
	Instance   *i = palloc0(sizeof(Instance));

	i->id = cat_int64(r, row, "id");
	i->deployment_id = cat_int64(r, row, "deployment_id");
	i->deployment_name = cat_str(r, row, "deployment_name");
	i->engine = cat_str(r, row, "engine");
	i->version = cat_str(r, row, "version");
	i->role = cat_str(r, row, "role");
	i->host = cat_str(r, row, "host");
	i->port = (int) cat_int64(r, row, "port");
	i->directory = cat_str(r, row, "data_directory");
	i->pid = (int) cat_int64(r, row, "pid");
	i->status = cat_str(r, row, "status");
	i->memory_bytes = cat_int64(r, row, "memory_bytes");
	i->max_connections = cat_value(r, row, "max_connections") ? atoi(cat_value(r, row, "max_connections")) : 0;
	i->synchronous = strcmp(cat_value(r, row, "synchronous"), "t") == 0;
	i->backup_compression = cat_str(r, row, "backup_compression");
	i->allow = cat_str(r, row, "allow");
	return i;
}

static List *
instances_from(CatResult *r)
{
	List	   *list = NIL;
	int			i;

	for (i = 0; i < r->nrows; i++)
		list = lappend(list, instance_from(r, i));
	return list;
}

/* The live primary instance of a deployment, or NULL. */
Instance *
cat_primary_instance(int64 deployment_id)
{
	CatResult  *r = cat_query(INSTANCE_QUERY
							  " WHERE i.deployment_id = $1::bigint AND i.role = 'primary'"
							  " AND i.status <> 'destroyed' ORDER BY i.id LIMIT 1",
							  1, cat_i64(deployment_id));

	return r->nrows ? instance_from(r, 0) : NULL;
}

/* Every instance of a deployment that is not destroyed. */
List *
cat_live_instances(int64 deployment_id)
{
	return instances_from(cat_query(INSTANCE_QUERY
									" WHERE i.deployment_id = $1::bigint"
									" AND i.status <> 'destroyed' ORDER BY i.id",
									1, cat_i64(deployment_id)));
}

/* Instances that should be running: checked by the launcher at start. */
List *
cat_running_instances(void)
{
	return instances_from(cat_query(INSTANCE_QUERY
									" WHERE i.status = 'running' ORDER BY i.id", 0));
}

/*
 * The lowest port of (after, high_port] that no live instance holds and
 * that nothing else on this host has bound; 53400 when there is none.
 */
static int
next_free_port(const char *host, int after, int low_port, int high_port)
{
	for (;;)
	{
		CatResult  *r;
		int			port;

		r = cat_query("SELECT pg_catalog.min(p) AS port"
					  " FROM pg_catalog.generate_series($1::int, $2::int) p"
					  " WHERE NOT EXISTS (SELECT 1 FROM dborch.instances i"
					  "   WHERE i.node = 'local' AND i.port = p AND i.status <> 'destroyed')",
					  2, psprintf("%d", after + 1), psprintf("%d", high_port));
		if (cat_value(r, 0, "port") == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("no free port left in dborch.port_range %d-%d", low_port, high_port)));
		port = (int) cat_int64(r, 0, "port");
		if (!dborch_port_in_use(host, port))
			return port;
		after = port;
	}
}

/*
 * Create the instance row of a deployment with the lowest free port of
 * [low_port, high_port].  The partial unique index on (node, port) settles
 * races between concurrent jobs.  The directory is
 * <root>/instances/<name>-<id>.
 */
Instance *
cat_create_instance(int64 deployment_id, const char *role, const char *host,
					int low_port, int high_port)
{
	int			port = low_port - 1;

	for (;;)
	{
		CatResult  *r;

		port = next_free_port(host, port, low_port, high_port);
		r = cat_query("INSERT INTO dborch.instances"
					  " (id, deployment_id, host, port, data_directory, role) OVERRIDING SYSTEM VALUE"
					  " SELECT n.id, d.id, $2, $3::int, $4 || '/instances/' || d.name || '-' || n.id, $5"
					  " FROM dborch.deployments d,"
					  "   (SELECT pg_catalog.nextval(pg_catalog.pg_get_serial_sequence("
					  "      'dborch.instances', 'id')) AS id) n"
					  " WHERE d.id = $1::bigint"
					  " ON CONFLICT (node, port) WHERE status <> 'destroyed' DO NOTHING"
					  " RETURNING id",
					  5, cat_i64(deployment_id), host, psprintf("%d", port), dborch_data_root(), role);
		if (r->nrows == 1)
			return cat_instance(strtoi64(cat_value(r, 0, "id"), NULL, 10));
	}
}

/*
 * Give a not yet started instance another port: something outside dborch
 * took its port between the allocation and the start.
 */
Instance *
cat_move_instance_port(Instance *inst, int low_port, int high_port)
{
	int			port = low_port - 1;

	for (;;)
	{
		CatResult  *r;

		port = next_free_port(inst->host, port, low_port, high_port);
		r = cat_query("UPDATE dborch.instances SET port = $2::int, updated_at = pg_catalog.now()"
					  " WHERE id = $1::bigint AND NOT EXISTS (SELECT 1 FROM dborch.instances o"
					  "   WHERE o.node = 'local' AND o.port = $2::int AND o.status <> 'destroyed')"
					  " RETURNING id",
					  2, cat_i64(inst->id), psprintf("%d", port));
		if (r->nrows == 1)
			return cat_instance(inst->id);
	}
}

/* Does a live instance of this host hold the port? */
bool
cat_port_taken(int port)
{
	CatResult  *r = cat_query("SELECT 1 FROM dborch.instances"
							  " WHERE node = 'local' AND port = $1::int AND status <> 'destroyed'",
							  1, psprintf("%d", port));

	return r->nrows > 0;
}

/* Set an instance's status, and its pid when pid > 0 (0: no process). */
void
cat_set_instance_status(int64 id, const char *status, int pid)
{
	cat_query("UPDATE dborch.instances SET status = $2,"
			  " pid = CASE WHEN $3::int > 0 THEN $3::int WHEN $3::int = 0 THEN NULL ELSE pid END,"
			  " updated_at = pg_catalog.now()"
			  " WHERE id = $1::bigint",
			  3, cat_i64(id), status, psprintf("%d", pid));
}

/* One instance by id, with its deployment's columns. */
Instance *
cat_instance(int64 id)
{
	CatResult  *r = cat_query(INSTANCE_QUERY " WHERE i.id = $1::bigint", 1, cat_i64(id));

	return r->nrows ? instance_from(r, 0) : NULL;
}

/*
 * A deployment in service is ready when all its instances run, down when
 * none does, degraded in between.
 */
void
cat_refresh_deployment_status(int64 deployment_id)
{
	cat_query("UPDATE dborch.deployments d SET updated_at = pg_catalog.now(), status ="
			  "   CASE WHEN c.up = c.total THEN 'ready' WHEN c.up = 0 THEN 'down' ELSE 'degraded' END"
			  " FROM (SELECT pg_catalog.count(*) FILTER (WHERE status = 'running') AS up,"
			  "              pg_catalog.count(*) AS total"
			  "       FROM dborch.instances WHERE deployment_id = $1::bigint"
			  "       AND status <> 'destroyed') c"
			  " WHERE d.id = $1::bigint AND d.status IN ('ready', 'degraded', 'down')"
			  " AND d.status IS DISTINCT FROM"
			  "   CASE WHEN c.up = c.total THEN 'ready' WHEN c.up = 0 THEN 'down' ELSE 'degraded' END",
			  1, cat_i64(deployment_id));
}

void
cat_set_instance_role(int64 id, const char *role)
{
	cat_query("UPDATE dborch.instances SET role = $2, updated_at = pg_catalog.now() WHERE id = $1::bigint",
			  2, cat_i64(id), role);
}

/*
 * The memory a deployment runs with after a scale.  Its spec stays what
 * deploy() was asked, so that deploy() with the same options stays a no-op.
 */
void
cat_set_deployment_memory(int64 id, int64 memory_bytes)
{
	cat_query("UPDATE dborch.deployments SET updated_at = pg_catalog.now(), memory_bytes = $2::bigint"
			  " WHERE id = $1::bigint",
			  2, cat_i64(id), cat_i64(memory_bytes));
}

/* ---------------------------------------------------------------------
 * Secrets
 * ---------------------------------------------------------------------
 */

void
cat_set_secret(int64 deployment_id, const char *name, const char *value)
{
	cat_query("INSERT INTO dborch.secrets (deployment_id, name, owner, value)"
			  " SELECT d.id, $2, d.owner, $3 FROM dborch.deployments d WHERE d.id = $1::bigint"
			  " ON CONFLICT (deployment_id, name) DO UPDATE SET value = excluded.value",
			  3, cat_i64(deployment_id), name, value);
}

char *
cat_secret(int64 deployment_id, const char *name)
{
	CatResult  *r = cat_query("SELECT value FROM dborch.secrets"
							  " WHERE deployment_id = $1::bigint AND name = $2",
							  2, cat_i64(deployment_id), name);

	return r->nrows ? cat_str(r, 0, "value") : NULL;
}

/* Delete a deployment's secrets; its backup passphrase too unless kept. */
void
cat_delete_secrets(int64 deployment_id, bool keep_backup_passphrase)
{
	cat_query("DELETE FROM dborch.secrets WHERE deployment_id = $1::bigint"
			  " AND NOT ($2::bool AND name = 'backup_passphrase')",
			  2, cat_i64(deployment_id), keep_backup_passphrase ? "true" : "false");
}

/* ---------------------------------------------------------------------
 * Warm pool
 * ---------------------------------------------------------------------
 */

/* Insert a pool entry in state building, with its directory and password. */
int64
cat_pool_reserve(const char *version, const char *root)
{
	CatResult  *r;

	r = cat_query("INSERT INTO dborch.warm_pool (id, version, directory, password)"
				  " OVERRIDING SYSTEM VALUE"
				  " SELECT n.id, $1, $2 || '/pool/' || n.id, $3"
				  " FROM (SELECT pg_catalog.nextval(pg_catalog.pg_get_serial_sequence("
				  "         'dborch.warm_pool', 'id')) AS id) n"
				  " RETURNING id",
				  3, version, root, dborch_random_password(32));
	return cat_int64(r, 0, "id");
}

/*
 * Claim a ready pool entry for an instance; its directory and password are
 * returned.  false if the pool is empty.
 */
bool
cat_pool_claim(int64 instance_id, const char *version, char **directory, char **password)
{
	CatResult  *r;

	r = cat_query("UPDATE dborch.warm_pool SET status = 'claimed', claimed_by = $1::bigint"
				  " WHERE id = (SELECT id FROM dborch.warm_pool"
				  "             WHERE status = 'ready' AND version = $2"
				  "             ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)"
				  " RETURNING directory, password",
				  2, cat_i64(instance_id), version);
	if (r->nrows == 0)
		return false;
	*directory = cat_str(r, 0, "directory");
	*password = cat_str(r, 0, "password");
	return true;
}

/* The pool entry an instance claimed, if one is still recorded. */
bool
cat_pool_claimed_by(int64 instance_id, char **directory)
{
	CatResult  *r = cat_query("SELECT directory FROM dborch.warm_pool WHERE claimed_by = $1::bigint",
							  1, cat_i64(instance_id));

	if (r->nrows == 0)
		return false;
	*directory = cat_str(r, 0, "directory");
	return true;
}

void
cat_pool_set_ready(int64 id)
{
	cat_query("UPDATE dborch.warm_pool SET status = 'ready' WHERE id = $1::bigint",
			  1, cat_i64(id));
}

void
cat_pool_delete(int64 id)
{
	cat_query("DELETE FROM dborch.warm_pool WHERE id = $1::bigint", 1, cat_i64(id));
}

void
cat_pool_delete_claimed(int64 instance_id)
{
	cat_query("DELETE FROM dborch.warm_pool WHERE claimed_by = $1::bigint",
			  1, cat_i64(instance_id));
}

bool
cat_pool_entry(int64 id, char **directory, char **password)
{
	CatResult  *r = cat_query("SELECT directory, password FROM dborch.warm_pool"
							  " WHERE id = $1::bigint",
							  1, cat_i64(id));

	if (r->nrows == 0)
		return false;
	*directory = cat_str(r, 0, "directory");
	*password = cat_str(r, 0, "password");
	return true;
}

/*
 * Should the launcher start building one more pool entry?  Only one at a
 * time, and only while no other job waits or runs, so refilling never
 * competes with deploys for the CPU.
 */
bool
cat_pool_needs_entry(int size)
{
	CatResult  *r = cat_query("SELECT pg_catalog.count(*) FILTER (WHERE status = 'building') AS building,"
							  " pg_catalog.count(*) FILTER (WHERE status = 'ready') AS ready,"
							  " (SELECT pg_catalog.count(*) FROM dborch.jobs"
							  "  WHERE state IN ('queued', 'running') AND kind <> 'deliver_alerts') AS busy"
							  " FROM dborch.warm_pool",
							  0);

	return cat_int64(r, 0, "building") == 0 && cat_int64(r, 0, "busy") == 0 &&
		cat_int64(r, 0, "ready") < size;
}

/* Ready pool entries beyond size, oldest last (directory per entry). */
CatResult *
cat_pool_surplus(int size)
{
	return cat_query("SELECT id, directory FROM dborch.warm_pool WHERE status = 'ready'"
					 " ORDER BY id DESC OFFSET $1::int",
					 1, psprintf("%d", size));
}
