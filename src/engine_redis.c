/*
 * engine_redis.c
 *		Redis instances: a generated redis.conf, redis-server started as its
 *		own process, readiness over hiredis (AUTH + PING), stop.
 *
 * Layout of an instance directory (mode 0700):
 *		redis.conf			port, bind address, memory, persistence (0600)
 *		users.acl			the default user and tenants' users (0600)
 *		data/				dump.rdb and the append-only files
 *		redis.pid, redis.log
 */
#include "postgres.h"

#include <signal.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>
#include <openssl/evp.h>

#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "storage/latch.h"

#include "dborch.h"
#include "engine.h"
#include "spawn.h"

static const char *const redis_versions[] = {"7", NULL};

/* Each instance has its own data directory: Redis loads any dump.rdb in it. */
static void
redis_provision(Instance *inst, const char *password, const char *pool_directory)
{
	dborch_mkdir(psprintf("%s/data", inst->directory), 0700);
}

static void
redis_configure_network(Instance *inst)
{
	char	   *conf;

	conf = psprintf("# Written by dborch for deployment %s; dborch overwrites changes here.\n"
					"bind %s\n"
					"port %d\n"
					"protected-mode yes\n"
					"daemonize no\n"
					"pidfile %s/redis.pid\n"
					"logfile \"\"\n"
					"dir %s/data\n"
					"appendonly yes\n"
					"appendfsync everysec\n"
					"maxmemory " INT64_FORMAT "\n"
					"maxmemory-policy noeviction\n"
					/* a new replica syncs at once, not after 5 s of waiting for others */
					"repl-diskless-sync-delay 0\n"
					"aclfile %s/users.acl\n",
					inst->deployment_name, inst->host, inst->port, inst->directory,
					inst->directory, inst->memory_bytes, inst->directory);

	if (inst->max_connections > 0)
		conf = psprintf("%smaxclients %d\n", conf, inst->max_connections);

	/* a replica follows the current primary as its default user */
	if (strcmp(inst->role, "replica") == 0)
	{
		Instance   *primary = cat_primary_instance(inst->deployment_id);

		if (primary == NULL)
			elog(ERROR, "dborch: deployment \"%s\" has no primary", inst->deployment_name);
		conf = psprintf("%sreplicaof %s %d\nmasteruser default\nmasterauth %s\n",
						conf, primary->host, primary->port,
						cat_secret(inst->deployment_id, "password"));
	}
	dborch_write_file(psprintf("%s/redis.conf", inst->directory), conf, 0600);
}

/*
 * users.acl (0600): the default user with the generated password, stored as
 * its SHA-256 (Redis' own format); tenants' users, added later with ACL
 * SETUSER and ACL SAVE, are kept when this runs again.
 */
static void
redis_configure_security(Instance *inst, const char *password)
{
	char	   *path = psprintf("%s/users.acl", inst->directory);
	char	   *old = dborch_read_file(path, true);
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned int len;
	StringInfoData acl;
	char	   *line;

	if (EVP_Digest(password, strlen(password), digest, &len, EVP_sha256(), NULL) != 1)
		ereport(ERROR, (errmsg("could not hash the password")));
	initStringInfo(&acl);
	appendStringInfoString(&acl, "user default on #");
	for (unsigned int i = 0; i < len; i++)
		appendStringInfo(&acl, "%02x", digest[i]);
	appendStringInfoString(&acl, " ~* &* +@all\n");
	for (line = old ? strtok(old, "\n") : NULL; line != NULL; line = strtok(NULL, "\n"))
		if (strncmp(line, "user default ", 13) != 0)
			appendStringInfo(&acl, "%s\n", line);
	dborch_write_file(path, acl.data, 0600);
}

static pid_t
redis_running_pid(Instance *inst)
{
	char	   *pidfile = dborch_read_file(psprintf("%s/redis.pid", inst->directory), true);
	pid_t		pid;

	if (pidfile == NULL)
		return 0;
	pid = (pid_t) atoi(pidfile);
	return dborch_process_alive(pid, "redis-server") ? pid : 0;
}

static pid_t
redis_start(Instance *inst)
{
	char	   *conf = psprintf("%s/redis.conf", inst->directory);
	const char *argv[] = {dborch_redis_server_path, conf, NULL};
	pid_t		pid = redis_running_pid(inst);
	int64		deadline;

	if (pid != 0)
		return pid;
	/* a stale pid file would make a later check adopt an unrelated process */
	unlink(psprintf("%s/redis.pid", inst->directory));
	pid = spawn_start(argv, psprintf("%s/redis.log", inst->directory));

	/* redis-server writes its pid file early in its startup: wait for it */
	deadline = dborch_now_ms() + 10000;
	while (redis_running_pid(inst) != pid)
	{
		if (!dborch_process_alive(pid, NULL) || dborch_now_ms() > deadline)
			ereport(ERROR,
					(errmsg("redis-server of deployment \"%s\" did not start",
							inst->deployment_name),
					 errdetail("%s", dborch_file_tail(psprintf("%s/redis.log", inst->directory), 800))));
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 1, DBORCH_WAIT_EVENT);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	return pid;
}

/* Send one command and check the reply; NULL on success, else the reason. */
static char *
redis_expect(redisContext *c, const char *expected, const char *fmt, const char *arg)
{
	redisReply *reply = arg ? redisCommand(c, fmt, arg) : redisCommand(c, fmt);
	char	   *failure = NULL;

	if (reply == NULL)
		return pstrdup(c->errstr);
	if (reply->type == REDIS_REPLY_ERROR)
		failure = pnstrdup(reply->str, reply->len);
	else if ((reply->type != REDIS_REPLY_STATUS && reply->type != REDIS_REPLY_STRING) ||
			 strcmp(reply->str, expected) != 0)
		failure = psprintf("unexpected reply to %s", fmt);
	freeReplyObject(reply);
	return failure;
}

/* One attempt: connect, AUTH with the generated password, PING. */
static char *
try_ping(Instance *inst, const char *password, int64 deadline)
{
	int64		remaining = Max(deadline - dborch_now_ms(), 1);
	struct timeval tv = {remaining / 1000, (remaining % 1000) * 1000};
	redisContext *c;
	char	   *failure;

	if (!AcquireExternalFD())
		return pstrdup("too many open files in the worker");
	c = redisConnectWithTimeout(inst->host, inst->port, tv);
	if (c == NULL)
		failure = pstrdup("out of memory");
	else if (c->err)
		failure = pstrdup(c->errstr);
	else
	{
		redisSetTimeout(c, tv);
		failure = redis_expect(c, "OK", "AUTH %s", password);
		if (failure == NULL)
			failure = redis_expect(c, "PONG", "PING", NULL);
	}
	if (c)
		redisFree(c);
	ReleaseExternalFD();
	return failure;
}

static void
redis_check_ready(Instance *inst, const char *password, int timeout_ms)
{
	engine_wait_ready(inst, password, timeout_ms, 2, try_ping, "redis-server", "redis.log");
}

/* A blocking connection as the default user, for jobs (backups, tenants). */
redisContext *
engine_redis_connect(Instance *inst, const char *password)
{
	struct timeval tv = {10, 0};
	redisContext *c = redisConnectWithTimeout(inst->host, inst->port, tv);
	redisReply *reply;

	if (c == NULL || c->err)
		ereport(ERROR, (errmsg("could not connect to redis of deployment \"%s\": %s",
							   inst->deployment_name, c ? c->errstr : "out of memory")));
	redisSetTimeout(c, tv);
	reply = redisCommand(c, "AUTH %s", password);
	if (reply == NULL || reply->type == REDIS_REPLY_ERROR)
	{
		if (reply)
			freeReplyObject(reply);
		redisFree(c);
		ereport(ERROR, (errmsg("could not authenticate to redis of deployment \"%s\"",
							   inst->deployment_name)));
	}
	freeReplyObject(reply);
	return c;
}

/* SIGTERM: Redis flushes the append-only file and exits. */
static void
redis_stop(Instance *inst)
{
	engine_stop_process(redis_running_pid(inst), SIGTERM, 30000);
}

static char *
redis_connection_string(Instance *inst, const char *password)
{
	return psprintf("redis://default:%s@%s:%d/0",
					password, engine_uri_host(inst->host), inst->port);
}

const EngineOps engine_redis = {
	.name = "redis",
	.versions = redis_versions,
	.min_memory = 4 * 1024 * 1024,
	.provision = redis_provision,
	.configure_network = redis_configure_network,
	.configure_security = redis_configure_security,
	.start = redis_start,
	.running_pid = redis_running_pid,
	.check_ready = redis_check_ready,
	.stop = redis_stop,
	.connection_string = redis_connection_string,
};
