/*
 * engine_postgres.c
 *		PostgreSQL instances: initdb, configuration, pg_ctl start, readiness
 *		over libpq, stop.
 *
 * Layout of an instance directory (mode 0700):
 *		data/				PGDATA, with dborch.conf included by postgresql.conf
 *		run/				the Unix socket (peer authentication, postgres only)
 *		postgresql.log		server log (pg_ctl -l)
 *		initdb.log, pg_ctl.log
 */
#include "postgres.h"

#include <signal.h>
#include <sys/shm.h>
#include <unistd.h>

#include "lib/stringinfo.h"
#include "libpq-fe.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "storage/latch.h"
#include "utils/builtins.h"

#include "backup.h"
#include "dborch.h"
#include "engine.h"
#include "spawn.h"
#include "tls.h"

/* Marker written once initdb succeeded: PG_VERSION appears long before that. */
#define INITDB_DONE_MARKER "dborch_initdb_done"

static const char *const postgres_versions[] = {"15", NULL};

static char *
data_dir(Instance *inst)
{
	return psprintf("%s/data", inst->directory);
}

/* initdb with SCRAM, the superuser password from a 0600 file, no locale. */
void
engine_postgres_initdb(const char *datadir, const char *password, const char *log_path)
{
	const char *initdb = dborch_bindir_program(dborch_initdb_path, "initdb");
	char	   *pwfile = psprintf("%s.pwfile", datadir);
	char	   *marker = psprintf("%s/%s", datadir, INITDB_DONE_MARKER);
	const char *argv[] = {
		initdb, "-D", datadir, "-U", "postgres", "--pwfile", pwfile,
		"--auth-local=peer", "--auth-host=scram-sha-256",
		"-E", "UTF8", "--no-locale", "--no-instructions", NULL
	};
	int			rc;

	dborch_remove_tree(datadir);
	dborch_write_file(pwfile, psprintf("%s\n", password), 0600);
	PG_TRY();
	{
		rc = spawn_run(argv, log_path, 300000);
	}
	PG_FINALLY();
	{
		unlink(pwfile);
	}
	PG_END_TRY();

	if (rc != 0)
		ereport(ERROR,
				(errmsg("initdb failed with exit code %d", rc),
				 errdetail("%s", dborch_file_tail(log_path, 800))));
	dborch_write_file(marker, "", 0600);
}

/* Data from the warm pool (moved in with one rename) or from initdb. */
static void
postgres_provision(Instance *inst, const char *password, const char *pool_directory)
{
	char	   *datadir = data_dir(inst);

	if (dborch_path_exists(psprintf("%s/%s", datadir, INITDB_DONE_MARKER)))
		return;
	if (pool_directory != NULL &&
		dborch_path_exists(psprintf("%s/data/%s", pool_directory, INITDB_DONE_MARKER)))
	{
		char	   *pooldata = psprintf("%s/data", pool_directory);

		dborch_remove_tree(datadir);
		if (rename(pooldata, datadir) != 0)
			ereport(ERROR, (errcode_for_file_access(),
							errmsg("could not move \"%s\" to \"%s\": %m", pooldata, datadir)));
		dborch_remove_tree(pool_directory);
		return;
	}
	engine_postgres_initdb(datadir, password, psprintf("%s/initdb.log", inst->directory));
}

/* A string value for postgresql.conf: single quotes, doubled inside. */
static char *
conf_literal(const char *value)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '\'');
	for (; *value; value++)
	{
		if (*value == '\'')
			appendStringInfoChar(&buf, '\'');
		appendStringInfoChar(&buf, *value);
	}
	appendStringInfoChar(&buf, '\'');
	return buf.data;
}

/*
 * dborch.conf: address, port, socket, memory, WAL archiving; included from
 * postgresql.conf.
 */
static void
postgres_configure_network(Instance *inst)
{
	char	   *datadir = data_dir(inst);
	char	   *main_conf = psprintf("%s/postgresql.conf", datadir);
	char	   *conf;
	const char *include_line = "include_if_exists = 'dborch.conf'\n";
	int64		shared_buffers_kb = (inst->memory_bytes / 8192) * 8;

	/* sockaddr_un.sun_path is 108 bytes: PostgreSQL refuses longer socket paths */
	if (strlen(inst->directory) + strlen("/run/.s.PGSQL.65535") >= 108)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the socket path of deployment \"%s\" would be too long", inst->deployment_name),
				 errdetail("\"%s/run/.s.PGSQL.%d\" is longer than the 107 bytes a Unix socket path may have.",
						   inst->directory, inst->port),
				 errhint("Set dborch.data_directory to a shorter directory.")));
	dborch_mkdir(psprintf("%s/run", inst->directory), 0700);
	conf = psprintf("# Written by dborch for deployment %s; dborch overwrites changes here.\n"
					"listen_addresses = '%s'\n"
					"port = %d\n"
					"unix_socket_directories = '%s/run'\n"
					"shared_buffers = " INT64_FORMAT "kB\n"
					"password_encryption = 'scram-sha-256'\n"
					"cluster_name = '%s'\n"
					"archive_mode = on\n"
					"archive_command = %s\n"
					/* a quiet server still archives its WAL: the recovery point objective */
					"archive_timeout = %d\n"
					"wal_log_hints = on\n"	/* pg_rewind after a failover */
					/* after a crash, one syncfs() instead of an fsync per file */
					"recovery_init_sync_method = syncfs\n"
					/* the owner's CREATEROLE stops short of the OS (src/guard/dborch_guard.c) */
					"shared_preload_libraries = 'dborch_guard'\n"
					/* TCP clients only over TLS (pg_hba.conf), with the certificate dborch issued */
					"ssl = on\n"
					"ssl_cert_file = %s\n"
					"ssl_key_file = %s\n"
					"ssl_min_protocol_version = 'TLSv1.2'\n",
					inst->deployment_name, inst->host, inst->port, inst->directory,
					shared_buffers_kb, inst->deployment_name,
					conf_literal(pgbr_archive_command(inst->deployment_name, inst->deployment_id)),
					dborch_archive_timeout_s,
					conf_literal(tls_server_cert_file(inst)), conf_literal(tls_server_key_file(inst)));

	/*
	 * A replica streams from the current primary over its socket (the
	 * postgres OS user, peer authentication) through its own slot.
	 */
	if (strcmp(inst->role, "replica") == 0)
	{
		Instance   *primary = cat_primary_instance(inst->deployment_id);

		if (primary == NULL)
			elog(ERROR, "dborch: deployment \"%s\" has no primary", inst->deployment_name);
		conf = psprintf("%s"
						"primary_conninfo = 'host=%s/run port=%d user=postgres application_name=%s_" INT64_FORMAT "'\n"
						"primary_slot_name = 'dborch_r" INT64_FORMAT "'\n"
						"hot_standby = on\n",
						conf, primary->directory, primary->port, inst->deployment_name, inst->id, inst->id);
		dborch_write_file(psprintf("%s/standby.signal", datadir), "", 0600);
	}
	if (inst->max_connections > 0)
		conf = psprintf("%smax_connections = %d\n", conf, inst->max_connections);
	/* a commit waits until one replica, whichever, has flushed it */
	if (inst->synchronous)
		conf = psprintf("%ssynchronous_standby_names = 'ANY 1 (*)'\n", conf);
	dborch_write_file(psprintf("%s/dborch.conf", datadir), conf, 0600);

	conf = dborch_read_file(main_conf, false);
	if (strstr(conf, include_line) == NULL)
		dborch_write_file(main_conf, psprintf("%s\n%s", conf, include_line), 0600);
}

/*
 * pg_hba.conf: the superuser over the private socket by peer authentication
 * (the control plane's own tools: pgBackRest, pg_basebackup); dborch's own
 * login over TLS from the listen address (the health check, the prober);
 * everyone else over TLS with SCRAM from the networks of the spec's allow,
 * or from the listen address when it has none; a connection without TLS is
 * rejected.  The instance's certificate is issued here when it has
 * none (a new instance, or one made by dborch 0.1) or has less than a third
 * of its lifetime left (a start, a recovery, a scale renews it).
 */
static void
postgres_configure_security(Instance *inst)
{
	const char *mask = strchr(inst->host, ':') ? "128" : "32";
	char	   *hba;

	if (tls_server_certificate_due(inst))
		tls_issue_server_certificate(inst);
	hba = psprintf("# Written by dborch for deployment %s; dborch overwrites changes here.\n"
				   "# TYPE    DATABASE  USER      ADDRESS        METHOD\n"
				   "local     all       postgres                 peer\n"
				   "local     replication postgres               peer\n",
				   inst->deployment_name);
	if (inst->allow == NULL)
		hba = psprintf("%shostssl   all       all       %s/%s  scram-sha-256\n", hba, inst->host, mask);
	else
	{
		char	   *cidrs = pstrdup(inst->allow);
		char	   *save;

		hba = psprintf("%shostssl   all       postgres  %s/%s  scram-sha-256\n", hba, inst->host, mask);
		/* CIDRs spec.c normalized with cidr_in: no space, quote or newline in them */
		for (char *cidr = strtok_r(cidrs, " ", &save); cidr != NULL; cidr = strtok_r(NULL, " ", &save))
			hba = psprintf("%shostssl   all       all       %s  scram-sha-256\n", hba, cidr);
	}
	hba = psprintf("%shostnossl all       all       all            reject\n", hba);
	dborch_write_file(psprintf("%s/pg_hba.conf", data_dir(inst)), hba, 0600);
}

static pid_t
postgres_running_pid(Instance *inst)
{
	char	   *pidfile = dborch_read_file(psprintf("%s/postmaster.pid", data_dir(inst)), true);
	pid_t		pid;

	if (pidfile == NULL)
		return 0;
	pid = (pid_t) atoi(pidfile);
	return dborch_process_alive(pid, "postgres") ? pid : 0;
}

/*
 * A postmaster killed with SIGKILL leaves postmaster.pid behind, and stays
 * a zombie until PID 1 reaps it, which can take seconds; meanwhile a new
 * postmaster refuses to start ("lock file already exists").  The lock file
 * is stale once its postmaster is dead (or a zombie) and no process is
 * attached to its shared memory segment any more (its backends have
 * exited too): the same two checks PostgreSQL makes.  Remove it then; wait
 * while backends are still attached.
 */
static void
remove_stale_lock_file(Instance *inst)
{
	char	   *path = psprintf("%s/postmaster.pid", data_dir(inst));
	int64		deadline = dborch_now_ms() + 30000;

	for (;;)
	{
		char	   *contents = dborch_read_file(path, true);
		char	   *line = contents;
		unsigned long key = 0,
					shmid = 0;
		struct shmid_ds ds;
		int			i;

		if (contents == NULL || dborch_process_alive((pid_t) atoi(contents), NULL))
			return;				/* no lock file, or its postmaster is alive */
		for (i = 1; line != NULL && i < 7; i++)
			line = (line = strchr(line, '\n')) ? line + 1 : NULL;
		if (line == NULL || sscanf(line, "%lu %lu", &key, &shmid) != 2 ||
			shmctl((int) shmid, IPC_STAT, &ds) != 0 || ds.shm_nattch == 0)
		{
			/* the socket's lock file names the same dead postmaster */
			char	   *socket_lock = psprintf("%s/run/.s.PGSQL.%d.lock", inst->directory, inst->port);
			char	   *owner = dborch_read_file(socket_lock, true);

			if (owner != NULL && !dborch_process_alive((pid_t) atoi(owner), NULL))
				unlink(socket_lock);
			unlink(path);
			return;
		}
		if (dborch_now_ms() > deadline)
			ereport(ERROR,
					(errmsg("processes of a dead postmaster still use the shared memory of deployment \"%s\"",
							inst->deployment_name)));
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 10, DBORCH_WAIT_EVENT);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/* pg_ctl start without waiting; then the pid as soon as postmaster.pid has it. */
static pid_t
postgres_start(Instance *inst)
{
	const char *pg_ctl = dborch_bindir_program(dborch_pg_ctl_path, "pg_ctl");
	char	   *datadir = data_dir(inst);
	char	   *log = psprintf("%s/postgresql.log", inst->directory);
	char	   *ctl_log = psprintf("%s/pg_ctl.log", inst->directory);
	const char *argv[] = {pg_ctl, "start", "-D", datadir, "-l", log, "-W", "-s", NULL};
	int64		deadline;
	pid_t		pid;
	int			rc;

	pid = postgres_running_pid(inst);
	if (pid != 0)
		return pid;

	remove_stale_lock_file(inst);
	rc = spawn_run(argv, ctl_log, 30000);
	if (rc != 0)
		ereport(ERROR,
				(errmsg("pg_ctl start failed with exit code %d", rc),
				 errdetail("%s", dborch_file_tail(ctl_log, 800))));

	deadline = dborch_now_ms() + 10000;
	while ((pid = postgres_running_pid(inst)) == 0)
	{
		if (dborch_now_ms() > deadline)
			ereport(ERROR,
					(errmsg("postgres did not start"),
					 errdetail("%s", dborch_file_tail(log, 800))));
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 2, DBORCH_WAIT_EVENT);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	return pid;
}

/* Wait for a libpq socket event or the deadline; false on timeout. */
static bool
wait_socket(PGconn *conn, int events, int64 deadline)
{
	for (;;)
	{
		int64		remaining = deadline - dborch_now_ms();
		int			rc;

		if (remaining <= 0)
			return false;
		rc = WaitLatchOrSocket(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH | events,
							   PQsocket(conn), remaining, DBORCH_WAIT_EVENT);
		if (rc & WL_LATCH_SET)
		{
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
		if (rc & events)
			return true;
	}
}

/*
 * One attempt: connect with the generated credentials and run SELECT 1,
 * all before the deadline.  NULL on success, else the reason.
 */
static char *
try_select_one(Instance *inst, const char *password, int64 deadline)
{
	/* as a client would: over TLS, verifying the certificate against the CA */
	const char *keys[] = {"host", "port", "user", "password", "dbname",
	"application_name", "sslmode", "sslrootcert", NULL};
	const char *values[] = {inst->host, psprintf("%d", inst->port), "postgres", password,
	"postgres", "dborch", "verify-full", tls_ca_file(), NULL};
	PostgresPollingStatusType poll = PGRES_POLLING_WRITING;
	PGconn	   *conn;
	PGresult   *res;
	char	   *failure = NULL;

	if (!AcquireExternalFD())
		return pstrdup("too many open files in the worker");
	conn = PQconnectStartParams(keys, values, 0);
	if (conn == NULL || PQstatus(conn) == CONNECTION_BAD)
	{
		failure = conn ? pstrdup(PQerrorMessage(conn)) : pstrdup("out of memory");
		goto done;
	}
	while (poll != PGRES_POLLING_OK)
	{
		if (poll == PGRES_POLLING_FAILED)
		{
			failure = pstrdup(PQerrorMessage(conn));
			goto done;
		}
		if (!wait_socket(conn, poll == PGRES_POLLING_READING ? WL_SOCKET_READABLE
						 : WL_SOCKET_WRITEABLE, deadline))
		{
			failure = pstrdup("timed out while connecting");
			goto done;
		}
		poll = PQconnectPoll(conn);
	}
	if (!PQsendQuery(conn, "SELECT 1"))
	{
		failure = pstrdup(PQerrorMessage(conn));
		goto done;
	}
	for (;;)
	{
		if (!PQconsumeInput(conn))
		{
			failure = pstrdup(PQerrorMessage(conn));
			goto done;
		}
		if (!PQisBusy(conn))
			break;
		if (!wait_socket(conn, WL_SOCKET_READABLE, deadline))
		{
			failure = pstrdup("timed out waiting for SELECT 1");
			goto done;
		}
	}
	while ((res = PQgetResult(conn)) != NULL)
	{
		if (failure == NULL &&
			(PQresultStatus(res) != PGRES_TUPLES_OK || strcmp(PQgetvalue(res, 0, 0), "1") != 0))
			failure = pstrdup(PQresultErrorMessage(res));
		PQclear(res);
	}
done:
	if (conn)
		PQfinish(conn);
	ReleaseExternalFD();
	return failure;
}

static void
postgres_check_ready(Instance *inst, int timeout_ms)
{
	engine_wait_ready(inst, timeout_ms, 5, try_select_one, "postgres", "postgresql.log");
}

/* Fast shutdown (SIGINT), then SIGKILL after a minute. */
static void
postgres_stop(Instance *inst)
{
	engine_stop_process(postgres_running_pid(inst), SIGINT, 60000);
}

char *
engine_postgres_conninfo(const char *directory, int port)
{
	return psprintf("host=%s/run port=%d user=postgres dbname=postgres application_name=dborch"
					" options='%s'", directory, port, DBORCH_PG_SESSION_OPTIONS);
}

PGconn *
engine_postgres_connect(Instance *inst)
{
	PGconn	   *conn = PQconnectdb(psprintf("%s connect_timeout=10",
											engine_postgres_conninfo(inst->directory, inst->port)));

	if (PQstatus(conn) != CONNECTION_OK)
	{
		char	   *error = pstrdup(PQerrorMessage(conn));

		PQfinish(conn);
		ereport(ERROR, (errmsg("could not connect to %s:%d of deployment \"%s\": %s",
							   inst->host, inst->port, inst->deployment_name, error)));
	}
	return conn;
}

/* One value of a query with one text parameter (NULL param: none). */
char *
engine_postgres_value(Instance *inst, const char *sql, const char *param)
{
	PGconn	   *conn = engine_postgres_connect(inst);
	PGresult   *res = PQexecParams(conn, sql, param ? 1 : 0, NULL, param ? &param : NULL, NULL, NULL, 0);
	char	   *value = NULL;

	if (PQresultStatus(res) != PGRES_TUPLES_OK && PQresultStatus(res) != PGRES_COMMAND_OK)
	{
		char	   *error = pstrdup(PQresultErrorMessage(res));

		PQclear(res);
		PQfinish(conn);
		ereport(ERROR, (errmsg("query on %s:%d failed: %s", inst->host, inst->port, error)));
	}
	if (PQntuples(res) > 0 && !PQgetisnull(res, 0, 0))
		value = pstrdup(PQgetvalue(res, 0, 0));
	PQclear(res);
	PQfinish(conn);
	return value;
}

static char *
postgres_connection_string(Instance *inst, const char *password)
{
	return psprintf("postgresql://" OWNER_LOGIN ":%s@%s:%d/postgres?%s",
					password, engine_uri_host(inst->host), inst->port, tls_postgres_uri_params());
}

/* Run sql on a connection as dborch; an error names the instance. */
static void
admin_exec(PGconn *conn, Instance *inst, const char *sql)
{
	PGresult   *res = PQexec(conn, sql);
	bool		ok = PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK;
	const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	char	   *error = ok ? NULL : pstrdup(primary ? primary : PQerrorMessage(conn));

	PQclear(res);
	if (!ok)
	{
		PQfinish(conn);
		ereport(ERROR, (errmsg("could not set the logins of deployment \"%s\" on %s:%d: %s",
							   inst->deployment_name, inst->host, inst->port, error)));
	}
}

/*
 * The logins of the catalog, over the private socket: the superuser's
 * password is dborch's, and the owner role exists with the owner's: LOGIN,
 * CREATEDB, owner of database postgres and schema public, member of
 * pg_read_all_data, pg_write_all_data, pg_monitor and pg_signal_backend;
 * never SUPERUSER, REPLICATION or BYPASSRLS, nor a member of the roles that
 * reach the operating system.  CREATEROLE only where dborch_guard is loaded
 * (an instance started before dborch 0.2 gets it at its next start).
 * Passwords travel as SCRAM verifiers, so no statement holds one in clear.
 * Client sessions of the superuser over the network (the owner's, before
 * dborch 0.2) are ended: the superuser is dborch's alone.
 */
static void
postgres_apply_logins(Instance *inst)
{
	PGconn	   *conn = engine_postgres_connect(inst);
	char	   *dborch_pw = cat_secret(inst->deployment_id, SECRET_DBORCH);
	char	   *owner_pw = cat_secret(inst->deployment_id, SECRET_OWNER);
	PGresult   *res;
	bool		guarded;

	if (dborch_pw == NULL || owner_pw == NULL)
		elog(ERROR, "dborch: deployment \"%s\" has no logins yet", inst->deployment_name);
	res = PQexec(conn, "SELECT pg_catalog.current_setting('shared_preload_libraries')"
				 " ~ '(^|[, ])dborch_guard($|[, ])'");
	guarded = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
		strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	if (strcmp(inst->role, "primary") == 0)
		admin_exec(conn, inst,
				   psprintf("ALTER ROLE postgres PASSWORD %s;\n"
							"DO $$ BEGIN\n"
							"  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = '" OWNER_LOGIN "') THEN\n"
							"    CREATE ROLE " OWNER_LOGIN ";\n"
							"  END IF;\n"
							"END $$;\n"
							"ALTER ROLE " OWNER_LOGIN " LOGIN NOSUPERUSER NOREPLICATION NOBYPASSRLS CREATEDB %s"
							" INHERIT CONNECTION LIMIT -1 PASSWORD %s;\n"
							"REVOKE pg_execute_server_program, pg_read_server_files, pg_write_server_files"
							" FROM " OWNER_LOGIN ";\n"
							"GRANT pg_read_all_data, pg_write_all_data, pg_monitor, pg_signal_backend"
							" TO " OWNER_LOGIN ";\n"
							"ALTER DATABASE postgres OWNER TO " OWNER_LOGIN ";\n"
							"ALTER SCHEMA public OWNER TO " OWNER_LOGIN ";\n"
							/* large objects are made by those a tenant's storage may hold */
							"REVOKE EXECUTE ON FUNCTION " LO_CREATE_FUNCTIONS " FROM PUBLIC;\n"
							"GRANT EXECUTE ON FUNCTION " LO_CREATE_FUNCTIONS " TO " OWNER_LOGIN ";\n",
							quote_literal_cstr(dborch_scram_secret(dborch_pw)),
							guarded ? "CREATEROLE" : "NOCREATEROLE",
							quote_literal_cstr(dborch_scram_secret(owner_pw))));
	admin_exec(conn, inst,
			   "SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity"
			   " WHERE usename = 'postgres' AND backend_type = 'client backend'"
			   " AND client_addr IS NOT NULL AND pid <> pg_catalog.pg_backend_pid()");
	PQfinish(conn);
}

const EngineOps engine_postgres = {
	.name = "postgres",
	.versions = postgres_versions,
	.min_memory = 16 * 1024 * 1024,
	.provision = postgres_provision,
	.configure_network = postgres_configure_network,
	.configure_security = postgres_configure_security,
	.start = postgres_start,
	.running_pid = postgres_running_pid,
	.check_ready = postgres_check_ready,
	.apply_logins = postgres_apply_logins,
	.logins_in_data = true,
	.stop = postgres_stop,
	.connection_string = postgres_connection_string,
};
