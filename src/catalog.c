/*
 * catalog.c
 *		The only code that reads or writes dborch's tables.
 *
 * Every statement goes through cat_query(): SPI with text parameters cast
 * in the SQL ($1::bigint), never SQL built from user text.  Results are
 * copied into the caller's memory context before SPI_finish.  Functions
 * here run inside the caller's transaction; workers open one with
 * cat_begin() and close it with cat_commit().
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
#include "dborch.h"
#include "spec.h"
#include "tenant.h"

#define CAT_MAX_ARGS 12

/* ---------------------------------------------------------------------
 * Generic access
 * ---------------------------------------------------------------------
 */

/*
 * Prepared plans, one per statement.  Every statement is a string literal,
 * so its address identifies it; the plan cache re-plans after DDL.
 */
typedef struct PlanEntry
{
	const char *sql;			/* hash key: the literal's address */
	SPIPlanPtr	plan;
} PlanEntry;

static HTAB *plans = NULL;

/* The kept plan of a statement with nargs text parameters (inside SPI). */
static SPIPlanPtr
cat_plan(const char *sql, int nargs)
{
	PlanEntry  *entry;
	bool		found;

	if (plans == NULL)
	{
		HASHCTL		ctl;

		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(const char *);
		ctl.entrysize = sizeof(PlanEntry);
		ctl.hcxt = TopMemoryContext;
		plans = hash_create("dborch catalog plans", 128, &ctl,
							HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	entry = hash_search(plans, &sql, HASH_ENTER, &found);
	if (!found)
		entry->plan = NULL;
	if (entry->plan == NULL)
	{
		Oid			types[CAT_MAX_ARGS];
		SPIPlanPtr	plan;
		int			i;

		for (i = 0; i < nargs; i++)
			types[i] = TEXTOID;
		plan = SPI_prepare(sql, nargs, types);
		if (plan == NULL)
			elog(ERROR, "dborch: could not prepare a catalog statement: %s",
				 SPI_result_code_string(SPI_result));
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "dborch: could not keep a catalog plan");
		entry->plan = plan;
	}
	return entry->plan;
}

/* Text parameters from a va_list: NULL pointers are SQL NULLs. */
static void
cat_args(int nargs, va_list ap, Datum *values, char *nulls)
{
	int			i;

	Assert(nargs <= CAT_MAX_ARGS);
	for (i = 0; i < nargs; i++)
	{
		const char *arg = va_arg(ap, const char *);

		values[i] = arg ? CStringGetTextDatum(arg) : (Datum) 0;
		nulls[i] = arg ? ' ' : 'n';
	}
}

/* Run one statement with text parameters; the result, copied out. */
static CatResult *
cat_query_v(const char *sql, int nargs, va_list ap)
{
	MemoryContext caller = CurrentMemoryContext;
	Datum		values[CAT_MAX_ARGS];
	char		nulls[CAT_MAX_ARGS];
	CatResult  *res;
	int			rc;
	int			i;

	cat_args(nargs, ap, values, nulls);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "dborch: SPI_connect failed");
	rc = SPI_execute_plan(cat_plan(sql, nargs), values, nulls, false, 0);
	if (rc < 0)
		elog(ERROR, "dborch: catalog statement failed: %s", SPI_result_code_string(rc));

	res = MemoryContextAllocZero(caller, sizeof(CatResult));
	if (SPI_tuptable != NULL)
	{
		TupleDesc	desc = SPI_tuptable->tupdesc;
		int			r;

		res->nrows = (int) SPI_processed;
		res->ncols = desc->natts;
		res->colnames = MemoryContextAlloc(caller, sizeof(char *) * Max(res->ncols, 1));
		res->values = MemoryContextAllocZero(caller,
											 sizeof(char *) * Max(res->nrows * res->ncols, 1));
		for (i = 0; i < res->ncols; i++)
			res->colnames[i] = MemoryContextStrdup(caller, NameStr(TupleDescAttr(desc, i)->attname));
		for (r = 0; r < res->nrows; r++)
			for (i = 0; i < res->ncols; i++)
			{
				char	   *v = SPI_getvalue(SPI_tuptable->vals[r], desc, i + 1);

				if (v != NULL)
					res->values[r * res->ncols + i] = MemoryContextStrdup(caller, v);
			}
	}
	else
		res->nrows = (int) SPI_processed;
	SPI_finish();
	return res;
}

CatResult *
cat_query(const char *sql, int nargs,...)
{
	va_list		ap;
	CatResult  *res;

	va_start(ap, nargs);
	res = cat_query_v(sql, nargs, ap);
	va_end(ap);
	return res;
}

/* A column of a result row by name; NULL for SQL NULL or no such row. */
const char *
cat_value(CatResult *res, int row, const char *column)
{
	int			i;

	if (row >= res->nrows)
		return NULL;
	for (i = 0; i < res->ncols; i++)
		if (strcmp(res->colnames[i], column) == 0)
			return res->values[row * res->ncols + i];
	elog(ERROR, "dborch: catalog result has no column \"%s\"", column);
	return NULL;				/* keep compiler quiet */
}

static int64
cat_int64(CatResult *res, int row, const char *column)
{
	const char *v = cat_value(res, row, column);

	return v ? strtoi64(v, NULL, 10) : 0;
}

static char *
cat_str(CatResult *res, int row, const char *column)
{
	const char *v = cat_value(res, row, column);

	return v ? pstrdup(v) : NULL;
}

/*
 * Run a query returning one value (a row, jsonb, ...) and hand back the
 * datum itself, copied into the caller's context.  Errors if no row.
 */
Datum
cat_query_datum(const char *sql, int nargs,...)
{
	Datum		values[CAT_MAX_ARGS];
	char		nulls[CAT_MAX_ARGS];
	va_list		ap;
	Datum		result;
	bool		isnull;

	va_start(ap, nargs);
	cat_args(nargs, ap, values, nulls);
	va_end(ap);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "dborch: SPI_connect failed");
	if (SPI_execute_plan(cat_plan(sql, nargs), values, nulls, false, 1) < 0 ||
		SPI_processed != 1)
		elog(ERROR, "dborch: catalog row not found");
	result = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (isnull)
		elog(ERROR, "dborch: catalog value is null");
	result = SPI_datumTransfer(result, false, -1);
	SPI_finish();
	return result;
}

/* An integer member of a JSON object given as text; 0 if absent. */
int64
cat_json_int64(const char *json, const char *key)
{
	CatResult  *r = cat_query("SELECT ($1::jsonb ->> $2)::bigint AS v", 2, json, key);

	return cat_int64(r, 0, "v");
}

/* A member of a JSON object given as text, as text; NULL if absent. */
char *
cat_json_text(const char *json, const char *key)
{
	CatResult  *r = cat_query("SELECT $1::jsonb ->> $2 AS v", 2, json, key);

	return cat_str(r, 0, "v");
}

/* A boolean member of a JSON object given as text; false if absent. */
bool
cat_json_bool(const char *json, const char *key)
{
	CatResult  *r = cat_query("SELECT coalesce(($1::jsonb ->> $2)::bool, false) AS v", 2, json, key);

	return strcmp(cat_value(r, 0, "v"), "t") == 0;
}

char *
cat_i64(int64 value)
{
	return psprintf(INT64_FORMAT, value);
}

/*
 * Start a worker transaction with a snapshot.  The caller's memory context
 * stays current, so what catalog calls return outlives the transaction.
 */
void
cat_begin(void)
{
	MemoryContext caller = CurrentMemoryContext;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	MemoryContextSwitchTo(caller);
}

/* Commit a worker transaction and wake whoever waits on dborch state. */
void
cat_commit(void)
{
	MemoryContext caller = CurrentMemoryContext;

	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(caller);
	dborch_broadcast_state_change();
}

/* ---------------------------------------------------------------------
 * Locks and identity
 * ---------------------------------------------------------------------
 */

/*
 * dborch's locks are advisory locks of classes of their own (the locktag's
 * field4, DBORCH_LOCKTAG_CLASS + space), as Citus keeps its advisory locks
 * apart: pg_advisory_lock() and its kin take classes 1 and 2 only, so no
 * user can hold one of dborch's keys to stall its deploys, quota checks or
 * jobs.  They still show in pg_locks (locktype advisory, objsubid the class).
 */
#define DBORCH_LOCKTAG_CLASS 0x6400

static void
lock_tag(LOCKTAG *tag, int32 space, uint64 key)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, (uint32) (key >> 32), (uint32) key,
						 DBORCH_LOCKTAG_CLASS + space);
}

static uint64
lock_key(const char *key)
{
	return hash_bytes_extended((const unsigned char *) key, strlen(key), 0);
}

/* Transaction-scoped lock on (space, key), waited for. */
void
cat_xact_lock(int32 space, const char *key)
{
	LOCKTAG		tag;

	lock_tag(&tag, space, lock_key(key));
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
}

/* Try the transaction-scoped lock on (space, key); true if acquired. */
bool
cat_try_xact_lock_key(int32 space, const char *key)
{
	LOCKTAG		tag;

	lock_tag(&tag, space, lock_key(key));
	return LockAcquire(&tag, ExclusiveLock, false, true) != LOCKACQUIRE_NOT_AVAIL;
}

/* Try the transaction-scoped lock on (space, id); true if acquired. */
bool
cat_try_xact_lock(int32 space, int64 id)
{
	LOCKTAG		tag;

	lock_tag(&tag, space, (uint64) id);
	return LockAcquire(&tag, ExclusiveLock, false, true) != LOCKACQUIRE_NOT_AVAIL;
}

/* Try the session-scoped lock on (space, id); true if acquired. */
bool
cat_try_session_lock(int32 space, int64 id)
{
	LOCKTAG		tag;

	lock_tag(&tag, space, (uint64) id);
	return LockAcquire(&tag, ExclusiveLock, true, true) != LOCKACQUIRE_NOT_AVAIL;
}

/* Release the session-scoped lock on (space, id). */
void
cat_session_unlock(int32 space, int64 id)
{
	LOCKTAG		tag;

	lock_tag(&tag, space, (uint64) id);
	(void) LockRelease(&tag, ExclusiveLock, true);
}

/*
 * Run fn(arg) in a subtransaction of the current transaction: an error in
 * it (a lock_timeout on a row a user's open transaction holds, say) is
 * rolled back alone and its message returned, and the caller goes on;
 * NULL when fn succeeded.
 */
char *
cat_try(void (*fn) (void *arg), void *arg)
{
	MemoryContext mcxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	char	   *error = NULL;

	BeginInternalSubTransaction(NULL);
	PG_TRY();
	{
		fn(arg);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(mcxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		error = edata->message;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(mcxt);
	CurrentResourceOwner = owner;
	return error;
}

/* Owner of the dborch tables: the role the API switches to for catalog work. */
Oid
cat_owner_oid(void)
{
	Oid			nsp = get_namespace_oid("dborch", false);
	Oid			rel = get_relname_relid("deployments", nsp);
	HeapTuple	tup;
	Oid			owner;

	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(rel));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "dborch: table dborch.deployments not found");
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	return owner;
}

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

/* The id column of a result as a list of int64 *. */
static List *
ids_from(CatResult *r)
{
	List	   *ids = NIL;
	int			i;

	for (i = 0; i < r->nrows; i++)
	{
		int64	   *id = palloc(sizeof(int64));

		*id = cat_int64(r, i, "id");
		ids = lappend(ids, id);
	}
	return ids;
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
 * Jobs
 * ---------------------------------------------------------------------
 */

int64
cat_queue_job(const char *kind, int64 deployment_id, const char *owner, const char *args)
{
	CatResult  *r;

	r = cat_query("INSERT INTO dborch.jobs (kind, deployment_id, owner, args, max_attempts)"
				  " VALUES ($1, $2::bigint, $3::name, coalesce($4::jsonb, '{}'), $5::int)"
				  " RETURNING id",
				  5, kind, deployment_id ? cat_i64(deployment_id) : NULL, owner, args,
				  psprintf("%d", dborch_job_max_attempts));
	return cat_int64(r, 0, "id");
}

Job *
cat_job(int64 id)
{
	CatResult  *r = cat_query("SELECT id, kind, deployment_id, owner, args::text AS args, state,"
							  " stage, attempts, max_attempts, cancel_requested, error"
							  " FROM dborch.jobs WHERE id = $1::bigint",
							  1, cat_i64(id));
	Job		   *j;

	if (r->nrows == 0)
		return NULL;
	j = palloc0(sizeof(Job));
	j->id = cat_int64(r, 0, "id");
	j->kind = cat_str(r, 0, "kind");
	j->deployment_id = cat_int64(r, 0, "deployment_id");
	j->owner = cat_str(r, 0, "owner");
	j->args = cat_str(r, 0, "args");
	j->state = cat_str(r, 0, "state");
	j->stage = cat_str(r, 0, "stage");
	j->attempts = (int) cat_int64(r, 0, "attempts");
	j->max_attempts = (int) cat_int64(r, 0, "max_attempts");
	j->cancel_requested = strcmp(cat_value(r, 0, "cancel_requested"), "t") == 0;
	j->error = cat_str(r, 0, "error");
	return j;
}

Datum
cat_job_row(int64 id)
{
	return cat_query_datum("SELECT j FROM dborch.jobs j WHERE j.id = $1::bigint",
						   1, cat_i64(id));
}

/* The id of a queued or running job of this kind for a deployment, or 0. */
int64
cat_unfinished_job(int64 deployment_id, const char *kind)
{
	CatResult  *r = cat_query("SELECT id FROM dborch.jobs WHERE deployment_id = $1::bigint"
							  " AND kind = $2 AND state IN ('queued', 'running')"
							  " ORDER BY id DESC LIMIT 1",
							  2, cat_i64(deployment_id), kind);

	return r->nrows ? cat_int64(r, 0, "id") : 0;
}

/*
 * The id of a queued or running job that reads a deployment's backups (a
 * restore from them, into any deployment, or a verification), or 0.
 */
int64
cat_job_reading_backups(int64 deployment_id)
{
	CatResult  *r = cat_query("SELECT id FROM dborch.jobs WHERE state IN ('queued', 'running')"
							  " AND ((kind IN ('restore', 'restore_in_place')"
							  "       AND (args->>'source_id')::bigint = $1::bigint)"
							  "      OR (kind = 'verify' AND deployment_id = $1::bigint))"
							  " ORDER BY id LIMIT 1",
							  1, cat_i64(deployment_id));

	return r->nrows ? cat_int64(r, 0, "id") : 0;
}

/*
 * The id of a scale or failover job of a deployment that runs or is due (or
 * waits to be retried), or 0: what dborch.wait() waits for besides the
 * status.  A change deferred to a maintenance window does not count.
 */
int64
cat_reshaping_job(int64 deployment_id)
{
	CatResult  *r = cat_query("SELECT id FROM dborch.jobs WHERE deployment_id = $1::bigint"
							  " AND kind IN ('scale', 'failover') AND (state = 'running'"
							  "  OR (state = 'queued' AND (not_before <= pg_catalog.clock_timestamp() OR attempts > 0)))"
							  " ORDER BY id LIMIT 1",
							  1, cat_i64(deployment_id));

	return r->nrows ? cat_int64(r, 0, "id") : 0;
}

/*
 * The id of a running replica of a deployment that the prober has not yet
 * seen up, or 0: dborch.wait() waits for it too, so that reads are routed
 * to a replica as soon as wait() returns.
 */
int64
cat_unprobed_replica(int64 deployment_id)
{
	CatResult  *r = cat_query("SELECT i.id FROM dborch.instances i"
							  " WHERE i.deployment_id = $1::bigint AND i.role = 'replica'"
							  "   AND i.status = 'running' AND NOT EXISTS"
							  "   (SELECT 1 FROM dborch.probes p WHERE p.instance_id = i.id AND p.up)"
							  " ORDER BY i.id LIMIT 1",
							  1, cat_i64(deployment_id));

	return r->nrows ? cat_int64(r, 0, "id") : 0;
}

/* The id of a queued or running job of this kind without a deployment, or 0. */
int64
cat_unfinished_kind(const char *kind)
{
	CatResult  *r = cat_query("SELECT id FROM dborch.jobs WHERE kind = $1"
							  " AND state IN ('queued', 'running') LIMIT 1",
							  1, kind);

	return r->nrows ? cat_int64(r, 0, "id") : 0;
}

/* Cancel a deployment's queued jobs and ask its running ones to stop. */
void
cat_cancel_unfinished_jobs(int64 deployment_id)
{
	cat_query("UPDATE dborch.jobs SET"
			  " state = CASE WHEN state = 'queued' THEN 'cancelled' ELSE state END,"
			  " finished_at = CASE WHEN state = 'queued' THEN pg_catalog.clock_timestamp() END,"
			  " cancel_requested = true, updated_at = pg_catalog.clock_timestamp()"
			  " WHERE deployment_id = $1::bigint AND state IN ('queued', 'running')",
			  1, cat_i64(deployment_id));
}

/* Has any attempt of the job entered stage (its stage events say so)? */
bool
cat_job_reached_stage(int64 job_id, const char *stage)
{
	return cat_query("SELECT 1 FROM dborch.events WHERE job_id = $1::bigint AND kind = 'stage'"
					 " AND detail ->> 'stage' = $2 LIMIT 1",
					 2, cat_i64(job_id), stage)->nrows > 0;
}

/*
 * Ask a job to stop: a queued one is made due now, and its worker runs the
 * job kind's undo instead of its stages (a cancelled move gives the tenant
 * back, a cancelled restore its deployment); a running one stops at its
 * next stage and undoes its work.
 */
bool
cat_cancel_job(int64 id, const char *reason)
{
	CatResult  *r = cat_query("UPDATE dborch.jobs SET cancel_requested = true, error = $2,"
							  " not_before = CASE WHEN state = 'queued'"
							  "   THEN LEAST(not_before, pg_catalog.clock_timestamp())"
							  "   ELSE not_before END,"
							  " updated_at = pg_catalog.clock_timestamp()"
							  " WHERE id = $1::bigint AND state IN ('queued', 'running')"
							  " AND NOT cancel_requested RETURNING id",
							  2, cat_i64(id), reason);

	return r->nrows > 0;
}

/*
 * Claim up to limit due jobs for the launcher: the oldest unfinished job of
 * each deployment only, so a deployment's jobs run one at a time, in order.
 * A job not yet tried and due later (a change deferred to a maintenance
 * window, a failover waiting for its timeout) holds no one up; one waiting
 * for its retry does.  Returns a list of ClaimedJob.
 */
List *
cat_claim_jobs(int limit)
{
	CatResult  *r;
	List	   *claimed = NIL;
	int			i;

	r = cat_query("WITH c AS ("
				  "  SELECT j.id FROM dborch.jobs j"
				  "  WHERE j.state = 'queued' AND j.not_before <= pg_catalog.clock_timestamp()"
				  "  AND NOT EXISTS (SELECT 1 FROM dborch.jobs e"
				  "                  WHERE e.deployment_id = j.deployment_id AND e.id < j.id"
				  "                  AND (e.state = 'running' OR (e.state = 'queued'"
				  "                       AND (e.attempts > 0 OR e.not_before <= pg_catalog.clock_timestamp()))))"
				  "  ORDER BY j.not_before, j.id LIMIT $1::int"
				  "  FOR UPDATE SKIP LOCKED)"
				  " UPDATE dborch.jobs j SET state = 'running', attempts = j.attempts + 1,"
				  "   worker_pid = NULL, updated_at = pg_catalog.clock_timestamp()"
				  " FROM c WHERE j.id = c.id"
				  " RETURNING j.id, j.attempts",
				  1, psprintf("%d", limit));
	for (i = 0; i < r->nrows; i++)
	{
		ClaimedJob *c = palloc(sizeof(ClaimedJob));

		c->id = cat_int64(r, i, "id");
		c->attempt = (int) cat_int64(r, i, "attempts");
		claimed = lappend(claimed, c);
	}
	return claimed;
}

/* Give back a claimed job that could not be started (no worker slot). */
void
cat_unclaim_job(int64 id)
{
	cat_query("UPDATE dborch.jobs SET state = 'queued', attempts = attempts - 1,"
			  " updated_at = pg_catalog.clock_timestamp()"
			  " WHERE id = $1::bigint AND state = 'running'",
			  1, cat_i64(id));
}

/*
 * A job worker's check that the job is still its own (running, same
 * attempt), recording its pid.  The worker holds the job's advisory lock.
 */
bool
cat_job_mine(int64 id, int attempt, int pid)
{
	CatResult  *r = cat_query("UPDATE dborch.jobs SET worker_pid = $3::int,"
							  " started_at = coalesce(started_at, pg_catalog.clock_timestamp()),"
							  " updated_at = pg_catalog.clock_timestamp()"
							  " WHERE id = $1::bigint AND state = 'running' AND attempts = $2::int"
							  " RETURNING id",
							  3, cat_i64(id), psprintf("%d", attempt), psprintf("%d", pid));

	return r->nrows > 0;
}

/* Record the stage a job enters; false if the job was asked to stop. */
bool
cat_job_enter_stage(int64 id, const char *stage)
{
	CatResult  *r = cat_query("UPDATE dborch.jobs SET stage = $2,"
							  " updated_at = pg_catalog.clock_timestamp()"
							  " WHERE id = $1::bigint RETURNING cancel_requested",
							  2, cat_i64(id), stage);

	return strcmp(cat_value(r, 0, "cancel_requested"), "f") == 0;
}

void
cat_job_finish(int64 id, const char *state, const char *error)
{
	cat_query("UPDATE dborch.jobs SET state = $2, error = $3, worker_pid = NULL,"
			  " finished_at = pg_catalog.clock_timestamp(),"
			  " updated_at = pg_catalog.clock_timestamp()"
			  " WHERE id = $1::bigint",
			  3, cat_i64(id), state, error);
}

/*
 * Put a failed attempt back in the queue, due after delay_ms.  The next
 * attempt starts again at the first stage: stages are idempotent, and a
 * failure may have undone an earlier stage's work (an instance that died).
 */
void
cat_job_retry(int64 id, const char *error, int delay_ms)
{
	cat_query("UPDATE dborch.jobs SET state = 'queued', error = $2, worker_pid = NULL, stage = NULL,"
			  " not_before = pg_catalog.clock_timestamp()"
			  "              + pg_catalog.make_interval(secs => $3::float8 / 1000),"
			  " updated_at = pg_catalog.clock_timestamp()"
			  " WHERE id = $1::bigint",
			  3, cat_i64(id), error, psprintf("%d", delay_ms));
}

/* Ids of jobs in state running (int64 *). */
List *
cat_running_jobs(void)
{
	CatResult  *r = cat_query("SELECT id FROM dborch.jobs WHERE state = 'running' ORDER BY id", 0);

	return ids_from(r);
}

/*
 * A running job whose worker is gone: queue it again to resume at its
 * recorded stage.  With attempt >= 0, only if it is still that attempt.
 * Returns whether the job was requeued.
 */
bool
cat_requeue_orphan(int64 id, int attempt)
{
	CatResult  *r = cat_query("UPDATE dborch.jobs SET state = 'queued', worker_pid = NULL,"
							  " error = coalesce(error, 'its worker exited unexpectedly'),"
							  " not_before = pg_catalog.clock_timestamp(),"
							  " updated_at = pg_catalog.clock_timestamp()"
							  " WHERE id = $1::bigint AND state = 'running'"
							  " AND ($2::int < 0 OR attempts = $2::int)"
							  " RETURNING id",
							  2, cat_i64(id), psprintf("%d", attempt));

	return r->nrows > 0;
}

/*
 * Milliseconds until the launcher has something to do: the next queued job
 * that may run (not behind another job of its deployment) or TTL expiry.
 * -1 when nothing is scheduled.
 */
int64
cat_next_due_ms(void)
{
	CatResult  *r = cat_query("SELECT pg_catalog.ceil(1000 * extract(epoch FROM"
							  "   LEAST("
							  "     (SELECT pg_catalog.min(j.not_before) FROM dborch.jobs j"
							  "      WHERE j.state = 'queued'"
							  "      AND NOT EXISTS (SELECT 1 FROM dborch.jobs e"
							  "                      WHERE e.deployment_id = j.deployment_id AND e.id < j.id"
							  "                      AND e.state IN ('queued', 'running'))),"
							  "     (SELECT pg_catalog.min(expires_at) FROM dborch.deployments"
							  "      WHERE expires_at IS NOT NULL"
							  "      AND status NOT IN ('destroying', 'destroyed')))"
							  "   - pg_catalog.clock_timestamp()))::bigint AS ms",
							  0);
	const char *v = cat_value(r, 0, "ms");

	if (v == NULL)
		return -1;
	return Max(strtoi64(v, NULL, 10), 0);
}

/* ---------------------------------------------------------------------
 * Events
 * ---------------------------------------------------------------------
 */

/*
 * Append an event.  Owner and deployment name are taken from the deployment
 * row.  Callers never pass a secret in message or detail.
 */
void
cat_event(const char *actor, int64 deployment_id, int64 job_id,
		  const char *kind, const char *message, const char *detail)
{
	(void) cat_event_id(actor, deployment_id, job_id, kind, message, detail);
}

/* cat_event(), returning the new event's id. */
int64
cat_event_id(const char *actor, int64 deployment_id, int64 job_id,
			 const char *kind, const char *message, const char *detail)
{
	CatResult  *r = cat_query("INSERT INTO dborch.events"
							  " (actor, owner, deployment, deployment_id, job_id, kind, message, detail)"
							  " SELECT $1, d.owner, d.name, k.id, $3::bigint, $4, $5, coalesce($6::jsonb, '{}')"
							  " FROM (SELECT $2::bigint AS id) k"
							  " LEFT JOIN dborch.deployments d ON d.id = k.id"
							  " RETURNING id",
							  6, actor, deployment_id ? cat_i64(deployment_id) : NULL,
							  job_id ? cat_i64(job_id) : NULL, kind, message, detail);

	return cat_int64(r, 0, "id");
}

/*
 * An event, announced on channel dborch_events at commit.  Any role may
 * LISTEN on any channel, so the payload is the event's id only
 * ({"event_id": N}); its row, under row-level security, tells its owner
 * and the admins what happened, and nobody else anything.
 */
void
cat_event_notify(const char *actor, int64 deployment_id, int64 job_id,
				 const char *kind, const char *message, const char *detail)
{
	int64		id = cat_event_id(actor, deployment_id, job_id, kind, message, detail);

	cat_query("SELECT pg_catalog.pg_notify('dborch_events',"
			  " pg_catalog.jsonb_build_object('event_id', $1::bigint)::text)",
			  1, cat_i64(id));
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
	" d.spec->>'backup_compression' AS backup_compression" \
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

/* ---------------------------------------------------------------------
 * Health: the prober's targets, samples and transitions
 * ---------------------------------------------------------------------
 */

/* Instances the prober watches: running or down, of deployments in service. */
CatResult *
cat_probe_targets(void)
{
	return cat_query("SELECT i.id, i.deployment_id, d.name AS deployment, d.engine, i.host,"
					 " i.port, i.pid, i.status, coalesce(a.value, s.value) AS password,"
					 " CASE WHEN a.value IS NULL THEN 'default' ELSE '" REDIS_DBORCH_USER "' END"
					 "   AS redis_user"
					 " FROM dborch.instances i"
					 " JOIN dborch.deployments d ON d.id = i.deployment_id"
					 " LEFT JOIN dborch.secrets s ON s.deployment_id = d.id AND s.name = '" SECRET_OWNER "'"
					 " LEFT JOIN dborch.secrets a ON a.deployment_id = d.id AND a.name = '" SECRET_DBORCH "'"
					 " WHERE i.status IN ('running', 'down')"
					 " AND d.status IN ('ready', 'degraded', 'down')"
					 " ORDER BY i.id",
					 0);
}

/* Store a batch of samples (a JSON array of dborch.probes rows). */
void
cat_record_probes(const char *samples)
{
	cat_query("INSERT INTO dborch.probes (at, instance_id, deployment_id, up, latency_ms, error,"
			  "   connections, xact_commit, db_size_bytes, in_recovery, replication_lag_bytes,"
			  "   used_memory_bytes, ops_per_sec, keys, cpu_percent, rss_bytes)"
			  " SELECT at, instance_id, deployment_id, up, latency_ms, error, connections,"
			  "   xact_commit, db_size_bytes, in_recovery, replication_lag_bytes,"
			  "   used_memory_bytes, ops_per_sec, keys, cpu_percent, rss_bytes"
			  " FROM pg_catalog.jsonb_to_recordset($1::jsonb) AS x(at timestamptz,"
			  "   instance_id bigint, deployment_id bigint, up boolean, latency_ms float8,"
			  "   error text, connections bigint, xact_commit bigint, db_size_bytes bigint,"
			  "   in_recovery boolean, replication_lag_bytes bigint, used_memory_bytes bigint,"
			  "   ops_per_sec bigint, keys bigint, cpu_percent float8, rss_bytes bigint)",
			  1, samples);
	cat_query("UPDATE dborch.instances i SET last_probe_at = x.at"
			  " FROM pg_catalog.jsonb_to_recordset($1::jsonb) AS x(at timestamptz, instance_id bigint)"
			  " WHERE i.id = x.instance_id",
			  1, samples);
}

/*
 * Queue an alert (Alertmanager webhook JSON, built by dborch._alert_payload)
 * about a deployment: labels alertname, deployment, engine, environment,
 * severity and extra_labels (a JSON object).  A resolved alert carries the
 * start of the firing one with the same labels.
 */
void
cat_add_alert(int64 deployment_id, int64 instance_id, const char *status, const char *alertname,
			  const char *severity, const char *extra_labels, const char *summary,
			  const char *description)
{
	cat_query("WITH l AS ("
			  "   SELECT d.id, d.owner, pg_catalog.jsonb_build_object('alertname', $4, 'deployment', d.name,"
			  "            'engine', d.engine, 'environment', d.environment, 'severity', $5)"
			  "          || $6::jsonb AS labels"
			  "   FROM dborch.deployments d WHERE d.id = $1::bigint),"
			  " s AS ("
			  "   SELECT l.*, CASE WHEN $3 = 'resolved' THEN coalesce((SELECT a.starts_at FROM dborch.alerts a"
			  "                 WHERE a.payload -> 'commonLabels' = l.labels AND a.status = 'firing'"
			  "                 ORDER BY a.id DESC LIMIT 1), pg_catalog.clock_timestamp())"
			  "               ELSE pg_catalog.clock_timestamp() END AS starts_at,"
			  "          CASE WHEN $3 = 'resolved' THEN pg_catalog.clock_timestamp() END AS ends_at"
			  "   FROM l)"
			  " INSERT INTO dborch.alerts (deployment_id, instance_id, owner, status, starts_at, ends_at, payload)"
			  " SELECT s.id, $2::bigint, s.owner, $3, s.starts_at, s.ends_at,"
			  "   dborch._alert_payload($3, s.labels, $7, $8, s.starts_at, s.ends_at)"
			  " FROM s",
			  8, cat_i64(deployment_id), instance_id ? cat_i64(instance_id) : NULL, status, alertname,
			  severity, extra_labels ? extra_labels : "{}", summary, description ? description : "");
	dborch_wake_launcher_at_commit();
}

/*
 * An alert about something that happened (a failover, a failed scheduled
 * backup): firing, and ending by itself after five minutes; nothing is left
 * to resolve.
 */
void
cat_add_event_alert(int64 deployment_id, int64 instance_id, const char *alertname,
					const char *severity, const char *extra_labels, const char *summary,
					const char *description)
{
	cat_add_alert(deployment_id, instance_id, "firing", alertname, severity, extra_labels, summary,
				  description);
	cat_query("UPDATE dborch.alerts SET ends_at = starts_at + interval '5 minutes',"
			  " payload = pg_catalog.jsonb_set(payload, '{alerts,0,endsAt}',"
			  "   pg_catalog.to_jsonb(pg_catalog.to_char((starts_at + interval '5 minutes') AT TIME ZONE 'UTC',"
			  "                       'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')))"
			  " WHERE id = (SELECT max(id) FROM dborch.alerts WHERE deployment_id = $1::bigint)",
			  1, cat_i64(deployment_id));
}

/* A failover: an event alert naming the instance given up and the one promoted. */
void
cat_failover_alert(int64 deployment_id, int64 failed_id, int64 new_primary_id)
{
	CatResult  *r = cat_query("SELECT f.host || ':' || f.port AS failed, n.host || ':' || n.port AS promoted"
							  " FROM dborch.instances f, dborch.instances n"
							  " WHERE f.id = $1::bigint AND n.id = $2::bigint",
							  2, cat_i64(failed_id), cat_i64(new_primary_id));

	cat_add_event_alert(deployment_id, failed_id, "DborchFailover", "warning",
						psprintf("{\"instance\": \"%s\"}", cat_value(r, 0, "failed")),
						psprintf("failover: %s promoted, %s was down", cat_value(r, 0, "promoted"),
								 cat_value(r, 0, "failed")),
						NULL);
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
 * A job due after delay_ms, at the nearest whole second (a change deferred
 * to a maintenance window is due at the window's start, not a few
 * microseconds off it).
 */
int64
cat_queue_job_after(const char *kind, int64 deployment_id, const char *owner, const char *args,
					int delay_ms)
{
	int64		id = cat_queue_job(kind, deployment_id, owner, args);

	cat_query("UPDATE dborch.jobs SET not_before = pg_catalog.date_trunc('second', pg_catalog.clock_timestamp()"
			  " + pg_catalog.make_interval(secs => $2::float8 / 1000 + 0.5)) WHERE id = $1::bigint",
			  2, cat_i64(id), psprintf("%d", delay_ms));
	return id;
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

/*
 * An instance went down (or came back): its status, its deployment's
 * status (ready when all instances run, down when none, else degraded), an
 * event, a NOTIFY on dborch_events, an alert, and for a down instance a
 * recovery job.  Nothing happens if the instance is no longer in the state
 * the prober saw (destroyed or stopped in between).
 */
void
cat_instance_health_changed(int64 instance_id, bool down, int failures, const char *error)
{
	CatResult  *r;
	const char *dep;
	const char *kind = down ? "instance_down" : "recovered";
	char	   *detail;

	r = cat_query("UPDATE dborch.instances SET status = $2, updated_at = pg_catalog.now()"
				  " WHERE id = $1::bigint AND status = $3"
				  " RETURNING deployment_id, host || ':' || port AS endpoint,"
				  "   (SELECT name FROM dborch.deployments d WHERE d.id = deployment_id) AS deployment",
				  3, cat_i64(instance_id), down ? "down" : "running", down ? "running" : "down");
	if (r->nrows == 0)
		return;
	dep = cat_value(r, 0, "deployment_id");

	cat_refresh_deployment_status(strtoi64(dep, NULL, 10));

	detail = psprintf("{\"instance_id\": " INT64_FORMAT ", \"endpoint\": \"%s\", \"failures\": %d}",
					  instance_id, cat_value(r, 0, "endpoint"), failures);
	/* for listeners (its id) and the webhook */
	cat_event_notify(DBORCH_ACTOR, strtoi64(dep, NULL, 10), 0, kind,
					 down ? psprintf("instance %s is down after %d missed probes: %s",
									 cat_value(r, 0, "endpoint"), failures, error ? error : "no answer")
					 : psprintf("instance %s answers again", cat_value(r, 0, "endpoint")),
					 detail);
	cat_add_alert(strtoi64(dep, NULL, 10), instance_id, down ? "firing" : "resolved",
				  "DborchInstanceDown", "critical",
				  psprintf("{\"instance\": \"%s\"}", cat_value(r, 0, "endpoint")),
				  psprintf("instance %s of deployment %s is down", cat_value(r, 0, "endpoint"),
						   cat_value(r, 0, "deployment")),
				  down ? error : "it answers again");
	dborch_wake_launcher_at_commit();

	/*
	 * A primary with a running replica fails over if it is still down after
	 * dborch.failover_timeout (a shorter blip changes nothing); anything
	 * else is restarted in place.  One such job per instance: two instances
	 * down at once get one each.
	 */
	if (down && cat_query("SELECT 1 FROM dborch.jobs WHERE kind IN ('recover', 'failover')"
						  " AND state IN ('queued', 'running')"
						  " AND (args ->> 'instance_id')::bigint = $1::bigint",
						  1, cat_i64(instance_id))->nrows == 0)
	{
		CatResult  *o = cat_query("SELECT d.owner, i.role, (SELECT pg_catalog.count(*) FROM dborch.instances r"
								  "   WHERE r.deployment_id = d.id AND r.role = 'replica'"
								  "   AND r.status = 'running') AS replicas"
								  " FROM dborch.deployments d JOIN dborch.instances i ON i.deployment_id = d.id"
								  " WHERE i.id = $1::bigint",
								  1, cat_i64(instance_id));
		char	   *args = psprintf("{\"instance_id\": " INT64_FORMAT "}", instance_id);

		if (strcmp(cat_value(o, 0, "role"), "primary") == 0 && cat_int64(o, 0, "replicas") > 0)
			cat_queue_job_after("failover", strtoi64(dep, NULL, 10), cat_value(o, 0, "owner"), args,
								dborch_failover_timeout_ms);
		else
			cat_queue_job("recover", strtoi64(dep, NULL, 10), cat_value(o, 0, "owner"), args);
	}
}

/* The pid of an instance, its status unchanged (a recovery restarted it). */
void
cat_set_instance_pid(int64 id, int pid)
{
	cat_query("UPDATE dborch.instances SET pid = $2::int, updated_at = pg_catalog.now()"
			  " WHERE id = $1::bigint",
			  2, cat_i64(id), psprintf("%d", pid));
}

/* One instance by id, with its deployment's columns. */
Instance *
cat_instance(int64 id)
{
	CatResult  *r = cat_query(INSTANCE_QUERY " WHERE i.id = $1::bigint", 1, cat_i64(id));

	return r->nrows ? instance_from(r, 0) : NULL;
}

/* Delete probe samples older than dborch.metrics_retention. */
void
cat_expire_probes(void)
{
	cat_query("DELETE FROM dborch.probes"
			  " WHERE at < pg_catalog.now() - pg_catalog.make_interval(secs => $1::float8)",
			  1, psprintf("%d", dborch_metrics_retention_s));
}

/* ---------------------------------------------------------------------
 * Alerts
 * ---------------------------------------------------------------------
 */

/* Alerts due for delivery (id, payload, attempts), oldest first. */
CatResult *
cat_due_alerts(int limit)
{
	return cat_query("SELECT id, payload::text AS payload, attempts FROM dborch.alerts"
					 " WHERE delivery = 'pending' AND next_attempt_at <= pg_catalog.clock_timestamp()"
					 " ORDER BY id LIMIT $1::int",
					 1, psprintf("%d", limit));
}

/*
 * Record one delivery attempt: sent, or pending again after retry_ms, or
 * failed for good once the alert is a day old.
 */
void
cat_alert_attempted(int64 id, bool sent, const char *error, int retry_ms)
{
	cat_query("UPDATE dborch.alerts SET attempts = attempts + 1,"
			  " last_error = CASE WHEN $2::bool THEN last_error ELSE $3 END,"
			  " delivery = CASE WHEN $2::bool THEN 'sent'"
			  "   WHEN created_at < pg_catalog.clock_timestamp() - interval '1 day' THEN 'failed'"
			  "   ELSE 'pending' END,"
			  " sent_at = CASE WHEN $2::bool THEN pg_catalog.clock_timestamp() END,"
			  " next_attempt_at = pg_catalog.clock_timestamp()"
			  "   + pg_catalog.make_interval(secs => $4::float8 / 1000)"
			  " WHERE id = $1::bigint",
			  4, cat_i64(id), sent ? "true" : "false", error, psprintf("%d", retry_ms));
}

/* Milliseconds until the next alert delivery is due, -1 if none. */
int64
cat_next_alert_due_ms(void)
{
	CatResult  *r = cat_query("SELECT pg_catalog.ceil(1000 * extract(epoch FROM"
							  "   pg_catalog.min(next_attempt_at) - pg_catalog.clock_timestamp()))::bigint AS ms"
							  " FROM dborch.alerts WHERE delivery = 'pending'",
							  0);
	const char *v = cat_value(r, 0, "ms");

	return v ? Max(strtoi64(v, NULL, 10), 0) : -1;
}

/* ---------------------------------------------------------------------
 * Backups
 * ---------------------------------------------------------------------
 */

#define BACKUP_COLUMNS \
	"b.id, b.deployment_id, b.deployment, b.engine, b.owner, b.kind, b.requested_kind," \
	" b.status, b.label, b.file, b.checksum, b.size_bytes, b.keys, b.keys_with_ttl," \
	" b.verify_requested, b.finished_at"

static Backup *
backup_from(CatResult *r)
{
	Backup	   *b;

	if (r->nrows == 0)
		return NULL;
	b = palloc0(sizeof(Backup));
	b->id = cat_int64(r, 0, "id");
	b->deployment_id = cat_int64(r, 0, "deployment_id");
	b->deployment = cat_str(r, 0, "deployment");
	b->engine = cat_str(r, 0, "engine");
	b->owner = cat_str(r, 0, "owner");
	b->kind = cat_str(r, 0, "kind");
	b->requested_kind = cat_str(r, 0, "requested_kind");
	b->status = cat_str(r, 0, "status");
	b->label = cat_str(r, 0, "label");
	b->file = cat_str(r, 0, "file");
	b->checksum = cat_str(r, 0, "checksum");
	b->size_bytes = cat_int64(r, 0, "size_bytes");
	b->keys = cat_value(r, 0, "keys") ? cat_int64(r, 0, "keys") : -1;
	b->keys_with_ttl = cat_value(r, 0, "keys_with_ttl") ? cat_int64(r, 0, "keys_with_ttl") : -1;
	b->verify_requested = strcmp(cat_value(r, 0, "verify_requested"), "t") == 0;
	b->finished_at = cat_str(r, 0, "finished_at");
	return b;
}

Backup *
cat_backup(int64 id)
{
	return backup_from(cat_query("SELECT " BACKUP_COLUMNS " FROM dborch.backups b"
								 " WHERE b.id = $1::bigint", 1, cat_i64(id)));
}

/* The newest succeeded backup of a deployment, or NULL. */
Backup *
cat_latest_backup(int64 deployment_id)
{
	return backup_from(cat_query("SELECT " BACKUP_COLUMNS " FROM dborch.backups b"
								 " WHERE b.deployment_id = $1::bigint AND b.status = 'succeeded'"
								 " ORDER BY b.finished_at DESC, b.id DESC LIMIT 1",
								 1, cat_i64(deployment_id)));
}

Datum
cat_backup_row(int64 id)
{
	return cat_query_datum("SELECT b FROM dborch.backups b WHERE b.id = $1::bigint", 1, cat_i64(id));
}

/* A queued backup row and its job; returns the backup's id. */
int64
cat_queue_backup(Deployment *d, const char *kind, bool verify)
{
	CatResult  *r;
	int64		backup_id;
	int64		job_id;

	r = cat_query("INSERT INTO dborch.backups (deployment_id, deployment, engine, owner, kind,"
				  " requested_kind, verify_requested, compressed)"
				  " VALUES ($1::bigint, $2, $3, $4::name, $5, $5, $6::bool,"
				  "  $7::jsonb->>'backup_compression' IS DISTINCT FROM 'none') RETURNING id",
				  7, cat_i64(d->id), d->name, d->engine, d->owner, kind, verify ? "true" : "false", d->spec);
	backup_id = cat_int64(r, 0, "id");
	job_id = cat_queue_job("backup", d->id, d->owner,
						   psprintf("{\"backup_id\": " INT64_FORMAT "}", backup_id));
	cat_query("UPDATE dborch.backups SET job_id = $2::bigint WHERE id = $1::bigint",
			  2, cat_i64(backup_id), cat_i64(job_id));
	return backup_id;
}

/* Status (and error, for failed) of a backup; kind when not NULL. */
void
cat_backup_set_status(int64 id, const char *status, const char *kind, const char *error)
{
	cat_query("UPDATE dborch.backups SET status = $2, kind = coalesce($3, kind), error = $4,"
			  " started_at = CASE WHEN $2 = 'running' THEN coalesce(started_at, pg_catalog.clock_timestamp())"
			  "                   ELSE started_at END,"
			  " finished_at = CASE WHEN $2 = 'failed' THEN pg_catalog.clock_timestamp() ELSE finished_at END"
			  " WHERE id = $1::bigint",
			  4, cat_i64(id), status, kind, error);
}

/* Does the deployment have a full backup that diff and incr can build on? */
bool
cat_has_full_backup(int64 deployment_id)
{
	CatResult  *r = cat_query("SELECT 1 FROM dborch.backups WHERE deployment_id = $1::bigint"
							  " AND kind = 'full' AND status = 'succeeded' LIMIT 1",
							  1, cat_i64(deployment_id));

	return r->nrows > 0;
}

/*
 * Record what pgbackrest info says of the newest backup of the stanza:
 * label, type, prior, start/stop time, sizes, LSN and WAL range.
 */
void
cat_backup_record_pgbackrest(int64 id, const char *info)
{
	cat_query("WITH e AS (SELECT x FROM pg_catalog.jsonb_array_elements($2::jsonb -> 0 -> 'backup') x"
			  "           ORDER BY (x -> 'timestamp' ->> 'stop')::bigint DESC LIMIT 1)"
			  " UPDATE dborch.backups SET status = 'succeeded', label = x ->> 'label',"
			  "   kind = x ->> 'type', prior_label = x ->> 'prior',"
			  "   started_at = pg_catalog.to_timestamp((x -> 'timestamp' ->> 'start')::float8),"
			  "   finished_at = pg_catalog.to_timestamp((x -> 'timestamp' ->> 'stop')::float8),"
			  "   size_bytes = (x -> 'info' ->> 'size')::bigint,"
			  "   delta_bytes = (x -> 'info' ->> 'delta')::bigint,"
			  "   stored_bytes = (x -> 'info' -> 'repository' ->> 'size')::bigint,"
			  "   stored_delta_bytes = (x -> 'info' -> 'repository' ->> 'delta')::bigint,"
			  "   start_lsn = (x -> 'lsn' ->> 'start')::pg_lsn, stop_lsn = (x -> 'lsn' ->> 'stop')::pg_lsn,"
			  "   wal_start = x -> 'archive' ->> 'start', wal_stop = x -> 'archive' ->> 'stop',"
			  "   error = NULL"
			  " FROM e WHERE id = $1::bigint",
			  2, cat_i64(id), info);
}

/* Record a Redis snapshot's file, sizes, key counts and checksum. */
void
cat_backup_record_redis(int64 id, const char *file, int64 size, int64 stored, int64 keys,
						int64 keys_with_ttl, const char *checksum, const char *snapshot_epoch)
{
	cat_query("UPDATE dborch.backups SET status = 'succeeded',"
			  " label = pg_catalog.regexp_replace($2, '^.*/', ''), file = $2,"
			  " size_bytes = $3::bigint, delta_bytes = $3::bigint, stored_bytes = $4::bigint,"
			  " stored_delta_bytes = $4::bigint,"
			  " keys = nullif($5::bigint, -1), keys_with_ttl = nullif($6::bigint, -1), checksum = $7,"
			  " snapshot_at = pg_catalog.to_timestamp($8::float8),"
			  " finished_at = pg_catalog.clock_timestamp(), error = NULL"
			  " WHERE id = $1::bigint",
			  8, cat_i64(id), file, cat_i64(size), cat_i64(stored), cat_i64(keys),
			  cat_i64(keys_with_ttl), checksum, snapshot_epoch);
}

/* Backups pgBackRest no longer lists (expired by it) become expired here too. */
void
cat_backups_sync_pgbackrest(int64 deployment_id, const char *info)
{
	cat_query("UPDATE dborch.backups SET status = 'expired', expired_at = pg_catalog.clock_timestamp()"
			  " WHERE deployment_id = $1::bigint AND status = 'succeeded'"
			  " AND label NOT IN (SELECT x ->> 'label'"
			  "                   FROM pg_catalog.jsonb_array_elements($2::jsonb -> 0 -> 'backup') x)",
			  2, cat_i64(deployment_id), info);
}

/*
 * Labels of pgbackrest info (JSON) that no succeeded backup row of the
 * deployment has: sets pgBackRest finished that dborch never recorded.
 */
List *
cat_unrecorded_labels(int64 deployment_id, const char *info)
{
	CatResult  *r = cat_query("SELECT x ->> 'label' AS label"
							  " FROM pg_catalog.jsonb_array_elements($2::jsonb -> 0 -> 'backup') x"
							  " WHERE NOT EXISTS (SELECT 1 FROM dborch.backups b WHERE b.deployment_id = $1::bigint"
							  "                   AND b.status = 'succeeded' AND b.label = x ->> 'label')"
							  " ORDER BY (x -> 'timestamp' ->> 'stop')::bigint DESC",
							  2, cat_i64(deployment_id), info);
	List	   *labels = NIL;

	for (int i = 0; i < r->nrows; i++)
		labels = lappend(labels, cat_str(r, i, "label"));
	return labels;
}

/* A deployment's retention: full backups to keep and maximum age in days (0: none). */
bool
cat_backup_retention(int64 deployment_id, int *full_count, int *max_age_days)
{
	CatResult  *r = cat_query("SELECT coalesce(full_count, 0) AS n,"
							  " coalesce(pg_catalog.ceil(extract(epoch FROM max_age) / 86400), 0)::int AS days"
							  " FROM dborch.backup_retention WHERE deployment_id = $1::bigint",
							  1, cat_i64(deployment_id));

	if (r->nrows == 0)
		return false;
	*full_count = (int) cat_int64(r, 0, "n");
	*max_age_days = (int) cat_int64(r, 0, "days");
	return true;
}

void
cat_set_backup_retention(int64 deployment_id, const char *full_count, const char *max_age)
{
	cat_query("INSERT INTO dborch.backup_retention (deployment_id, full_count, max_age)"
			  " VALUES ($1::bigint, $2::int, $3::interval)"
			  " ON CONFLICT (deployment_id) DO UPDATE SET full_count = excluded.full_count,"
			  "   max_age = excluded.max_age, updated_at = pg_catalog.now()",
			  3, cat_i64(deployment_id), full_count, max_age);
}

/*
 * Redis snapshots beyond the retention: older than the newest full_count,
 * or older than max_age days.  Marked expired; their files are returned
 * (column file) for removal.
 */
CatResult *
cat_expire_redis_backups(int64 deployment_id, int full_count, int max_age_days)
{
	return cat_query("WITH ranked AS ("
					 "   SELECT id, finished_at, row_number() OVER (ORDER BY finished_at DESC, id DESC) AS n"
					 "   FROM dborch.backups WHERE deployment_id = $1::bigint AND status = 'succeeded')"
					 " UPDATE dborch.backups b SET status = 'expired',"
					 "   expired_at = pg_catalog.clock_timestamp()"
					 " FROM ranked r WHERE b.id = r.id"
					 " AND (($2::int > 0 AND r.n > $2::int)"
					 "   OR ($3::int > 0 AND r.finished_at < pg_catalog.now() - pg_catalog.make_interval(days => $3::int)))"
					 " RETURNING b.file",
					 3, cat_i64(deployment_id), psprintf("%d", full_count), psprintf("%d", max_age_days));
}

/* Every backup of a deployment becomes expired (its files were dropped). */
void
cat_expire_all_backups(int64 deployment_id)
{
	cat_query("UPDATE dborch.backups SET status = 'expired', expired_at = pg_catalog.clock_timestamp(),"
			  " error = coalesce(error, 'dropped with the deployment')"
			  " WHERE deployment_id = $1::bigint AND status IN ('succeeded', 'queued', 'running')",
			  1, cat_i64(deployment_id));
}

/* Record the outcome of the latest verification: its time, or its failure. */
void
cat_backup_verified(int64 id, const char *error)
{
	cat_query("UPDATE dborch.backups SET"
			  " verified_at = CASE WHEN $2 IS NULL THEN pg_catalog.clock_timestamp() END,"
			  " verify_error = $2"
			  " WHERE id = $1::bigint",
			  2, cat_i64(id), error);
}

/*
 * The window a point-in-time restore can reach: from the end of the first
 * backup still kept to now while the primary runs (a restore archives its
 * WAL first), else to the last transaction end of the archived WAL that a
 * stop or destroy recorded (NULL *to: not known before the restore job
 * reads the archive).  false when there is no backup.
 */
bool
cat_recoverable_window(int64 deployment_id, char **from, char **to)
{
	CatResult  *r = cat_query("SELECT pg_catalog.min(b.finished_at) AS from_time,"
							  " CASE WHEN EXISTS (SELECT 1 FROM dborch.instances i WHERE i.deployment_id = $1::bigint"
							  "                   AND i.role = 'primary' AND i.status = 'running') THEN pg_catalog.now()"
							  "      ELSE (SELECT d.recoverable_until FROM dborch.deployments d"
							  "            WHERE d.id = $1::bigint AND d.status IN ('stopped', 'destroyed')) END AS to_time"
							  " FROM dborch.backups b WHERE b.deployment_id = $1::bigint AND b.status = 'succeeded'",
							  1, cat_i64(deployment_id));

	if (cat_value(r, 0, "from_time") == NULL)
		return false;
	*from = cat_str(r, 0, "from_time");
	*to = cat_str(r, 0, "to_time");
	return true;
}

/* Record up to when a point-in-time restore of a stopped or destroyed deployment reaches. */
void
cat_set_recoverable_until(int64 deployment_id, const char *time)
{
	cat_query("UPDATE dborch.deployments SET recoverable_until = $2::timestamptz WHERE id = $1::bigint",
			  2, cat_i64(deployment_id), time);
}

/* The newest WAL segment of pgbackrest info (JSON), over its archives; NULL if none. */
char *
cat_newest_archived_wal(const char *info)
{
	CatResult  *r = cat_query("SELECT pg_catalog.max(a ->> 'max') AS segment"
							  " FROM pg_catalog.jsonb_array_elements($1::jsonb -> 0 -> 'archive') a",
							  1, info);

	return cat_str(r, 0, "segment");
}

/* Bytes of a deployment's backup with that pgBackRest label; 0 if unknown. */
int64
cat_backup_size(int64 deployment_id, const char *label)
{
	CatResult  *r = cat_query("SELECT coalesce(size_bytes, 0) AS size FROM dborch.backups"
							  " WHERE deployment_id = $1::bigint AND label = $2",
							  2, cat_i64(deployment_id), label);

	return (r->nrows && label) ? cat_int64(r, 0, "size") : 0;
}

/*
 * The label of the backup a point-in-time restore to target_time starts
 * from: the newest finished before it, but after an in-place restore that
 * came before the target only one taken since, or the backup that restore
 * put back (the others are on a timeline that forked away).  NULL: leave
 * the choice to pgBackRest.
 */
char *
cat_pitr_base_backup(int64 deployment_id, const char *target_time)
{
	CatResult  *r = cat_query("WITH r AS (SELECT j.finished_at, (j.args ->> 'backup_id')::bigint AS backup_id"
							  "   FROM dborch.jobs j WHERE j.deployment_id = $1::bigint"
							  "   AND j.kind = 'restore_in_place' AND j.state = 'succeeded'"
							  "   AND j.finished_at <= $2::timestamptz ORDER BY j.finished_at DESC LIMIT 1)"
							  " SELECT b.label FROM dborch.backups b LEFT JOIN r ON true"
							  " WHERE b.deployment_id = $1::bigint AND b.status = 'succeeded'"
							  " AND b.finished_at <= $2::timestamptz"
							  " AND (r.finished_at IS NULL OR b.started_at >= r.finished_at OR b.id = r.backup_id)"
							  " ORDER BY b.finished_at DESC LIMIT 1",
							  2, cat_i64(deployment_id), target_time);

	return r->nrows ? cat_str(r, 0, "label") : NULL;
}

/* Is time (text) inside [from, to]? */
bool
cat_time_between(const char *time, const char *from, const char *to)
{
	CatResult  *r = cat_query("SELECT $1::timestamptz BETWEEN $2::timestamptz AND $3::timestamptz AS ok",
							  3, time, from, to);

	return strcmp(cat_value(r, 0, "ok"), "t") == 0;
}

/* ---------------------------------------------------------------------
 * Backup schedules (pg_cron)
 * ---------------------------------------------------------------------
 */

/*
 * A pg_cron job calling dborch.backup(), and its row.  The command is
 * built with format(%L): the name matches the name rule anyway.
 */
Datum
cat_schedule_backups(Deployment *d, const char *schedule, const char *kind, bool verify)
{
	CatResult  *r;

	r = cat_query("WITH s AS (SELECT pg_catalog.nextval(pg_catalog.pg_get_serial_sequence("
				  "    'dborch.backup_schedules', 'id')) AS id)"
				  " INSERT INTO dborch.backup_schedules (id, deployment_id, deployment, owner, kind,"
				  "   schedule, verify, cron_job_id) OVERRIDING SYSTEM VALUE"
				  " SELECT s.id, $1::bigint, $2, $3::name, $4, $5, $6::bool,"
				  "   cron.schedule('dborch_backup_' || s.id, $5,"
				  "     pg_catalog.format('SELECT dborch.backup(%L, %L, verify => %s)', $2, $4,"
				  "       CASE WHEN $6::bool THEN 'true' ELSE 'false' END))"
				  " FROM s RETURNING id",
				  6, cat_i64(d->id), d->name, d->owner, kind, schedule, verify ? "true" : "false");
	return cat_query_datum("SELECT s FROM dborch.backup_schedules s WHERE s.id = $1::bigint",
						   1, cat_value(r, 0, "id"));
}

/*
 * The pg_cron runs of backup schedules that failed since the launcher last
 * looked (cron.job_run_details), each once: the schedules' last_run_id
 * moves past every finished run.  Rows: schedule_id, deployment_id, kind,
 * schedule, runid, start_time, message.
 */
CatResult *
cat_failed_schedule_runs(void)
{
	return cat_query("WITH runs AS ("
					 "   SELECT s.id AS schedule_id, s.deployment_id, s.kind, s.schedule, r.runid,"
					 "          r.status, r.start_time, r.return_message AS message"
					 "   FROM dborch.backup_schedules s"
					 "   JOIN cron.job_run_details r ON r.jobid = s.cron_job_id"
					 "   WHERE r.runid > s.last_run_id AND r.status IN ('succeeded', 'failed')),"
					 " seen AS ("
					 "   UPDATE dborch.backup_schedules s SET last_run_id = m.runid"
					 "   FROM (SELECT schedule_id, pg_catalog.max(runid) AS runid FROM runs"
					 "         GROUP BY schedule_id) m"
					 "   WHERE s.id = m.schedule_id)"
					 " SELECT schedule_id, deployment_id, kind, schedule, runid, start_time, message"
					 " FROM runs WHERE status = 'failed' ORDER BY runid",
					 0);
}

/* Remove a deployment's schedules (of one kind, or all); how many. */
int
cat_unschedule_backups(int64 deployment_id, const char *kind)
{
	CatResult  *r = cat_query("WITH gone AS (DELETE FROM dborch.backup_schedules"
							  "   WHERE deployment_id = $1::bigint AND ($2 IS NULL OR kind = $2)"
							  "   RETURNING cron_job_id)"
							  " SELECT cron.unschedule(cron_job_id) FROM gone"
							  " WHERE cron_job_id IN (SELECT jobid FROM cron.job)",
							  2, cat_i64(deployment_id), kind);

	return r->nrows;
}

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

/* ---------------------------------------------------------------------
 * Scaling
 * ---------------------------------------------------------------------
 */

void
cat_set_maintenance_window(int64 deployment_id, const char *window)
{
	cat_query("UPDATE dborch.deployments SET maintenance_window = $2, updated_at = pg_catalog.now()"
			  " WHERE id = $1::bigint",
			  2, cat_i64(deployment_id), window);
}

void
cat_delete_autoscale(int64 deployment_id)
{
	cat_query("DELETE FROM dborch.autoscale_policies WHERE deployment_id = $1::bigint",
			  1, cat_i64(deployment_id));
}

Datum
cat_set_autoscale(int64 deployment_id, const char *policy, const char *metric, double up,
				  double down, int min_replicas, int max_replicas, const char *cooldown)
{
	cat_query("INSERT INTO dborch.autoscale_policies (deployment_id, policy, metric, scale_up_at,"
			  " scale_down_at, min_replicas, max_replicas, cooldown, deployment)"
			  " SELECT $1::bigint, $2::jsonb, $3, $4::float8, $5::float8, $6::int, $7::int, $8::interval, d.name"
			  " FROM dborch.deployments d WHERE d.id = $1::bigint"
			  " ON CONFLICT (deployment_id) DO UPDATE SET policy = excluded.policy,"
			  "   metric = excluded.metric, scale_up_at = excluded.scale_up_at,"
			  "   scale_down_at = excluded.scale_down_at, min_replicas = excluded.min_replicas,"
			  "   max_replicas = excluded.max_replicas, cooldown = excluded.cooldown",
			  8, cat_i64(deployment_id), policy, metric, psprintf("%g", up), psprintf("%g", down),
			  psprintf("%d", min_replicas), psprintf("%d", max_replicas), cooldown);
	return cat_query_datum("SELECT p FROM dborch.autoscale_policies p WHERE p.deployment_id = $1::bigint",
						   1, cat_i64(deployment_id));
}

/* Does any deployment have an auto-scaling policy? */
bool
cat_has_autoscale(void)
{
	return cat_query("SELECT 1 FROM dborch.autoscale_policies LIMIT 1", 0)->nrows > 0;
}

/*
 * Auto-scaling decisions due now: for each policy of a deployment in
 * service with no scale job pending, outside its cooldown, the metric (the
 * average over its running instances of the latest minute of samples, as a
 * share of its limit: connections of max_connections or maxclients, CPU of
 * one core, memory of the memory option), the replicas, and the replicas it
 * should have (column want; equal to replicas when nothing is to do).
 */
CatResult *
cat_autoscale_decisions(void)
{
	return cat_query("WITH m AS ("
					 "   SELECT p.deployment_id, p.metric, p.scale_up_at, p.scale_down_at, p.min_replicas,"
					 "          p.max_replicas, d.owner, d.memory_bytes,"
					 "          (SELECT pg_catalog.count(*) FROM dborch.instances r"
					 "           WHERE r.deployment_id = d.id AND r.role = 'replica'"
					 "           AND r.status <> 'destroyed')::int AS replicas,"
					 "          (SELECT avg(CASE p.metric"
					 "                     WHEN 'connections' THEN s.connections::float8"
					 "                          / coalesce((d.spec->>'max_connections')::float8,"
					 "                                     CASE d.engine WHEN 'postgres' THEN 100 ELSE 10000 END)"
					 "                     WHEN 'cpu' THEN s.cpu_percent / 100"
					 "                     ELSE coalesce(s.used_memory_bytes, s.rss_bytes)::float8 / d.memory_bytes END)"
					 "           FROM dborch.probes s JOIN dborch.instances i ON i.id = s.instance_id"
					 "           WHERE i.deployment_id = d.id AND i.status = 'running' AND s.up"
					 "           AND s.at > pg_catalog.clock_timestamp() - interval '1 minute') AS value"
					 "   FROM dborch.autoscale_policies p JOIN dborch.deployments d ON d.id = p.deployment_id"
					 "   WHERE d.status IN ('ready', 'degraded')"
					 "   AND (p.last_decision_at IS NULL OR p.last_decision_at + p.cooldown <= pg_catalog.now())"
					 "   AND NOT EXISTS (SELECT 1 FROM dborch.jobs j WHERE j.deployment_id = d.id"
					 "                   AND j.kind = 'scale' AND j.state IN ('queued', 'running')))"
					 " SELECT m.*, CASE"
					 "     WHEN m.replicas < m.min_replicas THEN m.min_replicas"
					 "     WHEN m.replicas > m.max_replicas THEN m.max_replicas"
					 "     WHEN m.value >= m.scale_up_at AND m.replicas < m.max_replicas THEN m.replicas + 1"
					 "     WHEN m.value <= m.scale_down_at AND m.replicas > m.min_replicas THEN m.replicas - 1"
					 "     ELSE m.replicas END AS want"
					 " FROM m WHERE m.value IS NOT NULL",
					 0);
}

/*
 * Record an auto-scaling decision that the owner's memory quota holds back:
 * an event with the figures and the cooldown's start, so that the next try
 * (and the next event) comes only after the cooldown.
 */
void
cat_autoscale_held(int64 deployment_id, int replicas, int want, const char *metric, const char *value,
				   const char *owner, int64 used_bytes, int64 max_bytes)
{
	cat_query("UPDATE dborch.autoscale_policies SET last_decision_at = pg_catalog.now()"
			  " WHERE deployment_id = $1::bigint", 1, cat_i64(deployment_id));
	cat_event(DBORCH_ACTOR, deployment_id, 0, "autoscale",
			  psprintf("%s at %.3f: %d to %d replicas held back by the memory quota of role \"%s\""
					   " (" INT64_FORMAT " of " INT64_FORMAT " MB used)",
					   metric, strtod(value, NULL), replicas, want, owner,
					   used_bytes / (1024 * 1024), max_bytes / (1024 * 1024)),
			  psprintf("{\"metric\": \"%s\", \"value\": %s, \"replicas\": %d, \"want\": %d,"
					   " \"held\": \"quota\", \"used_bytes\": " INT64_FORMAT ", \"max_bytes\": " INT64_FORMAT "}",
					   metric, value, replicas, want, used_bytes, max_bytes));
}

/* Record an auto-scaling decision: the scale job, its event and the cooldown's start. */
void
cat_autoscale(int64 deployment_id, const char *owner, int replicas, int want, const char *metric,
			  const char *value)
{
	int64		job = cat_queue_job("scale", deployment_id, owner, psprintf("{\"replicas\": %d}", want));

	cat_query("UPDATE dborch.autoscale_policies SET last_decision_at = pg_catalog.now()"
			  " WHERE deployment_id = $1::bigint", 1, cat_i64(deployment_id));
	cat_event(DBORCH_ACTOR, deployment_id, job, "autoscale",
			  psprintf("%s at %.3f: %d to %d replicas", metric, strtod(value, NULL), replicas, want),
			  psprintf("{\"metric\": \"%s\", \"value\": %s, \"replicas\": %d, \"want\": %d}",
					   metric, value, replicas, want));
}

