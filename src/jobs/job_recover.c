/*
 * job_recover.c
 *		The recover job, queued by the prober when an instance went down:
 *		restart the server (pg_ctl start, or redis-server; a server that is
 *		already back is adopted) and wait until it answers a real query.
 *		The prober then sees it answer and marks it running ("recovered").
 *		An instance stopped on purpose or being destroyed is left alone.
 *		After the last attempt the deployment is failed with the reason.
 */
#include "postgres.h"

#include "dborch.h"
#include "engine.h"
#include "job.h"
#include "replication.h"

/* The down instance this job recovers, or NULL when there is nothing to do. */
static Instance *
instance_to_recover(JobContext *ctx)
{
	Instance   *inst = cat_instance(cat_json_int64(ctx->args, "instance_id"));
	Deployment *d = cat_deployment(ctx->deployment_id);

	if (inst == NULL || d == NULL || strcmp(inst->status, "down") != 0 ||
		(strcmp(d->status, "down") != 0 && strcmp(d->status, "degraded") != 0))
		return NULL;
	return inst;
}

/*
 * The logins are written anew first (Redis' aclfile, from the catalog): a
 * tenant made or changed while the instance was down is there when it
 * answers again.
 */
static void
stage_restart(JobContext *ctx)
{
	Instance   *inst = instance_to_recover(ctx);

	if (inst == NULL)
		return;
	engine_get(inst->engine)->configure_security(inst);
	cat_set_instance_pid(inst->id, engine_get(inst->engine)->start(inst));
}

static void
stage_health_validation(JobContext *ctx)
{
	Instance   *inst = instance_to_recover(ctx);

	if (inst != NULL)
		engine_get(inst->engine)->check_ready(inst, dborch_start_timeout_ms);
}

/* Tell the prober to look now: its probe turns the instance running. */
static void
stage_finalize(JobContext *ctx)
{
	Instance   *inst = instance_to_recover(ctx);

	if (inst == NULL)
		return;
	cat_event(DBORCH_ACTOR, ctx->deployment_id, ctx->job_id, "restarted",
			  psprintf("restarted instance %s:%d", inst->host, inst->port), NULL);
	dborch_wake_prober(true);
	job_queue_upgrade_if_needed(ctx->deployment_id, cat_deployment(ctx->deployment_id)->owner);
}

/* replica_reconfigure_primary() in the shape job_try() calls */
static void
reconfigure_primary(JobContext *ctx, void *unused)
{
	replica_reconfigure_primary(ctx->deployment_id);
}

/*
 * Recovery gave up: the deployment is failed.  A synchronous primary stops
 * waiting for the replica given up on (if it has no other running one),
 * so that its commits do not wait for good; an error there is logged, and
 * the deployment is failed all the same.
 */
static void
undo_recover(JobContext *ctx, const char *reason)
{
	Instance   *inst = cat_instance(cat_json_int64(ctx->args, "instance_id"));
	char	   *error;

	cat_set_deployment_status(ctx->deployment_id, "failed", "down,degraded",
							  psprintf("recovery failed: %s", reason));
	if (inst != NULL && strcmp(inst->role, "replica") == 0 &&
		(error = job_try(reconfigure_primary, ctx, NULL)) != NULL)
		ereport(LOG, (errmsg("dborch: the primary of deployment " INT64_FORMAT " was not reconfigured: %s",
							 ctx->deployment_id, error)));
}

static const JobStage recover_stages[] = {
	{"restart", stage_restart},
	{"health_validation", stage_health_validation},
	{"finalize", stage_finalize},
};

const JobKind job_kind_recover = {
	.name = "recover",
	.stages = recover_stages,
	.nstages = lengthof(recover_stages),
	.undo = undo_recover,
};
