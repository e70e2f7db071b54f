/*
 * job_deploy.c
 *		The deploy job: quota check, node selection, prepare (port, directory
 *		0700, credentials), provision, network, security, start, register,
 *		health validation, finalize.  Each stage reloads what it needs from
 *		the catalog, so it can run again after a crash.
 */
#include "postgres.h"

#include <dirent.h>

#include "storage/fd.h"

#include "dborch.h"
#include "engine.h"
#include "job.h"

/* The only node of the local provider: processes on this host. */
#define LOCAL_NODE "local"

static Deployment *
load_deployment(JobContext *ctx)
{
	Deployment *d = cat_deployment(ctx->deployment_id);

	if (d == NULL)
		elog(ERROR, "dborch: deployment " INT64_FORMAT " not found", ctx->deployment_id);
	return d;
}

Instance *
load_instance(JobContext *ctx)
{
	Instance   *inst = cat_primary_instance(ctx->deployment_id);

	if (inst == NULL)
		elog(ERROR, "dborch: deployment " INT64_FORMAT " has no instance yet",
			 ctx->deployment_id);
	return inst;
}

/* The owner's quotas still allow this deployment (checked again by deploy()). */
void
deploy_stage_quota_check(JobContext *ctx)
{
	Deployment *d = load_deployment(ctx);
	int64		count,
				memory,
				max_count,
				max_memory;

	if (!cat_set_deployment_status(d->id, "provisioning", "pending,provisioning,failed", NULL))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("deployment \"%s\" is %s", d->name, d->status)));
	cat_lock_owner_quota(d->owner, true, &count, &memory, &max_count, &max_memory);
	if (count > max_count || memory > max_memory)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("quota of role \"%s\" exceeded", d->owner),
				 errdetail("It would hold " INT64_FORMAT " deployments (limit " INT64_FORMAT
						   ") with " INT64_FORMAT " MB of memory (limit " INT64_FORMAT " MB).",
						   count, max_count, memory / (1024 * 1024), max_memory / (1024 * 1024))));
}

void
deploy_stage_node_selection(JobContext *ctx)
{
	cat_set_deployment_node(ctx->deployment_id, LOCAL_NODE);
}

/* Is path the directory of one of instances (a List of Instance)? */
static bool
known_directory(List *instances, const char *path)
{
	ListCell   *lc;

	foreach(lc, instances)
		if (strcmp(((Instance *) lfirst(lc))->directory, path) == 0)
			return true;
	return false;
}

/*
 * A crash after an earlier attempt's prepare made its directory, but before
 * its instance row committed, leaves <name>-<id> behind with an id the
 * catalog never knew.  Names are unique among live deployments and destroy
 * removes its directories, so any such directory that is no live instance's
 * of this deployment (a retried deploy of a deployment whose replicas still
 * run keeps theirs) is that leftover.
 */
static void
remove_unknown_directories(Deployment *d, Instance *inst)
{
	char	   *root = psprintf("%s/instances", dborch_data_root());
	char	   *prefix = psprintf("%s-", d->name);
	List	   *live = lappend(cat_live_instances(d->id), inst);
	DIR		   *dir = AllocateDir(root);
	struct dirent *de;

	while (dir != NULL && (de = ReadDir(dir, root)) != NULL)
	{
		char	   *path = psprintf("%s/%s", root, de->d_name);

		if (strncmp(de->d_name, prefix, strlen(prefix)) == 0 &&
			strspn(de->d_name + strlen(prefix), "0123456789") == strlen(de->d_name + strlen(prefix)) &&
			!known_directory(live, path))
		{
			ereport(LOG, (errmsg("dborch: removing \"%s\", left by an interrupted deploy", path)));
			dborch_remove_tree(path);
		}
	}
	if (dir != NULL)
		FreeDir(dir);
}

/*
 * The instance row (with its port and directory), the directory itself,
 * and the logins (see catalog.h): dborch's own password, a warm-pool
 * entry's when a PostgreSQL deployment takes one, else a new one; and the
 * owner's, always new.
 */
void
deploy_stage_prepare(JobContext *ctx)
{
	Deployment *d = load_deployment(ctx);
	Instance   *inst = cat_primary_instance(d->id);

	if (inst == NULL)
		inst = cat_create_instance(d->id, "primary", dborch_listen_address,
								   dborch_port_range_low, dborch_port_range_high);
	else if (engine_get(d->engine)->running_pid(inst) == 0 &&
			 dborch_port_in_use(inst->host, inst->port))
	{
		/* an earlier attempt failed to start: someone else took the port */
		ereport(LOG, (errmsg("dborch: port %d of deployment \"%s\" was taken by another process; moving",
							 inst->port, d->name)));
		inst = cat_move_instance_port(inst, dborch_port_range_low, dborch_port_range_high);
	}
	remove_unknown_directories(d, inst);
	dborch_mkdir(inst->directory, 0700);

	if (cat_secret(d->id, SECRET_DBORCH) == NULL)
	{
		char	   *pool_directory;
		char	   *password;

		/* a restore brings its own data: only a deploy takes a pool entry */
		if (strcmp(ctx->kind_name, "deploy") == 0 && strcmp(d->engine, "postgres") == 0 &&
			cat_pool_claim(inst->id, d->version, &pool_directory, &password))
		{
			cat_event(DBORCH_ACTOR, d->id, ctx->job_id, "warm_pool",
					  "took a pre-initialized data directory from the warm pool", NULL);
			dborch_wake_launcher_at_commit();	/* to refill the pool */
		}
		else
			password = dborch_random_password(32);
		cat_set_secret(d->id, SECRET_DBORCH, password);
	}
	if (cat_secret(d->id, SECRET_OWNER) == NULL)
		cat_set_secret(d->id, SECRET_OWNER, dborch_random_password(32));
}

static void
deploy_stage_provision(JobContext *ctx)
{
	Instance   *inst = load_instance(ctx);
	char	   *pool_directory = NULL;

	(void) cat_pool_claimed_by(inst->id, &pool_directory);
	engine_get(inst->engine)->provision(inst, engine_dborch_password(ctx->deployment_id),
										pool_directory);
	if (pool_directory != NULL)
	{
		dborch_remove_tree(pool_directory);
		cat_pool_delete_claimed(inst->id);
	}
}

void
deploy_stage_network(JobContext *ctx)
{
	Instance   *inst = load_instance(ctx);

	engine_get(inst->engine)->configure_network(inst);
}

void
deploy_stage_security(JobContext *ctx)
{
	Instance   *inst = load_instance(ctx);

	engine_get(inst->engine)->configure_security(inst);
}

void
deploy_stage_start(JobContext *ctx)
{
	Instance   *inst = load_instance(ctx);
	pid_t		pid = engine_get(inst->engine)->start(inst);

	cat_set_instance_status(inst->id, "starting", pid);
}

/* The instance is recorded as running with the pid its server reports. */
void
deploy_stage_register(JobContext *ctx)
{
	Instance   *inst = load_instance(ctx);
	pid_t		pid = engine_get(inst->engine)->running_pid(inst);

	if (pid == 0)
		ereport(ERROR,
				(errmsg("the %s server of deployment \"%s\" is not running",
						inst->engine, inst->deployment_name)));
	cat_set_instance_status(inst->id, "running", pid);
}

void
deploy_stage_health_validation(JobContext *ctx)
{
	Instance   *inst = load_instance(ctx);

	engine_get(inst->engine)->check_ready(inst, dborch_start_timeout_ms);
}

/*
 * Logins that live in the data (PostgreSQL's roles: the owner's role) are
 * made once the server runs; Redis had its aclfile before it started.
 */
void
deploy_stage_logins(JobContext *ctx)
{
	Instance   *inst = load_instance(ctx);
	const EngineOps *engine = engine_get(inst->engine);

	if (engine->logins_in_data)
		engine->apply_logins(inst);
}

void
deploy_stage_finalize(JobContext *ctx)
{
	Instance   *inst = load_instance(ctx);
	Deployment *d = cat_deployment(ctx->deployment_id);
	int64		replicas = cat_json_int64(d->spec, "replicas");

	if (!cat_set_deployment_status(ctx->deployment_id, "ready", "provisioning", NULL))
		return;
	cat_event(DBORCH_ACTOR, ctx->deployment_id, ctx->job_id, "ready",
			  psprintf("%s deployment ready on %s:%d", inst->engine, inst->host, inst->port),
			  psprintf("{\"host\": \"%s\", \"port\": %d, \"pid\": %d}",
					   inst->host, inst->port, inst->pid));
	/* the replicas option: a scale job, after this one (dborch.wait() waits for it too) */
	if (replicas > 0)
	{
		cat_queue_job("scale", ctx->deployment_id, d->owner,
					  psprintf("{\"replicas\": " INT64_FORMAT "}", replicas));
		dborch_wake_launcher_at_commit();
	}
}

/* Remove everything the deploy made; the deployment is failed with the reason. */
void
undo_deploy(JobContext *ctx, const char *reason)
{
	job_remove_instances(ctx->deployment_id);
	cat_set_deployment_status(ctx->deployment_id, "failed", "pending,provisioning,failed",
							  reason);
}

static const JobStage deploy_stages[] = {
	{"quota_check", deploy_stage_quota_check},
	{"node_selection", deploy_stage_node_selection},
	{"prepare", deploy_stage_prepare},
	{"provision", deploy_stage_provision},
	{"network", deploy_stage_network},
	{"security", deploy_stage_security},
	{"start", deploy_stage_start},
	{"register", deploy_stage_register},
	{"health_validation", deploy_stage_health_validation},
	{"logins", deploy_stage_logins},
	{"finalize", deploy_stage_finalize},
};

const JobKind job_kind_deploy = {
	.name = "deploy",
	.stages = deploy_stages,
	.nstages = lengthof(deploy_stages),
	.undo = undo_deploy,
};
