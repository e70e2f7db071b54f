/*
 * job_destroy.c
 *		The destroy job: stop the processes, remove the instance directories,
 *		release ports and credentials, and mark the deployment destroyed.
 *		The deployment row and its events stay.  A failed deploy's undo uses
 *		the same three steps.  The same job drops the kept backups of a
 *		deployment destroyed before (its other stages find nothing to do).
 */
#include "postgres.h"

#include "nodes/pg_list.h"

#include "backup.h"
#include "dborch.h"
#include "engine.h"
#include "job.h"

/*
 * Stop every live instance and wait until its process has exited.  With
 * seal, a PostgreSQL deployment whose backups stay archives its last WAL
 * first and records up to when a point-in-time restore of it can reach
 * (pgbr_seal_archive()).
 */
void
job_stop_instances(int64 deployment_id, bool seal)
{
	ListCell   *lc;

	if (seal)
		cat_set_recoverable_until(deployment_id, pgbr_seal_archive(deployment_id));
	foreach(lc, cat_live_instances(deployment_id))
	{
		Instance   *inst = lfirst(lc);

		engine_get(inst->engine)->stop(inst);
		cat_set_instance_status(inst->id, "stopped", 0);
	}
}

/* Remove the instances' directories and any warm-pool entry they claimed. */
static void
remove_data(int64 deployment_id)
{
	ListCell   *lc;

	foreach(lc, cat_live_instances(deployment_id))
	{
		Instance   *inst = lfirst(lc);
		char	   *pool_directory;

		if (cat_pool_claimed_by(inst->id, &pool_directory))
		{
			dborch_remove_tree(pool_directory);
			cat_pool_delete_claimed(inst->id);
		}
		dborch_remove_tree(inst->directory);
	}
}

/*
 * Free the ports (destroyed instances leave the unique index) and secrets,
 * tenants' too (the tenants are dropped); the backup passphrase stays
 * while backups do.
 */
static void
release(int64 deployment_id)
{
	ListCell   *lc;

	foreach(lc, cat_live_instances(deployment_id))
		cat_set_instance_status(((Instance *) lfirst(lc))->id, "destroyed", -1);
	cat_drop_tenants_of(deployment_id);
	cat_delete_secrets(deployment_id, true);
}

void
job_remove_instances(int64 deployment_id)
{
	job_stop_instances(deployment_id, false);
	remove_data(deployment_id);
	release(deployment_id);
}

static void
stage_stop(JobContext *ctx)
{
	job_stop_instances(ctx->deployment_id, !cat_json_bool(ctx->args, "drop_backups"));
}

static void
stage_remove_data(JobContext *ctx)
{
	remove_data(ctx->deployment_id);
}

static void
stage_release(JobContext *ctx)
{
	release(ctx->deployment_id);
}

/* Only when asked: the backups, their files and their passphrase. */
static void
stage_drop_backups(JobContext *ctx)
{
	Deployment *d;

	if (!cat_json_bool(ctx->args, "drop_backups"))
		return;
	d = cat_deployment(ctx->deployment_id);
	dborch_remove_tree(backup_directory(d->name, d->id));
	cat_expire_all_backups(d->id);
	cat_delete_secrets(d->id, false);
}

/* A deployment destroyed before only had its kept backups dropped. */
static void
stage_finalize(JobContext *ctx)
{
	if (cat_set_deployment_status(ctx->deployment_id, "destroyed", "destroying", NULL))
		cat_event(DBORCH_ACTOR, ctx->deployment_id, ctx->job_id, "destroyed",
				  "processes stopped, data removed, ports released", NULL);
	else
		cat_event(DBORCH_ACTOR, ctx->deployment_id, ctx->job_id, "backups_dropped",
				  "the kept backups of the destroyed deployment are dropped", NULL);
}

/* A destroy that gave up: the deployment is failed and can be destroyed again. */
static void
undo_destroy(JobContext *ctx, const char *reason)
{
	cat_set_deployment_status(ctx->deployment_id, "failed", "destroying",
							  psprintf("destroy failed: %s", reason));
}

static const JobStage destroy_stages[] = {
	{"stop", stage_stop},
	{"remove_data", stage_remove_data},
	{"release", stage_release},
	{"drop_backups", stage_drop_backups},
	{"finalize", stage_finalize},
};

const JobKind job_kind_destroy = {
	.name = "destroy",
	.stages = destroy_stages,
	.nstages = lengthof(destroy_stages),
	.undo = undo_destroy,
};
