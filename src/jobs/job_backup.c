/*
 * job_backup.c
 *		The backup and verify jobs.
 *
 * backup: check (the deployment serves), prepare (PostgreSQL: pgbackrest.conf
 * and the stanza), backup (pgbackrest backup; Redis: BGSAVE, zstd, AES-GCM),
 * record (pgbackrest info, or the snapshot's facts, into dborch.backups),
 * retention (pgbackrest expire, or file removal), finalize (and queue a
 * verification if asked).  A diff or incr without a full backup before it
 * becomes a full, and says so in an event.
 *
 * verify: restore the backup into a scratch instance on a free port in
 * <backup directory>/verify-<job id>, check it (PostgreSQL: connect over
 * the scratch socket and count relations; Redis: load and compare the key
 * count), remove the scratch instance, record verified_at or the failure.
 */
#include "postgres.h"

#include <signal.h>
#include <unistd.h>

#include "libpq-fe.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "storage/latch.h"

#include <hiredis/hiredis.h>

#include "backup.h"
#include "dborch.h"
#include "engine.h"
#include "job.h"
#include "spawn.h"

static Backup *
load_backup(JobContext *ctx)
{
	Backup	   *b = cat_backup(cat_json_int64(ctx->args, "backup_id"));

	if (b == NULL)
		elog(ERROR, "dborch: backup of job " INT64_FORMAT " not found", ctx->job_id);
	return b;
}

static Instance *
serving_instance(JobContext *ctx)
{
	Instance   *inst = cat_primary_instance(ctx->deployment_id);

	if (inst == NULL || strcmp(inst->status, "running") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the deployment has no running instance to back up")));
	return inst;
}

static char *
redis_backup_file(Backup *b)
{
	return psprintf("%s/" INT64_FORMAT ".rdb.zst.aes",
					backup_directory(b->deployment, b->deployment_id), b->id);
}

/* The deployment must be serving: ready, or degraded with its primary up. */
static void
stage_check(JobContext *ctx)
{
	Deployment *d = cat_deployment(ctx->deployment_id);
	Backup	   *b = load_backup(ctx);

	if (strcmp(d->status, "ready") != 0 && strcmp(d->status, "degraded") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot back up deployment \"%s\" while it is %s", d->name, d->status)));
	(void) serving_instance(ctx);
	cat_backup_set_status(b->id, "running", NULL, NULL);
}

static void
stage_prepare(JobContext *ctx)
{
	Instance   *inst = serving_instance(ctx);
	Backup	   *b = load_backup(ctx);

	if (strcmp(b->engine, "postgres") == 0)
		pgbr_prepare(inst, backup_passphrase(ctx->deployment_id));
	else
		dborch_mkdir(backup_directory(b->deployment, b->deployment_id), 0700);
}

static void
stage_backup(JobContext *ctx)
{
	Instance   *inst = serving_instance(ctx);
	Backup	   *b = load_backup(ctx);

	if (strcmp(b->engine, "postgres") == 0)
	{
		const char *kind = b->requested_kind;

		if (strcmp(kind, "full") != 0 && !cat_has_full_backup(ctx->deployment_id))
		{
			cat_event(DBORCH_ACTOR, ctx->deployment_id, ctx->job_id, "backup_promoted",
					  psprintf("no full backup yet: the %s backup is taken as a full one", kind), NULL);
			kind = "full";
		}
		cat_backup_set_status(b->id, "running", kind, NULL);
		pgbr_backup(inst, kind, psprintf("%s/log/dborch-backup-" INT64_FORMAT ".log",
										 backup_directory(b->deployment, b->deployment_id), b->id));
	}
	else
	{
		RedisSnapshot *snap = redis_snapshot(inst, redis_backup_file(b),
											 backup_passphrase(ctx->deployment_id));

		cat_backup_record_redis(b->id, redis_backup_file(b), snap->size_bytes, snap->stored_bytes,
								snap->keys, snap->keys_with_ttl, snap->checksum, snap->snapshot_at);
	}
}

/* PostgreSQL: what pgbackrest info says of the new backup. */
static void
stage_record(JobContext *ctx)
{
	Backup	   *b = load_backup(ctx);

	if (strcmp(b->engine, "postgres") == 0)
		cat_backup_record_pgbackrest(b->id, pgbr_info(b->deployment, b->deployment_id));
}

/* Apply the deployment's retention, if it has one. */
static void
stage_retention(JobContext *ctx)
{
	Backup	   *b = load_backup(ctx);
	int			full_count,
				max_age_days;

	if (!cat_backup_retention(ctx->deployment_id, &full_count, &max_age_days))
		return;
	if (strcmp(b->engine, "postgres") == 0)
	{
		pgbr_expire(b->deployment, b->deployment_id, full_count, max_age_days);
		cat_backups_sync_pgbackrest(ctx->deployment_id, pgbr_info(b->deployment, b->deployment_id));
	}
	else
	{
		CatResult  *expired = cat_expire_redis_backups(ctx->deployment_id, full_count, max_age_days);
		int			i;

		for (i = 0; i < expired->nrows; i++)
			if (cat_value(expired, i, "file") != NULL)
				unlink(cat_value(expired, i, "file"));
	}
}

static void
stage_finalize(JobContext *ctx)
{
	Backup	   *b = load_backup(ctx);

	cat_event(DBORCH_ACTOR, ctx->deployment_id, ctx->job_id, "backup",
			  psprintf("%s backup " INT64_FORMAT " done (%s)", b->kind, b->id, b->label),
			  psprintf("{\"backup_id\": " INT64_FORMAT ", \"size_bytes\": " INT64_FORMAT "}",
					   b->id, b->size_bytes));
	if (b->verify_requested)
		cat_queue_job("verify", ctx->deployment_id, b->owner,
					  psprintf("{\"backup_id\": " INT64_FORMAT "}", b->id));
}

static void
undo_backup(JobContext *ctx, const char *reason)
{
	Backup	   *b = load_backup(ctx);

	/* a backup already recorded stays good: only retention or the event was missed */
	if (strcmp(b->status, "succeeded") == 0)
		return;
	cat_backup_set_status(b->id, "failed", NULL, reason);
	if (strcmp(b->engine, "redis") == 0)
		unlink(psprintf("%s.tmp", redis_backup_file(b)));
	else if (dborch_path_exists(psprintf("%s/stanza.ready", backup_directory(b->deployment, b->deployment_id))))
	{
		/*
		 * A backup pgBackRest finished but dborch never recorded (cancelled
		 * or failed after its backup stage) must not stay in the repository:
		 * a later diff or incr would build on a backup dborch calls failed.
		 * (pgBackRest keeps a repository's only full backup; dborch, which
		 * knows of no full one then, makes the next backup a full one.)
		 */
		ListCell   *lc;

		foreach(lc, cat_unrecorded_labels(b->deployment_id, pgbr_info(b->deployment, b->deployment_id)))
			if (!pgbr_expire_set(b->deployment, b->deployment_id, lfirst(lc)))
				ereport(LOG, (errmsg("dborch: backup set %s of \"%s\" stays in the repository",
									 (char *) lfirst(lc), b->deployment)));
	}
}

static const JobStage backup_stages[] = {
	{"check", stage_check},
	{"prepare", stage_prepare},
	{"backup", stage_backup},
	{"record", stage_record},
	{"retention", stage_retention},
	{"finalize", stage_finalize},
};

const JobKind job_kind_backup = {
	.name = "backup",
	.stages = backup_stages,
	.nstages = lengthof(backup_stages),
	.undo = undo_backup,
};

/* ---------------------------------------------------------------------
 * Verification
 * ---------------------------------------------------------------------
 */

static char *
scratch_directory(JobContext *ctx)
{
	return psprintf("%s/verify-" INT64_FORMAT, dborch_backup_root(), ctx->job_id);
}

/* A port of dborch.port_range that no instance holds and nothing has bound. */
static int
scratch_port(void)
{
	int			port;

	for (port = dborch_port_range_high; port >= dborch_port_range_low; port--)
		if (!cat_port_taken(port) && !dborch_port_in_use(dborch_listen_address, port))
			return port;
	ereport(ERROR, (errmsg("no free port left in dborch.port_range for a scratch instance")));
	return 0;
}

/* Stop whatever runs in a scratch directory, and remove it. */
static void
remove_scratch(const char *dir)
{
	char	   *pidfile = dborch_read_file(psprintf("%s/data/postmaster.pid", dir), true);
	char	   *redis_pid = dborch_read_file(psprintf("%s/redis.pid", dir), true);

	if (pidfile != NULL && dborch_process_alive(atoi(pidfile), "postgres"))
		engine_stop_process(atoi(pidfile), SIGQUIT, 10000);
	if (redis_pid != NULL && dborch_process_alive(atoi(redis_pid), "redis-server"))
		engine_stop_process(atoi(redis_pid), SIGKILL, 10000);
	dborch_remove_tree(dir);
}

/* Wait for a libpq connection over the scratch socket and count relations. */
static int64
count_relations(const char *dir, int port)
{
	int64		deadline = dborch_now_ms() + dborch_start_timeout_ms;
	char	   *conninfo = engine_postgres_conninfo(dir, port);

	for (;;)
	{
		PGconn	   *conn = PQconnectdb(conninfo);
		PGresult   *res;

		if (PQstatus(conn) == CONNECTION_OK &&
			(res = PQexec(conn, "SELECT count(*) FROM pg_class")) != NULL &&
			PQresultStatus(res) == PGRES_TUPLES_OK)
		{
			int64		n = strtoi64(PQgetvalue(res, 0, 0), NULL, 10);

			PQclear(res);
			PQfinish(conn);
			return n;
		}
		if (dborch_now_ms() > deadline)
			ereport(ERROR,
					(errmsg("the restored PostgreSQL did not accept connections: %s",
							PQerrorMessage(conn)),
					 errdetail("%s", dborch_file_tail(psprintf("%s/postgresql.log", dir), 800))));
		PQfinish(conn);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 20, DBORCH_WAIT_EVENT);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/* Restore a PostgreSQL backup in dir, start it on port, count relations. */
static void
verify_postgres(Backup *b, const char *dir, int port)
{
	char	   *datadir = psprintf("%s/data", dir);
	const char *argv[] = {dborch_bindir_program(dborch_pg_ctl_path, "pg_ctl"), "start", "-D", datadir,
	"-l", psprintf("%s/postgresql.log", dir), "-W", "-s", NULL};
	int64		relations;

	pgbr_restore(b->deployment, b->deployment_id, b->label, NULL, datadir, b->size_bytes,
				 psprintf("%s/restore.log", dir));
	dborch_mkdir(psprintf("%s/run", dir), 0700);
	/* the socket only, no archiving: this copy must not touch anything */
	dborch_write_file(psprintf("%s/dborch.conf", datadir),
					  psprintf("listen_addresses = ''\nport = %d\nunix_socket_directories = '%s/run'\n"
							   "shared_buffers = 16MB\narchive_mode = off\n", port, dir), 0600);
	if (spawn_run(argv, psprintf("%s/pg_ctl.log", dir), 30000) != 0)
		ereport(ERROR, (errmsg("could not start the restored PostgreSQL"),
						errdetail("%s", dborch_file_tail(psprintf("%s/pg_ctl.log", dir), 800))));
	relations = count_relations(dir, port);
	if (relations <= 0)
		ereport(ERROR, (errmsg("the restored PostgreSQL has no relations")));
}

/* Unpack a Redis backup in dir, load it in a scratch redis-server, compare keys. */
static void
verify_redis(Backup *b, const char *dir, int port)
{
	const char *password = dborch_random_password(32);
	struct timeval tv = {5, 0};
	int64		deadline = dborch_now_ms() + dborch_start_timeout_ms;
	const char *argv[] = {dborch_redis_server_path, psprintf("%s/redis.conf", dir), NULL};
	redisContext *c = NULL;
	redisReply *reply = NULL;
	int64		keys;

	dborch_mkdir(psprintf("%s/data", dir), 0700);
	redis_unpack(b->file, backup_passphrase(b->deployment_id), b->checksum,
				 psprintf("%s/data/dump.rdb", dir));
	dborch_write_file(psprintf("%s/redis.conf", dir),
					  psprintf("bind %s\nport %d\ndir %s/data\npidfile %s/redis.pid\nappendonly no\n"
							   "save \"\"\nrequirepass %s\nlogfile \"\"\n",
							   dborch_listen_address, port, dir, dir, password), 0600);
	(void) spawn_start(argv, psprintf("%s/redis.log", dir));
	for (;;)
	{
		c = redisConnectWithTimeout(dborch_listen_address, port, tv);
		if (c != NULL && !c->err)
		{
			freeReplyObject(redisCommand(c, "AUTH %s", password));
			reply = redisCommand(c, "DBSIZE");
			if (reply != NULL && reply->type == REDIS_REPLY_INTEGER)
				break;
			if (reply)
				freeReplyObject(reply);
			reply = NULL;
		}
		if (c)
			redisFree(c);
		c = NULL;
		if (dborch_now_ms() > deadline)
			ereport(ERROR, (errmsg("the scratch redis-server did not load the backup"),
							errdetail("%s", dborch_file_tail(psprintf("%s/redis.log", dir), 800))));
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 10, DBORCH_WAIT_EVENT);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	keys = reply->integer;
	freeReplyObject(reply);
	redisFree(c);
	/* keys whose TTL passed since the snapshot are not loaded */
	if (b->keys >= 0 && (keys > b->keys || keys < b->keys - Max(b->keys_with_ttl, 0)))
		ereport(ERROR,
				(errmsg("the restored Redis has " INT64_FORMAT " keys, the backup recorded " INT64_FORMAT,
						keys, b->keys)));
}

static void
stage_verify_prepare(JobContext *ctx)
{
	Backup	   *b = load_backup(ctx);

	if (strcmp(b->status, "succeeded") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("backup " INT64_FORMAT " is %s", b->id, b->status)));
	remove_scratch(scratch_directory(ctx));
	dborch_mkdir(scratch_directory(ctx), 0700);
}

/* Restore, start and check in one stage: a crash anywhere redoes all of it. */
static void
stage_verify_check(JobContext *ctx)
{
	Backup	   *b = load_backup(ctx);
	char	   *dir = scratch_directory(ctx);
	int			port = scratch_port();

	remove_scratch(dir);
	dborch_mkdir(dir, 0700);
	if (strcmp(b->engine, "postgres") == 0)
		verify_postgres(b, dir, port);
	else
		verify_redis(b, dir, port);
}

static void
stage_verify_finalize(JobContext *ctx)
{
	Backup	   *b = load_backup(ctx);

	remove_scratch(scratch_directory(ctx));
	cat_backup_verified(b->id, NULL);
	cat_event(DBORCH_ACTOR, ctx->deployment_id, ctx->job_id, "backup_verified",
			  psprintf("backup " INT64_FORMAT " restored and checked", b->id), NULL);
}

static void
undo_verify(JobContext *ctx, const char *reason)
{
	Backup	   *b = load_backup(ctx);

	remove_scratch(scratch_directory(ctx));
	cat_backup_verified(b->id, reason);
	cat_event(DBORCH_ACTOR, ctx->deployment_id, ctx->job_id, "backup_verify_failed",
			  psprintf("verification of backup " INT64_FORMAT " failed: %s", b->id, reason), NULL);
}

static const JobStage verify_stages[] = {
	{"prepare", stage_verify_prepare},
	{"restore_and_check", stage_verify_check},
	{"finalize", stage_verify_finalize},
};

const JobKind job_kind_verify = {
	.name = "verify",
	.stages = verify_stages,
	.nstages = lengthof(verify_stages),
	.undo = undo_verify,
};
