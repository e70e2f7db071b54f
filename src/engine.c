/*
 * engine.c
 *		Lookup of the engine table and the helpers both engines share.
 */
#include "postgres.h"

#include <signal.h>

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
engine_uri_host(const char *host)
{
	return strchr(host, ':') ? psprintf("[%s]", host) : pstrdup(host);
}
