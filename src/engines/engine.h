/*
 * engine.h
 *		What differs per database engine, as a table of functions.  Every
 *		operation is idempotent: a job that crashed runs it again safely.
 */
#ifndef DBORCH_ENGINE_H
#define DBORCH_ENGINE_H

#include "catalog.h"

/* dborch's own password in a deployment's instances. */
extern char *engine_dborch_password(int64 deployment_id);

/* The Redis ACL user dborch logs in as ("dborch", or 0.1's "default"). */
extern const char *engine_redis_dborch_user(int64 deployment_id);

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
	/* write the authentication configuration, logins from the catalog */
	void		(*configure_security) (Instance *inst);
	/* start the server unless it runs; returns its pid */
	pid_t		(*start) (Instance *inst);
	/* pid of the running server of this instance, or 0 */
	pid_t		(*running_pid) (Instance *inst);
	/* wait until a real client query as dborch succeeds, or raise an error */
	void		(*check_ready) (Instance *inst, int timeout_ms);
	/*
	 * bring the logins of a running instance to what the catalog holds
	 * (dborch's own, the owner's); NULL if the engine needs nothing done
	 */
	void		(*apply_logins) (Instance *inst);
	/* true: logins live in the data (roles), made by apply_logins once it runs */
	bool		logins_in_data;
	/* stop the server if it runs, and wait until it has exited */
	void		(*stop) (Instance *inst);
	/* URI with the owner's credentials for a client */
	char	   *(*connection_string) (Instance *inst, const char *password);
} EngineOps;

extern const EngineOps engine_postgres;
extern const EngineOps engine_redis;

/* The engine called name, or NULL. */
extern const EngineOps *engine_get(const char *name);

/* A blocking hiredis connection to a Redis instance, logged in as dborch (or user). */
struct redisContext;
extern struct redisContext *engine_redis_connect(Instance *inst);
extern struct redisContext *engine_redis_connect_as(Instance *inst, const char *user,
													 const char *password);
extern char *engine_redis_password_hash(const char *password);
extern void engine_redis_add_dborch_login(Instance *inst, const char *password);

/*
 * Settings of every session dborch opens in a PostgreSQL instance, over
 * whatever the database or its roles set (the owner owns database postgres
 * and may ALTER DATABASE ... SET): only pg_catalog on the search path, so
 * that no function, operator or table an owner or tenant made can stand in
 * for a catalog one in a superuser's query, and none of their role
 * switches, timeouts or read-only defaults.
 */
#define DBORCH_PG_SESSION_OPTIONS \
	"-c search_path=pg_catalog,pg_temp -c role=none -c default_transaction_read_only=off" \
	" -c statement_timeout=0 -c lock_timeout=0 -c idle_in_transaction_session_timeout=0" \
	" -c DateStyle=ISO -c IntervalStyle=postgres -c TimeZone=UTC"

/*
 * The functions that make large objects.  PUBLIC may not call them in an
 * instance (no privilege stops lo_create() otherwise): the owner role and
 * each tenant's owner role may, so a read-only tenant, out of its owner
 * role, cannot store more in large objects.
 */
#define LO_CREATE_FUNCTIONS \
	"pg_catalog.lo_creat(integer), pg_catalog.lo_create(oid), pg_catalog.lo_from_bytea(oid, bytea)"

/*
 * PostgreSQL instances as their superuser, over the private socket in
 * <directory>/run (peer authentication of the postgres OS user): the
 * conninfo, and a blocking connection (errors name the instance).
 */
extern char *engine_postgres_conninfo(const char *directory, int port);
struct pg_conn;
extern struct pg_conn *engine_postgres_connect(Instance *inst);

/* One value of a query on the instance, with one text parameter (NULL: none); NULL for no row or NULL. */
extern char *engine_postgres_value(Instance *inst, const char *sql, const char *param);

/* initdb of a data directory with the bootstrap superuser password. */
extern void engine_postgres_initdb(const char *datadir, const char *password, const char *log_path);

/* Stop pid with signals first_signal, then SIGKILL; shared by the engines. */
extern void engine_stop_process(pid_t pid, int first_signal, int grace_ms);

/* One attempt of a readiness check: NULL on success, else the reason. */
typedef char *(*EngineReadyProbe) (Instance *inst, const char *password, int64 deadline_ms);

/* Retry a readiness probe until it succeeds, the server exits, or the timeout. */
extern void engine_wait_ready(Instance *inst, int timeout_ms, int nap_ms,
							  EngineReadyProbe probe, const char *server, const char *log_file);

/* host part of a URI: IPv6 addresses in brackets */
extern char *engine_uri_host(const char *host);

#endif							/* DBORCH_ENGINE_H */
