/*
 * job_worker.c
 *		The dynamic background workers that run jobs.  The launcher assigns
 *		a job to a worker's slot in shared memory and sets its latch; the
 *		worker takes the job's advisory lock, checks the job is still its
 *		own, and runs the kind's stages from the one recorded, each stage
 *		recorded in its own committed transaction.  A failed attempt is
 *		retried with capped exponential backoff and jitter; after the last
 *		attempt (or on cancel) the kind's undo removes what the job made.
 *		Then the worker waits for the next job (a started worker costs about
 *		10 ms, and its prepared catalog plans stay warm); it exits after a
 *		minute without one.
 */
#include "postgres.h"

#include <signal.h>

#include "access/xact.h"
#include "common/pg_prng.h"
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
#include "utils/resowner.h"

#include "backup.h"
#include "catalog.h"
#include "dborch.h"
#include "job.h"

/* An idle job worker exits after this long without a job. */
#define JOB_WORKER_IDLE_MS 60000

static const JobKind *const job_kinds[] = {
	&job_kind_deploy, &job_kind_destroy, &job_kind_warm_pool, &job_kind_recover,
	&job_kind_stop, &job_kind_start, &job_kind_deliver_alerts, &job_kind_backup,
	&job_kind_verify, &job_kind_restore, &job_kind_restore_in_place, &job_kind_tenants,
	&job_kind_tenant_usage, &job_kind_move_tenant, &job_kind_scale, &job_kind_failover,
	&job_kind_upgrade
};

/* Errors that another attempt cannot fix. */
static bool
error_is_permanent(int sqlerrcode)
{
	return sqlerrcode == ERRCODE_CONFIGURATION_LIMIT_EXCEEDED ||
		sqlerrcode == ERRCODE_INVALID_PARAMETER_VALUE ||
		sqlerrcode == ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE ||
		sqlerrcode == ERRCODE_DATA_CORRUPTED;
}

/* Delay before attempt n+1: 1 s doubling to 30 s, with +-25% jitter. */
static int
retry_delay_ms(int attempts)
{
	int			base = 1000 << Min(Max(attempts - 1, 0), 5);

	base = Min(base, 30000);
	return (int) (base * (0.75 + 0.5 * pg_prng_double(&pg_global_prng_state)));
}

static void
process_reload(void)
{
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
}

/*
 * Testing aid: while dborch.pause_at_stage names this stage ("kind:stage"
 * pauses before its side effect, "kind:stage:after" after it, before it is
 * recorded), wait.  Tests kill the worker here.
 */
static void
pause_if_asked(JobContext *ctx, const char *stage, bool after)
{
	char	   *want = psprintf("%s:%s%s", ctx->kind_name, stage, after ? ":after" : "");

	for (;;)
	{
		/*
		 * The file itself every second, not only on SIGHUP: a reload that
		 * ends the pause before this worker has set its SIGHUP handler is
		 * not seen otherwise.  (TAP 011 once waited here for ever beside a
		 * CPU hog after such a reload; that the lost SIGHUP was the cause is
		 * inferred from the log's timing, not observed.)
		 */
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
		if (dborch_pause_at_stage == NULL || strcmp(dborch_pause_at_stage, want) != 0)
			break;
		pgstat_report_activity(STATE_RUNNING, psprintf("paused at %s", want));
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 1000, DBORCH_WAIT_EVENT);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	pfree(want);
}

/* job_try()'s call, through cat_try(). */
typedef struct JobTryCall
{
	void		(*fn) (JobContext *ctx, void *arg);
	JobContext *ctx;
	void	   *arg;
} JobTryCall;

static void
job_try_call(void *arg)
{
	JobTryCall *call = arg;

	call->fn(call->ctx, call->arg);
}

char *
job_try(void (*fn) (JobContext *ctx, void *arg), JobContext *ctx, void *arg)
{
	JobTryCall	call = {fn, ctx, arg};

	return cat_try(job_try_call, &call);
}

bool
job_never_started(JobContext *ctx)
{
	return cat_job(ctx->job_id)->stage == NULL;
}

void
job_commit_progress(void)
{
	cat_commit();
	cat_begin();
}

/* Record entry into stage index i; false if the job was asked to stop. */
static bool
enter_stage(const JobKind *kind, JobContext *ctx, int i)
{
	const char *stage = kind->stages[i].name;

	if (!cat_job_enter_stage(ctx->job_id, stage))
		return false;
	cat_event(DBORCH_ACTOR, ctx->deployment_id, ctx->job_id, "stage",
			  psprintf("%s: stage %d of %d, %s", kind->name, i + 1, kind->nstages, stage),
			  psprintf("{\"stage\": \"%s\", \"attempt\": %d}", stage, ctx->attempt));
	pgstat_report_activity(STATE_RUNNING, psprintf("%s job " INT64_FORMAT ": %s",
												   kind->name, ctx->job_id, stage));
	return true;
}

/* A kind's undo, and why it runs, in the shape job_try() calls */
typedef struct UndoCall
{
	const JobKind *kind;
	const char *reason;
} UndoCall;

static void
run_undo(JobContext *ctx, void *arg)
{
	UndoCall   *call = arg;

	call->kind->undo(ctx, call->reason);
}

/*
 * Run the undo of a job and record its final state, in one transaction: a
 * worker that dies on the way leaves neither, and the job is run again.  An
 * error of the undo rolls back only what the undo wrote, and is recorded.
 */
static void
finish_unsuccessfully(const JobKind *kind, JobContext *ctx, const char *state,
					  const char *reason)
{
	UndoCall	call = {kind, reason};
	char	   *undo_error;

	cat_begin();
	undo_error = job_try(run_undo, ctx, &call);
	cat_job_finish(ctx->job_id, state,
				   undo_error ? psprintf("%s; cleanup failed: %s", reason, undo_error) : reason);
	cat_event(DBORCH_ACTOR, ctx->deployment_id, ctx->job_id, state,
			  strcmp(reason, state) == 0 ? psprintf("%s job %s", kind->name, state)
			  : psprintf("%s job %s: %s", kind->name, state, reason),
			  psprintf("{\"attempts\": %d, \"cleanup_failed\": %s}", ctx->attempt,
					   undo_error ? "true" : "false"));
	cat_commit();
}

/* Why a job stops: who cancelled it (cancel_job() records it as the job's error). */
static char *
cancel_reason(JobContext *ctx)
{
	Job		   *job;

	cat_begin();
	job = cat_job(ctx->job_id);
	cat_commit();
	return job->error ? job->error : "cancelled";
}

/* Run the stages of a job from the recorded one to the end. */
static void
run_stages(const JobKind *kind, JobContext *ctx, const char *resume_stage)
{
	int			first = 0;
	int			i;

	for (i = 0; resume_stage != NULL && i < kind->nstages; i++)
		if (strcmp(kind->stages[i].name, resume_stage) == 0)
			first = i;

	cat_begin();
	if (!enter_stage(kind, ctx, first))
	{
		cat_commit();
		finish_unsuccessfully(kind, ctx, "cancelled", cancel_reason(ctx));
		return;
	}
	cat_commit();

	for (i = first; i < kind->nstages; i++)
	{
		bool		go_on = true;

		pause_if_asked(ctx, kind->stages[i].name, false);
		cat_begin();
		kind->stages[i].run(ctx);
		pause_if_asked(ctx, kind->stages[i].name, true);
		/* stage i is done and stage i+1 begins in the same commit */
		if (i + 1 < kind->nstages)
			go_on = enter_stage(kind, ctx, i + 1);
		else
			cat_job_finish(ctx->job_id, "succeeded", NULL);
		cat_commit();
		if (!go_on)
		{
			finish_unsuccessfully(kind, ctx, "cancelled", cancel_reason(ctx));
			return;
		}
	}
}

/* A failed attempt: retry later, or give up and undo. */
static void
handle_failure(const JobKind *kind, JobContext *ctx, ErrorData *edata)
{
	char	   *reason = edata->detail
		? psprintf("%s (%s)", edata->message, edata->detail)
		: pstrdup(edata->message);
	Job		   *job;

	cat_begin();
	job = cat_job(ctx->job_id);
	if (!kind->no_retry && !error_is_permanent(edata->sqlerrcode) &&
		job->attempts < job->max_attempts)
	{
		int			delay = retry_delay_ms(job->attempts);

		cat_job_retry(ctx->job_id, reason, delay);
		cat_event(DBORCH_ACTOR, ctx->deployment_id, ctx->job_id, "retry",
				  psprintf("%s attempt %d of %d failed, next in %d ms: %s",
						   kind->name, job->attempts, job->max_attempts, delay, edata->message),
				  psprintf("{\"attempt\": %d, \"delay_ms\": %d}", job->attempts, delay));
		cat_commit();
		return;
	}
	cat_commit();
	finish_unsuccessfully(kind, ctx, "failed", reason);
}

/*
 * Run one job assigned to this worker.  The job's session advisory lock
 * (held while it runs) and the attempt number make sure only one worker
 * ever runs a job.
 */
static void
run_job(int64 job_id, int attempt, MemoryContext job_mcxt)
{
	const JobKind *kind = NULL;
	JobContext *ctx;
	Job		   *job;
	bool		mine;
	int			i;

	cat_begin();
	mine = dborch_extension_ready(false) &&
		cat_try_session_lock(DBORCH_LOCK_JOB, job_id);
	if (mine && !cat_job_mine(job_id, attempt, MyProcPid))
	{
		cat_session_unlock(DBORCH_LOCK_JOB, job_id);
		mine = false;
	}
	job = mine ? cat_job(job_id) : NULL;
	cat_commit();
	if (!mine)
		return;

	for (i = 0; i < lengthof(job_kinds); i++)
		if (strcmp(job_kinds[i]->name, job->kind) == 0)
			kind = job_kinds[i];
	if (kind == NULL)
		elog(ERROR, "dborch: unknown job kind \"%s\"", job->kind);

	ctx = palloc0(sizeof(JobContext));
	ctx->job_id = job_id;
	ctx->deployment_id = job->deployment_id;
	ctx->kind_name = kind->name;
	ctx->attempt = attempt;
	ctx->args = job->args;

	PG_TRY();
	{
		if (job->cancel_requested)
			finish_unsuccessfully(kind, ctx, "cancelled", cancel_reason(ctx));
		else if (job->attempts > job->max_attempts)
			finish_unsuccessfully(kind, ctx, "failed",
								  psprintf("gave up after %d attempts: %s", job->max_attempts,
										   job->error ? job->error : "worker exited"));
		else
			run_stages(kind, ctx, job->stage);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(job_mcxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		MemoryContextSwitchTo(job_mcxt);
		/* the error goes to the server log too: it never contains a secret */
		ereport(LOG,
				(errmsg("dborch: %s job " INT64_FORMAT " attempt %d failed: %s",
						kind->name, job_id, attempt, edata->message),
				 edata->detail ? errdetail("%s", edata->detail) : 0));
		handle_failure(kind, ctx, edata);
	}
	PG_END_TRY();

	cat_begin();
	cat_session_unlock(DBORCH_LOCK_JOB, job_id);
	cat_commit();
}

/* This worker's slot, for progress reports. */
static JobSlot *my_slot = NULL;

void
job_report_progress(uint64 done, uint64 total)
{
	if (my_slot == NULL)
		return;
	pg_atomic_write_u64(&my_slot->bytes_total, total);
	pg_atomic_write_u64(&my_slot->bytes_done, done);
}

static void
job_worker_detach(int code, Datum arg)
{
	JobSlot    *slot = &dborch_shared->job_slots[DatumGetInt32(arg)];

	SpinLockAcquire(&dborch_shared->mutex);
	if (slot->pid == MyProcPid)
	{
		slot->pid = 0;
		slot->latch = NULL;
	}
	SpinLockRelease(&dborch_shared->mutex);
	dborch_wake_launcher();
}

void
dborch_job_worker_main(Datum arg)
{
	int			slot_no = DatumGetInt32(arg);
	JobSlot    *slot = &dborch_shared->job_slots[slot_no];
	MemoryContext job_mcxt;
	int64		idle_since = dborch_now_ms();

	pqsignal(SIGTERM, die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGCHLD, SIG_DFL);	/* spawn.c waits for its children */
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(dborch_database, NULL, 0);

	SpinLockAcquire(&dborch_shared->mutex);
	slot->pid = MyProcPid;
	slot->latch = MyLatch;
	SpinLockRelease(&dborch_shared->mutex);
	before_shmem_exit(job_worker_detach, Int32GetDatum(slot_no));

	my_slot = slot;
	job_mcxt = AllocSetContextCreate(TopMemoryContext, "dborch job", ALLOCSET_DEFAULT_SIZES);

	for (;;)
	{
		int64		job_id;
		int			attempt;

		SpinLockAcquire(&dborch_shared->mutex);
		job_id = slot->job_id;
		attempt = slot->attempt;
		if (job_id == 0 && dborch_now_ms() - idle_since >= JOB_WORKER_IDLE_MS)
		{
			/* leave under the lock: the launcher assigns no job to us now */
			slot->pid = 0;
			slot->latch = NULL;
			SpinLockRelease(&dborch_shared->mutex);
			proc_exit(0);
		}
		SpinLockRelease(&dborch_shared->mutex);

		if (job_id != 0)
		{
			MemoryContextReset(job_mcxt);
			MemoryContextSwitchTo(job_mcxt);
			job_report_progress(0, 0);
			run_job(job_id, attempt, job_mcxt);
			pgstat_report_activity(STATE_IDLE, NULL);
			SpinLockAcquire(&dborch_shared->mutex);
			slot->job_id = 0;
			SpinLockRelease(&dborch_shared->mutex);
			dborch_wake_launcher();
			idle_since = dborch_now_ms();
			continue;
		}

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 JOB_WORKER_IDLE_MS, DBORCH_WAIT_EVENT);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		process_reload();
	}
}
