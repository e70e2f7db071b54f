/*
 * job.h
 *		A job kind is a list of named stages.  The job worker records the
 *		stage reached in its own committed transaction around every stage,
 *		so after a crash a job resumes where it was; each stage is idempotent.
 */
#ifndef DBORCH_JOB_H
#define DBORCH_JOB_H

#include "catalog.h"

/* What a running job knows about itself; stages reload everything else. */
typedef struct JobContext
{
	int64		job_id;
	int64		deployment_id;	/* 0 for jobs without a deployment */
	const char *kind_name;
	int			attempt;
	char	   *args;			/* jobs.args as text */
} JobContext;

typedef void (*JobStageFn) (JobContext *ctx);

typedef struct JobStage
{
	const char *name;
	JobStageFn	run;
} JobStage;

typedef struct JobKind
{
	const char *name;
	const JobStage *stages;
	int			nstages;

	/*
	 * Remove what the job made after its last attempt failed or it was
	 * cancelled, and record the outcome on the deployment.  Runs in its own
	 * transaction.  reason is the error or "cancelled".
	 */
	void		(*undo) (JobContext *ctx, const char *reason);

	/* false: a failed attempt is final (a verification is itself a check) */
	bool		no_retry;
} JobKind;

extern const JobKind job_kind_deploy;
extern const JobKind job_kind_destroy;
extern const JobKind job_kind_warm_pool;
extern const JobKind job_kind_recover;
extern const JobKind job_kind_stop;
extern const JobKind job_kind_start;
extern const JobKind job_kind_deliver_alerts;
extern const JobKind job_kind_backup;
extern const JobKind job_kind_verify;
extern const JobKind job_kind_restore;
extern const JobKind job_kind_restore_in_place;
extern const JobKind job_kind_tenants;
extern const JobKind job_kind_tenant_usage;
extern const JobKind job_kind_move_tenant;
extern const JobKind job_kind_scale;
extern const JobKind job_kind_failover;
extern const JobKind job_kind_upgrade;

/*
 * Commit what a stage did so far, inside the stage (which is idempotent):
 * for steps others must see before the next one (the prober before a
 * restart).
 */
extern void job_commit_progress(void);

/* In an undo: the job was cancelled before its first stage (nothing done). */
extern bool job_never_started(JobContext *ctx);

/*
 * Run fn(ctx, arg) in a subtransaction of the current transaction: an
 * error in it is rolled back alone and its message returned, and the
 * caller goes on; NULL when fn succeeded.
 */
extern char *job_try(void (*fn) (JobContext *ctx, void *arg), JobContext *ctx, void *arg);

/* job_upgrade.c: an upgrade job for a deployment an earlier dborch made */
extern void job_queue_upgrade_if_needed(int64 deployment_id, const char *owner);

/* job_destroy.c: stopping (stop, destroy) and removing (failed deploy) instances */
extern void job_stop_instances(int64 deployment_id, bool seal);
extern void job_remove_instances(int64 deployment_id);

/* Stages of the deploy job, reused by the restore jobs (job_restore.c). */
extern void deploy_stage_quota_check(JobContext *ctx);
extern void deploy_stage_node_selection(JobContext *ctx);
extern void deploy_stage_prepare(JobContext *ctx);
extern void deploy_stage_network(JobContext *ctx);
extern void deploy_stage_security(JobContext *ctx);
extern void deploy_stage_start(JobContext *ctx);
extern void deploy_stage_register(JobContext *ctx);
extern void deploy_stage_health_validation(JobContext *ctx);
extern void deploy_stage_logins(JobContext *ctx);
extern void deploy_stage_finalize(JobContext *ctx);
extern void undo_deploy(JobContext *ctx, const char *reason);
extern Instance *load_instance(JobContext *ctx);

#endif							/* DBORCH_JOB_H */
