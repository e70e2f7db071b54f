/*
 * launcher.c
 *		The dborch launcher: a static background worker that claims queued
 *		jobs (FOR UPDATE SKIP LOCKED) and runs each in a dynamic job worker,
 *		at most dborch.max_job_workers at once; requeues jobs whose worker
 *		died; adopts running instances after a restart; destroys deployments
 *		whose TTL passed; keeps the warm pool filled.
 *
 * It sleeps on its latch until the next due moment: a commit that queues a
 * job sets the latch (dborch.c), and so do a job worker that finished a job
 * and the exit of a job worker (bgw_notify_pid).  There is no polling nap.
 */
#include "postgres.h"

#include <limits.h>

#include "access/xact.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/backend_status.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "catalog.h"
#include "dborch.h"
#include "deployment.h"
#include "engine.h"
#include "tls.h"

/* How often to look for jobs orphaned by workers this launcher did not start. */
#define ORPHAN_CHECK_MS 30000
/* Wait after an error in the loop, so a persistent error does not spin. */
#define ERROR_RETRY_MS 5000
/* How often auto-scaling policies are evaluated. */
#define AUTOSCALE_EVERY_MS 5000
#define SCHEDULE_CHECK_MS 10000
/* How often old probe samples are deleted. */
#define RETENTION_EVERY_MS 60000

/* Handles of the job workers this launcher started, by slot. */
static BackgroundWorkerHandle *handles[DBORCH_MAX_JOB_WORKERS];

/* A row of cat_autoscale_decisions(), for autoscale_one(). */
typedef struct AutoscaleRow
{
	CatResult  *decisions;
	int			i;
} AutoscaleRow;
static bool warned_no_slot = false;

static void
launcher_detach(int code, Datum arg)
{
	SpinLockAcquire(&dborch_shared->mutex);
	if (dborch_shared->launcher_pid == MyProcPid)
	{
		dborch_shared->launcher_pid = 0;
		dborch_shared->launcher_latch = NULL;
	}
	SpinLockRelease(&dborch_shared->mutex);
}

static int
max_slots(void)
{
	return Min(dborch_max_job_workers, DBORCH_MAX_JOB_WORKERS);
}

/* Job workers in use, and how many of them run a job. */
static void
count_slots(int *in_use, int *busy)
{
	int			i;

	*in_use = *busy = 0;
	SpinLockAcquire(&dborch_shared->mutex);
	for (i = 0; i < DBORCH_MAX_JOB_WORKERS; i++)
	{
		*in_use += dborch_shared->job_slots[i].in_use;
		*busy += dborch_shared->job_slots[i].in_use && dborch_shared->job_slots[i].job_id != 0;
	}
	SpinLockRelease(&dborch_shared->mutex);
	pg_atomic_write_u32(&dborch_shared->job_workers, *in_use);
}

/* Jobs the workers can take now: dborch.max_job_workers minus busy ones. */
static int
free_capacity(void)
{
	int			in_use,
				busy;

	count_slots(&in_use, &busy);
	return Max(max_slots() - busy, 0);
}

static bool
job_has_worker(int64 job_id)
{
	bool		found = false;
	int			i;

	SpinLockAcquire(&dborch_shared->mutex);
	for (i = 0; i < DBORCH_MAX_JOB_WORKERS && !found; i++)
		found = dborch_shared->job_slots[i].in_use && dborch_shared->job_slots[i].job_id == job_id;
	SpinLockRelease(&dborch_shared->mutex);
	return found;
}

/* Start the dynamic worker of a slot; false if no background worker slot is free. */
static bool
start_job_worker(int slot_no)
{
	BackgroundWorker worker;
	MemoryContext old;
	bool		started;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	strlcpy(worker.bgw_library_name, "dborch", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "dborch_job_worker_main", BGW_MAXLEN);
	snprintf(worker.bgw_name, BGW_MAXLEN, "dborch job worker %d", slot_no);
	strlcpy(worker.bgw_type, "dborch job", BGW_MAXLEN);
	worker.bgw_main_arg = Int32GetDatum(slot_no);
	worker.bgw_notify_pid = MyProcPid;

	old = MemoryContextSwitchTo(TopMemoryContext);
	started = RegisterDynamicBackgroundWorker(&worker, &handles[slot_no]);
	MemoryContextSwitchTo(old);
	return started;
}

/*
 * Give a claimed job to a job worker: an idle one if there is one (set its
 * latch), else a new one in a free slot.  false if neither is possible.
 */
static bool
assign_job(ClaimedJob *job)
{
	JobSlot    *slot;
	Latch	   *latch = NULL;
	int			free_slot = -1;
	int			i;

	SpinLockAcquire(&dborch_shared->mutex);
	for (i = 0; i < max_slots() && latch == NULL; i++)
	{
		slot = &dborch_shared->job_slots[i];
		if (slot->in_use && slot->pid != 0 && slot->job_id == 0)
		{
			slot->job_id = job->id;
			slot->attempt = job->attempt;
			latch = slot->latch;
		}
		else if (!slot->in_use && free_slot < 0)
			free_slot = i;
	}
	if (latch == NULL && free_slot >= 0)
	{
		slot = &dborch_shared->job_slots[free_slot];
		slot->in_use = true;
		slot->pid = 0;
		slot->latch = NULL;
		slot->job_id = job->id;
		slot->attempt = job->attempt;
	}
	SpinLockRelease(&dborch_shared->mutex);

	if (latch != NULL)
	{
		SetLatch(latch);
		return true;
	}
	if (free_slot < 0)
		return false;
	if (start_job_worker(free_slot))
		return true;
	SpinLockAcquire(&dborch_shared->mutex);
	dborch_shared->job_slots[free_slot].in_use = false;
	dborch_shared->job_slots[free_slot].job_id = 0;
	SpinLockRelease(&dborch_shared->mutex);
	return false;
}

/*
 * Free the slots of job workers that exited.  A job a worker still held
 * when it exited (killed, or a FATAL error) is queued again to resume at
 * its stage.  Slots of workers an earlier launcher started (no handle
 * here) are freed once their worker has left.
 */
static void
reap_workers(void)
{
	int			i;

	for (i = 0; i < DBORCH_MAX_JOB_WORKERS; i++)
	{
		JobSlot    *slot = &dborch_shared->job_slots[i];
		pid_t		pid;
		int64		job_id = 0;
		int			attempt = 0;
		bool		gone;

		if (handles[i] != NULL)
			gone = GetBackgroundWorkerPid(handles[i], &pid) == BGWH_STOPPED;
		else
		{
			SpinLockAcquire(&dborch_shared->mutex);
			gone = slot->in_use && slot->pid == 0;
			SpinLockRelease(&dborch_shared->mutex);
		}
		if (!gone)
			continue;

		SpinLockAcquire(&dborch_shared->mutex);
		if (handles[i] != NULL)
		{
			job_id = slot->job_id;
			attempt = slot->attempt;
		}
		slot->in_use = false;
		slot->pid = 0;
		slot->latch = NULL;
		slot->job_id = 0;
		SpinLockRelease(&dborch_shared->mutex);
		if (handles[i] != NULL)
		{
			pfree(handles[i]);
			handles[i] = NULL;
		}
		if (job_id != 0 && cat_requeue_orphan(job_id, attempt))
			ereport(LOG, (errmsg("dborch: worker of job " INT64_FORMAT " exited while running it; job queued again",
								 job_id)));
	}
}

/*
 * Requeue running jobs that no live worker holds (their advisory lock is
 * free): after a restart, or when a worker of an earlier launcher died.
 * Returns whether some running job belongs to a worker this launcher does
 * not track, which calls for another check later.
 */
static bool
requeue_orphans(void)
{
	ListCell   *lc;
	bool		foreign = false;

	foreach(lc, cat_running_jobs())
	{
		int64		job_id = *(int64 *) lfirst(lc);

		if (job_has_worker(job_id))
			continue;
		if (cat_try_xact_lock(DBORCH_LOCK_JOB, job_id))
		{
			if (cat_requeue_orphan(job_id, -1))
				ereport(LOG, (errmsg("dborch: job " INT64_FORMAT " had no live worker; queued again to resume",
									 job_id)));
		}
		else
			foreign = true;
	}
	return foreign;
}

/*
 * After a (re)start: managed instances run in their own sessions and
 * survived; take note of their pids.
 */
static void
adopt_instances(void)
{
	ListCell   *lc;
	int			adopted = 0;

	foreach(lc, cat_running_instances())
	{
		Instance   *inst = lfirst(lc);
		const EngineOps *engine = engine_get(inst->engine);
		pid_t		pid = engine->running_pid(inst);

		if (pid != 0)
		{
			if (pid != inst->pid)
				cat_set_instance_pid(inst->id, pid);
			adopted++;
		}
		/* one that is not running is the prober's to find down and recover */
	}
	if (adopted > 0)
		ereport(LOG, (errmsg("dborch: adopted %d running instances", adopted)));
}

static void
expire_one(void *arg)
{
	Deployment *d = cat_deployment(*(int64 *) arg);

	deployment_request_destroy(d, DBORCH_ACTOR, "time to live expired", false);
}

/*
 * Queue the destroy of every deployment whose TTL has passed, each on its
 * own: one whose row a user's transaction holds waits for the next round.
 */
static void
expire_deployments(void *due)
{
	ListCell   *lc;

	foreach(lc, cat_expired_deployments())
		(void) cat_try(expire_one, lfirst(lc));
}

/*
 * Queue the build of one more warm-pool entry if the pool is short; remove
 * ready entries beyond dborch.warm_pool_size if it was lowered.
 */
static void
refill_warm_pool(void *due)
{
	CatResult  *surplus = cat_pool_surplus(dborch_warm_pool_size);
	int64		pool_id;
	int			i;

	for (i = 0; i < surplus->nrows; i++)
	{
		dborch_remove_tree(cat_value(surplus, i, "directory"));
		cat_pool_delete(strtoi64(cat_value(surplus, i, "id"), NULL, 10));
	}
	if (dborch_warm_pool_size <= 0 || !cat_pool_needs_entry(dborch_warm_pool_size))
		return;
	pool_id = cat_pool_reserve(engine_postgres.versions[0], dborch_data_root());
	cat_queue_job("warm_pool", 0, GetUserNameFromId(GetUserId(), false),
				  psprintf("{\"pool_id\": " INT64_FORMAT "}", pool_id));
}

/* Queue a delivery job when alerts are due and none is queued or running. */
static void
deliver_due_alerts(void *due)
{
	if (dborch_alert_webhook_url == NULL || dborch_alert_webhook_url[0] == '\0')
		return;
	if (cat_next_alert_due_ms() == 0 && cat_unfinished_kind("deliver_alerts") == 0)
		cat_queue_job("deliver_alerts", 0, GetUserNameFromId(GetUserId(), false), NULL);
}

/*
 * Queue a tenant usage measurement when one is due and none is queued or
 * running; *due is the milliseconds until the next one, -1 if no tenant
 * has a quota.
 */
static void
measure_tenants(void *due)
{
	static int64 next_measure = 0;

	if (cat_tenant_usage_deployments() == NIL)
		return;
	if (dborch_now_ms() >= next_measure)
	{
		if (cat_unfinished_kind("tenant_usage") == 0)
			cat_queue_job("tenant_usage", 0, GetUserNameFromId(GetUserId(), false), NULL);
		next_measure = dborch_now_ms() + dborch_tenant_usage_interval_ms;
	}
	*(int64 *) due = Max(next_measure - dborch_now_ms(), 0);
}

/*
 * Auto-scaling: every AUTOSCALE_EVERY_MS, each policy's metric against its
 * thresholds (cat_autoscale_decisions); a decision queues a scale job and an
 * event with the figures, and starts the policy's cooldown.  A scale-up that
 * the owner's memory quota does not allow is not made: an event says so, and
 * the cooldown starts all the same (one such event per cooldown, not one per
 * evaluation).  Returns the milliseconds until the next evaluation.
 */
/* One auto-scaling decision (a row of cat_autoscale_decisions()). */
static void
autoscale_one(void *arg)
{
	AutoscaleRow *row = arg;
	CatResult  *r = row->decisions;
	int			i = row->i;
	int64		deployment_id = strtoi64(cat_value(r, i, "deployment_id"), NULL, 10);
	const char *owner = cat_value(r, i, "owner");
	int			replicas = atoi(cat_value(r, i, "replicas"));
	int			want = atoi(cat_value(r, i, "want"));

	if (want == replicas)
		return;
	if (want > replicas)
	{
		/* each replica counts against the owner's memory quota, as with scale() */
		int64		extra = strtoi64(cat_value(r, i, "memory_bytes"), NULL, 10) * (want - replicas);
		int64		deployments,
					used,
					max_deployments,
					max_memory;

		/* an owner's transaction holds its quota lock: decide next time */
		if (!cat_lock_owner_quota(owner, false, &deployments, &used, &max_deployments,
								  &max_memory))
			return;
		if (used + extra > max_memory)
		{
			cat_autoscale_held(deployment_id, replicas, want, cat_value(r, i, "metric"),
							   cat_value(r, i, "value"), owner, used, max_memory);
			return;
		}
	}
	cat_autoscale(deployment_id, owner, replicas, want, cat_value(r, i, "metric"), cat_value(r, i, "value"));
}

/*
 * Auto-scaling: every AUTOSCALE_EVERY_MS, each policy's metric against its
 * thresholds (cat_autoscale_decisions); a decision queues a scale job and an
 * event with the figures, and starts the policy's cooldown.  A scale-up that
 * the owner's memory quota does not allow is not made: an event says so, and
 * the cooldown starts all the same (one such event per cooldown, not one per
 * evaluation).  Each decision is taken on its own (a policy row a user's
 * transaction holds waits for the next evaluation).  *due is the
 * milliseconds until the next evaluation, -1 without policies.
 */
static void
autoscale(void *due)
{
	static int64 next_evaluation = 0;
	AutoscaleRow row;

	if (!cat_has_autoscale())
		return;
	if (dborch_now_ms() < next_evaluation)
	{
		*(int64 *) due = next_evaluation - dborch_now_ms();
		return;
	}
	next_evaluation = dborch_now_ms() + AUTOSCALE_EVERY_MS;
	row.decisions = cat_autoscale_decisions();
	for (row.i = 0; row.i < row.decisions->nrows; row.i++)
		(void) cat_try(autoscale_one, &row);
	*(int64 *) due = AUTOSCALE_EVERY_MS;
}

/* Claim due jobs for the free worker capacity and hand them to workers. */
static void
start_due_jobs(void)
{
	int			capacity = free_capacity();
	List	   *claimed;
	ListCell   *lc;

	if (capacity <= 0)
		return;
	cat_begin();
	claimed = cat_claim_jobs(capacity);
	cat_commit();

	foreach(lc, claimed)
	{
		ClaimedJob *job = lfirst(lc);

		if (assign_job(job))
			continue;
		/* no background worker slot: give the job back, retry at the next exit */
		cat_begin();
		cat_unclaim_job(job->id);
		cat_commit();
		if (!warned_no_slot)
			ereport(WARNING,
					(errmsg("dborch: no background worker slot free for a job worker"),
					 errhint("Raise max_worker_processes, or lower dborch.max_job_workers.")));
		warned_no_slot = true;
	}
}

/*
 * Scheduled backups are pg_cron's to run; a run that failed (the deployment
 * was stopped, pg_cron could not connect, ...) would go unnoticed in
 * cron.job_run_details.  Every SCHEDULE_CHECK_MS the new failed runs of
 * dborch's schedules become an event and an alert each.
 */
static void
watch_schedules(void *due)
{
	static int64 next_check = 0;
	CatResult  *r;

	if (dborch_now_ms() < next_check)
	{
		*(int64 *) due = next_check - dborch_now_ms();
		return;
	}
	next_check = dborch_now_ms() + SCHEDULE_CHECK_MS;
	*(int64 *) due = SCHEDULE_CHECK_MS;
	r = cat_failed_schedule_runs();
	for (int i = 0; i < r->nrows; i++)
	{
		int64		deployment_id = strtoi64(cat_value(r, i, "deployment_id"), NULL, 10);
		const char *message = cat_value(r, i, "message");
		char	   *summary = psprintf("the scheduled %s backup (\"%s\") did not run: %s",
									   cat_value(r, i, "kind"), cat_value(r, i, "schedule"),
									   message ? message : "no message");

		cat_event(DBORCH_ACTOR, deployment_id, 0, "scheduled_backup_failed", summary,
				  psprintf("{\"schedule_id\": %s, \"cron_run_id\": %s, \"at\": \"%s\"}",
						   cat_value(r, i, "schedule_id"), cat_value(r, i, "runid"),
						   cat_value(r, i, "start_time")));
		cat_add_event_alert(deployment_id, 0, "DborchScheduledBackupFailed", "warning",
							psprintf("{\"schedule_id\": \"%s\"}", cat_value(r, i, "schedule_id")),
							summary, message);
	}
}

/*
 * Run one housekeeping chore in a subtransaction of its own, so that one
 * that fails (a row a user's open transaction holds, after lock_timeout)
 * does not keep the others from running; it runs again next round.
 * Returns the milliseconds until it is due again, -1 when it says nothing.
 */
static int64
run_chore(const char *name, void (*chore) (void *due))
{
	int64		due = -1;
	char	   *error = cat_try(chore, &due);

	if (error != NULL)
	{
		ereport(LOG, (errmsg("dborch launcher: %s failed, again in %d ms: %s",
							 name, ERROR_RETRY_MS, error)));
		due = ERROR_RETRY_MS;
	}
	return due;
}

/*
 * One round of the launcher's work.  Returns the milliseconds until the
 * next due moment, or -1 to wait for the latch only.
 */
static long
launcher_round(bool first_round, int64 *next_orphan_check)
{
	static int64 next_retention = 0;
	int64		due;
	int64		alerts_due;
	int64		tenants_due;
	int64		autoscale_due;
	int64		schedules_due;
	bool		foreign_jobs;

	cat_begin();
	if (!dborch_extension_ready(false))
	{
		/* the commit of CREATE EXTENSION wakes us (dborch._wake_workers) */
		cat_commit();
		return -1;
	}
	reap_workers();
	if (first_round || dborch_now_ms() >= *next_orphan_check)
	{
		foreign_jobs = requeue_orphans();
		*next_orphan_check = foreign_jobs ? dborch_now_ms() + ORPHAN_CHECK_MS : PG_INT64_MAX;
	}
	if (first_round)
	{
		adopt_instances();
		/* the certificate authority, made at the first start (src/network/tls.c) */
		(void) tls_ca_file();
	}
	cat_commit();

	/* jobs first: a new worker initializes while the housekeeping runs */
	start_due_jobs();

	cat_begin();
	(void) run_chore("expire", expire_deployments);
	(void) run_chore("warm pool", refill_warm_pool);
	(void) run_chore("alerts", deliver_due_alerts);
	schedules_due = run_chore("schedules", watch_schedules);
	tenants_due = run_chore("tenant usage", measure_tenants);
	autoscale_due = run_chore("autoscale", autoscale);
	if (dborch_now_ms() >= next_retention)
	{
		cat_expire_probes();
		next_retention = dborch_now_ms() + RETENTION_EVERY_MS;
	}
	due = free_capacity() > 0 ? cat_next_due_ms() : -1;
	alerts_due = dborch_alert_webhook_url[0] != '\0' ? cat_next_alert_due_ms() : -1;
	cat_commit();

	if (alerts_due >= 0)
		due = (due < 0) ? alerts_due : Min(due, alerts_due);
	if (tenants_due >= 0)
		due = (due < 0) ? tenants_due : Min(due, tenants_due);
	if (autoscale_due >= 0)
		due = (due < 0) ? autoscale_due : Min(due, autoscale_due);
	if (schedules_due >= 0)
		due = (due < 0) ? schedules_due : Min(due, schedules_due);
	due = (due < 0) ? Max(next_retention - dborch_now_ms(), 0)
		: Min(due, Max(next_retention - dborch_now_ms(), 0));

	if (*next_orphan_check != PG_INT64_MAX)
	{
		int64		orphan_due = Max(*next_orphan_check - dborch_now_ms(), 0);

		due = (due < 0) ? orphan_due : Min(due, orphan_due);
	}
	return (long) Min(due, INT_MAX);
}

void
dborch_launcher_main(Datum arg)
{
	MemoryContext round_mcxt;
	bool		first_round = true;
	int64		next_orphan_check = 0;

	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(dborch_database, NULL, 0);
	dborch_background_session();

	SpinLockAcquire(&dborch_shared->mutex);
	dborch_shared->launcher_pid = MyProcPid;
	dborch_shared->launcher_latch = MyLatch;
	SpinLockRelease(&dborch_shared->mutex);
	before_shmem_exit(launcher_detach, (Datum) 0);

	round_mcxt = AllocSetContextCreate(TopMemoryContext, "dborch launcher round",
									   ALLOCSET_DEFAULT_SIZES);
	ereport(LOG, (errmsg("dborch launcher started in database \"%s\"", dborch_database)));

	while (!ShutdownRequestPending)
	{
		long		timeout;
		int			events;

		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		MemoryContextReset(round_mcxt);
		MemoryContextSwitchTo(round_mcxt);
		pgstat_report_activity(STATE_RUNNING, "dborch launcher round");
		PG_TRY();
		{
			timeout = launcher_round(first_round, &next_orphan_check);
			first_round = false;
		}
		PG_CATCH();
		{
			MemoryContextSwitchTo(round_mcxt);
			EmitErrorReport();
			FlushErrorState();
			AbortCurrentTransaction();
			timeout = ERROR_RETRY_MS;
		}
		PG_END_TRY();
		pgstat_report_activity(STATE_IDLE, NULL);

		events = WL_LATCH_SET | WL_EXIT_ON_PM_DEATH | (timeout >= 0 ? WL_TIMEOUT : 0);
		(void) WaitLatch(MyLatch, events, timeout, DBORCH_WAIT_EVENT);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	proc_exit(0);
}
