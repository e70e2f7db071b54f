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
\getenv test_dir DBORCH_TEST_DIR
SET client_min_messages = warning;
\ir helpers.psql

SELECT plan(32);

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

------------------------------------------------------------------------------
-- a move that fails leaves no dump of the tenant's data behind
------------------------------------------------------------------------------
SELECT status FROM dborch.create_tenant('tap_tph_a', 'beta') \gset
SELECT ok(pg_temp.tap_until($$SELECT status = 'active' FROM dborch.tenants WHERE deployment = 'tap_tph_a' AND name = 'beta'$$, '60s'),
          'tenant beta is active on a');
SELECT dborch.connection_string('tap_tph_a', 'beta') AS beta \gset
\set out `PGCONNECT_TIMEOUT=5 psql :'beta' -XAtq -c "CREATE TABLE secrets_of_beta AS SELECT 'beta-private-' || g AS v FROM generate_series(1, 100) g" -c "SELECT count(*) FROM secrets_of_beta" 2>&1`
SELECT is(:'out'::text, '100', 'beta has private rows');
-- the owner of b makes its database read-only: pg_restore of the move fails there
\set out `PGCONNECT_TIMEOUT=5 psql :'b_own' -XAtq -c "ALTER DATABASE postgres SET default_transaction_read_only = on" -c "SELECT 'set'" 2>&1`
SELECT id AS fail_job FROM dborch.move_tenant('beta', 'tap_tph_a', 'tap_tph_b') \gset
SELECT matches(pg_temp.tap_job_result(:fail_job), '^failed: .*pg_restore', 'the move fails in pg_restore on b');
SELECT current_setting('dborch.data_directory') || '/backups/moves/job-' || :fail_job AS move_dir \gset
\set out `test -e :'move_dir' && echo present || echo absent`
SELECT is(:'out'::text, 'absent', 'its directory, with the dump of beta''s data, is gone');
\set out `grep -rl 'beta-private' :'test_dir'/managed/backups 2>/dev/null | wc -l`
SELECT is(:'out'::text, '0', 'no file under the backup directory holds beta''s rows');
\set out `PGCONNECT_TIMEOUT=5 psql :'b_own' -XAtq -c "BEGIN READ WRITE" -c "ALTER DATABASE postgres RESET default_transaction_read_only" -c "COMMIT" -c "SELECT 'reset'" 2>&1`

------------------------------------------------------------------------------
-- a restore locks the tenant roles of the restored data out, sessions too
------------------------------------------------------------------------------
SELECT id AS bk, job_id AS bk_job FROM dborch.backup('tap_tph_a') \gset
SELECT is(pg_temp.tap_job_result(:bk_job), 'succeeded', 'a backup of a, with beta in it');
SELECT value AS beta_pw FROM dborch.secrets s JOIN dborch.deployments d ON d.id = s.deployment_id
 WHERE d.name = 'tap_tph_a' AND d.status <> 'destroyed' AND s.name = 'tenant:beta' \gset
ALTER SYSTEM SET dborch.pause_at_stage = 'restore:tenants';
SELECT pg_reload_conf() \g /dev/null
SELECT pg_sleep(0.2) \g /dev/null
SELECT id AS d_id FROM dborch.restore('tap_tph_a', backup => :bk, new_name => 'tap_tph_d') \gset
SELECT ok(pg_temp.tap_until(format($$SELECT stage = 'tenants' FROM dborch.jobs WHERE deployment_id = %s AND kind = 'restore'$$, :d_id), '120s'),
          'the restore is held before its tenants stage (the restored server runs)');
SELECT i.port AS d_port FROM dborch.instances i WHERE i.deployment_id = :d_id AND i.status <> 'destroyed' \gset
SELECT format('postgresql://beta:%s@127.0.0.1:%s/postgres', :'beta_pw', :d_port) AS beta_old \gset
\set out `(PGCONNECT_TIMEOUT=5 timeout 120 psql :'beta_old' -XAtc "SELECT pg_sleep(100)" >:'test_dir'/tap_tph_beta.out 2>&1 &); echo started`
SELECT pg_temp.tap_dborch_uri(format('postgresql://x:y@127.0.0.1:%s/postgres', :d_port), 'tap_tph_d') AS d_admin \gset
\set out `for i in $(seq 1 300); do n=$(PGCONNECT_TIMEOUT=5 psql :'d_admin' -XAtc "SELECT count(*) FROM pg_stat_activity WHERE usename = 'beta'" 2>&1); [ "$n" = 1 ] && break; sleep 0.1; done; echo "$n"`
SELECT is(:'out'::text, '1', 'beta has a session on the restored server, with its password of the backup''s time');
ALTER SYSTEM RESET dborch.pause_at_stage;
SELECT pg_reload_conf() \g /dev/null
SELECT is((SELECT status FROM dborch.wait('tap_tph_d', '120s')), 'ready', 'the restore goes on and ends ready');
\set out `for i in $(seq 1 100); do grep -q 'terminating connection' :'test_dir'/tap_tph_beta.out && break; sleep 0.1; done; grep -c 'terminating connection due to administrator command' :'test_dir'/tap_tph_beta.out`
SELECT is(:'out'::text, '1', 'the lock-out ended beta''s session of the backup''s time');

------------------------------------------------------------------------------
-- a retried deploy keeps the directories of replicas that still run
------------------------------------------------------------------------------
SELECT status FROM dborch.deploy('tap_tph_c', 'postgres', '{"memory": "32MB", "replicas": 1}') \gset
SELECT is((SELECT status FROM dborch.wait('tap_tph_c', '120s')), 'ready', 'deployment c with a replica is ready');
SELECT i.pid AS c_rpid, i.data_directory AS c_rdir FROM dborch.instances i JOIN dborch.deployments d ON d.id = i.deployment_id
 WHERE d.name = 'tap_tph_c' AND i.role = 'replica' AND i.status = 'running' \gset
-- as a recovery that gave up leaves it: failed, its instances as they are
UPDATE dborch.deployments SET status = 'failed', last_error = 'recovery failed (by hand)'
 WHERE name = 'tap_tph_c' AND status <> 'destroyed';
SELECT status FROM dborch.deploy('tap_tph_c', 'postgres', '{"memory": "32MB", "replicas": 1}') \gset
SELECT is((SELECT status FROM dborch.wait('tap_tph_c', '120s')), 'ready', 'deploy() with the same spec retries it: ready again');
\set out `test -d :'c_rdir'/data && kill -0 :c_rpid && echo kept`
SELECT is(:'out'::text, 'kept', 'the retried deploy left the running replica''s directory and process alone');

ALTER SYSTEM RESET dborch.tenant_usage_interval;
SELECT pg_reload_conf() \g /dev/null
SELECT count(dborch.destroy(name)) AS n FROM dborch.deployments
 WHERE name IN ('tap_tph_a', 'tap_tph_b', 'tap_tph_c', 'tap_tph_d') AND status <> 'destroyed' \gset
SELECT ok(pg_temp.tap_until($$SELECT count(*) = 0 FROM dborch.deployments WHERE name IN ('tap_tph_a', 'tap_tph_b', 'tap_tph_c', 'tap_tph_d')
                              AND status <> 'destroyed'$$, '60s'),
          'the deployments are destroyed');

SELECT * FROM finish();
