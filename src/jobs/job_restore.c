/*
 * job_restore.c
 *		The restore jobs.
 *
 * restore (into a new deployment): the deploy job's stages with the data
 * restored instead of initdb, plus "credentials" after the start: the new
 * deployment gets its own password (PostgreSQL: ALTER ROLE over the
 * instance's socket with a SCRAM verifier, once recovery is over; Redis:
 * the password of its configuration).  A Redis snapshot is restored as the
 * base of the append-only file, which the server loads at its start
 * (Redis 7 ignores dump.rdb when appendonly is on).
 *
 * restore_in_place: stop (the replicas too), restore beside the live data
 * and swap (PostgreSQL), or unpack and check the snapshot before replacing
 * anything (Redis), the same configuration, start and checks, then ready
 * again; its tenants are applied again and its replicas made anew from the
 * restored primary (a scale job).  A restore into a new deployment carries
 * the source's tenants over (stage "tenants").  A point in time of a
 * running source is archived first (stage "archive_wal").
 *
 * jobs.args: {"source_id": deployment backed up, "backup_id": or null,
 * "target_time": ISO 8601 text with its UTC offset, or null}.
 */
#include "postgres.h"

#include <unistd.h>


#include "lib/stringinfo.h"
#include "libpq-fe.h"
#include "utils/builtins.h"
#include "miscadmin.h"
#include "storage/latch.h"

#include "backup.h"
#include "dborch.h"
#include "engine.h"
#include "job.h"
#include "tenant.h"

/* Restored data is complete: the stage can be skipped when run again. */
static char *
restore_marker(JobContext *ctx, Instance *inst)
{
	return psprintf("%s/restored-by-job-" INT64_FORMAT, inst->directory, ctx->job_id);
}

/*
 * A point in time of a source that runs: its primary archives everything up
 * to now first (pgbr_archive_now()), so that "a moment ago" is in the
 * archive even on a quiet database.  A source that does not run has what
 * it archived (at most archive_timeout behind its end): a target after its
 * last archived transaction is refused here, before anything is restored.
 */
static void
stage_archive_wal(JobContext *ctx)
{
	char	   *target = cat_json_text(ctx->args, "target_time");
	Deployment *source = cat_deployment(cat_json_int64(ctx->args, "source_id"));
	Instance   *primary;
	char	   *until;

	if (target == NULL || source == NULL || strcmp(source->engine, "postgres") != 0)
		return;
	primary = cat_primary_instance(source->id);
	if (primary != NULL && strcmp(primary->status, "running") == 0)
	{
		(void) pgbr_archive_now(primary);
		return;
	}
	until = pgbr_last_archived_commit(source->name, source->id);
	if (until != NULL && (strcmp(source->status, "stopped") == 0 || strcmp(source->status, "destroyed") == 0))
	{
		/* (kept, so that the next such restore is refused up front) */
		cat_set_recoverable_until(source->id, until);
		job_commit_progress();
	}
	if (until != NULL && !cat_time_between(target, "-infinity", until))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("target time %s is after the last transaction deployment \"%s\" archived", target, source->name),
				 errdetail("It does not run, and its archived WAL reaches up to %s (just before its last transaction).", until),
				 errhint("Restore a moment up to %s, or a backup by id.", until)));
}

/* Every occurrence of from in the file at path becomes to. */
static void
replace_in_file(const char *path, const char *from, const char *to)
{
	char	   *text = dborch_read_file(path, false);
	StringInfoData out;
	char	   *hit;

	initStringInfo(&out);
	while ((hit = strstr(text, from)) != NULL)
	{
		appendBinaryStringInfo(&out, text, hit - text);
		appendStringInfoString(&out, to);
		text = hit + strlen(from);
	}
	appendStringInfoString(&out, text);
	dborch_write_file(path, out.data, 0600);
}

static void
rename_or_error(const char *from, const char *to)
{
	if (rename(from, to) != 0)
		ereport(ERROR, (errcode_for_file_access(),
						errmsg("could not rename \"%s\" to \"%s\": %m", from, to)));
}

/* Put the backup's data in the instance's directory. */
static void
stage_restore_data(JobContext *ctx)
{
	Instance   *inst = load_instance(ctx);
	char	   *marker = restore_marker(ctx, inst);
	char	   *backup_id = cat_json_text(ctx->args, "backup_id");
	char	   *target_time = cat_json_text(ctx->args, "target_time");
	Deployment *source = cat_deployment(cat_json_int64(ctx->args, "source_id"));
	Backup	   *b = backup_id ? cat_backup(strtoi64(backup_id, NULL, 10)) : NULL;
	bool		in_place = strcmp(ctx->kind_name, "restore_in_place") == 0;

	if (dborch_path_exists(marker))
		return;
	if (strcmp(inst->engine, "postgres") == 0)
	{
		char	   *datadir = psprintf("%s/data", inst->directory);
		char	   *beside = psprintf("%s/data.restoring", inst->directory);
		char	   *replaced = psprintf("%s/data.replaced", inst->directory);
		char	   *label = b ? b->label : cat_pitr_base_backup(source->id, target_time);
		/* for dborch.progress: the size of the backup the restore starts from */
		int64		size = b ? b->size_bytes : cat_backup_size(source->id, label);
		char	   *log = psprintf("%s/restore.log", inst->directory);

		if (!in_place)
		{
			dborch_remove_tree(datadir);
			pgbr_restore(source->name, source->id, label, target_time, datadir, size, log);
		}
		else
		{
			/*
			 * In place, the live data is never touched until the restore has
			 * succeeded beside it; then two renames swap them (a resumed
			 * stage finishes a swap it finds begun).
			 */
			if (!dborch_path_exists(replaced))
			{
				dborch_remove_tree(beside);
				pgbr_restore(source->name, source->id, label, target_time, beside, size, log);
				/* its restore_command names the directory it was restored to */
				replace_in_file(psprintf("%s/postgresql.auto.conf", beside), beside, datadir);
				rename_or_error(datadir, replaced);
			}
			if (dborch_path_exists(beside))
				rename_or_error(beside, datadir);
			dborch_remove_tree(replaced);
		}
	}
	else
	{
		/*
		 * The snapshot becomes the base of Redis 7's multi-part append-only
		 * file (an RDB is a valid base), with an empty increment and the
		 * manifest naming both: the server starts with appendonly yes and
		 * loads it, with no rewrite of the whole data set to wait for.  It
		 * is unpacked (its SHA-256 and GCM tag checked) before the data it
		 * replaces is removed.
		 */
		char	   *aofdir = psprintf("%s/data/appendonlydir", inst->directory);
		char	   *staged = psprintf("%s/data/restored-by-job-" INT64_FORMAT ".rdb",
									  inst->directory, ctx->job_id);

		dborch_mkdir(psprintf("%s/data", inst->directory), 0700);
		if (!dborch_path_exists(staged))
			redis_unpack(b->file, backup_passphrase(source->id), b->checksum, staged);
		dborch_remove_tree(aofdir);
		unlink(psprintf("%s/data/dump.rdb", inst->directory));
		dborch_mkdir(aofdir, 0700);
		rename_or_error(staged, psprintf("%s/appendonly.aof.1.base.rdb", aofdir));
		dborch_write_file(psprintf("%s/appendonly.aof.1.incr.aof", aofdir), "", 0600);
		dborch_write_file(psprintf("%s/appendonly.aof.manifest", aofdir),
						  "file appendonly.aof.1.base.rdb seq 1 type b\n"
						  "file appendonly.aof.1.incr.aof seq 1 type i\n", 0600);
	}
	dborch_write_file(marker, "", 0600);
}

/* Wait until a restored PostgreSQL left recovery (promoted), over its socket. */
static PGconn *
connect_after_recovery(Instance *inst)
{
	char	   *conninfo = engine_postgres_conninfo(inst->directory, inst->port);
	int64		deadline = dborch_now_ms() + dborch_start_timeout_ms;

	for (;;)
	{
		PGconn	   *conn = PQconnectdb(conninfo);
		PGresult   *res = NULL;

		if (PQstatus(conn) == CONNECTION_OK &&
			(res = PQexec(conn, "SELECT pg_is_in_recovery()")) != NULL &&
			PQresultStatus(res) == PGRES_TUPLES_OK && PQgetvalue(res, 0, 0)[0] == 'f')
		{
			PQclear(res);
			return conn;
		}
		if (res)
			PQclear(res);
		/* a server that stopped (recovery failed) will not finish either */
		if (dborch_now_ms() > deadline || engine_get(inst->engine)->running_pid(inst) == 0)
			ereport(ERROR,
					(errmsg("the restored PostgreSQL of deployment \"%s\" did not finish recovery",
							inst->deployment_name),
					 errdetail("%s", dborch_file_tail(psprintf("%s/postgresql.log", inst->directory), 800))));
		PQfinish(conn);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 20, DBORCH_WAIT_EVENT);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * What pgBackRest's restore put in postgresql.auto.conf (restore_command,
 * recovery_target and kin) goes once recovery is over: a replica made from
 * this server later copies the file, and would otherwise recover to the
 * same target and promote itself instead of streaming.
 */
static void
clear_recovery_settings(PGconn *conn, Instance *inst)
{
	static const char *const settings[] = {
		"restore_command", "recovery_target", "recovery_target_time", "recovery_target_name",
		"recovery_target_xid", "recovery_target_lsn", "recovery_target_inclusive",
		"recovery_target_action", "recovery_target_timeline",
	};

	for (int i = 0; i < lengthof(settings); i++)
	{
		PGresult   *res = PQexec(conn, psprintf("ALTER SYSTEM RESET %s", settings[i]));
		bool		ok = PQresultStatus(res) == PGRES_COMMAND_OK;

		PQclear(res);
		if (!ok)
			ereport(ERROR, (errmsg("could not reset %s on the restored PostgreSQL of \"%s\": %s",
								   settings[i], inst->deployment_name, PQerrorMessage(conn))));
	}
	PQclear(PQexec(conn, "SELECT pg_catalog.pg_reload_conf()"));
}

/*
 * The restored data gets this deployment's logins: PostgreSQL's superuser
 * and owner roles their passwords once recovery is over (the data has the
 * source's), and the restore's recovery settings go; Redis had its
 * aclfile, from the catalog, before it started.
 */
static void
stage_credentials(JobContext *ctx)
{
	Instance   *inst = load_instance(ctx);
	const EngineOps *engine = engine_get(inst->engine);

	if (engine->logins_in_data)
	{
		PGconn	   *conn = connect_after_recovery(inst);

		clear_recovery_settings(conn, inst);
		PQfinish(conn);
		engine->apply_logins(inst);
	}
}

/*
 * PostgreSQL: no tenant role of the restored data logs in with the
 * password of the backup's time (tenant_pg_lock_out); the tenants job gives
 * the deployment's live tenants their login back.  The roles of tenants
 * that are not live here (dropped or moved away since the backup) stay
 * locked out, with an event naming them; their schemas are kept.
 */
static void
lock_out_tenants(JobContext *ctx, Instance *inst)
{
	StringInfoData names;
	int			n = 0;
	ListCell   *lc;

	if (strcmp(inst->engine, "postgres") != 0)
		return;
	initStringInfo(&names);
	foreach(lc, tenant_pg_lock_out(inst))
	{
		/* names of tenants: lower-case letters, digits and underscores */
		if (cat_live_tenant(ctx->deployment_id, lfirst(lc)) == NULL)
			appendStringInfo(&names, "%s\"%s\"", n++ ? ", " : "", (char *) lfirst(lc));
	}
	if (n > 0)
		cat_event(DBORCH_ACTOR, ctx->deployment_id, ctx->job_id, "tenants_locked_out",
				  psprintf("%d tenant roles of the backup are no tenants of this deployment and cannot log in:"
						   " %s; their schemas are kept, create_tenant() of the same name takes one back",
						   n, names.data),
				  psprintf("{\"tenants\": [%s]}", names.data));
}

/*
 * The source's tenants come along: a row each on the new deployment (same
 * name, quota and key prefix, a password of its own, as the deployment has)
 * and a tenants job that applies them once this job is done.  Roles,
 * schemas and keys that the backup holds keep their data as of the backup;
 * a tenant made after it starts empty.  A source destroyed since has no
 * tenants left to carry.
 */
static void
stage_tenants(JobContext *ctx)
{
	Deployment *source = cat_deployment(cat_json_int64(ctx->args, "source_id"));
	Deployment *target = cat_deployment(ctx->deployment_id);
	int			carried = 0;
	ListCell   *lc;

	foreach(lc, cat_tenants_in(source->id, "active"))
	{
		Tenant	   *t = lfirst(lc);

		/* a resumed job finds those it carried already */
		if (cat_live_tenant(target->id, t->name) != NULL)
			continue;
		(void) cat_insert_tenant(target, t->name, t->quota, true);
		carried++;
	}
	lock_out_tenants(ctx, load_instance(ctx));
	if (carried > 0)
		cat_event(DBORCH_ACTOR, target->id, ctx->job_id, "tenants_restored",
				  psprintf("%s of \"%s\" carried over, with passwords of their own",
						   dborch_count(carried, "tenant", "tenants"), source->name),
				  psprintf("{\"tenants\": %d, \"source_id\": " INT64_FORMAT "}", carried, source->id));
}

static const JobStage restore_stages[] = {
	{"quota_check", deploy_stage_quota_check},
	{"node_selection", deploy_stage_node_selection},
	{"prepare", deploy_stage_prepare},
	{"archive_wal", stage_archive_wal},
	{"restore_data", stage_restore_data},
	{"network", deploy_stage_network},
	{"security", deploy_stage_security},
	{"start", deploy_stage_start},
	{"register", deploy_stage_register},
	{"credentials", stage_credentials},
	{"health_validation", deploy_stage_health_validation},
	{"tenants", stage_tenants},
	{"finalize", deploy_stage_finalize},
};

const JobKind job_kind_restore = {
	.name = "restore",
	.stages = restore_stages,
	.nstages = lengthof(restore_stages),
	.undo = undo_deploy,
};

/* ---------------------------------------------------------------------
 * In place
 * ---------------------------------------------------------------------
 */

/*
 * The primary stops; so do its replicas, which hold the data of before the
 * restore and must never serve it (or be promoted with it) afterwards: each
 * is stopped and marked to be made anew (its replica_ready marker goes),
 * and the finalize stage asks a scale job to rebuild them from the restored
 * primary.
 */
static void
stage_stop(JobContext *ctx)
{
	Instance   *inst = load_instance(ctx);
	ListCell   *lc;

	foreach(lc, cat_live_instances(ctx->deployment_id))
	{
		Instance   *r = lfirst(lc);

		if (strcmp(r->role, "replica") != 0)
			continue;
		engine_get(r->engine)->stop(r);
		unlink(psprintf("%s/replica_ready", r->directory));
		cat_set_instance_status(r->id, "stopped", 0);
	}
	engine_get(inst->engine)->stop(inst);
	cat_set_instance_status(inst->id, "stopped", 0);
}

/*
 * The deployment's tenants are applied again by a tenants job: the
 * restored data has the roles (or, for Redis, the keys) of the backup's
 * time, locked out here, and a tenant made since must get its role back.
 */
static void
stage_in_place_finalize(JobContext *ctx)
{
	Instance   *inst = load_instance(ctx);

	lock_out_tenants(ctx, inst);
	if (cat_tenants_reapply(ctx->deployment_id) > 0)
		cat_queue_tenants_job(cat_deployment(ctx->deployment_id));
	cat_set_instance_status(inst->id, "running", -1);
	/* the replicas stopped before the restore are made anew from it */
	{
		int			replicas = list_length(cat_live_instances(ctx->deployment_id)) - 1;

		if (replicas > 0)
		{
			cat_queue_job("scale", ctx->deployment_id, cat_deployment(ctx->deployment_id)->owner,
						  psprintf("{\"replicas\": %d}", replicas));
			dborch_wake_launcher_at_commit();
		}
	}
	cat_set_deployment_status(ctx->deployment_id, "ready", "restoring", NULL);
	cat_event(DBORCH_ACTOR, ctx->deployment_id, ctx->job_id, "restored",
			  "restored in place", NULL);
}

static void
undo_in_place(JobContext *ctx, const char *reason)
{
	/* cancelled while queued: the data was never touched */
	if (job_never_started(ctx))
	{
		if (cat_set_deployment_status(ctx->deployment_id, "ready", "restoring", NULL))
			cat_refresh_deployment_status(ctx->deployment_id);
		return;
	}
	cat_set_deployment_status(ctx->deployment_id, "failed", "restoring",
							  psprintf("restore in place failed: %s", reason));
}

static const JobStage in_place_stages[] = {
	{"archive_wal", stage_archive_wal},
	{"stop", stage_stop},
	{"restore_data", stage_restore_data},
	{"network", deploy_stage_network},
	{"security", deploy_stage_security},
	{"start", deploy_stage_start},
	{"register", deploy_stage_register},
	{"credentials", stage_credentials},
	{"health_validation", deploy_stage_health_validation},
	{"finalize", stage_in_place_finalize},
};

const JobKind job_kind_restore_in_place = {
	.name = "restore_in_place",
	.stages = in_place_stages,
	.nstages = lengthof(in_place_stages),
	.undo = undo_in_place,
};
