/*
 * job_upgrade.c
 *		The upgrade job: brings a deployment made by an earlier version of
 *		dborch to what this one makes, on its running instances, without
 *		restarting them.  The extension's update script queues one for every
 *		deployment in service (sql/dborch--0.1--0.2.sql); a start or a
 *		recovery queues it for a deployment that was not running then.
 *
 * From 0.1: the owner logged in as the superuser (PostgreSQL) or as Redis'
 * default user with all commands.  Now (catalog.h, "logins"):
 *	dborch_login	dborch's own password (SECRET_DBORCH) is set on the
 *					running instances with 0.1's login (PostgreSQL: the
 *					superuser over the private socket; Redis: ACL user dborch,
 *					added as the default user), and recorded when the stage
 *					commits.  A crash in between leaves 0.1's login working, so
 *					the next attempt starts again with a new password.
 *	owner_login		the owner's own login (EngineOps.apply_logins): role or
 *					ACL user "owner" with the password the owner had, Redis'
 *					default user off, and the sessions of the old login ended.
 *	tls				PostgreSQL: the instance's certificate, ssl = on, TCP
 *					clients only over TLS; a reload.
 *	finalize		an event.
 */
#include "postgres.h"

#include "libpq-fe.h"
#include "utils/builtins.h"

#include "dborch.h"
#include "engine.h"
#include "job.h"

/* The deployment's running instances, the primary first; NIL when none runs. */
static List *
running_instances(JobContext *ctx)
{
	List	   *running = NIL;
	ListCell   *lc;

	foreach(lc, cat_live_instances(ctx->deployment_id))
	{
		Instance   *inst = lfirst(lc);

		if (strcmp(inst->status, "running") != 0)
			continue;
		if (strcmp(inst->role, "primary") == 0)
			running = lcons(inst, running);
		else
			running = lappend(running, inst);
	}
	return running;
}

/*
 * Whether the job has work now: false (with an event) for a deployment that
 * runs nothing (stopped, failed: its next start or recovery queues the job
 * again); an error, retried later, while another job changes it.
 */
static bool
deployment_upgradable(JobContext *ctx)
{
	Deployment *d = cat_deployment(ctx->deployment_id);

	if (d == NULL || strcmp(d->status, "destroyed") == 0)
		return false;
	if (strcmp(d->status, "ready") == 0 || strcmp(d->status, "degraded") == 0)
		return running_instances(ctx) != NIL;
	if (strcmp(d->status, "stopped") == 0 || strcmp(d->status, "failed") == 0)
		return false;
	ereport(ERROR,
			(errmsg("deployment \"%s\" is %s: its upgrade waits", d->name, d->status)));
	return false;
}

static void
stage_dborch_login(JobContext *ctx)
{
	char	   *password;
	ListCell   *lc;

	if (cat_secret(ctx->deployment_id, SECRET_DBORCH) != NULL || !deployment_upgradable(ctx))
		return;
	password = dborch_random_password(32);
	foreach(lc, running_instances(ctx))
	{
		Instance   *inst = lfirst(lc);

		if (strcmp(inst->engine, "redis") == 0)
			engine_redis_add_dborch_login(inst, password);
		else if (strcmp(inst->role, "primary") == 0)
		{
			PGconn	   *conn = engine_postgres_connect(inst);
			PGresult   *res = PQexec(conn, psprintf("ALTER ROLE postgres PASSWORD %s",
													quote_literal_cstr(dborch_scram_secret(password))));
			bool		ok = PQresultStatus(res) == PGRES_COMMAND_OK;

			PQclear(res);
			PQfinish(conn);
			if (!ok)
				ereport(ERROR, (errmsg("could not set dborch's password on %s:%d", inst->host, inst->port)));
		}
	}
	cat_set_secret(ctx->deployment_id, SECRET_DBORCH, password);
}

static void
stage_owner_login(JobContext *ctx)
{
	ListCell   *lc;

	if (cat_secret(ctx->deployment_id, SECRET_DBORCH) == NULL)
		return;					/* nothing runs: a later start queues the job again */
	foreach(lc, running_instances(ctx))
	{
		Instance   *inst = lfirst(lc);

		engine_get(inst->engine)->apply_logins(inst);
	}
}

/*
 * PostgreSQL instances made by 0.1 take TCP clients without TLS: each gets
 * its server certificate, ssl = on and the pg_hba.conf that rejects a
 * connection without TLS, with a reload (no restart).
 */
static void
stage_tls(JobContext *ctx)
{
	ListCell   *lc;

	if (cat_secret(ctx->deployment_id, SECRET_DBORCH) == NULL)
		return;
	foreach(lc, running_instances(ctx))
	{
		Instance   *inst = lfirst(lc);

		if (strcmp(inst->engine, "postgres") != 0)
			continue;
		engine_get(inst->engine)->configure_security(inst);
		engine_get(inst->engine)->configure_network(inst);
		(void) engine_postgres_value(inst, "SELECT pg_catalog.pg_reload_conf()", NULL);
	}
}

static void
stage_finalize(JobContext *ctx)
{
	if (cat_secret(ctx->deployment_id, SECRET_DBORCH) == NULL)
		cat_event(DBORCH_ACTOR, ctx->deployment_id, ctx->job_id, "upgrade_deferred",
				  "no instance runs: the upgrade of the logins waits for the next start", NULL);
	else
		cat_event(DBORCH_ACTOR, ctx->deployment_id, ctx->job_id, "upgraded",
				  psprintf("logins upgraded to dborch %s: the owner logs in as \"" OWNER_LOGIN
						   "\", without superuser rights; dborch has a login of its own",
						   DBORCH_VERSION),
				  NULL);
}

/* A deployment without SECRET_DBORCH (made by dborch 0.1) gets an upgrade job. */
void
job_queue_upgrade_if_needed(int64 deployment_id, const char *owner)
{
	if (cat_secret(deployment_id, SECRET_DBORCH) == NULL &&
		cat_unfinished_job(deployment_id, "upgrade") == 0)
	{
		cat_queue_job("upgrade", deployment_id, owner, NULL);
		dborch_wake_launcher_at_commit();
	}
}

static void
undo_upgrade(JobContext *ctx, const char *reason)
{
	cat_event(DBORCH_ACTOR, ctx->deployment_id, ctx->job_id, "upgrade_failed",
			  psprintf("the upgrade of the logins failed: %s", reason), NULL);
}

static const JobStage upgrade_stages[] = {
	{"dborch_login", stage_dborch_login},
	{"owner_login", stage_owner_login},
	{"tls", stage_tls},
	{"finalize", stage_finalize},
};

const JobKind job_kind_upgrade = {
	.name = "upgrade",
	.stages = upgrade_stages,
	.nstages = lengthof(upgrade_stages),
	.undo = undo_upgrade,
};
