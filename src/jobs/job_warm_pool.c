/*
 * job_warm_pool.c
 *		The warm_pool job: initdb one pre-initialized PostgreSQL data
 *		directory (with its own bootstrap password, so every entry has its
 *		own system identifier and credentials), then mark it ready.  The
 *		launcher reserves the pool row and queues this job.
 */
#include "postgres.h"

#include "dborch.h"
#include "engine.h"
#include "job.h"

static int64
pool_id(JobContext *ctx)
{
	return cat_json_int64(ctx->args, "pool_id");
}

static void
stage_initdb(JobContext *ctx)
{
	char	   *directory;
	char	   *password;

	if (!cat_pool_entry(pool_id(ctx), &directory, &password))
		return;					/* the entry is gone: nothing to build */
	dborch_mkdir(directory, 0700);
	engine_postgres_initdb(psprintf("%s/data", directory), password,
						   psprintf("%s/initdb.log", directory));
}

static void
stage_ready(JobContext *ctx)
{
	cat_pool_set_ready(pool_id(ctx));
}

static void
undo_warm_pool(JobContext *ctx, const char *reason)
{
	char	   *directory;
	char	   *password;

	if (cat_pool_entry(pool_id(ctx), &directory, &password))
	{
		dborch_remove_tree(directory);
		cat_pool_delete(pool_id(ctx));
	}
}

static const JobStage warm_pool_stages[] = {
	{"initdb", stage_initdb},
	{"ready", stage_ready},
};

const JobKind job_kind_warm_pool = {
	.name = "warm_pool",
	.stages = warm_pool_stages,
	.nstages = lengthof(warm_pool_stages),
	.undo = undo_warm_pool,
};
