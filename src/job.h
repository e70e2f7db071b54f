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
} JobKind;

extern const JobKind job_kind_deploy;
extern const JobKind job_kind_destroy;
extern const JobKind job_kind_warm_pool;
extern const JobKind job_kind_recover;
extern const JobKind job_kind_stop;
extern const JobKind job_kind_start;
extern const JobKind job_kind_deliver_alerts;

/* job_deploy.c and job_destroy.c share the teardown of instances */
extern void job_remove_instances(int64 deployment_id);

#endif							/* DBORCH_JOB_H */
