/*
 * dborch.h
 *		Declarations shared by every dborch module: GUC variables, the shared
 *		memory area, and small helpers used by both backends and workers.
 */
#ifndef DBORCH_H
#define DBORCH_H

#include "postgres.h"

#include "port/atomics.h"
#include "storage/condition_variable.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/spin.h"
#include "utils/wait_event.h"

#ifndef DBORCH_VERSION
#error "DBORCH_VERSION must be defined by the Makefile"
#endif

/* Key spaces of dborch's own locks (cat_xact_lock() and kin in catalog.c). */
#define DBORCH_LOCK_JOB			1	/* held by the worker running a job */
#define DBORCH_LOCK_NAME		2	/* serializes deploys of one name */
#define DBORCH_LOCK_OWNER		3	/* serializes quota checks of one owner */

/* Actor of events written by the workers themselves. */
#define DBORCH_ACTOR			"dborch"

/* Wait event reported while dborch waits (pg_stat_activity.wait_event). */
#define DBORCH_WAIT_EVENT		PG_WAIT_EXTENSION

/* GUC variables, defined in dborch.c (alphabetical there). */
extern char *dborch_alert_webhook_url;
extern int	dborch_alert_timeout_ms;
extern int	dborch_archive_timeout_s;
extern int	dborch_certificate_lifetime_s;
extern char *dborch_backup_directory;
extern char *dborch_data_directory;
extern char *dborch_database;
extern int	dborch_default_max_deployments;
extern int	dborch_default_max_memory_mb;
extern char *dborch_initdb_path;
extern int	dborch_job_max_attempts;
extern char *dborch_listen_address;
extern int	dborch_max_job_workers;
extern int	dborch_metrics_retention_s;
extern int	dborch_failure_threshold;
extern int	dborch_failover_timeout_ms;
extern char *dborch_pause_at_stage;
extern char *dborch_pg_ctl_path;
extern char *dborch_pgbackrest_path;
extern int	dborch_port_range_low;
extern int	dborch_port_range_high;
extern int	dborch_probe_interval_ms;
extern int	dborch_probe_timeout_ms;
extern char *dborch_redis_server_path;
extern int	dborch_start_timeout_ms;
extern int	dborch_tenant_usage_interval_ms;
extern int	dborch_warm_pool_size;

/*
 * A job worker slot.  The launcher starts a worker for a slot and assigns
 * it jobs by setting job_id and its latch; the worker runs one job at a
 * time, then waits for the next, and exits after a while without work.
 * Protected by DborchShared.mutex.
 */
#define DBORCH_MAX_JOB_WORKERS	64
#define DBORCH_ROUND_ROBIN_SLOTS 64
#define DBORCH_MAX_ROUTES		1024

typedef struct JobSlot
{
	bool		in_use;			/* the launcher started a worker for it */
	pid_t		pid;			/* 0 until the worker attached, or after it left */
	Latch	   *latch;
	int64		job_id;			/* assigned job, 0 when idle */
	int			attempt;		/* jobs.attempts the job was claimed with */
	pg_atomic_uint64 bytes_done;	/* progress of the job, where known */
	pg_atomic_uint64 bytes_total;
} JobSlot;

/*
 * Health of one instance as the prober saw it at its latest flush: what
 * read routing (connection_string(intent => 'read')) picks from without a
 * query of dborch.probes.
 */
typedef struct RouteHealth
{
	int64		instance_id;
	bool		up;				/* the latest probe succeeded */
	int64		connections;	/* from the latest probe, -1 when unknown */
	double		latency_ms;		/* moving average of probe latency, -1 when unknown */
} RouteHealth;

/* Shared memory: how backends and workers find and wake each other. */
typedef struct DborchShared
{
	slock_t		mutex;			/* protects the pids and latches below */
	pid_t		launcher_pid;
	Latch	   *launcher_latch;
	pid_t		prober_pid;
	Latch	   *prober_latch;
	ConditionVariable state_cv; /* broadcast when a job or deployment changes */
	pg_atomic_uint64 catalog_generation;	/* bumped at the commit of a change to instances,
										 * deployments' status or secrets */
	pg_atomic_uint32 probe_now;	/* set: probe down instances again at once */
	pg_atomic_uint32 job_workers;	/* job workers running */
	/* reported by the prober for dborch.health() */
	pg_atomic_uint32 prober_targets;
	pg_atomic_uint32 prober_connected;
	pg_atomic_uint32 prober_fd_exhausted;
	pg_atomic_uint64 prober_last_loop;	/* TimestampTz */
	JobSlot		job_slots[DBORCH_MAX_JOB_WORKERS];
	/* round-robin counters of read routing, by deployment id modulo their number */
	pg_atomic_uint64 round_robin[DBORCH_ROUND_ROBIN_SLOTS];
	/* written by the prober, read by connection_string; under routes_lock */
	LWLock	   *routes_lock;
	int			nroutes;
	RouteHealth routes[DBORCH_MAX_ROUTES];
} DborchShared;

extern DborchShared *dborch_shared;

/* dborch.c */
extern void dborch_background_session(void);
extern void dborch_wake_launcher(void);
extern void dborch_wake_prober(bool probe_now);
extern void dborch_wake_launcher_at_commit(void);
extern bool dborch_catalog_changed_in_xact(void);
extern void dborch_note_queued_deployment(int64 deployment_id);
extern bool dborch_queued_in_this_xact(int64 deployment_id);
extern void dborch_broadcast_state_change(void);
extern bool dborch_extension_ready(bool error_if_not);
extern const char *dborch_data_root(void);
extern const char *dborch_backup_root(void);
extern const char *dborch_bindir_program(const char *setting, const char *program);

/* util.c */
extern char *dborch_random_password(int length);
extern char *dborch_scram_secret(const char *password);
extern void dborch_write_file(const char *path, const char *contents, mode_t mode);
extern char *dborch_read_file(const char *path, bool missing_ok);
extern void dborch_mkdir(const char *path, mode_t mode);
extern void dborch_remove_tree(const char *path);
extern bool dborch_path_exists(const char *path);
extern bool dborch_process_alive(pid_t pid, const char *expected_comm);
extern bool dborch_port_in_use(const char *address, int port);
extern char *dborch_file_tail(const char *path, int max_bytes);
extern void dborch_validate_name(const char *what, const char *name);
extern char *dborch_clip(const char *text, int max_bytes);
extern char *dborch_count(int64 n, const char *one, const char *many);
extern int64 dborch_now_ms(void);

/* launcher.c, job_worker.c */
extern PGDLLEXPORT void dborch_launcher_main(Datum arg);
extern PGDLLEXPORT void dborch_job_worker_main(Datum arg);
extern PGDLLEXPORT void dborch_prober_main(Datum arg);

#endif							/* DBORCH_H */
