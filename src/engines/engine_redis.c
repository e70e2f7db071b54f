/*
 * engine_redis.c
 *		Redis instances: a generated redis.conf, redis-server started as its
 *		own process, readiness over hiredis (AUTH + PING), stop.
 *
 * Layout of an instance directory (mode 0700):
 *		redis.conf			port, bind address, memory, persistence (0600)
 *		users.acl			dborch's, the owner's and the tenants' users (0600)
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
#include "tenant.h"

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

	/* a replica follows the current primary as dborch's user */
	if (strcmp(inst->role, "replica") == 0)
	{
		Instance   *primary = cat_primary_instance(inst->deployment_id);

		if (primary == NULL)
			elog(ERROR, "dborch: deployment \"%s\" has no primary", inst->deployment_name);
		conf = psprintf("%sreplicaof %s %d\nmasteruser %s\nmasterauth %s\n",
						conf, primary->host, primary->port,
						engine_redis_dborch_user(inst->deployment_id),
						engine_dborch_password(inst->deployment_id));
	}
	dborch_write_file(psprintf("%s/redis.conf", inst->directory), conf, 0600);
}

/*
 * What the deployment's owner may run: every data command on every key and
 * channel, and what an application's operator uses (FLUSHALL, FLUSHDB,
 * KEYS, INFO, SLOWLOG, CLIENT LIST and KILL, SORT, ROLE, LASTSAVE); nothing
 * that changes the server: no CONFIG, ACL changes, MODULE, DEBUG, SHUTDOWN,
 * REPLICAOF, SAVE and kin, FAILOVER, CLUSTER changes, MIGRATE, RESTORE,
 * MONITOR, CLIENT PAUSE.
 */
#define OWNER_RULES \
	"~* &* +@all -@admin -@dangerous +flushall +flushdb +keys +info +sort +sort_ro" \
	" +slowlog|get +slowlog|len +slowlog|reset +client|list +client|kill +role +lastsave" \
	" +latency|latest +latency|history +latency|doctor"

/* "#<SHA-256 of password in hex>": a password as Redis' ACL file keeps it. */
char *
engine_redis_password_hash(const char *password)
{
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned int len;
	StringInfoData hash;

	if (EVP_Digest(password, strlen(password), digest, &len, EVP_sha256(), NULL) != 1)
		ereport(ERROR, (errmsg("could not hash the password")));
	initStringInfo(&hash);
	appendStringInfoChar(&hash, '#');
	for (unsigned int i = 0; i < len; i++)
		appendStringInfo(&hash, "%02x", digest[i]);
	return hash.data;
}

/*
 * users.acl (0600), from the catalog, so that an instance that starts (a
 * restart, a recovery, a new replica, a promotion) has every login as it
 * is now: the default user off, dborch's user, the owner's, and each
 * tenant's that has a password (read-only ones so).  Passwords are kept as
 * their SHA-256, Redis' own format.  A deployment of dborch 0.1 not yet
 * upgraded keeps 0.1's default user (all commands, the owner's password).
 */
static void
redis_configure_security(Instance *inst)
{
	char	   *dborch_pw = cat_secret(inst->deployment_id, SECRET_DBORCH);
	char	   *owner_pw = cat_secret(inst->deployment_id, SECRET_OWNER);
	StringInfoData acl;
	ListCell   *lc;

	if (owner_pw == NULL)
		elog(ERROR, "dborch: deployment \"%s\" has no password yet", inst->deployment_name);
	initStringInfo(&acl);
	if (dborch_pw == NULL)
		appendStringInfo(&acl, "user default on %s ~* &* +@all\n", engine_redis_password_hash(owner_pw));
	else
		appendStringInfo(&acl,
						 "user default off resetpass -@all\n"
						 "user " REDIS_DBORCH_USER " on %s ~* &* +@all\n"
						 "user " OWNER_LOGIN " on %s " OWNER_RULES "\n",
						 engine_redis_password_hash(dborch_pw), engine_redis_password_hash(owner_pw));
	foreach(lc, cat_tenants_with_login(inst->deployment_id))
	{
		Tenant	   *t = lfirst(lc);

		appendStringInfo(&acl, "user %s %s\n", t->name, tenant_redis_acl_rules(t));
	}
	dborch_write_file(psprintf("%s/users.acl", inst->directory), acl.data, 0600);
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

/* AUTH user password; NULL on success, else the reason. */
static char *
redis_auth(redisContext *c, const char *user, const char *password)
{
	const char *argv[] = {"AUTH", user, password};
	redisReply *reply = redisCommandArgv(c, 3, argv, NULL);
	char	   *failure = NULL;

	if (reply == NULL)
		return pstrdup(c->errstr);
	if (reply->type == REDIS_REPLY_ERROR)
		failure = pnstrdup(reply->str, reply->len);
	freeReplyObject(reply);
	return failure;
}

/* One attempt: connect, AUTH as dborch, PING. */
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
		failure = redis_auth(c, engine_redis_dborch_user(inst->deployment_id), password);
		if (failure == NULL)
			failure = redis_expect(c, "PONG", "PING", NULL);
	}
	if (c)
		redisFree(c);
	ReleaseExternalFD();
	return failure;
}

static void
redis_check_ready(Instance *inst, int timeout_ms)
{
	engine_wait_ready(inst, timeout_ms, 2, try_ping, "redis-server", "redis.log");
}

/* A blocking connection, logged in as user. */
redisContext *
engine_redis_connect_as(Instance *inst, const char *user, const char *password)
{
	struct timeval tv = {10, 0};
	redisContext *c = redisConnectWithTimeout(inst->host, inst->port, tv);
	char	   *failure;

	if (c == NULL || c->err)
		ereport(ERROR, (errmsg("could not connect to redis of deployment \"%s\": %s",
							   inst->deployment_name, c ? c->errstr : "out of memory")));
	redisSetTimeout(c, tv);
	if ((failure = redis_auth(c, user, password)) != NULL)
	{
		redisFree(c);
		ereport(ERROR, (errmsg("could not authenticate to redis of deployment \"%s\": %s",
							   inst->deployment_name, failure)));
	}
	return c;
}

/* A blocking connection as dborch's user, for jobs (backups, tenants). */
redisContext *
engine_redis_connect(Instance *inst)
{
	return engine_redis_connect_as(inst, engine_redis_dborch_user(inst->deployment_id),
								   engine_dborch_password(inst->deployment_id));
}

/* Run a command with arguments; an error reply is an error unless it says ignore. */
static void
redis_run(redisContext *c, Instance *inst, int argc, const char **argv, const char *ignore)
{
	redisReply *reply = redisCommandArgv(c, argc, argv, NULL);
	char	   *error = NULL;

	if (reply == NULL)
		error = pstrdup(c->errstr);
	else if (reply->type == REDIS_REPLY_ERROR &&
			 (ignore == NULL || strstr(reply->str, ignore) == NULL))
		error = pnstrdup(reply->str, reply->len);
	if (reply)
		freeReplyObject(reply);
	if (error != NULL)
		ereport(ERROR, (errmsg("redis %s %s on %s:%d of deployment \"%s\" failed: %s",
							   argv[0], argc > 1 ? argv[1] : "", inst->host, inst->port,
							   inst->deployment_name, error)));
}

/*
 * The logins of a running instance as the catalog has them: the owner's
 * ACL user, the default user off and its sessions ended (an owner's from
 * dborch 0.1), a replica's link to its primary as dborch's user, the
 * tenants' users with this version's rules, then ACL SAVE.  User by user, not ACL LOAD, which would disconnect every client
 * of every user; the tenants' users are left as they are.
 */
static void
redis_apply_logins(Instance *inst)
{
	redisContext *c = engine_redis_connect(inst);
	char	   *owner_hash = engine_redis_password_hash(cat_secret(inst->deployment_id, SECRET_OWNER));
	List	   *owner = NIL;
	const char *default_off[] = {"ACL", "SETUSER", "default", "reset", "off"};
	const char *save[] = {"ACL", "SAVE"};
	const char *kill[] = {"CLIENT", "KILL", "USER", "default"};
	char	   *rules;
	char	   *rule;

	/* ACL SETUSER owner reset on #hash <OWNER_RULES> */
	owner = list_make5("ACL", "SETUSER", OWNER_LOGIN, "reset", "on");
	owner = lappend(owner, owner_hash);
	rules = pstrdup(OWNER_RULES);
	for (rule = strtok(rules, " "); rule != NULL; rule = strtok(NULL, " "))
		owner = lappend(owner, rule);
	PG_TRY();
	{
		const char **argv = palloc(sizeof(char *) * list_length(owner));
		ListCell   *lc;
		ListCell   *la;
		int			n = 0;

		foreach(lc, owner)
			argv[n++] = lfirst(lc);
		redis_run(c, inst, n, argv, NULL);
		if (strcmp(inst->role, "replica") == 0)
		{
			const char *user[] = {"CONFIG", "SET", "masteruser", engine_redis_dborch_user(inst->deployment_id)};
			const char *auth[] = {"CONFIG", "SET", "masterauth", engine_dborch_password(inst->deployment_id)};

			redis_run(c, inst, 4, user, NULL);
			redis_run(c, inst, 4, auth, NULL);
		}
		redis_run(c, inst, lengthof(default_off), default_off, NULL);
		/* tenants' users as this version makes them */
		foreach(lc, cat_tenants_with_login(inst->deployment_id))
		{
			Tenant	   *t = lfirst(lc);
			List	   *args = list_make2("ACL", "SETUSER");

			args = lappend(args, t->name);
			rules = tenant_redis_acl_rules(t);
			for (rule = strtok(rules, " "); rule != NULL; rule = strtok(NULL, " "))
				args = lappend(args, rule);
			n = 0;
			argv = repalloc(argv, sizeof(char *) * list_length(args));
			foreach(la, args)
				argv[n++] = lfirst(la);
			redis_run(c, inst, n, argv, NULL);
		}
		redis_run(c, inst, lengthof(save), save, NULL);
		redis_run(c, inst, lengthof(kill), kill, "No such user");
	}
	PG_FINALLY();
	{
		redisFree(c);
	}
	PG_END_TRY();
}

/*
 * A deployment of dborch 0.1 gets dborch's own user, with password, on a
 * running instance, logged in as 0.1 did (the default user and the
 * owner's password): the first step of its upgrade (job_upgrade.c).
 */
void
engine_redis_add_dborch_login(Instance *inst, const char *password)
{
	redisContext *c = engine_redis_connect_as(inst, "default",
											  cat_secret(inst->deployment_id, SECRET_OWNER));
	char	   *hash = engine_redis_password_hash(password);
	const char *setuser[] = {"ACL", "SETUSER", REDIS_DBORCH_USER, "reset", "on", hash, "~*", "&*", "+@all"};
	const char *user[] = {"CONFIG", "SET", "masteruser", REDIS_DBORCH_USER};
	const char *auth[] = {"CONFIG", "SET", "masterauth", password};

	PG_TRY();
	{
		redis_run(c, inst, lengthof(setuser), setuser, NULL);
		if (strcmp(inst->role, "replica") == 0)
		{
			redis_run(c, inst, 4, user, NULL);
			redis_run(c, inst, 4, auth, NULL);
		}
	}
	PG_FINALLY();
	{
		redisFree(c);
	}
	PG_END_TRY();
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
	return psprintf("redis://" OWNER_LOGIN ":%s@%s:%d/0",
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
	.apply_logins = redis_apply_logins,
	.stop = redis_stop,
	.connection_string = redis_connection_string,
};
