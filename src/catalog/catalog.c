/*
 * catalog.c
 *		How the catalog's files (src/catalog/, the only code that reads or
 *		writes dborch's tables) run their statements, and the locks and
 *		identity they share.  The tables' own functions are in
 *		deployments.c, jobs.c, health.c, backups.c, tenants.c and scaling.c.
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
#include "catalog_internal.h"
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

int64
cat_int64(CatResult *res, int row, const char *column)
{
	const char *v = cat_value(res, row, column);

	return v ? strtoi64(v, NULL, 10) : 0;
}

char *
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

/* The id column of a result as a list of int64 *. */
List *
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
