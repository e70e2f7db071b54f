/*
 * job_power.c
 *		The stop and start jobs: an operator stops a deployment on purpose
 *		(the prober no longer watches it: no alert, no restart) and starts it
 *		again.
 */
#include "postgres.h"

#include "nodes/pg_list.h"

#include "dborch.h"
#include "engine.h"
#include "job.h"

static void
stage_stop(JobContext *ctx)
{
	job_stop_instances(ctx->deployment_id, true);
}

static void
stage_stopped(JobContext *ctx)
{
	cat_set_deployment_status(ctx->deployment_id, "stopped", "stopping", NULL);
	cat_event(DBORCH_ACTOR, ctx->deployment_id, ctx->job_id, "stopped",
			  "deployment stopped on request", NULL);
}

static void
stage_start(JobContext *ctx)
{
	ListCell   *lc;

	foreach(lc, cat_live_instances(ctx->deployment_id))
	{
		Instance   *inst = lfirst(lc);

		/* logins as the catalog has them now (a tenant made while it was stopped) */
		engine_get(inst->engine)->configure_security(inst);
		cat_set_instance_status(inst->id, "starting", engine_get(inst->engine)->start(inst));
	}
}

static void
stage_health_validation(JobContext *ctx)
{
	ListCell   *lc;

	foreach(lc, cat_live_instances(ctx->deployment_id))
	{
		Instance   *inst = lfirst(lc);

		engine_get(inst->engine)->check_ready(inst, dborch_start_timeout_ms);
		cat_set_instance_status(inst->id, "running", -1);
	}
}

static void
stage_started(JobContext *ctx)
{
	cat_set_deployment_status(ctx->deployment_id, "ready", "starting", NULL);
	job_queue_upgrade_if_needed(ctx->deployment_id, cat_deployment(ctx->deployment_id)->owner);
	cat_event(DBORCH_ACTOR, ctx->deployment_id, ctx->job_id, "started",
			  "deployment started on request", NULL);
}

static void
undo_power(JobContext *ctx, const char *reason)
{
	/* cancelled while queued: the deployment is as it was */
	if (job_never_started(ctx))
	{
		if (cat_set_deployment_status(ctx->deployment_id, "ready", "stopping", NULL))
			cat_refresh_deployment_status(ctx->deployment_id);
		cat_set_deployment_status(ctx->deployment_id, "stopped", "starting", NULL);
		return;
	}
	cat_set_deployment_status(ctx->deployment_id, "failed", "stopping,starting", reason);
}

static const JobStage stop_stages[] = {
	{"stop", stage_stop},
	{"finalize", stage_stopped},
};

static const JobStage start_stages[] = {
	{"start", stage_start},
	{"health_validation", stage_health_validation},
	{"finalize", stage_started},
};

const JobKind job_kind_stop = {
	.name = "stop",
	.stages = stop_stages,
	.nstages = lengthof(stop_stages),
	.undo = undo_power,
};

const JobKind job_kind_start = {
	.name = "start",
	.stages = start_stages,
	.nstages = lengthof(start_stages),
	.undo = undo_power,
};
