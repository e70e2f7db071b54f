/*
 * job_tenants.c
 *		The tenant jobs.
 *
 * tenants: applies a deployment's pending creations and drops in one
 * batch (create_tenant() queues one job per batch, not per tenant, so a
 * thousand tenants cost one job): create (idempotent: roles, schemas, ACL
 * users brought to their definition), then drop.
 *
 * tenant_usage: measures every tenant with a quota (PostgreSQL connections
 * and storage, Redis keys and memory) and turns tenants over their quota
 * read-only, and back.  The launcher queues it every
 * dborch.tenant_usage_interval, so a breach is noticed within that
 * interval plus the time of one measurement.
 *
 * move_tenant: source read-only, the tenant created on the target, its data
 * copied (pg_dump/pg_restore; Redis DUMP/RESTORE), row or key counts and
 * checksums compared, the catalog switched in one statement, the source
 * copy removed.  Before the switch a crash resumes or the undo removes the
 * target copy; after it, only the source's leftovers remain to remove.
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "nodes/pg_list.h"

#include "dborch.h"
#include "engine.h"
#include "job.h"
#include "tenant.h"

static bool
is_postgres(Instance *inst)
{
	return strcmp(inst->engine, "postgres") == 0;
}

static Instance *
serving_instance(int64 deployment_id)
{
	Deployment *d = cat_deployment(deployment_id);
	Instance   *inst = cat_primary_instance(deployment_id);

	if (d == NULL || inst == NULL ||
		(strcmp(d->status, "ready") != 0 && strcmp(d->status, "degraded") != 0))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("deployment \"%s\" is not serving", d ? d->name : "?")));
	return inst;
}

/* ---------------------------------------------------------------------
 * tenants
 * ---------------------------------------------------------------------
 */

static void
stage_create(JobContext *ctx)
{
	List	   *pending = cat_tenants_in(ctx->deployment_id, "pending");
	List	   *refused;
	List	   *made = NIL;
	Instance   *inst;
	ListCell   *lc;

	if (pending == NIL)
		return;
	inst = serving_instance(ctx->deployment_id);
	refused = is_postgres(inst) ? tenant_pg_create(inst, pending) : tenant_redis_create(inst, pending);
	foreach(lc, pending)
	{
		Tenant	   *t = lfirst(lc);

		if (!list_member_ptr(refused, t))
		{
			made = lappend(made, t);
			continue;
		}
		cat_tenant_set_status(t->id, "failed", is_postgres(inst)
							  ? psprintf("a role or schema named \"%s\" already exists in the instance and is"
										 " no tenant of dborch's: drop it, or choose another name", t->name)
							  : psprintf("keys with the prefix \"%s:\" already exist in the instance and belong"
										 " to no tenant of dborch's: remove them, or choose another name", t->name));
		cat_event(DBORCH_ACTOR, ctx->deployment_id, ctx->job_id, "tenant_failed",
				  psprintf("tenant %s not created: the instance holds data of that name that is not a tenant's",
						   t->name),
				  psprintf("{\"tenant\": \"%s\"}", t->name));
	}
	cat_tenants_created(ctx->deployment_id, ctx->job_id, made);
}

static void
stage_drop(JobContext *ctx)
{
	List	   *dropping = cat_tenants_in(ctx->deployment_id, "dropping");
	Instance   *inst;
	ListCell   *lc;

	if (dropping == NIL)
		return;
	inst = serving_instance(ctx->deployment_id);
	foreach(lc, dropping)
	{
		Tenant	   *t = lfirst(lc);

		if (is_postgres(inst))
			tenant_pg_drop(inst, t->name);
		else
			tenant_redis_drop(inst, t->name);
		cat_tenant_dropped(t->id);
		cat_event(DBORCH_ACTOR, ctx->deployment_id, ctx->job_id, "tenant_dropped",
				  psprintf("tenant %s dropped with its data", t->name),
				  psprintf("{\"tenant\": \"%s\"}", t->name));
	}
}

/* The batch gave up: its tenants are failed, with the reason. */
static void
undo_tenants(JobContext *ctx, const char *reason)
{
	ListCell   *lc;

	foreach(lc, list_concat(cat_tenants_in(ctx->deployment_id, "pending"),
							cat_tenants_in(ctx->deployment_id, "dropping")))
		cat_tenant_set_status(((Tenant *) lfirst(lc))->id, "failed", reason);
}

static const JobStage tenants_stages[] = {
	{"create", stage_create},
	{"drop", stage_drop},
};

const JobKind job_kind_tenants = {
	.name = "tenants",
	.stages = tenants_stages,
	.nstages = lengthof(tenants_stages),
	.undo = undo_tenants,
};

/* ---------------------------------------------------------------------
 * tenant_usage
 * ---------------------------------------------------------------------
 */

/* Why a tenant is over its quota, or NULL. */
static char *
over_quota(Tenant *t, TenantUsage *u)
{
	if (t->storage_bytes >= 0 && u->storage_bytes > t->storage_bytes)
		return psprintf("storage " INT64_FORMAT " bytes, quota " INT64_FORMAT,
						u->storage_bytes, t->storage_bytes);
	if (t->max_keys >= 0 && u->keys > t->max_keys)
		return psprintf("keys " INT64_FORMAT ", quota " INT64_FORMAT, u->keys, t->max_keys);
	if (t->memory_bytes >= 0 && u->memory_bytes > t->memory_bytes)
		return psprintf("memory " INT64_FORMAT " bytes, quota " INT64_FORMAT,
						u->memory_bytes, t->memory_bytes);
	return NULL;
}

static char *
usage_json(TenantUsage *u)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	if (u->connections >= 0)
		appendStringInfo(&buf, "\"connections\": " INT64_FORMAT ", ", u->connections);
	if (u->storage_bytes >= 0)
		appendStringInfo(&buf, "\"storage_bytes\": " INT64_FORMAT ", ", u->storage_bytes);
	if (u->keys >= 0)
		appendStringInfo(&buf, "\"keys\": " INT64_FORMAT ", ", u->keys);
	if (u->memory_bytes >= 0)
		appendStringInfo(&buf, "\"memory_bytes\": " INT64_FORMAT ", ", u->memory_bytes);
	if (buf.len > 1)
		buf.len -= 2;
	appendStringInfoChar(&buf, '}');
	return buf.data;
}

/* Measure one deployment's tenants (arg: its int64 id) and enforce their quotas. */
static void
measure_deployment(JobContext *ctx, void *arg)
{
	int64		deployment_id = *(int64 *) arg;
	List	   *tenants = cat_tenants_in(deployment_id, "active");
	Instance   *inst = serving_instance(deployment_id);
	TenantUsage *usage = palloc0(sizeof(TenantUsage) * Max(list_length(tenants), 1));
	ListCell   *lc;
	int			i = 0;

	if (is_postgres(inst))
		tenant_pg_usage(inst, tenants, usage);
	else
		tenant_redis_usage(inst, tenants, usage);
	foreach(lc, tenants)
	{
		Tenant	   *t = lfirst(lc);
		char	   *reason = over_quota(t, &usage[i]);

		cat_tenant_record_usage(t->id, usage_json(&usage[i]));
		if ((reason != NULL) != t->read_only)
		{
			if (is_postgres(inst))
				tenant_pg_set_read_only(inst, t->name, reason != NULL);
			else
				tenant_redis_set_read_only(inst, t, reason != NULL);
			cat_tenant_quota_changed(t->id, reason != NULL, reason ? reason : "back within quota");
		}
		i++;
	}
}

/*
 * Every deployment in its own subtransaction: one that cannot be measured
 * (it went down) does not keep the others from being enforced.
 */
static void
stage_measure(JobContext *ctx)
{
	ListCell   *lc;

	foreach(lc, cat_tenant_usage_deployments())
	{
		int64		deployment_id = *(int64 *) lfirst(lc);
		char	   *error = job_try(measure_deployment, ctx, &deployment_id);

		if (error != NULL)
			ereport(LOG, (errmsg("dborch: tenant usage of deployment " INT64_FORMAT " not measured: %s",
								 deployment_id, error)));
	}
}

static void
undo_nothing(JobContext *ctx, const char *reason)
{
}

static const JobStage usage_stages[] = {
	{"measure", stage_measure},
};

const JobKind job_kind_tenant_usage = {
	.name = "tenant_usage",
	.stages = usage_stages,
	.nstages = lengthof(usage_stages),
	.undo = undo_nothing,
	.no_retry = true,
};

/* ---------------------------------------------------------------------
 * move_tenant
 * ---------------------------------------------------------------------
 */

static Tenant *
moving_tenant(JobContext *ctx)
{
	Tenant	   *t = cat_tenant(cat_json_int64(ctx->args, "tenant_id"));

	if (t == NULL)
		elog(ERROR, "dborch: tenant of job " INT64_FORMAT " not found", ctx->job_id);
	return t;
}

static int64
target_id(JobContext *ctx)
{
	return cat_json_int64(ctx->args, "target_id");
}

/* Where a PostgreSQL move keeps its dump while it copies. */
static char *
move_directory(JobContext *ctx)
{
	return psprintf("%s/moves/job-" INT64_FORMAT, dborch_backup_root(), ctx->job_id);
}

/* Has the catalog switched to the target yet? */
static bool
switched(JobContext *ctx, Tenant *t)
{
	return t->deployment_id == target_id(ctx);
}

static void
set_read_only(Instance *inst, int64 deployment_id, Tenant *t, bool read_only)
{
	if (is_postgres(inst))
		tenant_pg_set_read_only(inst, t->name, read_only);
	else
		tenant_redis_set_read_only(inst, t, read_only);
}

/*
 * The target must not hold the tenant's name already (the catalog says it
 * has no such tenant, but the instance may: an owner's role, a locked-out
 * tenant of restored data, keys with the prefix): a move never adopts.
 * Then no writes on the source while the data is copied.
 */
static void
stage_move_prepare(JobContext *ctx)
{
	Tenant	   *t = moving_tenant(ctx);
	Instance   *target;

	if (switched(ctx, t))
		return;
	target = serving_instance(target_id(ctx));
	/* (an earlier attempt of this job made it there: that one is ours) */
	if (!cat_job_reached_stage(ctx->job_id, "create_on_target") &&
		(is_postgres(target) ? tenant_pg_name_taken(target, t->name)
		 : tenant_redis_name_taken(target, t->name)))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("deployment \"%s\" already holds %s named \"%s\"", target->deployment_name,
						is_postgres(target) ? "a role or schema" : "an ACL user or keys", t->name),
				 errhint("Drop it there, or move the tenant elsewhere.")));
	set_read_only(serving_instance(ctx->deployment_id), ctx->deployment_id, t, true);
}

static void
stage_move_create(JobContext *ctx)
{
	Tenant	   *t = moving_tenant(ctx);
	Instance   *target;

	if (switched(ctx, t))
		return;
	target = serving_instance(target_id(ctx));
	if (is_postgres(target))
	{
		if (tenant_pg_create(target, list_make1(t)) != NIL)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("deployment \"%s\" holds a role or schema named \"%s\" that is no tenant",
							target->deployment_name, t->name)));
	}
	else
		tenant_redis_create(target, list_make1(t));
}

static void
stage_move_copy(JobContext *ctx)
{
	Tenant	   *t = moving_tenant(ctx);
	Instance   *source,
			   *target;

	if (switched(ctx, t))
		return;
	source = serving_instance(ctx->deployment_id);
	target = serving_instance(target_id(ctx));
	if (is_postgres(source))
		tenant_pg_copy(source, target, t->name, move_directory(ctx));
	else
		tenant_redis_copy(source, target, t->name);
}

/* Counts and checksums on both sides must agree before anything switches. */
static void
stage_move_compare(JobContext *ctx)
{
	Tenant	   *t = moving_tenant(ctx);
	Instance   *source,
			   *target;
	char	   *before,
			   *after;

	if (switched(ctx, t))
		return;
	source = serving_instance(ctx->deployment_id);
	target = serving_instance(target_id(ctx));
	if (is_postgres(source))
	{
		tenant_pg_fingerprints(source, target, t->name, &before, &after);
	}
	else
	{
		before = tenant_redis_fingerprint(source, t->name);
		after = tenant_redis_fingerprint(target, t->name);
	}
	if (strcmp(before, after) != 0)
		ereport(ERROR,
				(errmsg("the copy of tenant %s differs from its source", t->name),
				 errdetail("Source: %s. Copy: %s.", before, after)));
	cat_event(DBORCH_ACTOR, ctx->deployment_id, ctx->job_id, "tenant_copied",
			  psprintf("tenant %s copied; counts and checksums agree", t->name),
			  psprintf("{\"tenant\": \"%s\", \"fingerprint\": \"%s\"}", t->name, before));
}

static void
stage_move_switch(JobContext *ctx)
{
	Tenant	   *t = moving_tenant(ctx);

	if (!switched(ctx, t))
		cat_tenant_switch(t->id, target_id(ctx));
}

/* The source copy goes (the catalog points at the target already). */
static void
stage_move_drop_source(JobContext *ctx)
{
	Tenant	   *t = moving_tenant(ctx);
	Instance   *source = serving_instance(ctx->deployment_id);

	if (is_postgres(source))
		tenant_pg_drop(source, t->name);
	else
		tenant_redis_drop(source, t->name);
}

static void
stage_move_finalize(JobContext *ctx)
{
	Tenant	   *t = moving_tenant(ctx);

	/* over its quota, it stays read-only where it is now */
	set_read_only(serving_instance(target_id(ctx)), target_id(ctx), t, t->read_only);
	cat_tenant_set_status(t->id, "active", NULL);
	cat_event(DBORCH_ACTOR, target_id(ctx), ctx->job_id, "tenant_moved",
			  psprintf("tenant %s moved here", t->name),
			  psprintf("{\"tenant\": \"%s\"}", t->name));
}

/*
 * Before the switch: the target copy goes and the source is writable again
 * (unless over quota).  After it: the tenant is active where it is; the
 * source's leftovers are reported.
 */
/* Did an attempt of the job get to creating the tenant on the target? */
static bool
created_on_target(JobContext *ctx)
{
	return cat_job_reached_stage(ctx->job_id, "create_on_target");
}

static void
undo_move(JobContext *ctx, const char *reason)
{
	Tenant	   *t = moving_tenant(ctx);

	/*
	 * Cancelled while queued, or stopped in prepare (the target holds the
	 * name: not ours to drop): nothing was made on either side.
	 */
	if (created_on_target(ctx) && !switched(ctx, t))
	{
		Instance   *target = cat_primary_instance(target_id(ctx));
		Instance   *source = cat_primary_instance(ctx->deployment_id);

		if (target != NULL)
		{
			if (is_postgres(target))
				tenant_pg_drop(target, t->name);
			else
				tenant_redis_drop(target, t->name);
		}
		if (source != NULL)
			set_read_only(source, ctx->deployment_id, t, t->read_only);
	}
	/* a dump left by a killed worker holds the tenant's data in clear */
	dborch_remove_tree(move_directory(ctx));
	cat_tenant_set_status(t->id, "active", psprintf("move failed: %s", reason));
}

static const JobStage move_stages[] = {
	{"prepare", stage_move_prepare},
	{"create_on_target", stage_move_create},
	{"copy", stage_move_copy},
	{"compare", stage_move_compare},
	{"switch", stage_move_switch},
	{"drop_source", stage_move_drop_source},
	{"finalize", stage_move_finalize},
};

const JobKind job_kind_move_tenant = {
	.name = "move_tenant",
	.stages = move_stages,
	.nstages = lengthof(move_stages),
	.undo = undo_move,
};
