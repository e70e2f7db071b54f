-- What a deployment's owner can and cannot do, tried as a dborch_user
-- member (tap_owner) with the connection strings dborch gives it.
--
-- PostgreSQL: the owner logs in as role "owner", which owns the database
-- and does what a managed database's admin does (pgbench -i, schemas,
-- roles for its application, trusted extensions, every table's data,
-- monitoring, cancelling sessions) and nothing that reaches the operating
-- system or the server's configuration: COPY ... PROGRAM, server files,
-- large-object import, ALTER SYSTEM, SUPERUSER and REPLICATION roles,
-- untrusted extensions, LOAD, membership in the roles that reach the OS
-- (refused by dborch_guard, though the owner has CREATEROLE).  The
-- superuser's password is no secret the owner reads, and the owner's
-- password does not open the superuser.  A search_path or function the
-- owner plants is never used by dborch's own (superuser) sessions.
--
-- Redis: the owner's ACL user runs every data command and what an
-- operator uses (FLUSHALL, SCAN, KEYS, INFO, SLOWLOG, CLIENT LIST/KILL,
-- pub/sub, scripts) and nothing that changes the server (CONFIG, ACL
-- changes, MODULE, DEBUG, SHUTDOWN, REPLICAOF, SAVE and kin, FAILOVER,
-- MIGRATE, MONITOR); the default user is off.
--
-- Autocommit mode and ON_ERROR_STOP off: see 10_postgres.sql.
\set ON_ERROR_STOP 0
\getenv test_dir DBORCH_TEST_DIR
SET client_min_messages = warning;
\ir helpers.psql

SELECT plan(37);

CREATE ROLE tap_owner IN ROLE dborch_user;

------------------------------------------------------------------------------
-- PostgreSQL
------------------------------------------------------------------------------
SET ROLE tap_owner;
SELECT status FROM dborch.deploy('tap_own_pg', 'postgres', '{"memory": "32MB"}') \gset
SELECT is((SELECT status FROM dborch.wait('tap_own_pg', '120s')), 'ready', 'the owner''s PostgreSQL deployment is ready');
SELECT dborch.connection_string('tap_own_pg') AS pg \gset
SELECT is((SELECT count(*) FROM dborch.secrets WHERE name = 'dborch'), 0::bigint,
          'the owner reads no secret of dborch''s own login');
RESET ROLE;
SELECT ok(:'pg' ~ '^postgresql://owner:[^@]+@127\.0\.0\.1:[0-9]+/postgres\?sslmode=verify-full&sslrootcert=[^&]+$', 'the connection string logs in as "owner"');
SELECT regexp_replace(:'pg', '//owner:', '//postgres:') AS pg_as_postgres \gset

\set out `PGCONNECT_TIMEOUT=5 psql :'pg' -XAtc "SELECT rolsuper, rolreplication, rolbypassrls, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user" 2>&1`
SELECT is(:'out'::text, 'f|f|f|t|t', 'owner: no SUPERUSER, REPLICATION or BYPASSRLS; CREATEROLE and CREATEDB');
\set out `PGCONNECT_TIMEOUT=5 psql :'pg' -XAtc "SELECT string_agg(b.rolname, ',' ORDER BY b.rolname) FROM pg_auth_members m JOIN pg_roles b ON b.oid = m.roleid WHERE m.member = 'owner'::regrole" 2>&1`
SELECT is(:'out'::text, 'pg_monitor,pg_read_all_data,pg_signal_backend,pg_write_all_data',
          'owner: a member of pg_monitor, pg_read_all_data, pg_write_all_data and pg_signal_backend only');
\set out `PGCONNECT_TIMEOUT=5 psql :'pg_as_postgres' -XAtc "SELECT 1" 2>&1`
SELECT matches(:'out'::text, 'password authentication failed for user "postgres"',
               'the owner''s password does not log in as the superuser');

-- what reaches the operating system or the configuration: refused
\set out `for q in "COPY (SELECT 1) TO PROGRAM 'id'" "CREATE TEMP TABLE x (a text); COPY x FROM PROGRAM 'id'" "COPY (SELECT 1) TO '/tmp/dborch_owner_file'" "SELECT pg_read_file('/etc/passwd')" "SELECT pg_ls_dir('.')" "SELECT lo_import('/etc/passwd')" "ALTER SYSTEM SET work_mem = '1MB'" "CREATE ROLE tap_evil SUPERUSER" "ALTER ROLE owner SUPERUSER" "CREATE ROLE tap_evil REPLICATION" "ALTER ROLE owner BYPASSRLS" "CREATE EXTENSION adminpack" "LOAD 'dborch_guard'" "SET session_preload_libraries = 'dborch_guard'"; do PGCONNECT_TIMEOUT=5 psql :'pg' -XAtqc "$q" 2>&1 | grep -cE '^ERROR: .*(permission denied|must be superuser|privileges of the pg_|is not allowed)'; done | tr -d '\n'`
SELECT is(:'out'::text, '11111111111111',
          'refused: COPY TO/FROM PROGRAM, COPY to a file, pg_read_file, pg_ls_dir, lo_import, ALTER SYSTEM, CREATE/ALTER ROLE SUPERUSER, REPLICATION, BYPASSRLS, an untrusted extension, LOAD, session_preload_libraries');
\set out `PGCONNECT_TIMEOUT=5 psql :'pg' -XAtqc "COPY (SELECT 1) TO PROGRAM 'id'" 2>&1`
SELECT matches(:'out'::text, 'must be superuser or have privileges of the pg_execute_server_program role',
               'COPY TO PROGRAM says why');
\set out `PGCONNECT_TIMEOUT=5 psql :'pg' -XAtqc "GRANT pg_execute_server_program TO owner" 2>&1`
SELECT matches(:'out'::text, 'permission denied to grant membership in role "pg_execute_server_program"',
               'CREATEROLE cannot grant pg_execute_server_program (dborch_guard)');
\set out `PGCONNECT_TIMEOUT=5 psql :'pg' -XAtqc "CREATE ROLE tap_evil IN ROLE pg_read_server_files" 2>&1`
SELECT matches(:'out'::text, 'permission denied to grant membership in role "pg_read_server_files"',
               'nor CREATE ROLE ... IN ROLE pg_read_server_files');
\set out `PGCONNECT_TIMEOUT=5 psql :'pg' -XAtqc "ALTER GROUP pg_write_server_files ADD USER owner" 2>&1`
SELECT matches(:'out'::text, 'permission denied to grant membership in role "pg_write_server_files"',
               'nor ALTER GROUP pg_write_server_files ADD USER');
\set out `PGCONNECT_TIMEOUT=5 psql :'pg' -XAtqc "CREATE ROLE tap_helper; GRANT tap_helper TO owner; GRANT pg_monitor TO tap_helper; SELECT 'ok'" 2>&1`
SELECT is(:'out'::text, 'ok', 'harmless grants pass dborch_guard');
\set out `PGCONNECT_TIMEOUT=5 psql :'pg' -XAtqc "GRANT pg_execute_server_program TO tap_helper" 2>&1`
SELECT matches(:'out'::text, 'permission denied to grant membership', 'nor through a role of its own');

-- everyday administration works
\set out `PGCONNECT_TIMEOUT=5 timeout 120 pgbench -i -s 1 -q :'pg' >/dev/null 2>&1 && psql :'pg' -XAtc "SELECT count(*) FROM pgbench_accounts" 2>&1`
SELECT is(:'out'::text, '100000', 'pgbench -i works');
\set out `PGCONNECT_TIMEOUT=5 psql :'pg' -XAtq -c "CREATE SCHEMA app" -c "CREATE TABLE app.t (id int PRIMARY KEY, v text)" -c "INSERT INTO app.t VALUES (1, 'one')" -c "CREATE ROLE app_user LOGIN PASSWORD 'app-user-secret'" -c "GRANT USAGE ON SCHEMA app TO app_user" -c "GRANT SELECT ON app.t TO app_user" -c "CREATE EXTENSION pgcrypto" -c "SELECT length(gen_random_uuid()::text)" 2>&1`
SELECT is(:'out'::text, '36', 'a schema, a table, a role for the application and CREATE EXTENSION pgcrypto');
SELECT regexp_replace(:'pg', '//owner:[^@]+@', '//app_user:app-user-secret@') AS app_uri \gset
\set out `PGCONNECT_TIMEOUT=5 psql :'app_uri' -XAtc "SELECT v FROM app.t" 2>&1`
SELECT is(:'out'::text, 'one', 'the application''s role logs in and reads what it was granted');
\set out `(PGAPPNAME=tap_sleeper PGCONNECT_TIMEOUT=5 timeout 60 psql :'app_uri' -XAtc "SELECT pg_sleep(50)" >/dev/null 2>&1 &); for i in $(seq 1 100); do n=$(psql :'pg' -XAtc "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'tap_sleeper' AND query LIKE '%pg_sleep%'"); [ "$n" = 1 ] && break; sleep 0.1; done; psql :'pg' -XAtc "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'tap_sleeper'" 2>&1`
SELECT is(:'out'::text, 't', 'the owner sees its application''s queries and ends its sessions (pg_monitor, pg_signal_backend)');
\set out `PGCONNECT_TIMEOUT=5 psql :'pg' -XAtc "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = 'postgres'" 2>&1`
SELECT matches(:'out'::text, 'permission denied to terminate process|must be a superuser to terminate superuser process',
               'but not dborch''s own sessions');

------------------------------------------------------------------------------
-- dborch's own sessions use none of the owner's objects or settings
------------------------------------------------------------------------------
-- The owner plants functions that would make it superuser if a superuser
-- called them: in schema public (which it owns) with an exact-match
-- signature, and in a schema the database's search_path puts first.
SELECT regexp_replace($sql$
CREATE TABLE public.tap_calls (fn text, by_role text);
GRANT INSERT ON public.tap_calls TO PUBLIC;
CREATE FUNCTION public.hashtextextended(text, integer) RETURNS bigint LANGUAGE plpgsql AS $f$
BEGIN INSERT INTO public.tap_calls VALUES ('hashtextextended', current_user);
      BEGIN EXECUTE 'ALTER ROLE owner SUPERUSER'; EXCEPTION WHEN OTHERS THEN NULL; END;
      RETURN 0; END $f$;
CREATE SCHEMA evil;
CREATE FUNCTION evil.pg_is_in_recovery() RETURNS boolean LANGUAGE plpgsql AS $f$
BEGIN INSERT INTO public.tap_calls VALUES ('pg_is_in_recovery', current_user);
      BEGIN EXECUTE 'ALTER ROLE owner SUPERUSER'; EXCEPTION WHEN OTHERS THEN NULL; END;
      RETURN false; END $f$;
CREATE FUNCTION evil.pg_total_relation_size(regclass) RETURNS bigint LANGUAGE plpgsql AS $f$
BEGIN INSERT INTO public.tap_calls VALUES ('pg_total_relation_size', current_user);
      BEGIN EXECUTE 'ALTER ROLE owner SUPERUSER'; EXCEPTION WHEN OTHERS THEN NULL; END;
      RETURN 0; END $f$;
ALTER DATABASE postgres SET search_path = evil, pg_catalog, public;
SELECT 'planted';
$sql$, '\s+', ' ', 'g') AS plant_sql \gset
\set out `PGCONNECT_TIMEOUT=5 psql :'pg' -XAtqc :'plant_sql' 2>&1`
SELECT is(:'out'::text, 'planted', 'the owner plants functions in public and in a schema first on the database''s search_path');

-- dborch works in the instance: a tenant with a quota (created, measured),
-- and a move of the tenant to another deployment (fingerprints of its rows)
SET ROLE tap_owner;
SELECT status FROM dborch.deploy('tap_own_pg2', 'postgres', '{"memory": "32MB"}') \gset
SELECT status FROM dborch.create_tenant('tap_own_pg', 'acme', '{"storage": "100MB"}') \gset
RESET ROLE;
ALTER SYSTEM SET dborch.tenant_usage_interval = '1s';
SELECT pg_reload_conf() \g /dev/null
SELECT ok(pg_temp.tap_until($$SELECT status = 'active' AND usage_at IS NOT NULL FROM dborch.tenants
                              WHERE deployment = 'tap_own_pg' AND name = 'acme'$$, '60s'),
          'a tenant is created and measured in the planted database');
SELECT dborch.connection_string('tap_own_pg', 'acme') AS acme_uri \gset
\set out `PGCONNECT_TIMEOUT=5 psql :'acme_uri' -XAtqc "CREATE TABLE items AS SELECT g AS id FROM generate_series(1, 100) g; SELECT count(*) FROM items" 2>&1`
SELECT is(:'out'::text, '100', 'the tenant has rows');
SELECT is((SELECT status FROM dborch.wait('tap_own_pg2', '120s')), 'ready', 'a second deployment is ready');
SET ROLE tap_owner;
SELECT id AS move_job FROM dborch.move_tenant('acme', 'tap_own_pg', 'tap_own_pg2') \gset
RESET ROLE;
SELECT is(pg_temp.tap_job_result(:move_job), 'succeeded', 'the tenant moves out (fingerprints computed on both sides)');
ALTER SYSTEM RESET dborch.tenant_usage_interval;
SELECT pg_reload_conf() \g /dev/null
\set out `PGCONNECT_TIMEOUT=5 psql :'pg' -XAtqc "SELECT coalesce(string_agg(fn || ' by ' || by_role, ', '), 'none') FROM public.tap_calls" 2>&1`
SELECT is(:'out'::text, 'none', 'no function the owner planted was called by anyone');

-- Settings of the database that would break dborch's sessions: read-only
-- and a 1 ms statement timeout.  A new tenant is still made.
\set out `PGCONNECT_TIMEOUT=5 psql :'pg' -XAtq -c "ALTER DATABASE postgres SET default_transaction_read_only = on" -c "ALTER DATABASE postgres SET statement_timeout = '1ms'" -c "SELECT 'set'" 2>&1`
SELECT is(:'out'::text, 'set', 'the owner makes the database read-only with a 1 ms statement timeout');
SET ROLE tap_owner;
SELECT status FROM dborch.create_tenant('tap_own_pg', 'beta') \gset
RESET ROLE;
SELECT ok(pg_temp.tap_until($$SELECT status = 'active' FROM dborch.tenants
                              WHERE deployment = 'tap_own_pg' AND name = 'beta'$$, '60s'),
          'dborch''s sessions keep their own settings: the tenant is made');
\set out `PGCONNECT_TIMEOUT=5 psql :'pg' -XAtqc "SET statement_timeout = 0; SELECT rolsuper FROM pg_roles WHERE rolname = 'owner'" 2>&1`
SELECT is(:'out'::text, 'f', 'the owner is still no superuser');

------------------------------------------------------------------------------
-- Redis
------------------------------------------------------------------------------
SET ROLE tap_owner;
SELECT status FROM dborch.deploy('tap_own_rd', 'redis', '{"memory": "16MB"}') \gset
SELECT is((SELECT status FROM dborch.wait('tap_own_rd', '60s')), 'ready', 'the owner''s Redis deployment is ready');
SELECT dborch.connection_string('tap_own_rd') AS rd \gset
RESET ROLE;
SELECT ok(:'rd' ~ '^redis://owner:[^@]+@127\.0\.0\.1:[0-9]+/0$', 'the connection string logs in as "owner"');
SELECT regexp_replace(:'rd', '//owner:', '//default:') AS rd_default, pg_temp.tap_port(:'rd') AS rd_port \gset

-- what changes the server: refused
\set out `for c in "CONFIG SET port 1" "CONFIG SET bind 0.0.0.0" "CONFIG SET maxmemory 0" "CONFIG SET dir /tmp" "CONFIG GET maxmemory" "CONFIG REWRITE" "ACL SETUSER tap_evil on >x +@all" "ACL DELUSER dborch" "ACL LIST" "ACL SAVE" "MODULE LOAD /tmp/x.so" "DEBUG SLEEP 0" "SHUTDOWN NOSAVE" "REPLICAOF 127.0.0.1 1" "SLAVEOF 127.0.0.1 1" "SAVE" "BGSAVE" "BGREWRITEAOF" "FAILOVER" "MIGRATE 127.0.0.1 1 k 0 1000" "MONITOR" "CLIENT PAUSE 1000" "CLUSTER RESET"; do timeout 10 redis-cli -u :'rd' --no-auth-warning $c 2>&1 | head -1 | grep -cE '^(NOPERM|ERR (MODULE|DEBUG) command not allowed)'; done | tr -d '\n'`
SELECT is(:'out'::text, '11111111111111111111111',
          'refused: CONFIG SET port/bind/maxmemory/dir, CONFIG GET and REWRITE, ACL SETUSER/DELUSER/LIST/SAVE, MODULE, DEBUG, SHUTDOWN, REPLICAOF, SLAVEOF, SAVE, BGSAVE, BGREWRITEAOF, FAILOVER, MIGRATE, MONITOR, CLIENT PAUSE, CLUSTER');
\set out `timeout 10 redis-cli -u :'rd' --no-auth-warning CONFIG SET maxmemory 0 2>&1`
SELECT matches(:'out'::text, '^NOPERM', 'CONFIG SET says NOPERM');
\set out `timeout 10 redis-cli -u :'rd_default' --no-auth-warning PING 2>&1`
SELECT matches(:'out'::text, 'WRONGPASS', 'the default user is off, whatever the password');
\set out `timeout 10 redis-cli -h 127.0.0.1 -p :rd_port PING 2>&1`
SELECT matches(:'out'::text, '^NOAUTH', 'no login, no command');

-- everyday use works
\set out `timeout 10 redis-cli -u :'rd' --no-auth-warning SET k v 2>&1; timeout 10 redis-cli -u :'rd' --no-auth-warning GET k 2>&1; timeout 10 redis-cli -u :'rd' --no-auth-warning SCAN 0 2>&1 | tail -1; timeout 10 redis-cli -u :'rd' --no-auth-warning KEYS 'k*' 2>&1; timeout 10 redis-cli -u :'rd' --no-auth-warning EVAL "return redis.call('GET', KEYS[1])" 1 k 2>&1; timeout 10 redis-cli -u :'rd' --no-auth-warning PUBLISH news hello 2>&1; timeout 10 redis-cli -u :'rd' --no-auth-warning FLUSHDB 2>&1; timeout 10 redis-cli -u :'rd' --no-auth-warning FLUSHALL 2>&1; timeout 10 redis-cli -u :'rd' --no-auth-warning DBSIZE 2>&1`
SELECT is(:'out'::text, E'OK\nv\nk\nk\nv\n0\nOK\nOK\n0', 'SET, GET, SCAN, KEYS, EVAL, PUBLISH, FLUSHDB, FLUSHALL');
\set out `timeout 10 redis-cli -u :'rd' --no-auth-warning INFO server 2>&1 | grep -c redis_version; timeout 10 redis-cli -u :'rd' --no-auth-warning SLOWLOG GET 2>&1 | head -1 | grep -vc NOPERM; timeout 10 redis-cli -u :'rd' --no-auth-warning CLIENT LIST 2>&1 | grep -c 'user=owner'`
SELECT is(:'out'::text, E'1\n1\n1', 'INFO, SLOWLOG GET and CLIENT LIST');
\set out `(timeout 30 redis-cli -u :'rd' --no-auth-warning CLIENT SETNAME tap_victim >/dev/null; timeout 30 redis-cli -u :'rd' --no-auth-warning --no-raw BLPOP tap:never 25 >/dev/null 2>&1 &); for i in $(seq 1 100); do n=$(timeout 10 redis-cli -u :'rd' --no-auth-warning CLIENT LIST 2>&1 | grep -c 'cmd=blpop'); [ "$n" = 1 ] && break; sleep 0.1; done; id=$(timeout 10 redis-cli -u :'rd' --no-auth-warning CLIENT LIST 2>&1 | grep 'cmd=blpop' | sed 's/^id=\([0-9]*\) .*/\1/'); timeout 10 redis-cli -u :'rd' --no-auth-warning CLIENT KILL ID $id 2>&1`
SELECT is(:'out'::text, '1', 'CLIENT KILL of one of its clients');

------------------------------------------------------------------------------
-- clean up
------------------------------------------------------------------------------
SET ROLE tap_owner;
SELECT count(dborch.destroy(name)) AS n FROM dborch.deployments
 WHERE name IN ('tap_own_pg', 'tap_own_pg2', 'tap_own_rd') AND status <> 'destroyed' \gset
RESET ROLE;
SELECT ok(pg_temp.tap_until($$SELECT count(*) = 0 FROM dborch.deployments
                              WHERE name IN ('tap_own_pg', 'tap_own_pg2', 'tap_own_rd') AND status <> 'destroyed'$$, '60s'),
          'the owner''s deployments are destroyed');
DROP ROLE tap_owner;

SELECT * FROM finish();
