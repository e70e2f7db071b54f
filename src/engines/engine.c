/*
 * engine.c
 *		Lookup of the engine table and the helpers both engines share.
 */
#include "postgres.h"

#include <signal.h>

#include "miscadmin.h"
#include "storage/latch.h"

#include "dborch.h"
#include "engine.h"
#include "spawn.h"

const EngineOps *
engine_get(const char *name)
{
	if (name == NULL)
		return NULL;
	if (strcmp(name, engine_postgres.name) == 0)
		return &engine_postgres;
	if (strcmp(name, engine_redis.name) == 0)
		return &engine_redis;
	return NULL;
}

/*
 * Send first_signal to pid and wait grace_ms for it to exit; then SIGKILL
 * and wait again.  Errors if the process is still there after that.
 */
void
engine_stop_process(pid_t pid, int first_signal, int grace_ms)
{
	if (pid <= 0)
		return;
	if (kill(pid, first_signal) != 0 && errno == ESRCH)
		return;
	if (spawn_wait_exit(pid, grace_ms))
		return;
	ereport(LOG, (errmsg("dborch: process %d did not stop within %d ms, killing it",
						 (int) pid, grace_ms)));
	kill(pid, SIGKILL);
	if (!spawn_wait_exit(pid, 10000))
		ereport(ERROR, (errmsg("process %d did not exit after SIGKILL", (int) pid)));
}

char *
engine_dborch_password(int64 deployment_id)
{
	char	   *password = cat_secret(deployment_id, SECRET_DBORCH);

	return password ? password : cat_secret(deployment_id, SECRET_OWNER);
}

const char *
engine_redis_dborch_user(int64 deployment_id)
{
	return cat_secret(deployment_id, SECRET_DBORCH) ? REDIS_DBORCH_USER : "default";
}

char *
engine_uri_host(const char *host)
{
	return strchr(host, ':') ? psprintf("[%s]", host) : pstrdup(host);
}

/*
 * Retry probe (a real client query with dborch's own login) every
 * nap_ms, and after the first 200 ms at intervals doubling up to 25 ms (a
 * long crash recovery is not asked a hundred times a second, each a
 * connection the server forks for), until it succeeds; an error when the
 * server exited (with the tail of log_file) or after timeout_ms.  server
 * names the program in messages.
 */
void
engine_wait_ready(Instance *inst, int timeout_ms, int nap_ms,
				  EngineReadyProbe probe, const char *server, const char *log_file)
{
	const EngineOps *engine = engine_get(inst->engine);
	char	   *password = engine_dborch_password(inst->deployment_id);
	int64		started_ms = dborch_now_ms();
	int64		deadline = started_ms + timeout_ms;
	int			nap = nap_ms;

	for (;;)
	{
		char	   *failure = probe(inst, password, deadline);

		if (failure == NULL)
			return;
		if (engine->running_pid(inst) == 0)
			ereport(ERROR,
					(errmsg("%s of deployment \"%s\" exited during startup",
							server, inst->deployment_name),
					 errdetail("%s", dborch_file_tail(psprintf("%s/%s", inst->directory, log_file), 800))));
		if (dborch_now_ms() >= deadline)
			ereport(ERROR,
					(errmsg("%s of deployment \"%s\" did not answer within %d ms",
							server, inst->deployment_name, timeout_ms),
					 errdetail("Last error: %s", failure)));
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 nap, DBORCH_WAIT_EVENT);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		/* a quick start is seen at once; a long one is not asked as often */
		if (dborch_now_ms() - started_ms > 200)
			nap = Min(nap * 2, Max(nap_ms, 25));
	}
}
