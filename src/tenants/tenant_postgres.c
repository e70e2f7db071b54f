/*
 * tenant_postgres.c
 *		Tenants of PostgreSQL deployments (see tenant.h for the roles and
 *		the schema).  dborch talks to the instance as its superuser over the
 *		instance's private socket (peer authentication); tenant passwords
 *		reach the server only as SCRAM verifiers computed here.
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "libpq-fe.h"
#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "utils/builtins.h"
#include "utils/varlena.h"

#include "dborch.h"
#include "engine.h"
#include "spawn.h"
#include "tenant.h"

/* tenants per batch of statements sent while the next is prepared */
#define PG_CHUNK 50

/* Run SQL (one or more statements); an error with the server's message. */
/*
 * The results of what was sent: an error fails the job with the primary
 * message only (the full one may quote the statement, and statements
 * carry password secrets).
 */
static void
admin_finish(PGconn *conn)
{
	PGresult   *res;
	char	   *error = NULL;

	while ((res = PQgetResult(conn)) != NULL)
	{
		ExecStatusType st = PQresultStatus(res);

		if (error == NULL && st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
		{
			const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

			error = pstrdup(primary ? primary : PQerrorMessage(conn));
		}
		PQclear(res);
	}
	if (error != NULL)
	{
		PQfinish(conn);
		ereport(ERROR, (errmsg("tenant statement failed: %s", error)));
	}
}

static void
admin_send(PGconn *conn, const char *sql)
{
	if (!PQsendQuery(conn, sql))
	{
		char	   *error = pstrdup(PQerrorMessage(conn));

		PQfinish(conn);
		ereport(ERROR, (errmsg("tenant statement failed: %s", error)));
	}
}

static void
admin_exec(PGconn *conn, const char *sql)
{
	admin_send(conn, sql);
	admin_finish(conn);
}

/* One row, one column of a query with one text parameter. */
static char *
admin_value(PGconn *conn, const char *sql, const char *param)
{
	PGresult   *res = PQexecParams(conn, sql, param ? 1 : 0, NULL, param ? &param : NULL,
								   NULL, NULL, 0);
	char	   *value;

	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
	{
		char	   *error = pstrdup(PQresultErrorMessage(res));

		PQclear(res);
		PQfinish(conn);
		ereport(ERROR, (errmsg("tenant query failed: %s", error)));
	}
	value = PQgetisnull(res, 0, 0) ? NULL : pstrdup(PQgetvalue(res, 0, 0));
	PQclear(res);
	return value;
}

static char *
owner_role(const char *name)
{
	return pstrdup(quote_identifier(psprintf("%s$owner", name)));
}

/* Which of these roles exist (one query for a whole batch of tenants). */
static List *
existing_roles(PGconn *conn, List *roles)
{
	StringInfoData array;
	const char *param;
	PGresult   *res;
	List	   *found = NIL;
	ListCell   *lc;

	initStringInfo(&array);
	appendStringInfoChar(&array, '{');
	foreach(lc, roles)
		appendStringInfo(&array, "%s\"%s\"", array.len > 1 ? "," : "", (char *) lfirst(lc));
	appendStringInfoChar(&array, '}');
	param = array.data;
	res = PQexecParams(conn, "SELECT rolname FROM pg_roles WHERE rolname = ANY ($1::text[])",
					   1, NULL, &param, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		PQclear(res);
		PQfinish(conn);
		ereport(ERROR, (errmsg("tenant query failed: could not read the roles")));
	}
	for (int i = 0; i < PQntuples(res); i++)
		found = lappend(found, pstrdup(PQgetvalue(res, i, 0)));
	PQclear(res);
	return found;
}

static bool
role_exists(PGconn *conn, const char *role)
{
	return existing_roles(conn, list_make1((char *) role)) != NIL;
}

static bool
in_list(List *names, const char *name)
{
	ListCell   *lc;

	foreach(lc, names)
		if (strcmp(lfirst(lc), name) == 0)
			return true;
	return false;
}

/*
 * The names among tenants' that the instance holds as something other than
 * a dborch tenant: a role <name> without "<name>$owner" beside it (the
 * owner's own role, or a superuser role an owner made under dborch 0.1), or
 * a schema <name> that "<name>$owner" does not own.  A tenant is never
 * made out of those.
 */
static List *
foreign_names(PGconn *conn, List *tenants)
{
	StringInfoData array;
	ListCell   *lc;
	char	   *names;
	List	   *foreign = NIL;

	initStringInfo(&array);
	appendStringInfoChar(&array, '{');
	foreach(lc, tenants)
		appendStringInfo(&array, "%s\"%s\"", array.len > 1 ? "," : "", ((Tenant *) lfirst(lc))->name);
	appendStringInfoChar(&array, '}');
	names = admin_value(conn,
						"SELECT pg_catalog.string_agg(t.name, ',')"
						" FROM pg_catalog.unnest($1::text[]) t(name)"
						" LEFT JOIN pg_catalog.pg_roles o ON o.rolname = t.name || '$owner'"
						" WHERE (o.oid IS NULL AND EXISTS (SELECT FROM pg_catalog.pg_roles r"
						"                                  WHERE r.rolname = t.name))"
						"    OR EXISTS (SELECT FROM pg_catalog.pg_namespace n WHERE n.nspname = t.name"
						"               AND n.nspowner IS DISTINCT FROM o.oid)",
						array.data);
	if (names != NULL && !SplitIdentifierString(names, ',', &foreign))
		foreign = NIL;
	return foreign;
}

/* Does the instance hold a role or schema called name (a tenant's or not)? */
bool
tenant_pg_name_taken(Instance *inst, const char *name)
{
	PGconn	   *conn = engine_postgres_connect(inst);
	char	   *taken = admin_value(conn,
									"SELECT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname IN ($1::text, $1::text || '$owner'))"
									"    OR EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname = $1::text)",
									name);

	PQfinish(conn);
	return strcmp(taken, "t") == 0;
}

/*
 * Create (or bring back to their definition) the roles and schemas of
 * tenants, in one transaction; never SUPERUSER, REPLICATION or BYPASSRLS,
 * whatever a role had.  Also, once per deployment: PUBLIC loses its rights
 * on schema public and on temporary tables.  Returns the tenants left out
 * because their name is taken in the instance (foreign_names()).
 */
List *
tenant_pg_create(Instance *inst, List *tenants)
{
	PGconn	   *conn = engine_postgres_connect(inst);
	StringInfoData sql;
	List	   *names = NIL;
	List	   *roles;
	List	   *foreign = foreign_names(conn, tenants);
	List	   *refused = NIL;
	List	   *todo = NIL;
	ListCell   *lc;
	int			n = 0;

	foreach(lc, tenants)
		if (in_list(foreign, ((Tenant *) lfirst(lc))->name))
			refused = lappend(refused, lfirst(lc));
		else
			todo = lappend(todo, lfirst(lc));
	tenants = todo;
	if (tenants == NIL)
	{
		PQfinish(conn);
		return refused;
	}
	foreach(lc, tenants)
	{
		names = lappend(names, ((Tenant *) lfirst(lc))->name);
		names = lappend(names, psprintf("%s$owner", ((Tenant *) lfirst(lc))->name));
	}
	roles = existing_roles(conn, names);
	admin_exec(conn, "BEGIN;\n"
			   "REVOKE ALL ON SCHEMA public FROM PUBLIC;\n"
			   "REVOKE TEMPORARY ON DATABASE postgres FROM PUBLIC;\n");

	/*
	 * Chunks of PG_CHUNK tenants: the server runs one (checking each SCRAM
	 * secret costs it a key derivation) while the next is prepared here
	 * (deriving the secrets), so the two processes work side by side.
	 */
	initStringInfo(&sql);
	foreach(lc, tenants)
	{
		Tenant	   *t = lfirst(lc);
		const char *login = quote_identifier(t->name);

		if (!in_list(roles, psprintf("%s$owner", t->name)))
			appendStringInfo(&sql, "CREATE ROLE %s NOLOGIN;\n", owner_role(t->name));
		appendStringInfo(&sql, "ALTER ROLE %s NOLOGIN NOSUPERUSER NOREPLICATION NOBYPASSRLS"
						 " NOCREATEDB NOCREATEROLE;\n"
						 "GRANT EXECUTE ON FUNCTION " LO_CREATE_FUNCTIONS " TO %s;\n",
						 owner_role(t->name), owner_role(t->name));
		appendStringInfo(&sql, "%s ROLE %s LOGIN NOINHERIT NOSUPERUSER NOREPLICATION NOBYPASSRLS"
						 " NOCREATEDB NOCREATEROLE PASSWORD %s CONNECTION LIMIT " INT64_FORMAT ";\n",
						 in_list(roles, t->name) ? "ALTER" : "CREATE", login,
						 quote_literal_cstr(dborch_scram_secret(t->password)),
						 t->max_connections > 0 ? t->max_connections : -1);
		appendStringInfo(&sql,
						 "GRANT %s TO %s;\n"
						 "ALTER ROLE %s SET role = %s;\n"
						 "ALTER ROLE %s SET search_path = %s;\n"
						 "CREATE SCHEMA IF NOT EXISTS %s AUTHORIZATION %s;\n",
						 owner_role(t->name), login,
						 login, quote_literal_cstr(psprintf("%s$owner", t->name)),
						 login, login, login, owner_role(t->name));
		if (++n % PG_CHUNK == 0 || lnext(tenants, lc) == NULL)
		{
			if (n > PG_CHUNK)
				admin_finish(conn);	/* the chunk before */
			CHECK_FOR_INTERRUPTS();
			admin_send(conn, sql.data);
			resetStringInfo(&sql);
		}
	}
	admin_finish(conn);
	admin_exec(conn, "COMMIT");
	PQfinish(conn);
	return refused;
}

/* Login roles of tenants on the instance: a tenant's name with "<name>$owner" beside it. */
#define TENANT_LOGIN_ROLES \
	"SELECT l.rolname FROM pg_catalog.pg_roles l" \
	" WHERE l.rolcanlogin AND l.rolname ~ '^[a-z][a-z0-9_]{0,39}$'" \
	"   AND EXISTS (SELECT 1 FROM pg_catalog.pg_roles o WHERE o.rolname = l.rolname || '$owner')"

/*
 * After a restore: every tenant login role in the restored data loses its
 * login and its password, and its sessions (opened since the server
 * started) end, so that no one logs in with the credentials of the
 * backup's time, above all not a tenant dropped or moved away since.
 * The tenants job that follows gives the live tenants their login back
 * with their current passwords; the others keep their schema (reachable by
 * the deployment's own user), and create_tenant() of the same name adopts
 * it.  Returns the names of the roles locked out.
 */
List *
tenant_pg_lock_out(Instance *inst)
{
	PGconn	   *conn = engine_postgres_connect(inst);
	char	   *names = admin_value(conn, "SELECT string_agg(rolname, ',' ORDER BY rolname)"
									" FROM (" TENANT_LOGIN_ROLES ") r", NULL);
	List	   *locked = NIL;

	if (names != NULL)
		admin_exec(conn, "DO $dborch$\n"
				   "DECLARE r name;\n"
				   "BEGIN\n"
				   "  FOR r IN " TENANT_LOGIN_ROLES " LOOP\n"
				   "    EXECUTE pg_catalog.format('ALTER ROLE %I NOLOGIN PASSWORD NULL', r);\n"
				   "    PERFORM pg_catalog.pg_terminate_backend(a.pid) FROM pg_catalog.pg_stat_activity a\n"
				   "      WHERE a.usename = r;\n"
				   "  END LOOP;\n"
				   "END\n"
				   "$dborch$;");
	PQfinish(conn);
	if (names == NULL || !SplitIdentifierString(names, ',', &locked))
		return NIL;
	return locked;
}

/* Roles, schema and data of a tenant go; its sessions end first. */
void
tenant_pg_drop(Instance *inst, const char *name)
{
	PGconn	   *conn = engine_postgres_connect(inst);
	const char *login = quote_identifier(name);

	admin_value(conn, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = $1",
				name);
	admin_exec(conn, psprintf("DROP SCHEMA IF EXISTS %s CASCADE", login));
	if (role_exists(conn, name))
		admin_exec(conn, psprintf("DROP OWNED BY %s; DROP ROLE %s", login, login));
	if (role_exists(conn, psprintf("%s$owner", name)))
		admin_exec(conn, psprintf("DROP OWNED BY %s; DROP ROLE %s", owner_role(name), owner_role(name)));
	PQfinish(conn);
}

/*
 * A statement that takes EXECUTE on the schema's SECURITY DEFINER routines
 * from everyone but their owner: they run as the owner role, so a read-only
 * tenant could write through them.  (Functions are executable by PUBLIC
 * unless revoked.)
 */
static char *
revoke_definer_routines(const char *name)
{
	return psprintf("DO $dborch$\n"
					"DECLARE r regprocedure;\n"
					"BEGIN\n"
					"  FOR r IN SELECT p.oid FROM pg_catalog.pg_proc p"
					"   WHERE p.pronamespace = %s::regnamespace AND p.prosecdef LOOP\n"
					"    EXECUTE pg_catalog.format('REVOKE EXECUTE ON ROUTINE %%s FROM PUBLIC, %%I', r, %s);\n"
					"  END LOOP;\n"
					"END\n"
					"$dborch$;\n",
					quote_literal_cstr(quote_identifier(name)), quote_literal_cstr(name));
}

/*
 * A statement that grants DELETE and TRUNCATE on the schema's tables to
 * the read-only login role, except where deleting would write as the owner
 * role: a table with a SECURITY DEFINER trigger or a rule (rule actions run
 * with the table owner's rights), a table from which an ON DELETE CASCADE,
 * SET NULL or SET DEFAULT foreign key reaches, at any depth, a table with
 * any trigger or rule (referential actions run as the referencing table's
 * owner, and so do the triggers they fire), and the parents of such tables
 * (a delete on a parent reaches its partitions and children).  Views get
 * SELECT only.
 */
static char *
grant_safe_deletes(const char *name)
{
	return psprintf("DO $dborch$\n"
					"DECLARE r regclass;\n"
					"BEGIN\n"
					"  FOR r IN\n"
					"    WITH RECURSIVE\n"
					"      fk AS (SELECT conrelid AS referencing, confrelid AS referenced"
					"               FROM pg_catalog.pg_constraint"
					"              WHERE contype = 'f' AND confdeltype IN ('c', 'n', 'd')),\n"
					"      dirty AS (SELECT tgrelid AS rel FROM pg_catalog.pg_trigger WHERE NOT tgisinternal"
					"                UNION SELECT ev_class FROM pg_catalog.pg_rewrite WHERE rulename <> '_RETURN'),\n"
					"      reach(rel) AS (SELECT fk.referenced FROM fk JOIN dirty ON dirty.rel = fk.referencing"
					"                     UNION SELECT fk.referenced FROM fk JOIN reach ON reach.rel = fk.referencing),\n"
					"      unsafe(rel) AS (SELECT rel FROM reach"
					"                      UNION SELECT t.tgrelid FROM pg_catalog.pg_trigger t"
					"                              JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid"
					"                             WHERE NOT t.tgisinternal AND p.prosecdef"
					"                      UNION SELECT ev_class FROM pg_catalog.pg_rewrite WHERE rulename <> '_RETURN'"
					"                      UNION SELECT i.inhparent FROM pg_catalog.pg_inherits i"
					"                              JOIN unsafe ON unsafe.rel = i.inhrelid)\n"
					"    SELECT c.oid FROM pg_catalog.pg_class c"
					"     WHERE c.relnamespace = %s::regnamespace AND c.relkind IN ('r', 'p')"
					"       AND c.oid NOT IN (SELECT rel FROM unsafe)\n"
					"  LOOP\n"
					"    EXECUTE pg_catalog.format('GRANT DELETE, TRUNCATE ON TABLE %%s TO %%I', r, %s);\n"
					"  END LOOP;\n"
					"END\n"
					"$dborch$;\n",
					quote_literal_cstr(quote_identifier(name)), quote_literal_cstr(name));
}

/*
 * SQL that takes back every right on the tenant's large objects from its
 * login role and PUBLIC (a grant the tenant made itself while writable).
 */
static char *
revoke_large_objects(const char *name)
{
	return psprintf("DO $dborch$\n"
					"DECLARE o oid;\n"
					"BEGIN\n"
					"  FOR o IN SELECT m.oid FROM pg_catalog.pg_largeobject_metadata m\n"
					"           JOIN pg_catalog.pg_roles r ON r.oid = m.lomowner\n"
					"           WHERE r.rolname IN (%s, %s || '$owner')\n"
					"  LOOP\n"
					"    EXECUTE pg_catalog.format('REVOKE ALL ON LARGE OBJECT %%s FROM %%I, PUBLIC', o, %s);\n"
					"  END LOOP;\n"
					"END\n"
					"$dborch$;\n",
					quote_literal_cstr(name), quote_literal_cstr(name), quote_literal_cstr(name));
}

/*
 * Read-only: the login role leaves the owner role and keeps SELECT, and
 * DELETE and TRUNCATE where they cannot write as the owner (deleting brings
 * usage down); no one else may call the SECURITY DEFINER routines of the
 * schema.  Writable: the login role is back in the owner role (which calls
 * them as their owner).  Either way its sessions end, so the next ones
 * start with the new rights.
 */
void
tenant_pg_set_read_only(Instance *inst, const char *name, bool read_only)
{
	PGconn	   *conn = engine_postgres_connect(inst);
	const char *login = quote_identifier(name);
	const char *owner = owner_role(name);

	if (read_only)
		admin_exec(conn, psprintf("BEGIN;\n"
								  "REVOKE %s FROM %s;\n"
								  "ALTER ROLE %s RESET role;\n"
								  /* what the tenant granted itself (or everyone) while writable */
								  "REVOKE ALL ON ALL TABLES IN SCHEMA %s FROM %s, PUBLIC;\n"
								  "REVOKE ALL ON ALL SEQUENCES IN SCHEMA %s FROM %s, PUBLIC;\n"
								  "REVOKE ALL ON SCHEMA %s FROM %s, PUBLIC;\n"
								  "%s"
								  "GRANT USAGE ON SCHEMA %s TO %s;\n"
								  "GRANT SELECT ON ALL TABLES IN SCHEMA %s TO %s;\n"
								  "GRANT SELECT ON ALL SEQUENCES IN SCHEMA %s TO %s;\n"
								  "%s%s"
								  "COMMIT;",
								  owner, login, login, login, login, login, login, login, login,
								  revoke_large_objects(name), login, login, login, login, login, login,
								  grant_safe_deletes(name), revoke_definer_routines(name)));
	else
		admin_exec(conn, psprintf("BEGIN;\n"
								  "REVOKE ALL ON ALL TABLES IN SCHEMA %s FROM %s;\n"
								  "REVOKE ALL ON ALL SEQUENCES IN SCHEMA %s FROM %s;\n"
								  "REVOKE ALL ON SCHEMA %s FROM %s;\n"
								  "GRANT %s TO %s;\n"
								  "ALTER ROLE %s SET role = %s;\n"
								  "COMMIT;",
								  login, login, login, login, login, login, owner, login, login,
								  quote_literal_cstr(psprintf("%s$owner", name))));
	admin_value(conn, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = $1",
				name);
	PQfinish(conn);
}

/*
 * Connections and storage (relation sizes, with indexes and TOAST, and the
 * large objects its roles own) of each tenant.  A read-only tenant's tables are vacuumed first, so rows it
 * deleted to get back under its quota count as freed.
 */
void
tenant_pg_usage(Instance *inst, List *tenants, TenantUsage *usage)
{
	PGconn	   *conn = engine_postgres_connect(inst);
	ListCell   *lc;
	int			i = 0;

	foreach(lc, tenants)
	{
		Tenant	   *t = lfirst(lc);
		PGresult   *res;
		const char *param = t->name;

		if (t->read_only)
		{
			res = PQexecParams(conn, "SELECT format('VACUUM %I.%I', n.nspname, c.relname)"
							   " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
							   " WHERE n.nspname = $1 AND c.relkind IN ('r', 'm')",
							   1, NULL, &param, NULL, NULL, 0);
			for (int r = 0; PQresultStatus(res) == PGRES_TUPLES_OK && r < PQntuples(res); r++)
				PQclear(PQexec(conn, PQgetvalue(res, r, 0)));
			PQclear(res);
		}
		res = PQexecParams(conn,
						   "SELECT (SELECT pg_catalog.count(*) FROM pg_catalog.pg_stat_activity WHERE usename = $1),"
						   " (SELECT coalesce(pg_catalog.sum(pg_catalog.pg_total_relation_size(c.oid)), 0)"
						   "  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
						   "  WHERE n.nspname = $1 AND c.relkind IN ('r', 'm'))"
						   " + (SELECT coalesce(pg_catalog.sum(pg_catalog.octet_length(l.data)), 0)"
						   "  FROM pg_catalog.pg_largeobject l"
						   "  JOIN pg_catalog.pg_largeobject_metadata m ON m.oid = l.loid"
						   "  JOIN pg_catalog.pg_roles r ON r.oid = m.lomowner"
						   "  WHERE r.rolname IN ($1::text, $1::text || '$owner'))",
						   1, NULL, &param, NULL, NULL, 0);
		usage[i].keys = usage[i].memory_bytes = -1;
		usage[i].connections = usage[i].storage_bytes = -1;
		if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
		{
			usage[i].connections = strtoi64(PQgetvalue(res, 0, 0), NULL, 10);
			usage[i].storage_bytes = strtoi64(PQgetvalue(res, 0, 1), NULL, 10);
		}
		PQclear(res);
		i++;
	}
	PQfinish(conn);
}

/*
 * Copy a tenant's schema from source to target: pg_dump --schema into a
 * file, pg_restore as the tenant's owner role (which may create the schema
 * for the time of the restore).  The roles exist on the target already.
 * The dump (the tenant's data, unencrypted) is removed whatever happens;
 * the log and the directory after a success.
 */
void
tenant_pg_copy(Instance *source, Instance *target, const char *name, const char *dir)
{
	const char *pg_dump = dborch_bindir_program("", "pg_dump");
	const char *pg_restore = dborch_bindir_program("", "pg_restore");
	char	   *dump = psprintf("%s/%s.dump", dir, name);
	char	   *log = psprintf("%s/%s.log", dir, name);
	const char *dump_argv[] = {pg_dump, "-h", psprintf("%s/run", source->directory),
		"-p", psprintf("%d", source->port), "-U", "postgres", "-d", "postgres",
	"-Fc", "-Z", "1", psprintf("--schema=%s", name), "-f", dump, NULL};
	const char *restore_argv[] = {pg_restore, "-h", psprintf("%s/run", target->directory),
		"-p", psprintf("%d", target->port), "-U", "postgres", "-d", "postgres",
		"--no-owner", "--no-privileges", psprintf("--role=%s$owner", name),
	"--exit-on-error", "--single-transaction", dump, NULL};
	PGconn	   *conn;

	dborch_mkdir(dir, 0700);
	PG_TRY();
	{
		if (spawn_run(dump_argv, log, 24 * 3600 * 1000) != 0)
			ereport(ERROR, (errmsg("pg_dump of tenant \"%s\" failed", name),
							errdetail("%s", dborch_file_tail(log, 800))));

		conn = engine_postgres_connect(target);
		admin_exec(conn, psprintf("DROP SCHEMA IF EXISTS %s CASCADE;"
								  " GRANT CREATE ON DATABASE postgres TO %s",
								  quote_identifier(name), owner_role(name)));
		PQfinish(conn);
		if (spawn_run(restore_argv, log, 24 * 3600 * 1000) != 0)
			ereport(ERROR, (errmsg("pg_restore of tenant \"%s\" failed", name),
							errdetail("%s", dborch_file_tail(log, 800))));
		conn = engine_postgres_connect(target);
		admin_exec(conn, psprintf("REVOKE CREATE ON DATABASE postgres FROM %s", owner_role(name)));
		PQfinish(conn);
	}
	PG_FINALLY();
	{
		unlink(dump);
	}
	PG_END_TRY();
	dborch_remove_tree(dir);
}

/*
 * The fingerprint of a tenant's schema on each of two instances: every
 * table's row count and the sum of a 64-bit hash of its rows, computed on
 * both servers at the same time (each scans its copy while the other does).
 */
void
tenant_pg_fingerprints(Instance *a, Instance *b, const char *name, char **on_a, char **on_b)
{
	static const char *const sql =
		"SELECT coalesce(pg_catalog.string_agg(c.relname || '=' ||"
		"   (pg_catalog.xpath('/row/n/text()', x))[1]::text || '/' ||"
		"   coalesce((pg_catalog.xpath('/row/h/text()', x))[1]::text, '0'), ',' ORDER BY c.relname), '')"
		" FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace,"
		" LATERAL pg_catalog.query_to_xml(pg_catalog.format('SELECT pg_catalog.count(*) AS n,"
		"   pg_catalog.sum(pg_catalog.hashtextextended(t::text, 0::bigint)::numeric) AS h FROM %I.%I t',"
		"   n.nspname, c.relname), false, true, '') x"
		" WHERE n.nspname = $1 AND c.relkind = 'r'";
	PGconn	   *conns[2];
	char	  **out[2] = {on_a, on_b};
	char	   *error = NULL;
	int			i;

	conns[0] = engine_postgres_connect(a);
	PG_TRY();
	{
		conns[1] = engine_postgres_connect(b);
	}
	PG_CATCH();
	{
		PQfinish(conns[0]);
		PG_RE_THROW();
	}
	PG_END_TRY();
	for (i = 0; i < 2 && error == NULL; i++)
		if (!PQsendQueryParams(conns[i], sql, 1, NULL, &name, NULL, NULL, 0))
			error = pstrdup(PQerrorMessage(conns[i]));
	for (i = 0; i < 2; i++)
	{
		PGresult   *res;

		*out[i] = NULL;
		while ((res = PQgetResult(conns[i])) != NULL)
		{
			if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
				*out[i] = pstrdup(PQgetisnull(res, 0, 0) ? "" : PQgetvalue(res, 0, 0));
			else if (error == NULL)
				error = pstrdup(PQresultErrorMessage(res));
			PQclear(res);
		}
		PQfinish(conns[i]);
	}
	if (error != NULL || *on_a == NULL || *on_b == NULL)
		ereport(ERROR, (errmsg("tenant query failed: %s", error ? error : "no result")));
}
