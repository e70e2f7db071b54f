-- PostgreSQL tenants cannot reach past their share, tried as a hostile
-- owner and tenant would:
--   a name the instance holds as something other than a dborch tenant (a
--   role or a schema the owner made) is never adopted: create_tenant() of
--   it ends failed, with the reason; a move to a deployment that holds the
--   name stops before it touches anything, and leaves that role alone;
--   a tenant over its quota loses what it granted itself (or PUBLIC) while
--   writable, so it cannot write through a grant; its large objects count
--   toward its storage, and a read-only tenant cannot make new ones.
--
-- Autocommit mode and ON_ERROR_STOP off: see 10_postgres.sql.
\set ON_ERROR_STOP 0
SET client_min_messages = warning;
\ir helpers.psql

SELECT plan(19);

ALTER SYSTEM SET dborch.tenant_usage_interval = '1s';
SELECT pg_reload_conf() \g /dev/null

SELECT status FROM dborch.deploy('tap_tph_a', 'postgres', '{"memory": "32MB"}') \gset
SELECT status FROM dborch.deploy('tap_tph_b', 'postgres', '{"memory": "32MB"}') \gset
SELECT is((SELECT status FROM dborch.wait('tap_tph_a', '120s')), 'ready', 'deployment a is ready');
SELECT is((SELECT status FROM dborch.wait('tap_tph_b', '120s')), 'ready', 'deployment b is ready');
SELECT dborch.connection_string('tap_tph_a') AS a_own, dborch.connection_string('tap_tph_b') AS b_own \gset

------------------------------------------------------------------------------
-- names taken in the instance are never adopted
------------------------------------------------------------------------------
\set out `PGCONNECT_TIMEOUT=5 psql :'a_own' -XAtq -c "CREATE ROLE squat LOGIN PASSWORD 'owner-knows-it'" -c "CREATE SCHEMA squat2" -c "SELECT 'made'" 2>&1`
SELECT is(:'out'::text, 'made', 'the owner makes a role squat and a schema squat2 of its own');
SELECT status FROM dborch.create_tenant('tap_tph_a', 'squat') \gset
SELECT status FROM dborch.create_tenant('tap_tph_a', 'squat2') \gset
SELECT status FROM dborch.create_tenant('tap_tph_a', 'acme', '{"storage": "2MB"}') \gset
SELECT ok(pg_temp.tap_until($$SELECT count(*) = 3 FROM dborch.tenants WHERE deployment = 'tap_tph_a'
                              AND status NOT IN ('pending')$$, '60s'),
          'the batch of three tenants is done');
SELECT is((SELECT string_agg(name || ' ' || status, ', ' ORDER BY name) FROM dborch.tenants WHERE deployment = 'tap_tph_a'),
          'acme active, squat failed, squat2 failed', 'acme is made; squat and squat2 are refused');
SELECT matches((SELECT last_error FROM dborch.tenants WHERE deployment = 'tap_tph_a' AND name = 'squat'),
               'a role or schema named "squat" already exists in the instance and is no tenant of dborch''s',
               'the reason names the role and says what to do');
SELECT is((SELECT count(*) FROM dborch.events WHERE deployment = 'tap_tph_a' AND kind = 'tenant_failed'), 2::bigint,
          'a tenant_failed event for each');
SELECT regexp_replace(:'a_own', '//owner:[^@]+@', '//squat:owner-knows-it@') AS squat_uri \gset
\set out `PGCONNECT_TIMEOUT=5 psql :'squat_uri' -XAtc "SELECT current_user" 2>&1`
SELECT is(:'out'::text, 'squat', 'the owner''s role squat is left as it was (it logs in with its own password)');

------------------------------------------------------------------------------
-- a move to a deployment that holds the name stops before touching it
------------------------------------------------------------------------------
\set out `PGCONNECT_TIMEOUT=5 psql :'b_own' -XAtq -c "CREATE ROLE acme" -c "SELECT 'made'" 2>&1`
SELECT is(:'out'::text, 'made', 'the owner makes a role acme on deployment b');
SELECT id AS move_job FROM dborch.move_tenant('acme', 'tap_tph_a', 'tap_tph_b') \gset
SELECT matches(pg_temp.tap_job_result(:move_job), '^failed: deployment "tap_tph_b" already holds a role or schema named "acme"',
               'the move fails (55000): b holds a role acme');
SELECT is((SELECT status FROM dborch.tenants WHERE deployment = 'tap_tph_a' AND name = 'acme'), 'active',
          'acme stays on a, active');
\set out `PGCONNECT_TIMEOUT=5 psql :'b_own' -XAtc "SELECT count(*) FROM pg_roles WHERE rolname = 'acme'" 2>&1`
SELECT is(:'out'::text, '1', 'b''s role acme is still there: the undo did not drop what was not the move''s');

------------------------------------------------------------------------------
-- a tenant over its quota writes through no grant of its own
------------------------------------------------------------------------------
SELECT dborch.connection_string('tap_tph_a', 'acme') AS acme \gset
\set out `PGCONNECT_TIMEOUT=5 psql :'acme' -XAtq -c "CREATE TABLE t (v text)" -c "GRANT ALL ON t TO acme, PUBLIC" -c "GRANT CREATE ON SCHEMA acme TO acme" -c "SELECT 'granted'" 2>&1`
SELECT is(:'out'::text, 'granted', 'writable acme grants its login role and PUBLIC everything on its table');
\set out `PGCONNECT_TIMEOUT=5 psql :'acme' -XAtq -c "SELECT lo_from_bytea(0, decode(repeat('00', 3 * 1024 * 1024), 'hex')) > 0" 2>&1`
SELECT is(:'out'::text, 't', 'acme stores 3MB in a large object (its quota is 2MB; its tables are empty)');
SELECT ok(pg_temp.tap_until($$SELECT read_only FROM dborch.tenants WHERE deployment = 'tap_tph_a' AND name = 'acme'$$, '60s'),
          'the large object counts: acme is read-only');
SELECT ok((SELECT (usage ->> 'storage_bytes')::bigint >= 3 * 1024 * 1024 FROM dborch.tenants
            WHERE deployment = 'tap_tph_a' AND name = 'acme'), 'its usage holds the 3MB');
\set out `PGCONNECT_TIMEOUT=5 psql :'acme' -XAtq -c "RESET role" -c "INSERT INTO acme.t VALUES ('through my own grant')" 2>&1`
SELECT matches(:'out'::text, 'permission denied for table t', 'read-only acme cannot insert through the grant it made itself');
\set out `PGCONNECT_TIMEOUT=5 psql :'acme' -XAtq -c "RESET role" -c "SELECT lo_create(0)" 2>&1`
SELECT matches(:'out'::text, 'permission denied for function lo_create', 'nor make a new large object');

ALTER SYSTEM RESET dborch.tenant_usage_interval;
SELECT pg_reload_conf() \g /dev/null
SELECT count(dborch.destroy(name)) AS n FROM dborch.deployments
 WHERE name IN ('tap_tph_a', 'tap_tph_b') AND status <> 'destroyed' \gset
SELECT ok(pg_temp.tap_until($$SELECT count(*) = 0 FROM dborch.deployments WHERE name IN ('tap_tph_a', 'tap_tph_b')
                              AND status <> 'destroyed'$$, '60s'),
          'the deployments are destroyed');

SELECT * FROM finish();
