-- Tenants of a real PostgreSQL deployment, checked the way a tenant and an
-- operator would: each tenant connects with its own connection string and
-- lands in its own schema as "<name>$owner"; every attempt of tenant acme on
-- tenant bolt, on schema public and on the instance is refused (one test
-- each); the storage quota turns acme read-only within
-- dborch.tenant_usage_interval (INSERT and UPDATE refused, SELECT, DELETE
-- and TRUNCATE allowed, its sessions ended, no way around it through a
-- SECURITY DEFINER function it made before, nor through a delete that a
-- trigger, a rule or a cascade would turn into a write as the owner; event tenant_over_quota, a
-- firing alert) and deleting back under it makes it writable again
-- (tenant_within_quota, the alert resolved); the (N+1)th connection of a
-- tenant with max_connections N is refused; dborch.tenants shows the usage;
-- drop_tenant removes the roles, the schema and its data; 50 tenants made in
-- one transaction are one tenants job; a quota the instance cannot take
-- does not fail the rest of its batch; a restore into a new deployment
-- carries the tenants over, one in place applies them again (a tenant made
-- after the backup gets its role back; one dropped after the backup cannot
-- log in with its old password, its schema is kept and create_tenant()
-- takes it back); no tenant password appears in the
-- catalog's events, jobs or alerts, nor in the server logs; destroying the
-- deployment leaves no tenant active.
--
-- Autocommit mode and ON_ERROR_STOP off: see 10_postgres.sql.  The usage is
-- measured every second here (ALTER SYSTEM, reset at the end).
\set ON_ERROR_STOP 0
\getenv test_dir DBORCH_TEST_DIR
SET client_min_messages = warning;
\ir helpers.psql

SELECT plan(133);

-- Every tenant password seen in this file, for the leak checks at the end.
CREATE TEMP TABLE passwords (pw text);

ALTER SYSTEM SET dborch.tenant_usage_interval = '1s';
SELECT pg_reload_conf() AS reloaded \gset

------------------------------------------------------------------------------
-- a deployment with two tenants
------------------------------------------------------------------------------
SELECT id AS dep_id FROM dborch.deploy('tn_pg', 'postgres', '{"memory": "32MB"}') \gset
SELECT is((SELECT status FROM dborch.wait('tn_pg', '60s')), 'ready', 'the deployment is ready');
SELECT i.port AS pg_port, i.data_directory AS pg_dir
  FROM dborch.instances i WHERE i.deployment_id = :dep_id AND i.status <> 'destroyed' \gset
SELECT dborch.connection_string('tn_pg') AS adm_uri \gset

BEGIN;
SELECT id AS acme_id FROM dborch.create_tenant('tn_pg', 'acme', '{"max_connections": 3, "storage": "2MB"}') \gset
SELECT id AS bolt_id FROM dborch.create_tenant('tn_pg', 'bolt') \gset
COMMIT;
SELECT is((SELECT count(*) FROM dborch.jobs WHERE deployment_id = :dep_id AND kind = 'tenants'), 1::bigint,
          'two create_tenant() calls in one transaction queue one tenants job');
SELECT is((SELECT id FROM dborch.create_tenant('tn_pg', 'acme', '{"storage": "2048kB", "max_connections": 3}')),
          :acme_id::bigint, 'create_tenant() again with the same quota written another way returns the same row');
SELECT throws_ok($$SELECT dborch.create_tenant('tn_pg', 'acme', '{"max_connections": 4, "storage": "2MB"}')$$,
                 '42710', NULL, 'create_tenant() with the same name and another quota is refused');
SELECT is(pg_temp.tap_job_result((SELECT max(id) FROM dborch.jobs
                           WHERE deployment_id = :dep_id AND kind = 'tenants')),
          'succeeded', 'the tenants job succeeds');
SELECT results_eq(format($$SELECT name, status FROM dborch.tenants WHERE deployment_id = %s ORDER BY name$$, :dep_id),
                  $$VALUES ('acme', 'active'), ('bolt', 'active')$$, 'both tenants are active');
SELECT set_eq(format($$SELECT detail ->> 'tenant' FROM dborch.events WHERE deployment_id = %s AND kind = 'tenant_created'$$, :dep_id),
              ARRAY['acme', 'bolt'], 'a tenant_created event for each');

INSERT INTO passwords SELECT value FROM dborch.secrets WHERE deployment_id = :dep_id AND name LIKE 'tenant:%';
SELECT value AS acme_pw FROM dborch.secrets WHERE deployment_id = :dep_id AND name = 'tenant:acme' \gset
SELECT dborch.connection_string('tn_pg', 'acme') AS a_uri \gset
SELECT dborch.connection_string('tn_pg', 'bolt') AS b_uri \gset
SELECT is(:'a_uri'::text, format('postgresql://acme:%s@127.0.0.1:%s/postgres', :'acme_pw', :pg_port) || '?sslmode=verify-full&sslrootcert=' || :'test_dir' || '/managed/tls/ca/ca.crt',
          'the tenant''s connection string has its own user and password, the deployment''s host and port');

\set out `PGCONNECT_TIMEOUT=5 psql :'a_uri' -XAtq -c 'SELECT session_user, current_user, current_schemas(false)' 2>&1`
SELECT is(:'out'::text, 'acme|acme$owner|{acme}', 'acme logs in as acme, becomes acme$owner, and its search_path is its schema');
\set out `PGCONNECT_TIMEOUT=5 psql :'adm_uri' -XAtq -c "SELECT rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolinherit, rolconnlimit FROM pg_roles WHERE rolname = 'acme'" -c "SELECT rolcanlogin FROM pg_roles WHERE rolname = 'acme\$owner'" -c "SELECT nspowner::regrole FROM pg_namespace WHERE nspname = 'acme'" 2>&1 | tr '\n' ' '`
SELECT is(:'out'::text, 't|f|f|f|f|3 f "acme$owner" ',
          'on the instance: login role acme (no superuser, createdb, createrole, inherit; connection limit 3), NOLOGIN acme$owner owning schema acme');

-- acme's own data: tables with an index, a sequence, and a SECURITY DEFINER
-- function (used later against its read-only state)
\set out `PGCONNECT_TIMEOUT=5 psql :'a_uri' -XAtq -v ON_ERROR_STOP=1 -c 'CREATE TABLE big (id bigserial PRIMARY KEY, v text)' -c "INSERT INTO big (v) SELECT 'acme ' || g FROM generate_series(1, 10) g" -c "CREATE FUNCTION grow(n int) RETURNS bigint SECURITY DEFINER LANGUAGE sql AS 'INSERT INTO acme.big (v) SELECT repeat(''g'', 500) FROM generate_series(1, n); SELECT count(*) FROM acme.big'" -c 'SELECT count(*) FROM acme.big' 2>&1`
SELECT is(:'out'::text, '10', 'acme creates a table, a function and rows in its schema and reads them');
-- tables a delete could write through as acme$owner while acme is read-only:
-- trap (SECURITY DEFINER trigger), ruled (a rule), parent (ON DELETE
-- CASCADE into child, whose plain trigger runs as the owner during the
-- cascade); all of them write into acme.kept
\set out `PGCONNECT_TIMEOUT=5 psql :'a_uri' -XAtq -v ON_ERROR_STOP=1 -c 'CREATE TABLE kept (v text)' -c "CREATE FUNCTION keep() RETURNS trigger SECURITY DEFINER LANGUAGE plpgsql AS 'BEGIN INSERT INTO acme.kept VALUES (TG_TABLE_NAME); RETURN OLD; END'" -c "CREATE FUNCTION keep_plain() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN INSERT INTO acme.kept VALUES (TG_TABLE_NAME); RETURN OLD; END'" -c 'CREATE TABLE trap (i int)' -c 'CREATE TRIGGER keep BEFORE DELETE ON trap FOR EACH ROW EXECUTE FUNCTION keep()' -c 'CREATE TABLE ruled (i int)' -c "CREATE RULE keep AS ON DELETE TO ruled DO ALSO INSERT INTO acme.kept VALUES ('ruled')" -c 'CREATE TABLE parent (i int PRIMARY KEY)' -c 'CREATE TABLE child (i int REFERENCES parent ON DELETE CASCADE)' -c 'CREATE TRIGGER keep BEFORE DELETE ON child FOR EACH ROW EXECUTE FUNCTION keep_plain()' -c 'INSERT INTO trap VALUES (1)' -c 'INSERT INTO ruled VALUES (1)' -c 'INSERT INTO parent VALUES (1)' -c 'INSERT INTO child VALUES (1)' -c 'SELECT (SELECT count(*) FROM trap) + (SELECT count(*) FROM ruled) + (SELECT count(*) FROM parent) + (SELECT count(*) FROM child) + (SELECT count(*) FROM kept)' 2>&1`
SELECT is(:'out'::text, '4', 'acme creates a table with a SECURITY DEFINER delete trigger, one with a rule, one cascading into a table with a trigger');
\set out `PGCONNECT_TIMEOUT=5 psql :'b_uri' -XAtq -v ON_ERROR_STOP=1 -c 'CREATE TABLE secrets (id int PRIMARY KEY, v text)' -c "INSERT INTO secrets VALUES (1, 'bolt only')" -c 'SELECT v FROM bolt.secrets' 2>&1`
SELECT is(:'out'::text, 'bolt only', 'bolt creates a table in its schema and reads it');

------------------------------------------------------------------------------
-- isolation: every attempt of acme is refused, one test each
------------------------------------------------------------------------------
\set out `PGCONNECT_TIMEOUT=5 psql :'a_uri' -XAtq -c 'SELECT * FROM bolt.secrets' 2>&1`
SELECT matches(:'out'::text, 'permission denied for schema bolt', 'acme cannot read bolt''s table');
\set out `PGCONNECT_TIMEOUT=5 psql :'a_uri' -XAtq -c "INSERT INTO bolt.secrets VALUES (2, 'acme was here')" 2>&1`
SELECT matches(:'out'::text, 'permission denied for schema bolt', 'acme cannot insert into bolt''s table');
\set out `PGCONNECT_TIMEOUT=5 psql :'a_uri' -XAtq -c "UPDATE bolt.secrets SET v = 'acme was here'" 2>&1`
SELECT matches(:'out'::text, 'permission denied for schema bolt', 'acme cannot update bolt''s table');
\set out `PGCONNECT_TIMEOUT=5 psql :'a_uri' -XAtq -c 'DELETE FROM bolt.secrets' 2>&1`
SELECT matches(:'out'::text, 'permission denied for schema bolt', 'acme cannot delete from bolt''s table');
\set out `PGCONNECT_TIMEOUT=5 psql :'a_uri' -XAtq -c 'TRUNCATE bolt.secrets' 2>&1`
SELECT matches(:'out'::text, 'permission denied for schema bolt', 'acme cannot truncate bolt''s table');
\set out `PGCONNECT_TIMEOUT=5 psql :'a_uri' -XAtq -c 'ALTER TABLE bolt.secrets ADD COLUMN x int' 2>&1`
SELECT matches(:'out'::text, 'permission denied for schema bolt', 'acme cannot alter bolt''s table');
\set out `PGCONNECT_TIMEOUT=5 psql :'a_uri' -XAtq -c 'DROP TABLE bolt.secrets' 2>&1`
SELECT matches(:'out'::text, 'permission denied for schema bolt', 'acme cannot drop bolt''s table');
\set out `PGCONNECT_TIMEOUT=5 psql :'a_uri' -XAtq -c 'DROP SCHEMA bolt CASCADE' 2>&1`
SELECT matches(:'out'::text, 'must be owner of schema bolt', 'acme cannot drop bolt''s schema');
\set out `PGCONNECT_TIMEOUT=5 psql :'a_uri' -XAtq -c 'CREATE TABLE public.acme_was_here (i int)' 2>&1`
SELECT matches(:'out'::text, 'permission denied for schema public', 'acme cannot create a table in public');
\set out `PGCONNECT_TIMEOUT=5 psql :'a_uri' -XAtq -c "CREATE FUNCTION public.acme_was_here() RETURNS int LANGUAGE sql AS 'SELECT 1'" 2>&1`
SELECT matches(:'out'::text, 'permission denied for schema public', 'acme cannot create a function in public');
\set out `PGCONNECT_TIMEOUT=5 psql :'a_uri' -XAtq -c 'CREATE SCHEMA acme_more' 2>&1`
SELECT matches(:'out'::text, 'permission denied for database postgres', 'acme cannot create another schema');
\set out `PGCONNECT_TIMEOUT=5 psql :'a_uri' -XAtq -c 'SET ROLE bolt' 2>&1`
SELECT matches(:'out'::text, 'permission denied to set role "bolt"', 'acme cannot SET ROLE bolt');
\set out `PGCONNECT_TIMEOUT=5 psql :'a_uri' -XAtq -c 'SET ROLE "bolt$owner"' 2>&1`
SELECT matches(:'out'::text, 'permission denied to set role "bolt\$owner"', 'acme cannot SET ROLE "bolt$owner"');
\set out `PGCONNECT_TIMEOUT=5 psql :'a_uri' -XAtq -c 'SET SESSION AUTHORIZATION bolt' 2>&1`
SELECT matches(:'out'::text, 'permission denied to set session authorization', 'acme cannot SET SESSION AUTHORIZATION bolt');
\set out `PGCONNECT_TIMEOUT=5 psql :'a_uri' -XAtq -c 'SELECT rolname, rolpassword FROM pg_authid' 2>&1`
SELECT matches(:'out'::text, 'permission denied for table pg_authid', 'acme cannot read pg_authid');
\set out `PGCONNECT_TIMEOUT=5 psql :'a_uri' -XAtq -c 'CREATE TEMP TABLE t (i int)' 2>&1`
SELECT matches(:'out'::text, 'permission denied to create temporary tables', 'acme cannot create a temporary table');
SELECT regexp_replace(:'a_uri', '/postgres$', '/template1') AS a_t1_uri \gset
\set out `PGCONNECT_TIMEOUT=5 psql :'a_t1_uri' -XAtq -c 'CREATE TEMP TABLE t (i int)' 2>&1`
SELECT matches(:'out'::text, 'permission denied to create temporary tables', 'acme cannot create a temporary table in template1 either');
\set out `PGCONNECT_TIMEOUT=5 psql :'a_uri' -XAtq -c 'CREATE EXTENSION hstore' 2>&1`
SELECT matches(:'out'::text, 'permission denied to create extension', 'acme cannot CREATE EXTENSION (even a trusted one)');
\set out `PGCONNECT_TIMEOUT=5 psql :'a_uri' -XAtq -c 'CREATE DATABASE acme_db' 2>&1`
SELECT matches(:'out'::text, 'permission denied to create database', 'acme cannot CREATE DATABASE');
\set out `PGCONNECT_TIMEOUT=5 psql :'a_uri' -XAtq -c 'CREATE ROLE acme_friend LOGIN' 2>&1`
SELECT matches(:'out'::text, 'permission denied to create role', 'acme cannot CREATE ROLE');
\set out `PGCONNECT_TIMEOUT=5 psql :'a_uri' -XAtq -c 'GRANT "bolt$owner" TO acme' 2>&1`
SELECT matches(:'out'::text, 'permission denied to grant role|must have admin option', 'acme cannot grant itself bolt$owner');
\set out `PGCONNECT_TIMEOUT=5 psql :'a_uri' -XAtq -c 'ALTER ROLE acme CONNECTION LIMIT -1' 2>&1`
SELECT matches(:'out'::text, 'permission denied', 'acme cannot lift its own connection limit');
SELECT regexp_replace(:'a_uri', '^postgresql://acme:', 'postgresql://bolt:') AS a_pw_as_bolt \gset
\set out `PGCONNECT_TIMEOUT=5 psql :'a_pw_as_bolt' -XAtq -c 'SELECT 1' 2>&1`
SELECT matches(:'out'::text, 'password authentication failed for user "bolt"', 'acme''s password does not log in as bolt');
\set out `PGCONNECT_TIMEOUT=5 psql :'b_uri' -XAtq -c 'SELECT id, v FROM secrets' -c 'SELECT count(*) FROM pg_tables WHERE schemaname = $$public$$' 2>&1 | tr '\n' ' '`
SELECT is(:'out'::text, '1|bolt only 0 ', 'after all that, bolt''s table holds its one row and public holds no table');

------------------------------------------------------------------------------
-- max_connections: the (N+1)th connection is refused; usage shows N
------------------------------------------------------------------------------
-- three sessions of acme that stay until something ends them (the third
-- is ended below, to make room for acme's writes)
\set out `for i in 1 2 3; do PGAPPNAME=tn_session_$i PGCONNECT_TIMEOUT=5 timeout 320 psql :'a_uri' -XAtq -c 'SELECT pg_sleep(300)' </dev/null >:'test_dir'/tn_acme_session_$i.out 2>&1 & done; echo started`
\set out `for i in $(seq 1 100); do n=$(psql :'adm_uri' -XAtqc "SELECT count(*) FROM pg_stat_activity WHERE usename = 'acme'"); [ "$n" = 3 ] && break; sleep 0.1; done; echo $n`
SELECT is(:'out'::text, '3', 'acme holds three sessions (its max_connections)');
\set out `PGCONNECT_TIMEOUT=5 psql :'a_uri' -XAtq -c 'SELECT 1' 2>&1`
SELECT matches(:'out'::text, 'too many connections for role "acme"', 'the fourth connection of acme is refused');
\set out `PGCONNECT_TIMEOUT=5 psql :'b_uri' -XAtq -c 'SELECT 1' 2>&1`
SELECT is(:'out'::text, '1', 'bolt (no limit) still connects');
SELECT ok(pg_temp.tap_until(format($$SELECT (usage ->> 'connections')::int = 3 FROM dborch.tenants WHERE id = %s$$, :acme_id)),
          'dborch.tenants shows acme''s 3 connections');
SELECT ok((SELECT (usage ->> 'storage_bytes')::bigint BETWEEN 1 AND 2097152 AND usage_at IS NOT NULL
             FROM dborch.tenants WHERE id = :acme_id),
          'dborch.tenants shows acme''s storage in bytes, under its quota');

------------------------------------------------------------------------------
-- storage quota: read-only, then writable again
------------------------------------------------------------------------------
-- room for one more session of acme; the other two stay open
\set out `psql :'adm_uri' -XAtqc "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'tn_session_3'" >/dev/null; for i in $(seq 1 100); do n=$(psql :'adm_uri' -XAtqc "SELECT count(*) FROM pg_stat_activity WHERE usename = 'acme'"); [ "$n" = 2 ] && break; sleep 0.1; done; echo $n`
SELECT is(:'out'::text, '2', 'acme keeps two sessions open');
-- one measurement at the new interval has happened (usage_at moves each second)
SELECT usage_at AS last_usage_at FROM dborch.tenants WHERE id = :acme_id \gset
SELECT ok(pg_temp.tap_until(format($$SELECT usage_at > %L FROM dborch.tenants WHERE id = %s$$, :'last_usage_at', :acme_id), '30 s'),
          'acme is measured about every second (dborch.tenant_usage_interval = 1s)');
SELECT max(id) AS events_before FROM dborch.events \gset
\set out `PGCONNECT_TIMEOUT=5 psql :'a_uri' -XAtq -c "INSERT INTO big (v) SELECT repeat('x', 200) FROM generate_series(1, 20000)" 2>&1`
SELECT clock_timestamp() AS written_at \gset
SELECT is(:'out'::text, '', 'acme writes about 5MB, past its 2MB storage quota');
SELECT ok(pg_temp.tap_until(format($$SELECT read_only FROM dborch.tenants WHERE id = %s$$, :acme_id)),
          'acme becomes read-only');
SELECT ok((SELECT min(at) FROM dborch.events WHERE id > :events_before AND kind = 'tenant_over_quota'
              AND detail ->> 'tenant' = 'acme') < :'written_at'::timestamptz + interval '30 seconds',
          'after the write, at one of the next measurements (a bound of 30 s on a busy machine)');
SELECT is((SELECT count(*) FROM dborch.events WHERE id > :events_before AND kind = 'tenant_over_quota'
              AND deployment_id = :dep_id AND detail ->> 'tenant' = 'acme'), 1::bigint,
          'one tenant_over_quota event');
SELECT matches((SELECT message FROM dborch.events WHERE id > :events_before AND kind = 'tenant_over_quota'),
               'storage [0-9]+ bytes, quota 2097152', 'the event says storage and quota');
SELECT ok((SELECT (usage ->> 'storage_bytes')::bigint > 2097152 FROM dborch.tenants WHERE id = :acme_id),
          'dborch.tenants shows acme''s storage over 2MB');
SELECT is((SELECT count(*) FROM dborch.alerts WHERE deployment_id = :dep_id AND status = 'firing'
              AND payload -> 'commonLabels' ->> 'alertname' = 'DborchTenantOverQuota'
              AND payload -> 'commonLabels' ->> 'tenant' = 'acme'), 1::bigint,
          'a firing DborchTenantOverQuota alert for acme');
\set out `for i in $(seq 1 300); do n=$(cat :'test_dir'/tn_acme_session_1.out :'test_dir'/tn_acme_session_2.out | grep -c 'terminating connection due to administrator command'); [ "$n" = 2 ] && break; sleep 0.1; done; echo $n`
SELECT is(:'out'::text, '2', 'acme''s two open sessions are ended');
\set out `PGCONNECT_TIMEOUT=5 psql :'a_uri' -XAtq -c 'SELECT count(*) FROM big' 2>&1`
SELECT is(:'out'::text, '20010', 'read-only acme can SELECT');
\set out `PGCONNECT_TIMEOUT=5 psql :'a_uri' -XAtq -c "INSERT INTO big (v) VALUES ('more')" 2>&1`
SELECT matches(:'out'::text, 'permission denied for table big', 'read-only acme cannot INSERT');
\set out `PGCONNECT_TIMEOUT=5 psql :'a_uri' -XAtq -c "UPDATE big SET v = 'changed' WHERE id = 1" 2>&1`
SELECT matches(:'out'::text, 'permission denied for table big', 'read-only acme cannot UPDATE');
\set out `PGCONNECT_TIMEOUT=5 psql :'a_uri' -XAtq -c 'CREATE TABLE more (i int)' 2>&1`
SELECT matches(:'out'::text, 'permission denied for schema acme', 'read-only acme cannot CREATE TABLE');
\set out `PGCONNECT_TIMEOUT=5 psql :'a_uri' -XAtq -c 'SELECT grow(1000)' 2>&1`
SELECT matches(:'out'::text, 'permission denied', 'read-only acme cannot write through a SECURITY DEFINER function it made before');
\set out `PGCONNECT_TIMEOUT=5 psql :'a_uri' -XAtq -c 'DELETE FROM trap' 2>&1`
SELECT matches(:'out'::text, 'permission denied for table trap', 'read-only acme cannot DELETE where a SECURITY DEFINER trigger would write');
\set out `PGCONNECT_TIMEOUT=5 psql :'a_uri' -XAtq -c 'TRUNCATE trap' 2>&1`
SELECT matches(:'out'::text, 'permission denied for table trap', 'nor TRUNCATE it');
\set out `PGCONNECT_TIMEOUT=5 psql :'a_uri' -XAtq -c 'DELETE FROM ruled' 2>&1`
SELECT matches(:'out'::text, 'permission denied for table ruled', 'read-only acme cannot DELETE where a rule would write');
\set out `PGCONNECT_TIMEOUT=5 psql :'a_uri' -XAtq -c 'DELETE FROM parent' 2>&1`
SELECT matches(:'out'::text, 'permission denied for table parent', 'read-only acme cannot DELETE where a cascade reaches a table with a trigger');
\set out `PGCONNECT_TIMEOUT=5 psql :'a_uri' -XAtq -c 'DELETE FROM child' 2>&1`
SELECT matches(:'out'::text, 'permission denied for table kept', 'a plain trigger of a direct DELETE runs as acme: its write is refused');
\set out `PGCONNECT_TIMEOUT=5 psql :'a_uri' -XAtq -c 'SELECT concat((SELECT count(*) FROM trap), (SELECT count(*) FROM ruled), (SELECT count(*) FROM parent), (SELECT count(*) FROM child), (SELECT count(*) FROM kept))' 2>&1`
SELECT is(:'out'::text, '11110', 'nothing was deleted from those tables, nothing written into kept');
\set out `PGCONNECT_TIMEOUT=5 psql :'b_uri' -XAtq -c "INSERT INTO secrets VALUES (2, 'still writable')" 2>&1`
SELECT is(:'out'::text, '', 'bolt is not affected: it still writes');
\set out `PGCONNECT_TIMEOUT=5 psql :'a_uri' -XAtq -c 'DELETE FROM big WHERE id <= 10' 2>&1`
SELECT is(:'out'::text, '', 'read-only acme can DELETE');
SELECT max(id) AS events_before FROM dborch.events \gset
\set out `PGCONNECT_TIMEOUT=5 psql :'a_uri' -XAtq -c 'TRUNCATE big' 2>&1`
SELECT clock_timestamp() AS freed_at \gset
SELECT is(:'out'::text, '', 'read-only acme can TRUNCATE, back under its quota');
SELECT ok(pg_temp.tap_until(format($$SELECT NOT read_only FROM dborch.tenants WHERE id = %s$$, :acme_id)),
          'acme becomes writable again');
SELECT ok((SELECT min(at) FROM dborch.events WHERE id > :events_before AND kind = 'tenant_within_quota'
              AND detail ->> 'tenant' = 'acme') < :'freed_at'::timestamptz + interval '30 seconds',
          'after the deletes, at one of the next measurements (a bound of 30 s on a busy machine)');
SELECT is((SELECT count(*) FROM dborch.events WHERE id > :events_before AND kind = 'tenant_within_quota'
              AND deployment_id = :dep_id AND detail ->> 'tenant' = 'acme'), 1::bigint,
          'one tenant_within_quota event');
SELECT is((SELECT count(*) FROM dborch.alerts WHERE deployment_id = :dep_id AND status = 'resolved'
              AND ends_at IS NOT NULL AND payload -> 'commonLabels' ->> 'tenant' = 'acme'), 1::bigint,
          'a resolved alert for acme');
SELECT ok((SELECT (usage ->> 'storage_bytes')::bigint < 2097152 FROM dborch.tenants WHERE id = :acme_id),
          'dborch.tenants shows acme''s storage back under 2MB');
\set out `PGCONNECT_TIMEOUT=5 psql :'a_uri' -XAtq -c "INSERT INTO big (v) VALUES ('writable again') RETURNING v" -c 'SELECT current_user' 2>&1 | tr '\n' ' '`
SELECT is(:'out'::text, 'writable again acme$owner ', 'acme inserts again, as acme$owner');
\set out `PGCONNECT_TIMEOUT=5 psql :'a_uri' -XAtq -c 'DELETE FROM trap' -c 'DELETE FROM ruled' -c 'DELETE FROM parent' -c "SELECT string_agg(v, ',' ORDER BY v) FROM kept" 2>&1`
SELECT is(:'out'::text, 'child,ruled,trap', 'writable, the same deletes run and their trigger, rule and cascade write');

------------------------------------------------------------------------------
-- drop_tenant removes the roles, the schema and the data
------------------------------------------------------------------------------
SELECT is((SELECT status FROM dborch.drop_tenant('tn_pg', 'bolt')), 'dropping', 'drop_tenant() returns the tenant as dropping');
SELECT is(pg_temp.tap_job_result((SELECT max(id) FROM dborch.jobs
                           WHERE deployment_id = :dep_id AND kind = 'tenants')),
          'succeeded', 'the tenants job of the drop succeeds');
SELECT is((SELECT status FROM dborch.tenants WHERE id = :bolt_id), 'dropped', 'the tenant row stays, as dropped');
\set out `PGCONNECT_TIMEOUT=5 psql :'adm_uri' -XAtq -c "SELECT count(*) FROM pg_roles WHERE rolname IN ('bolt', 'bolt\$owner')" -c "SELECT count(*) FROM pg_namespace WHERE nspname = 'bolt'" -c "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'bolt'" 2>&1 | tr '\n' ' '`
SELECT is(:'out'::text, '0 0 0 ', 'on the instance: roles bolt and bolt$owner, schema bolt and its tables are gone');
\set out `PGCONNECT_TIMEOUT=5 psql :'b_uri' -XAtq -c 'SELECT 1' 2>&1`
SELECT matches(:'out'::text, 'password authentication failed for user "bolt"', 'bolt''s connection string no longer works');
SELECT is((SELECT count(*) FROM dborch.secrets WHERE deployment_id = :dep_id AND name = 'tenant:bolt'), 0::bigint,
          'bolt''s password secret is gone');
SELECT throws_ok($$SELECT dborch.connection_string('tn_pg', 'bolt')$$, '42704', NULL,
                 'connection_string() of a dropped tenant is refused (42704)');
SELECT throws_ok($$SELECT dborch.drop_tenant('tn_pg', 'bolt')$$, '42704', NULL,
                 'drop_tenant() of a dropped tenant is refused (42704)');
SELECT results_eq(format($$SELECT kind FROM dborch.events WHERE deployment_id = %s
                            AND kind IN ('tenant_drop_requested', 'tenant_dropped') ORDER BY id$$, :dep_id),
                  ARRAY['tenant_drop_requested', 'tenant_dropped'], 'tenant_drop_requested and tenant_dropped events');
-- the name can be used again, and starts empty
SELECT isnt((SELECT id FROM dborch.create_tenant('tn_pg', 'bolt')), :bolt_id::bigint,
            'creating bolt again makes a new tenant');
SELECT is(pg_temp.tap_job_result((SELECT max(id) FROM dborch.jobs
                           WHERE deployment_id = :dep_id AND kind = 'tenants')),
          'succeeded', 'which is created');
INSERT INTO passwords SELECT value FROM dborch.secrets WHERE deployment_id = :dep_id AND name LIKE 'tenant:%';
SELECT dborch.connection_string('tn_pg', 'bolt') AS b2_uri \gset
SELECT isnt(:'b2_uri'::text, :'b_uri'::text, 'with a new password');
\set out `PGCONNECT_TIMEOUT=5 psql :'b2_uri' -XAtq -c 'SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()' 2>&1`
SELECT is(:'out'::text, '0', 'and an empty schema: the old data is gone');

------------------------------------------------------------------------------
-- 50 tenants in one transaction: one tenants job
------------------------------------------------------------------------------
SELECT count(*) AS jobs_before FROM dborch.jobs WHERE deployment_id = :dep_id AND kind = 'tenants' \gset
BEGIN;
SELECT count(*) AS n FROM generate_series(1, 50) g, dborch.create_tenant('tn_pg', 'batch_' || g, '{"storage": "10MB"}') \gset
COMMIT;
SELECT is(:n::int, 50, '50 create_tenant() calls in one transaction');
SELECT is((SELECT count(*) FROM dborch.jobs WHERE deployment_id = :dep_id AND kind = 'tenants'),
          :jobs_before::bigint + 1, 'queue one tenants job');
SELECT is(pg_temp.tap_job_result((SELECT max(id) FROM dborch.jobs
                           WHERE deployment_id = :dep_id AND kind = 'tenants')),
          'succeeded', 'which succeeds');
SELECT is((SELECT count(*) FROM dborch.tenants WHERE deployment_id = :dep_id AND name LIKE 'batch\_%' AND status = 'active'),
          50::bigint, 'the 50 tenants are active');
SELECT is((SELECT count(*) FROM dborch.events e JOIN dborch.jobs j ON j.id = e.job_id
            WHERE j.id = (SELECT max(id) FROM dborch.jobs WHERE deployment_id = :dep_id AND kind = 'tenants')
              AND e.kind = 'tenant_created'), 50::bigint, 'the job made a tenant_created event for each');
\set out `PGCONNECT_TIMEOUT=5 psql :'adm_uri' -XAtq -c "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'batch\_%'" -c "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'batch\_%'" 2>&1 | tr '\n' ' '`
SELECT is(:'out'::text, '100 50 ', 'on the instance: 100 roles (login and owner) and 50 schemas');
INSERT INTO passwords SELECT value FROM dborch.secrets WHERE deployment_id = :dep_id AND name LIKE 'tenant:%';
SELECT dborch.connection_string('tn_pg', 'batch_50') AS b50_uri \gset
\set out `PGCONNECT_TIMEOUT=5 psql :'b50_uri' -XAtq -c 'SELECT current_user' 2>&1`
SELECT is(:'out'::text, 'batch_50$owner', 'the last of them logs in');
SELECT count(*) AS jobs_before FROM dborch.jobs WHERE deployment_id = :dep_id AND kind = 'tenants' \gset
BEGIN;
SELECT count(*) AS n FROM generate_series(1, 50) g, dborch.drop_tenant('tn_pg', 'batch_' || g) \gset
COMMIT;
SELECT is((SELECT count(*) FROM dborch.jobs WHERE deployment_id = :dep_id AND kind = 'tenants'),
          :jobs_before::bigint + 1, '50 drop_tenant() calls in one transaction queue one tenants job');
SELECT is(pg_temp.tap_job_result((SELECT max(id) FROM dborch.jobs
                           WHERE deployment_id = :dep_id AND kind = 'tenants')),
          'succeeded', 'which succeeds');
\set out `PGCONNECT_TIMEOUT=5 psql :'adm_uri' -XAtq -c "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'batch\_%'" -c "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'batch\_%'" 2>&1 | tr '\n' ' '`
SELECT is(:'out'::text, '0 0 ', 'their roles and schemas are gone');

------------------------------------------------------------------------------
-- a quota the instance cannot take (CONNECTION LIMIT is a 32-bit integer)
-- must not fail the other tenants of its batch, nor put the tenant statement
-- (it carries the SCRAM verifier) into errors; create_tenant() may refuse it
------------------------------------------------------------------------------
BEGIN;
DO $$
BEGIN
	PERFORM dborch.create_tenant('tn_pg', 'huge', '{"max_connections": 3000000000}');
EXCEPTION WHEN invalid_parameter_value THEN
	NULL;
END
$$;
SELECT id AS innocent_id FROM dborch.create_tenant('tn_pg', 'innocent') \gset
COMMIT;
SELECT pg_temp.tap_job_result((SELECT max(id) FROM dborch.jobs WHERE deployment_id = :dep_id AND kind = 'tenants')) AS batch_end \gset
SELECT is((SELECT status || coalesce(': ' || last_error, '') FROM dborch.tenants WHERE id = :innocent_id), 'active',
          'a tenant created beside one with an unfit quota is active');
SELECT is((SELECT count(*) FROM (SELECT error AS e FROM dborch.jobs WHERE deployment_id = :dep_id
                                 UNION ALL SELECT last_error FROM dborch.tenants WHERE deployment_id = :dep_id) x
            WHERE e ~ '[A-Za-z0-9+/]{16,}=' OR e LIKE '%CONNECTION LIMIT%'), 0::bigint,
          'no job or tenant error quotes the role statement with its SCRAM verifier');
INSERT INTO passwords SELECT value FROM dborch.secrets WHERE deployment_id = :dep_id AND name LIKE 'tenant:%';

------------------------------------------------------------------------------
-- a backup restored into a new deployment carries the tenants over, with
-- passwords of their own and their schemas as of the backup; a tenant made
-- after the backup starts empty there.  A restore in place applies the
-- tenants again: one made after the backup gets its role back.
------------------------------------------------------------------------------
-- tenant gone is in the backup and dropped after it: no restore lets its
-- old password in; its schema is kept, and create_tenant() takes it back
SELECT id AS gone_id FROM dborch.create_tenant('tn_pg', 'gone') \gset
SELECT pg_temp.tap_job_result((SELECT max(id) FROM dborch.jobs WHERE deployment_id = :dep_id AND kind = 'tenants')) AS gone_job \gset
SELECT value AS gone_pw FROM dborch.secrets WHERE deployment_id = :dep_id AND name = 'tenant:gone' \gset
INSERT INTO passwords VALUES (:'gone_pw');
SELECT format('postgresql://gone:%s@127.0.0.1:%s/postgres', :'gone_pw', :pg_port) AS gone_uri \gset
\set out `PGCONNECT_TIMEOUT=5 psql :'gone_uri' -XAtq -v ON_ERROR_STOP=1 -c 'CREATE TABLE kept_by_gone (i int)' -c 'INSERT INTO kept_by_gone VALUES (7)' -c 'SELECT i FROM kept_by_gone' 2>&1`
SELECT is(:'gone_job' || ' ' || :'out', 'succeeded 7', 'tenant gone is created and writes a table');
SELECT id AS bk_id, job_id AS bk_job FROM dborch.backup('tn_pg') \gset
SELECT is(pg_temp.tap_job_result(:bk_job), 'succeeded', 'a full backup of the deployment with its tenants');
SELECT is((SELECT status FROM dborch.drop_tenant('tn_pg', 'gone')), 'dropping', 'tenant gone is dropped after the backup');
SELECT is(pg_temp.tap_job_result((SELECT max(id) FROM dborch.jobs WHERE deployment_id = :dep_id AND kind = 'tenants')),
          'succeeded', 'its drop succeeds');
SELECT id AS later_id FROM dborch.create_tenant('tn_pg', 'later') \gset
SELECT is(pg_temp.tap_job_result((SELECT max(id) FROM dborch.jobs WHERE deployment_id = :dep_id AND kind = 'tenants')),
          'succeeded', 'tenant later is created after the backup');
INSERT INTO passwords SELECT value FROM dborch.secrets WHERE deployment_id = :dep_id AND name LIKE 'tenant:%';
SELECT id AS copy_id FROM dborch.restore('tn_pg', new_name => 'tn_pg_copy') \gset
SELECT is((SELECT status FROM dborch.wait('tn_pg_copy', '120s')), 'ready', 'the backup is restored into a new deployment');
SELECT is((SELECT (detail->>'tenants')::bigint FROM dborch.events WHERE deployment_id = :copy_id AND kind = 'tenants_restored'),
          (SELECT count(*) FROM dborch.tenants WHERE deployment_id = :dep_id AND status = 'active'),
          'a tenants_restored event counts every active tenant of the source');
SELECT is(pg_temp.tap_job_result((SELECT max(id) FROM dborch.jobs WHERE deployment_id = :copy_id AND kind = 'tenants')),
          'succeeded', 'the copy''s tenants job succeeds');
SELECT results_eq(format($$SELECT name, status, quota::text FROM dborch.tenants WHERE deployment_id = %s ORDER BY name$$, :copy_id),
                  format($$SELECT name, status, quota::text FROM dborch.tenants WHERE deployment_id = %s
                            AND status = 'active' ORDER BY name$$, :dep_id),
                  'the copy has the source''s tenants, active, with their quotas');
INSERT INTO passwords SELECT value FROM dborch.secrets WHERE deployment_id = :copy_id AND name LIKE 'tenant:%';
SELECT dborch.connection_string('tn_pg_copy', 'acme') AS ca_uri,
       dborch.connection_string('tn_pg_copy', 'later') AS cl_uri \gset
\set out `PGCONNECT_TIMEOUT=5 psql :'adm_uri' -XAtqc "SELECT count(*) FROM pg_tables WHERE schemaname = 'acme'" 2>&1`
SELECT :'out' AS acme_tables \gset
\set out `PGCONNECT_TIMEOUT=5 psql :'ca_uri' -XAtqc "SELECT current_user || ' ' || current_schema() || ' ' || (SELECT count(*) FROM pg_tables WHERE schemaname = 'acme')" 2>&1`
SELECT is(:'out'::text, 'acme$owner acme ' || :'acme_tables', 'acme logs into the copy with its new connection string and finds its tables');
\set out `PGCONNECT_TIMEOUT=5 psql :'cl_uri' -XAtqc "SELECT current_user || ' ' || (SELECT count(*) FROM pg_tables WHERE schemaname = 'later')" 2>&1`
SELECT is(:'out'::text, 'later$owner 0', 'later, made after the backup, logs into the copy and has an empty schema');
SELECT format('postgresql://acme:%s@127.0.0.1:%s/postgres', :'acme_pw', pg_temp.tap_port(:'ca_uri')) AS old_pw_uri \gset
\set out `PGCONNECT_TIMEOUT=5 psql :'old_pw_uri' -XAtqc 'SELECT 1' 2>&1`
SELECT matches(:'out'::text, 'password authentication failed', 'acme''s password of the source does not open the copy');
SELECT is((SELECT detail::text FROM dborch.events WHERE deployment_id = :copy_id AND kind = 'tenants_locked_out'),
          '{"tenants": ["gone"]}', 'a tenants_locked_out event names gone, in the backup but no tenant of the copy');
SELECT format('postgresql://gone:%s@127.0.0.1:%s/postgres', :'gone_pw', pg_temp.tap_port(:'ca_uri')) AS gone_old_uri \gset
\set out `PGCONNECT_TIMEOUT=5 psql :'gone_old_uri' -XAtqc 'SELECT 1' 2>&1`
SELECT matches(:'out'::text, 'password authentication failed|not permitted to log in', 'gone''s password of the backup''s time does not open the copy');
SELECT dborch.connection_string('tn_pg_copy') AS copy_adm_uri \gset
\set out `PGCONNECT_TIMEOUT=5 psql :'copy_adm_uri' -XAtqc 'SELECT i FROM gone.kept_by_gone' 2>&1`
SELECT is(:'out'::text, '7', 'gone''s schema is kept in the copy, for the deployment''s own user');
SELECT id AS copy_gone_id FROM dborch.create_tenant('tn_pg_copy', 'gone') \gset
SELECT is(pg_temp.tap_job_result((SELECT max(id) FROM dborch.jobs WHERE deployment_id = :copy_id AND kind = 'tenants')),
          'succeeded', 'create_tenant() of gone on the copy succeeds');
INSERT INTO passwords SELECT value FROM dborch.secrets WHERE deployment_id = :copy_id AND name = 'tenant:gone';
SELECT dborch.connection_string('tn_pg_copy', 'gone') AS cg_uri \gset
\set out `PGCONNECT_TIMEOUT=5 psql :'cg_uri' -XAtqc 'SELECT i FROM kept_by_gone' 2>&1`
SELECT is(:'out'::text, '7', 'gone logs into the copy with its new connection string and finds its table');

SELECT is((SELECT status FROM dborch.restore('tn_pg', backup => :bk_id, in_place => true)), 'restoring',
          'a restore in place of the same backup');
SELECT is((SELECT status FROM dborch.wait('tn_pg', '120s')), 'ready', 'ends ready');
SELECT is(pg_temp.tap_job_result((SELECT max(id) FROM dborch.jobs WHERE deployment_id = :dep_id AND kind = 'tenants')),
          'succeeded', 'a tenants job applies the tenants again');
SELECT dborch.connection_string('tn_pg', 'later') AS l_uri \gset
\set out `PGCONNECT_TIMEOUT=5 psql :'l_uri' -XAtqc 'SELECT current_user' 2>&1`
SELECT is(:'out'::text, 'later$owner', 'later, whose role the backup did not have, logs in again');
\set out `PGCONNECT_TIMEOUT=5 psql :'gone_uri' -XAtqc 'SELECT 1' 2>&1`
SELECT matches(:'out'::text, 'password authentication failed|not permitted to log in', 'in place too, gone''s password of the backup''s time does not open the deployment');
SELECT is((SELECT detail::text FROM dborch.events WHERE deployment_id = :dep_id AND kind = 'tenants_locked_out'),
          '{"tenants": ["gone"]}', 'with a tenants_locked_out event naming gone');
SELECT is((SELECT status FROM dborch.destroy('tn_pg_copy')), 'destroying', 'destroy() the copy');
SELECT is((SELECT status FROM dborch.wait('tn_pg_copy', '60s')), 'destroyed', 'it is destroyed');

------------------------------------------------------------------------------
-- no tenant password in the catalog's events, jobs, alerts or the logs
------------------------------------------------------------------------------
SELECT cmp_ok((SELECT count(DISTINCT pw) FROM passwords), '>=', 53::bigint, 'the passwords of 53 tenants were collected');
SELECT is((SELECT count(*) FROM passwords p, dborch.events e
            WHERE position(p.pw IN e.message) > 0 OR position(p.pw IN e.detail::text) > 0), 0::bigint,
          'no event holds a tenant password');
SELECT is((SELECT count(*) FROM passwords p, dborch.jobs j
            WHERE position(p.pw IN j.args::text) > 0 OR position(p.pw IN coalesce(j.error, '')) > 0), 0::bigint,
          'no job args or error holds a tenant password');
SELECT is((SELECT count(*) FROM passwords p, dborch.tenants t
            WHERE position(p.pw IN t::text) > 0), 0::bigint, 'no tenants row holds a password');
SELECT is((SELECT count(*) FROM passwords p, dborch.alerts a
            WHERE position(p.pw IN a.payload::text) > 0), 0::bigint, 'no alert holds a tenant password');
SELECT string_agg(DISTINCT pw, ' ') AS pwlist FROM passwords \gset
\set out `echo :'pwlist' | tr ' ' '\n' > :'test_dir'/tn_pg_passwords.txt; grep -cFf :'test_dir'/tn_pg_passwords.txt :'test_dir'/server.log`
SELECT is(:'out'::text, '0', 'the control plane''s server log holds no tenant password');
\set out `grep -cFf :'test_dir'/tn_pg_passwords.txt :'pg_dir'/postgresql.log; rm -f :'test_dir'/tn_pg_passwords.txt`
SELECT is(:'out'::text, '0', 'the instance''s server log holds no tenant password');

------------------------------------------------------------------------------
-- cleanup
------------------------------------------------------------------------------
SELECT is((SELECT status FROM dborch.destroy('tn_pg', drop_backups => true)), 'destroying', 'destroy() the deployment');
SELECT is((SELECT status FROM dborch.wait('tn_pg', '60s')), 'destroyed', 'it is destroyed');
SELECT is((SELECT string_agg(DISTINCT status, ',') FROM dborch.tenants WHERE deployment_id = :dep_id), 'dropped',
          'its tenants are dropped with it (none is left active)');
\set out `rm -f :'test_dir'/tn_acme_session_*.out; echo done`

SELECT * FROM finish();

ALTER SYSTEM RESET dborch.tenant_usage_interval;
SELECT pg_reload_conf() \gset
-- Safety net after a failure above: leave no deployment of this file behind.
SELECT count(dborch.destroy(name, drop_backups => true)) AS n FROM dborch.deployments
 WHERE name IN ('tn_pg', 'tn_pg_copy') AND status NOT IN ('destroyed', 'destroying') \gset
SELECT count(dborch.wait(name)) AS n FROM dborch.deployments
 WHERE name IN ('tn_pg', 'tn_pg_copy') AND status = 'destroying' \gset
