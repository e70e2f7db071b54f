/*
 * replication.c
 *		Replicas of both engines: making one, waiting until it streams,
 *		its slot, choosing and promoting the most advanced one, and making
 *		the others (and a failed primary that comes back) follow the new
 *		primary.
 *
 * PostgreSQL replicas are made with pg_basebackup over the primary's socket
 * through a physical slot dborch_r<instance id>, created before the copy so
 * no WAL it needs is recycled; their dborch.conf (engine_postgres.c) names
 * the current primary, so following another primary is a rewrite and a
 * reload.  A failed primary rejoins after pg_rewind (wal_log_hints is on),
 * or with a new base backup when pg_rewind cannot.  Redis replicas use
 * replicaof with the primary's password; following is REPLICAOF.
 *
 * The primary of a synchronous deployment has synchronous_standby_names
 * 'ANY 1 (*)' while a replica starts or runs: a commit returns once any one
 * replica flushed it, so the most advanced replica, the one a failover
 * promotes, holds it.
 */
#include "postgres.h"

#include <signal.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "libpq-fe.h"
#include "miscadmin.h"
#include "storage/latch.h"

#include "dborch.h"
#include "engine.h"
#include "replication.h"
#include "spawn.h"

static bool
is_postgres(Instance *inst)
{
	return strcmp(inst->engine, "postgres") == 0;
}

static char *
slot_name(Instance *replica)
{
	return psprintf("dborch_r" INT64_FORMAT, replica->id);
}

static char *
redis_info(Instance *inst, const char *section)
{
	redisContext *c = engine_redis_connect(inst);
	redisReply *reply = redisCommand(c, "INFO %s", section);
	char	   *text = NULL;

	if (reply != NULL && reply->type == REDIS_REPLY_STRING)
		text = pnstrdup(reply->str, reply->len);
	if (reply)
		freeReplyObject(reply);
	redisFree(c);
	if (text == NULL)
		ereport(ERROR, (errmsg("INFO %s failed on %s:%d", section, inst->host, inst->port)));
	return text;
}

static void
redis_simple(Instance *inst, const char *command, const char *a, const char *b)
{
	redisContext *c = engine_redis_connect(inst);
	redisReply *reply = a ? redisCommand(c, command, a, b) : redisCommand(c, command);
	bool		ok = reply != NULL && reply->type != REDIS_REPLY_ERROR;
	char	   *error = reply && reply->str ? pstrdup(reply->str) : pstrdup(c->errstr);

	if (reply)
		freeReplyObject(reply);
	redisFree(c);
	if (!ok)
		ereport(ERROR, (errmsg("redis %s failed on %s:%d: %s", command, inst->host, inst->port, error)));
}

/* The slot of a replica on a primary, created (reserving WAL now) if missing. */
void
replica_ensure_slot(Instance *primary, Instance *replica)
{
	if (!is_postgres(primary))
		return;
	(void) engine_postgres_value(primary,
					"SELECT pg_create_physical_replication_slot($1, true)"
					" WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)",
					slot_name(replica));
}

void
replica_drop_slot(Instance *primary, Instance *replica)
{
	if (!is_postgres(primary))
		return;
	(void) engine_postgres_value(primary,
					"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
					" WHERE slot_name = $1 AND NOT active",
					slot_name(replica));
}

/*
 * The data of a new replica: a base backup of the primary through the
 * replica's slot (PostgreSQL), or the primary's users for Redis (the data
 * comes by replication once it starts).
 */
void
replica_provision(Instance *primary, Instance *replica)
{
	char	   *marker = psprintf("%s/replica_ready", replica->directory);
	char	   *datadir = psprintf("%s/data", replica->directory);

	if (dborch_path_exists(marker))
		return;
	dborch_remove_tree(datadir);
	if (is_postgres(primary))
	{
		const char *argv[] = {dborch_bindir_program("", "pg_basebackup"),
			"-h", psprintf("%s/run", primary->directory), "-p", psprintf("%d", primary->port),
			"-U", "postgres", "-D", datadir, "-X", "stream", "-c", "fast",
		"-S", slot_name(replica), "-w", NULL};
		char	   *log = psprintf("%s/basebackup.log", replica->directory);

		replica_ensure_slot(primary, replica);
		if (spawn_run(argv, log, 12 * 3600 * 1000) != 0)
			ereport(ERROR, (errmsg("pg_basebackup for a replica of \"%s\" failed", primary->deployment_name),
							errdetail("%s", dborch_file_tail(log, 800))));
	}
	else
	{
		dborch_mkdir(datadir, 0700);
		dborch_write_file(psprintf("%s/users.acl", replica->directory),
						  dborch_read_file(psprintf("%s/users.acl", primary->directory), false), 0600);
	}
	dborch_write_file(marker, "", 0600);
}

/* Is the replica streaming from its primary? */
static bool
replica_streaming(Instance *primary, Instance *replica)
{
	if (is_postgres(primary))
	{
		char	   *active = engine_postgres_value(primary, "SELECT active FROM pg_replication_slots WHERE slot_name = $1",
									  slot_name(replica));

		return active != NULL && strcmp(active, "t") == 0;
	}
	return strstr(redis_info(replica, "replication"), "master_link_status:up") != NULL;
}

void
replica_wait_streaming(Instance *primary, Instance *replica)
{
	int64		deadline = dborch_now_ms() + dborch_start_timeout_ms;

	while (!replica_streaming(primary, replica))
	{
		if (dborch_now_ms() > deadline)
			ereport(ERROR, (errmsg("replica %s:%d of \"%s\" does not stream from its primary",
								   replica->host, replica->port, replica->deployment_name)));
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 20, DBORCH_WAIT_EVENT);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/* How far a replica has received the primary's changes (larger is further). */
int64
replica_position(Instance *replica)
{
	if (is_postgres(replica))
	{
		char	   *lsn = engine_postgres_value(replica,
								   "SELECT pg_wal_lsn_diff(coalesce(pg_last_wal_receive_lsn(),"
								   " pg_last_wal_replay_lsn(), pg_current_wal_lsn()), '0/0')::bigint",
								   NULL);

		return lsn ? strtoi64(lsn, NULL, 10) : -1;
	}
	else
	{
		char	   *info = redis_info(replica, "replication");
		char	   *p = strstr(info, "slave_repl_offset:");

		if (p == NULL)
			p = strstr(info, "master_repl_offset:");
		return p ? strtoi64(strchr(p, ':') + 1, NULL, 10) : -1;
	}
}

/* The replica becomes a primary. */
void
replica_promote(Instance *replica)
{
	if (is_postgres(replica))
	{
		char	   *in_recovery = engine_postgres_value(replica, "SELECT pg_is_in_recovery()", NULL);

		if (in_recovery != NULL && strcmp(in_recovery, "t") == 0)
		{
			char	   *done = engine_postgres_value(replica, "SELECT pg_promote(true, 60)", NULL);

			if (done == NULL || strcmp(done, "t") != 0)
				ereport(ERROR, (errmsg("promotion of %s:%d did not finish", replica->host, replica->port)));
		}
	}
	else
		redis_simple(replica, "REPLICAOF NO ONE", NULL, NULL);
}

/*
 * A running replica follows the current primary (the catalog says which):
 * its configuration is rewritten, then reloaded (PostgreSQL) or told live
 * (Redis).
 */
void
replica_follow(Instance *primary, Instance *replica)
{
	engine_get(replica->engine)->configure_network(replica);
	if (is_postgres(replica))
	{
		replica_ensure_slot(primary, replica);
		(void) engine_postgres_value(replica, "SELECT pg_reload_conf()", NULL);
	}
	else
		redis_simple(replica, "REPLICAOF %s %s", primary->host, psprintf("%d", primary->port));
}

/*
 * The primary's configuration rewritten from the catalog and applied: after
 * a promotion, and whenever a synchronous deployment gains or loses its
 * replicas (synchronous_standby_names is set only while a replica starts or
 * runs, so a primary left without replicas does not wait for one).
 */
void
replica_reconfigure_primary(int64 deployment_id)
{
	Instance   *primary = cat_primary_instance(deployment_id);

	if (primary == NULL)
		return;
	engine_get(primary->engine)->configure_network(primary);
	if (is_postgres(primary) && strcmp(primary->status, "running") == 0)
		(void) engine_postgres_value(primary, "SELECT pg_reload_conf()", NULL);
}

/*
 * A former primary (stopped, or killed) comes back as a replica of the new
 * primary.  PostgreSQL: pg_rewind drops the changes it had that the new
 * timeline does not (and finishes its crash recovery first); if pg_rewind
 * cannot, a new base backup.
 */
void
replica_rejoin(Instance *primary, Instance *former)
{
	const EngineOps *engine = engine_get(former->engine);

	engine->stop(former);
	if (is_postgres(former))
	{
		const char *argv[] = {dborch_bindir_program("", "pg_rewind"),
			"-D", psprintf("%s/data", former->directory),
			"--source-server", engine_postgres_conninfo(primary->directory, primary->port),
		NULL};
		char	   *log = psprintf("%s/rewind.log", former->directory);

		replica_ensure_slot(primary, former);
		/* pg_rewind reads the new timeline from pg_control: make it current */
		(void) engine_postgres_value(primary, "CHECKPOINT", NULL);
		if (spawn_run(argv, log, 12 * 3600 * 1000) != 0)
		{
			ereport(LOG, (errmsg("dborch: pg_rewind of %s:%d failed, taking a new base backup",
								 former->host, former->port)));
			unlink(psprintf("%s/replica_ready", former->directory));
			replica_provision(primary, former);
		}
		/* pg_rewind brings the source's configuration along: ours goes back */
		engine->configure_security(former);
	}
	engine->configure_network(former);
	cat_set_instance_pid(former->id, engine->start(former));
}
