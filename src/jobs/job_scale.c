/*
 * job_scale.c
 *		The scale and failover jobs.
 *
 * scale (args: replicas, memory_bytes, memory, deferred): instance rows for
 * the missing replicas, then each made (replication.c), started, checked
 * and streaming; surplus replicas (the newest) stopped, their slots and
 * directories removed; memory applied: Redis live (CONFIG SET maxmemory),
 * PostgreSQL by restarting the replicas with the new shared_buffers, then a
 * switchover to the most advanced one and the old primary restarted as a
 * replica, so writes stop only for the switchover (a deployment without
 * replicas restarts in place).  The primary's configuration is rewritten
 * and reloaded once replicas are added or retired (synchronous commit).
 *
 * failover (args: instance_id, the failed primary; queued by the prober
 * dborch.failover_timeout after the primary went down): if that primary is
 * still down and a replica runs, the most advanced replica is promoted and
 * becomes the primary in the catalog, the other replicas follow it, and the
 * former primary rejoins as a replica (pg_rewind).  If it came back
 * meanwhile, nothing happens.
 */
#include "postgres.h"

#include <hiredis/hiredis.h>

#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "storage/latch.h"

#include "backup.h"
#include "dborch.h"
#include "engine.h"
#include "job.h"
#include "replication.h"
#include "spec.h"

static bool
is_role(Instance *inst, const char *role)
{
	return strcmp(inst->role, role) == 0;
}

static List *
replicas_of(int64 deployment_id)
{
	List	   *replicas = NIL;
	ListCell   *lc;

	foreach(lc, cat_live_instances(deployment_id))
		if (is_role(lfirst(lc), "replica"))
			replicas = lappend(replicas, lfirst(lc));
	return replicas;
}

static Instance *
primary_of(int64 deployment_id)
{
	Instance   *primary = cat_primary_instance(deployment_id);

	if (primary == NULL || strcmp(primary->status, "running") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the deployment has no running primary")));
	return primary;
}

/* Start an instance (configured already) and wait until a real query succeeds. */
static void
start_and_check(Instance *inst)
{
	const EngineOps *engine = engine_get(inst->engine);

	cat_set_instance_status(inst->id, "starting", engine->start(inst));
	engine->check_ready(inst, dborch_start_timeout_ms);
	cat_set_instance_status(inst->id, "running", engine->running_pid(inst));
}

/* The most advanced running replica, or NULL. */
static Instance *
most_advanced_replica(int64 deployment_id)
{
	Instance   *best = NULL;
	int64		best_position = -1;
	ListCell   *lc;

	foreach(lc, replicas_of(deployment_id))
	{
		Instance   *r = lfirst(lc);
		int64		position;

		if (strcmp(r->status, "running") != 0)
			continue;
		position = replica_position(r);
		if (position > best_position)
		{
			best = r;
			best_position = position;
		}
	}
	return best;
}

/*
 * The replica becomes the primary: promoted, roles swapped in the catalog,
 * its configuration rewritten as a primary's.  pgBackRest's configuration
 * names it first, so that its archive_command works from its first WAL
 * segment on (the old primary is down or stopped by now).
 */
static void
promote(Instance *replica, Instance *old_primary)
{
	if (strcmp(replica->engine, "postgres") == 0)
		pgbr_follow_primary(replica);
	replica_promote(replica);
	cat_set_instance_role(old_primary->id, "replica");
	cat_set_instance_role(replica->id, "primary");
	replica_reconfigure_primary(replica->deployment_id);
}

/* Every other running replica follows the current primary. */
static void
repoint_replicas(int64 deployment_id)
{
	Instance   *primary = primary_of(deployment_id);
	ListCell   *lc;

	foreach(lc, replicas_of(deployment_id))
	{
		Instance   *r = lfirst(lc);

		if (strcmp(r->status, "running") == 0)
			replica_follow(primary, r);
	}
}

/* ---------------------------------------------------------------------
 * scale
 * ---------------------------------------------------------------------
 */

/* The replicas asked for, -1 when the job does not change them. */
static int
target_replicas(JobContext *ctx)
{
	char	   *n = cat_json_text(ctx->args, "replicas");

	return n ? atoi(n) : -1;
}

/* Rows (ports, directories) for the replicas to add. */
static void
stage_plan(JobContext *ctx)
{
	int			target = target_replicas(ctx);
	int			have;

	(void) primary_of(ctx->deployment_id);
	have = list_length(replicas_of(ctx->deployment_id));
	for (; target >= 0 && have < target; have++)
		cat_create_instance(ctx->deployment_id, "replica", dborch_listen_address,
							dborch_port_range_low, dborch_port_range_high);
}

static void
stage_add_replicas(JobContext *ctx)
{
	Instance   *primary = primary_of(ctx->deployment_id);
	ListCell   *lc;

	foreach(lc, replicas_of(ctx->deployment_id))
	{
		Instance   *r = lfirst(lc);
		const EngineOps *engine = engine_get(r->engine);

		if (strcmp(r->status, "running") == 0)
			continue;
		dborch_mkdir(r->directory, 0700);
		replica_provision(primary, r);
		engine->configure_network(r);
		engine->configure_security(r);
		start_and_check(r);
		replica_wait_streaming(primary, r);
		cat_event(DBORCH_ACTOR, ctx->deployment_id, ctx->job_id, "replica_added",
				  psprintf("replica %s:%d streams from %s:%d", r->host, r->port, primary->host, primary->port),
				  psprintf("{\"instance_id\": " INT64_FORMAT "}", r->id));
		job_commit_progress();	/* each replica counts as soon as it streams */
	}
	replica_reconfigure_primary(ctx->deployment_id);
}

/*
 * The newest replicas beyond the target are marked stopped first, in a
 * stage of its own: once that commits the prober lets go of them, so
 * stopping them next raises no alarm.
 */
static void
stage_retire_replicas(JobContext *ctx)
{
	int			target = target_replicas(ctx);
	List	   *replicas = replicas_of(ctx->deployment_id);

	while (target >= 0 && list_length(replicas) > target)
	{
		cat_set_instance_status(((Instance *) llast(replicas))->id, "stopped", -1);
		replicas = list_delete_last(replicas);
	}
}

/*
 * Retired replicas go, with their slots and directories; a synchronous
 * primary stops waiting for them first.
 */
static void
stage_remove_replicas(JobContext *ctx)
{
	Instance   *primary = cat_primary_instance(ctx->deployment_id);
	ListCell   *lc;

	replica_reconfigure_primary(ctx->deployment_id);

	foreach(lc, replicas_of(ctx->deployment_id))
	{
		Instance   *r = lfirst(lc);

		if (strcmp(r->status, "stopped") != 0)
			continue;
		engine_get(r->engine)->stop(r);
		if (primary != NULL && strcmp(primary->status, "running") == 0)
			replica_drop_slot(primary, r);
		dborch_remove_tree(r->directory);
		cat_set_instance_status(r->id, "destroyed", 0);
		cat_event(DBORCH_ACTOR, ctx->deployment_id, ctx->job_id, "replica_removed",
				  psprintf("replica %s:%d removed", r->host, r->port),
				  psprintf("{\"instance_id\": " INT64_FORMAT "}", r->id));
	}
}

/*
 * Restart one instance with its (rewritten) configuration; marked stopped
 * (committed) first, so the prober does not count the restart as a failure.
 */
static void
restart(Instance *inst)
{
	cat_set_instance_status(inst->id, "stopped", -1);
	job_commit_progress();
	engine_get(inst->engine)->configure_network(inst);
	engine_get(inst->engine)->stop(inst);
	start_and_check(inst);
}

static void
stage_memory(JobContext *ctx)
{
	int64		memory = cat_json_int64(ctx->args, "memory_bytes");
	Instance   *primary;
	Instance   *successor;
	ListCell   *lc;

	if (memory <= 0)
		return;
	cat_set_deployment_memory(ctx->deployment_id, memory);
	primary = primary_of(ctx->deployment_id);
	if (strcmp(primary->engine, "redis") == 0)
	{
		foreach(lc, cat_live_instances(ctx->deployment_id))
		{
			Instance   *inst = lfirst(lc);
			redisContext *c = engine_redis_connect(inst);
			redisReply *reply = redisCommand(c, "CONFIG SET maxmemory " INT64_FORMAT, memory);

			if (reply == NULL || reply->type == REDIS_REPLY_ERROR)
				ereport(ERROR, (errmsg("CONFIG SET maxmemory failed on %s:%d", inst->host, inst->port)));
			freeReplyObject(reply);
			redisFree(c);
			engine_get(inst->engine)->configure_network(inst);
		}
		return;
	}

	/* PostgreSQL: replicas first, then a switchover, then the old primary */
	foreach(lc, replicas_of(ctx->deployment_id))
		if (strcmp(((Instance *) lfirst(lc))->status, "running") == 0)
			restart(lfirst(lc));
	successor = most_advanced_replica(ctx->deployment_id);
	if (successor == NULL)
	{
		restart(primary);
		return;
	}
	/* a clean stop sends all WAL to the replicas before the primary exits */
	cat_set_instance_status(primary->id, "stopped", -1);
	job_commit_progress();
	engine_get(primary->engine)->stop(primary);
	promote(successor, primary);
	cat_event(DBORCH_ACTOR, ctx->deployment_id, ctx->job_id, "switchover",
			  psprintf("%s:%d is the primary now, for the memory change", successor->host, successor->port),
			  NULL);
	repoint_replicas(ctx->deployment_id);
	primary = cat_instance(primary->id);
	replica_rejoin(cat_primary_instance(ctx->deployment_id), primary);
	engine_get(primary->engine)->check_ready(primary, dborch_start_timeout_ms);
	cat_set_instance_status(primary->id, "running", -1);
	replica_reconfigure_primary(ctx->deployment_id);
}

static void
stage_scale_finalize(JobContext *ctx)
{
	char	   *replicas = dborch_count(list_length(replicas_of(ctx->deployment_id)), "replica", "replicas");
	int64		memory = cat_json_int64(ctx->args, "memory_bytes");

	cat_refresh_deployment_status(ctx->deployment_id);
	cat_event(DBORCH_ACTOR, ctx->deployment_id, ctx->job_id, "scaled",
			  memory > 0 ? psprintf("memory %s, %s", spec_format_size(memory), replicas) : replicas,
			  ctx->args);
}

/* A scale that gave up: replicas that never ran go; the rest stays as it is. */
static void
undo_scale(JobContext *ctx, const char *reason)
{
	ListCell   *lc;

	foreach(lc, replicas_of(ctx->deployment_id))
	{
		Instance   *r = lfirst(lc);

		if (strcmp(r->status, "running") == 0)
			continue;
		engine_get(r->engine)->stop(r);
		dborch_remove_tree(r->directory);
		cat_set_instance_status(r->id, "destroyed", 0);
	}
	cat_event(DBORCH_ACTOR, ctx->deployment_id, ctx->job_id, "scale_failed",
			  psprintf("scale failed: %s", reason), NULL);
}

static const JobStage scale_stages[] = {
	{"plan", stage_plan},
	{"add_replicas", stage_add_replicas},
	{"retire_replicas", stage_retire_replicas},
	{"remove_replicas", stage_remove_replicas},
	{"memory", stage_memory},
	{"finalize", stage_scale_finalize},
};

const JobKind job_kind_scale = {
	.name = "scale",
	.stages = scale_stages,
	.nstages = lengthof(scale_stages),
	.undo = undo_scale,
};

/* ---------------------------------------------------------------------
 * failover
 * ---------------------------------------------------------------------
 */

static Instance *
failed_instance(JobContext *ctx)
{
	return cat_instance(cat_json_int64(ctx->args, "instance_id"));
}

/*
 * The primary is still down: promote the most advanced replica (the old
 * primary's process, if any is left, is stopped first: never two
 * primaries).  No running replica: restart it in place instead.
 */
static void
stage_failover_promote(JobContext *ctx)
{
	Instance   *failed = failed_instance(ctx);
	Instance   *successor;

	if (failed == NULL || !is_role(failed, "primary") || strcmp(failed->status, "down") != 0)
		return;
	successor = most_advanced_replica(ctx->deployment_id);
	if (successor == NULL)
	{
		cat_set_instance_pid(failed->id, engine_get(failed->engine)->start(failed));
		dborch_wake_prober(true);
		return;
	}
	engine_get(failed->engine)->stop(failed);
	promote(successor, failed);
	cat_event(DBORCH_ACTOR, ctx->deployment_id, ctx->job_id, "failover",
			  psprintf("primary %s:%d was down for more than %d ms: %s:%d promoted",
					   failed->host, failed->port, dborch_failover_timeout_ms,
					   successor->host, successor->port),
			  psprintf("{\"failed_instance_id\": " INT64_FORMAT ", \"new_primary_instance_id\": " INT64_FORMAT "}",
					   failed->id, successor->id));
	cat_failover_alert(ctx->deployment_id, failed->id, successor->id);
	cat_refresh_deployment_status(ctx->deployment_id);
}

/* After a failover, the other replicas follow the new primary. */
static void
stage_failover_repoint(JobContext *ctx)
{
	Instance   *failed = failed_instance(ctx);

	if (failed != NULL && is_role(failed, "replica"))
		repoint_replicas(ctx->deployment_id);
}

/*
 * The former primary rejoins as a replica.  The prober turns it running
 * (with its "recovered" event); once it has, a synchronous primary left
 * without other replicas waits for this one.
 */
static void
stage_failover_rejoin(JobContext *ctx)
{
	Instance   *failed = failed_instance(ctx);
	int64		deadline = dborch_now_ms() + dborch_start_timeout_ms;

	if (failed == NULL || !is_role(failed, "replica") || strcmp(failed->status, "running") == 0)
		return;
	replica_rejoin(primary_of(ctx->deployment_id), failed);
	/* the prober writes the row this wrote (status running): no lock held while it waits */
	job_commit_progress();
	dborch_wake_prober(true);
	if (cat_json_bool(cat_deployment(ctx->deployment_id)->spec, "synchronous") &&
		!primary_of(ctx->deployment_id)->synchronous)
	{
		while (strcmp(cat_instance(failed->id)->status, "running") != 0 && dborch_now_ms() < deadline)
		{
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 50, DBORCH_WAIT_EVENT);
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
		replica_reconfigure_primary(ctx->deployment_id);
	}
}

static void
undo_failover(JobContext *ctx, const char *reason)
{
	cat_event(DBORCH_ACTOR, ctx->deployment_id, ctx->job_id, "failover_failed",
			  psprintf("failover failed: %s", reason), NULL);
}

static const JobStage failover_stages[] = {
	{"promote", stage_failover_promote},
	{"repoint", stage_failover_repoint},
	{"rejoin", stage_failover_rejoin},
};

const JobKind job_kind_failover = {
	.name = "failover",
	.stages = failover_stages,
	.nstages = lengthof(failover_stages),
	.undo = undo_failover,
};
