/*
 * engine.h
 *		What differs per database engine, as a table of functions.  Every
 *		operation is idempotent: a job that crashed runs it again safely.
 */
#ifndef DBORCH_ENGINE_H
#define DBORCH_ENGINE_H

#include "catalog.h"

typedef struct EngineOps
{
	const char *name;				/* "postgres" or "redis" */
	const char *const *versions;	/* accepted values of the version option,
									 * the first is the default; NULL-terminated */
	int64		min_memory;			/* smallest memory option, in bytes */

	/* create the instance's data (data/ under inst->directory) */
	void		(*provision) (Instance *inst, const char *password, const char *pool_directory);
	/* write the configuration of port, address and memory */
	void		(*configure_network) (Instance *inst);
	/* write the authentication configuration */
	void		(*configure_security) (Instance *inst, const char *password);
	/* start the server unless it runs; returns its pid */
	pid_t		(*start) (Instance *inst);
	/* pid of the running server of this instance, or 0 */
	pid_t		(*running_pid) (Instance *inst);
	/* wait until a real client query succeeds, or raise an error */
	void		(*check_ready) (Instance *inst, const char *password, int timeout_ms);
	/* stop the server if it runs, and wait until it has exited */
	void		(*stop) (Instance *inst);
	/* URI with credentials for a client */
	char	   *(*connection_string) (Instance *inst, const char *password);
} EngineOps;

extern const EngineOps engine_postgres;
extern const EngineOps engine_redis;

/* The engine called name, or NULL. */
extern const EngineOps *engine_get(const char *name);

/* A blocking, authenticated hiredis connection to a Redis instance. */
struct redisContext;
extern struct redisContext *engine_redis_connect(Instance *inst, const char *password);

/*
 * PostgreSQL instances as their superuser, over the private socket in
 * <directory>/run (peer authentication of the postgres OS user): the
 * conninfo, and a blocking connection (errors name the instance).
 */
extern char *engine_postgres_conninfo(const char *directory, int port);
struct pg_conn;
extern struct pg_conn *engine_postgres_connect(Instance *inst);

/* initdb of a data directory with the bootstrap superuser password. */
extern void engine_postgres_initdb(const char *datadir, const char *password, const char *log_path);

/* Stop pid with signals first_signal, then SIGKILL; shared by the engines. */
extern void engine_stop_process(pid_t pid, int first_signal, int grace_ms);

/* One attempt of a readiness check: NULL on success, else the reason. */
typedef char *(*EngineReadyProbe) (Instance *inst, const char *password, int64 deadline_ms);

/* Retry a readiness probe until it succeeds, the server exits, or the timeout. */
extern void engine_wait_ready(Instance *inst, const char *password, int timeout_ms, int nap_ms,
							  EngineReadyProbe probe, const char *server, const char *log_file);

/* host part of a URI: IPv6 addresses in brackets */
extern char *engine_uri_host(const char *host);

#endif							/* DBORCH_ENGINE_H */
