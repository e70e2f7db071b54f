/*
 * dborch.c
 *		Module entry point: _PG_init, every GUC (alphabetical), the shared
 *		memory area, the launcher's registration, the commit-time wake-up of
 *		the launcher, and the check that the library matches the installed
 *		SQL version.
 */
#include "postgres.h"

#include <arpa/inet.h>

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/indexing.h"
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "dborch.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/* GUC variables */
int			dborch_alert_timeout_ms = 5000;
char	   *dborch_alert_webhook_url = NULL;
int			dborch_archive_timeout_s = 60;
char	   *dborch_backup_directory = NULL;
int			dborch_certificate_lifetime_s = 90 * 86400;
char	   *dborch_data_directory = NULL;
char	   *dborch_database = NULL;
int			dborch_default_max_deployments = 20;
int			dborch_default_max_memory_mb = 4096;
int			dborch_failover_timeout_ms = 2000;
int			dborch_failure_threshold = 3;
char	   *dborch_initdb_path = NULL;
int			dborch_job_max_attempts = 3;
char	   *dborch_listen_address = NULL;
int			dborch_max_job_workers = 4;
int			dborch_metrics_retention_s = 3600;
char	   *dborch_pause_at_stage = NULL;
char	   *dborch_pg_ctl_path = NULL;
char	   *dborch_pgbackrest_path = NULL;
static char *dborch_port_range = NULL;
int			dborch_port_range_low = 20000;
int			dborch_port_range_high = 29999;
int			dborch_probe_interval_ms = 1000;
int			dborch_probe_timeout_ms = 1000;
char	   *dborch_redis_server_path = NULL;
int			dborch_start_timeout_ms = 60000;
int			dborch_tenant_usage_interval_ms = 10000;
int			dborch_warm_pool_size = 2;

DborchShared *dborch_shared = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* Backend-local state of the current transaction. */
static bool wake_at_commit = false;
static bool catalog_changed = false;
static List *queued_deployments = NIL;	/* int64 ids, in TopTransactionContext */

static bool check_listen_address(char **newval, void **extra, GucSource source);
static bool check_port_range(char **newval, void **extra, GucSource source);
static void assign_port_range(const char *newval, void *extra);
static void define_gucs(void);
static void register_workers(void);
static void dborch_shmem_request(void);
static void dborch_shmem_startup(void);
static void dborch_xact_callback(XactEvent event, void *arg);

/*
 * Module load: refuse unless preloaded, then define GUCs, request shared
 * memory and register the launcher.
 */
void
_PG_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("dborch must be loaded via shared_preload_libraries"),
				 errhint("Add dborch to shared_preload_libraries (after pg_cron) and restart the server.")));

	define_gucs();

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = dborch_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = dborch_shmem_startup;

	RegisterXactCallback(dborch_xact_callback, NULL);
	register_workers();
}

/* Every GUC of dborch, in alphabetical order. */
static void
define_gucs(void)
{
	DefineCustomIntVariable("dborch.alert_timeout",
							"How long one webhook delivery may take.",
							NULL,
							&dborch_alert_timeout_ms, 5000, 100, 600000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomStringVariable("dborch.alert_webhook_url",
							   "URL that receives alerts (Alertmanager webhook JSON), empty for none.",
							   NULL,
							   &dborch_alert_webhook_url, "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);
	DefineCustomIntVariable("dborch.archive_timeout",
							"Longest time a PostgreSQL instance keeps a WAL segment before archiving it.",
							"The recovery point objective of a deployment that is lost with its host: "
							"archive_timeout of the instances it configures from then on; 0 turns it off.",
							&dborch_archive_timeout_s, 60, 0, 3600,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomStringVariable("dborch.backup_directory",
							   "Directory under which backups and their pgBackRest repositories live.",
							   "Empty means backups/ beside instances/ in dborch.data_directory.",
							   &dborch_backup_directory, "",
							   PGC_POSTMASTER, GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);
	DefineCustomIntVariable("dborch.certificate_lifetime",
							"How long the server certificate dborch issues an instance is valid.",
							"Signed by the control plane's certificate authority when the instance is made.",
							&dborch_certificate_lifetime_s, 90 * 86400, 60, 825 * 86400,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomStringVariable("dborch.data_directory",
							   "Directory under which managed instances live.",
							   "Empty means the control cluster's data directory with the suffix _dborch.",
							   &dborch_data_directory, "",
							   PGC_POSTMASTER, GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("dborch.database",
							   "Database in which the dborch workers connect.",
							   "The dborch extension must be created in this database.",
							   &dborch_database, "postgres",
							   PGC_POSTMASTER, 0,
							   NULL, NULL, NULL);
	DefineCustomIntVariable("dborch.default_max_deployments",
							"Deployments an owner may have when dborch.quotas has no row for it.",
							NULL,
							&dborch_default_max_deployments, 20, 0, 100000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("dborch.default_max_memory",
							"Total memory of an owner's deployments when dborch.quotas has no row for it.",
							NULL,
							&dborch_default_max_memory_mb, 4096, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MB,
							NULL, NULL, NULL);
	DefineCustomIntVariable("dborch.failover_timeout",
							"How long a primary with a healthy replica may be down before a replica is promoted.",
							NULL,
							&dborch_failover_timeout_ms, 2000, 0, 3600000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("dborch.failure_threshold",
							"Missed probes in a row before an instance is down.",
							NULL,
							&dborch_failure_threshold, 3, 1, 100,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	DefineCustomStringVariable("dborch.initdb_path",
							   "Path of the initdb program.",
							   "Empty means initdb in the server's own bin directory.",
							   &dborch_initdb_path, "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);
	DefineCustomIntVariable("dborch.job_max_attempts",
							"Attempts of a job before it is marked failed.",
							NULL,
							&dborch_job_max_attempts, 3, 1, 100,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	DefineCustomStringVariable("dborch.listen_address",
							   "IP address on which managed instances listen.",
							   NULL,
							   &dborch_listen_address, "127.0.0.1",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   check_listen_address, NULL, NULL);
	DefineCustomIntVariable("dborch.max_job_workers",
							"Job workers that may run at once.",
							"Each needs a slot of max_worker_processes.",
							&dborch_max_job_workers, 4, 1, 64,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("dborch.metrics_retention",
							"How long probe samples are kept in dborch.probes.",
							NULL,
							&dborch_metrics_retention_s, 3600, 60, 366 * 86400,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomStringVariable("dborch.pause_at_stage",
							   "Testing aid: job workers pause at this stage (kind:stage or kind:stage:after).",
							   NULL,
							   &dborch_pause_at_stage, "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY | GUC_NOT_IN_SAMPLE,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("dborch.pg_ctl_path",
							   "Path of the pg_ctl program.",
							   "Empty means pg_ctl in the server's own bin directory.",
							   &dborch_pg_ctl_path, "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("dborch.pgbackrest_path",
							   "Path of the pgbackrest program.",
							   NULL,
							   &dborch_pgbackrest_path, "/usr/bin/pgbackrest",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("dborch.port_range",
							   "Ports given to managed instances, as low-high.",
							   NULL,
							   &dborch_port_range, "20000-29999",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   check_port_range, assign_port_range, NULL);
	DefineCustomIntVariable("dborch.probe_interval",
							"Time between two probes of an instance.",
							NULL,
							&dborch_probe_interval_ms, 1000, 100, 3600000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("dborch.probe_timeout",
							"Deadline of one probe (connecting included).",
							NULL,
							&dborch_probe_timeout_ms, 1000, 10, 600000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomStringVariable("dborch.redis_server_path",
							   "Path of the redis-server program.",
							   NULL,
							   &dborch_redis_server_path, "/usr/bin/redis-server",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);
	DefineCustomIntVariable("dborch.start_timeout",
							"How long a new instance may take to accept connections.",
							NULL,
							&dborch_start_timeout_ms, 60000, 1000, 3600000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("dborch.tenant_usage_interval",
							"Time between two measurements of tenants' usage against their quotas.",
							NULL,
							&dborch_tenant_usage_interval_ms, 10000, 1000, 86400000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("dborch.warm_pool_size",
							"Pre-initialized PostgreSQL data directories kept ready for deploys.",
							NULL,
							&dborch_warm_pool_size, 2, 0, 100,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("dborch");
}

/* dborch.listen_address must be a numeric IPv4 or IPv6 address. */
static bool
check_listen_address(char **newval, void **extra, GucSource source)
{
	unsigned char buf[sizeof(struct in6_addr)];

	if (*newval == NULL)
		return false;
	if (inet_pton(AF_INET, *newval, buf) == 1 || inet_pton(AF_INET6, *newval, buf) == 1)
		return true;
	GUC_check_errdetail("\"%s\" is not a numeric IPv4 or IPv6 address.", *newval);
	return false;
}

/* Parse "low-high" into two ports; returns false on anything else. */
static bool
parse_port_range(const char *text, int *low, int *high)
{
	char		tail;

	if (text == NULL || sscanf(text, "%d-%d%c", low, high, &tail) != 2)
		return false;
	return *low >= 1024 && *high <= 65535 && *low <= *high;
}

static bool
check_port_range(char **newval, void **extra, GucSource source)
{
	int			low,
				high;

	if (parse_port_range(*newval, &low, &high))
		return true;
	GUC_check_errdetail("The port range must be written low-high, within 1024-65535.");
	return false;
}

static void
assign_port_range(const char *newval, void *extra)
{
	int			low,
				high;

	if (parse_port_range(newval, &low, &high))
	{
		dborch_port_range_low = low;
		dborch_port_range_high = high;
	}
}

/* Register the static workers: the launcher and the prober. */
static void
register_workers(void)
{
	static const char *const names[][2] = {
		{"dborch launcher", "dborch_launcher_main"},
		{"dborch prober", "dborch_prober_main"},
	};
	int			i;

	for (i = 0; i < lengthof(names); i++)
	{
		BackgroundWorker worker;

		memset(&worker, 0, sizeof(worker));
		worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
		worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
		worker.bgw_restart_time = 1;
		strlcpy(worker.bgw_library_name, "dborch", BGW_MAXLEN);
		strlcpy(worker.bgw_function_name, names[i][1], BGW_MAXLEN);
		strlcpy(worker.bgw_name, names[i][0], BGW_MAXLEN);
		strlcpy(worker.bgw_type, names[i][0], BGW_MAXLEN);
		RegisterBackgroundWorker(&worker);
	}
}

static void
dborch_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(DborchShared)));
	RequestNamedLWLockTranche("dborch", 1);
}

static void
dborch_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	dborch_shared = ShmemInitStruct("dborch", sizeof(DborchShared), &found);
	if (!found)
	{
		memset(dborch_shared, 0, sizeof(DborchShared));
		SpinLockInit(&dborch_shared->mutex);
		dborch_shared->routes_lock = &GetNamedLWLockTranche("dborch")[0].lock;
		ConditionVariableInit(&dborch_shared->state_cv);
		pg_atomic_init_u64(&dborch_shared->catalog_generation, 1);
		pg_atomic_init_u32(&dborch_shared->probe_now, 0);
		pg_atomic_init_u32(&dborch_shared->job_workers, 0);
		pg_atomic_init_u32(&dborch_shared->prober_targets, 0);
		pg_atomic_init_u32(&dborch_shared->prober_connected, 0);
		pg_atomic_init_u32(&dborch_shared->prober_fd_exhausted, 0);
		pg_atomic_init_u64(&dborch_shared->prober_last_loop, 0);
		for (int i = 0; i < DBORCH_ROUND_ROBIN_SLOTS; i++)
			pg_atomic_init_u64(&dborch_shared->round_robin[i], 0);
		for (int i = 0; i < DBORCH_MAX_JOB_WORKERS; i++)
		{
			pg_atomic_init_u64(&dborch_shared->job_slots[i].bytes_done, 0);
			pg_atomic_init_u64(&dborch_shared->job_slots[i].bytes_total, 0);
		}
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * Settings of the launcher's and the prober's sessions.  Their catalog
 * transactions give way to DDL (DROP EXTENSION, ALTER TABLE): a lock they
 * cannot have within 100 ms fails their round, which is retried, instead of
 * the user's statement failing in a deadlock.
 */
void
dborch_background_session(void)
{
	SetConfigOption("lock_timeout", "100", PGC_SUSET, PGC_S_OVERRIDE);
}

/* Set the launcher's latch now. */
void
dborch_wake_launcher(void)
{
	Latch	   *latch;

	SpinLockAcquire(&dborch_shared->mutex);
	latch = dborch_shared->launcher_latch;
	SpinLockRelease(&dborch_shared->mutex);
	if (latch != NULL)
		SetLatch(latch);
}

/*
 * Wake the prober: after its target list changed (it compares the
 * generation), or with probe_now to look at down instances at once.
 */
void
dborch_wake_prober(bool probe_now)
{
	Latch	   *latch;

	if (probe_now)
		pg_atomic_write_u32(&dborch_shared->probe_now, 1);
	SpinLockAcquire(&dborch_shared->mutex);
	latch = dborch_shared->prober_latch;
	SpinLockRelease(&dborch_shared->mutex);
	if (latch != NULL)
		SetLatch(latch);
}

/*
 * Statement trigger on instances, deployments' status and secrets: what the
 * prober probes, or what connection strings name, changed.  At commit the
 * catalog generation moves and the prober wakes.
 */
PG_FUNCTION_INFO_V1(dborch_catalog_changed);
Datum
dborch_catalog_changed(PG_FUNCTION_ARGS)
{
	catalog_changed = true;
	return PointerGetDatum(NULL);
}

/* Has this transaction changed what _catalog_changed() watches? */
bool
dborch_catalog_changed_in_xact(void)
{
	return catalog_changed;
}

/* dborch._wake_workers(): wake the launcher and the prober at commit. */
PG_FUNCTION_INFO_V1(dborch_wake_workers);
Datum
dborch_wake_workers(PG_FUNCTION_ARGS)
{
	wake_at_commit = true;
	catalog_changed = true;
	PG_RETURN_VOID();
}

/* Set the launcher's latch when the current transaction commits. */
void
dborch_wake_launcher_at_commit(void)
{
	wake_at_commit = true;
}

/* Remember that this transaction queued work for a deployment. */
void
dborch_note_queued_deployment(int64 deployment_id)
{
	MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);
	int64	   *id = palloc(sizeof(int64));

	*id = deployment_id;
	queued_deployments = lappend(queued_deployments, id);
	MemoryContextSwitchTo(old);
	dborch_wake_launcher_at_commit();
}

/* Did the current transaction queue work for this deployment? */
bool
dborch_queued_in_this_xact(int64 deployment_id)
{
	ListCell   *lc;

	foreach(lc, queued_deployments)
	{
		if (*(int64 *) lfirst(lc) == deployment_id)
			return true;
	}
	return false;
}

/* Wake every backend waiting in dborch.wait() or dborch.wait_job(). */
void
dborch_broadcast_state_change(void)
{
	ConditionVariableBroadcast(&dborch_shared->state_cv);
}

static void
dborch_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_PREPARE:

			/*
			 * COMMIT PREPARED may run in another session, which would not
			 * wake the launcher; and the queued work would wait for it.
			 */
			if (wake_at_commit)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot PREPARE a transaction that queued dborch work")));
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (wake_at_commit)
			{
				dborch_wake_launcher();
				dborch_broadcast_state_change();
			}
			/* after the commit is visible: see routing.c */
			if (catalog_changed)
			{
				pg_atomic_fetch_add_u64(&dborch_shared->catalog_generation, 1);
				dborch_wake_prober(false);
			}
			/* FALLTHROUGH */
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			wake_at_commit = false;
			catalog_changed = false;
			queued_deployments = NIL;	/* its memory went with the transaction */
			break;
		default:
			break;
	}
}

/*
 * Is the dborch extension installed in this database, at the version this
 * library was built for?  With error_if_not (the SQL functions), an error
 * says what is missing; without (the background workers, which wait for
 * CREATE or ALTER EXTENSION to wake them), false, and a version mismatch
 * is logged once per process.  Needs a transaction.
 */
bool
dborch_extension_ready(bool error_if_not)
{
	Oid			extoid = get_extension_oid("dborch", true);
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	char	   *installed = NULL;

	if (!OidIsValid(extoid))
	{
		if (error_if_not)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("extension \"dborch\" is not installed in this database")));
		return false;
	}

	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_oid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(extoid));
	scan = systable_beginscan(rel, ExtensionOidIndexId, true, NULL, 1, &key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
	{
		bool		isnull;
		Datum		d = heap_getattr(tuple, Anum_pg_extension_extversion,
									 RelationGetDescr(rel), &isnull);

		if (!isnull)
			installed = TextDatumGetCString(d);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);

	if (installed == NULL || strcmp(installed, DBORCH_VERSION) != 0)
	{
		static bool logged = false;

		if (!error_if_not && logged)
			return false;
		logged = !error_if_not;
		ereport(error_if_not ? ERROR : LOG,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("dborch library version %s does not match the installed extension version %s",
						DBORCH_VERSION, installed ? installed : "(unknown)"),
				 errhint("Run ALTER EXTENSION dborch UPDATE, or install the matching library and restart the server.")));
		return false;
	}
	return true;
}

/* Root of dborch's directories: instances/ and pool/ live under it. */
const char *
dborch_data_root(void)
{
	static char *root = NULL;

	if (root == NULL)
	{
		const char *base = dborch_data_directory;

		if (base == NULL || base[0] == '\0')
			root = MemoryContextStrdup(TopMemoryContext, psprintf("%s_dborch", DataDir));
		else
			root = MemoryContextStrdup(TopMemoryContext, base);
	}
	return root;
}

/* Root of the backups: one directory per deployment under it. */
const char *
dborch_backup_root(void)
{
	static char *root = NULL;

	if (root == NULL)
		root = MemoryContextStrdup(TopMemoryContext,
								   dborch_backup_directory && dborch_backup_directory[0]
								   ? dborch_backup_directory
								   : psprintf("%s/backups", dborch_data_root()));
	return root;
}

/* The configured path of a program, or the program in the server's bindir. */
const char *
dborch_bindir_program(const char *setting, const char *program)
{
	char		bindir[MAXPGPATH];

	if (setting != NULL && setting[0] != '\0')
		return setting;
	strlcpy(bindir, my_exec_path, sizeof(bindir));
	get_parent_directory(bindir);
	return psprintf("%s/%s", bindir, program);
}
