-- Tenants cannot reach past their share, tried as a hostile tenant would,
-- and what a tenant does cannot take the deployment down:
--   Redis: no CLIENT TRACKING (in BCAST mode Redis 7.0 reports every key
--   that changes, other tenants' too), no COPY into another database; a
--   runaway script (a loop past busy-reply-threshold) is killed and the
--   deployment stays ready, with a script_killed event and no recovery;
--   drop_tenant() of a tenant whose ACL user is already gone succeeds.
--   LISTEN dborch_events: a notification carries an event id only, and
--   another owner cannot read that event.
--
-- Autocommit mode and ON_ERROR_STOP off: see 10_postgres.sql.
\set ON_ERROR_STOP 0
\getenv test_dir DBORCH_TEST_DIR
SET client_min_messages = warning;
\ir helpers.psql

SELECT plan(26);

SELECT status FROM dborch.deploy('tap_th_rd', 'redis', '{"memory": "16MB"}') \gset
SELECT is((SELECT status FROM dborch.wait('tap_th_rd', '60s')), 'ready', 'a Redis deployment is ready');
SELECT status FROM dborch.create_tenant('tap_th_rd', 'acme') \gset
SELECT status FROM dborch.create_tenant('tap_th_rd', 'bolt') \gset
SELECT ok(pg_temp.tap_until($$SELECT count(*) = 2 FROM dborch.tenants WHERE deployment = 'tap_th_rd' AND status = 'active'$$, '60s'),
          'tenants acme and bolt are active');
SELECT dborch.connection_string('tap_th_rd', 'acme') AS a_uri, dborch.connection_string('tap_th_rd', 'bolt') AS b_uri,
       pg_temp.tap_dborch_uri(dborch.connection_string('tap_th_rd'), 'tap_th_rd') AS adm_uri \gset

\set out `timeout 10 redis-cli -u :'a_uri' --no-auth-warning CLIENT TRACKING on BCAST 2>&1`
SELECT matches(:'out'::text, '^NOPERM', 'acme cannot turn on CLIENT TRACKING (BCAST would report bolt''s keys)');
\set out `timeout 10 redis-cli -u :'a_uri' --no-auth-warning SET acme:k v >/dev/null 2>&1; timeout 10 redis-cli -u :'a_uri' --no-auth-warning COPY acme:k acme:k2 DB 1 2>&1`
SELECT matches(:'out'::text, '^NOPERM', 'acme cannot COPY a key into another database');
\set out `timeout 10 redis-cli -u :'a_uri' --no-auth-warning GET acme:k 2>&1`
SELECT is(:'out'::text, 'v', 'acme keeps its everyday commands');

-- a new tenant never takes over keys of its prefix that are there already
SELECT dborch.connection_string('tap_th_rd') AS own_uri \gset
\set out `timeout 10 redis-cli -u :'own_uri' --no-auth-warning SET squat:mine "the owner's" 2>&1`
SELECT is(:'out'::text, 'OK', 'the owner writes a key squat:mine');
SELECT status FROM dborch.create_tenant('tap_th_rd', 'squat') \gset
SELECT ok(pg_temp.tap_until($$SELECT status = 'failed' FROM dborch.tenants WHERE deployment = 'tap_th_rd' AND name = 'squat'$$, '60s'),
          'create_tenant() of squat fails: keys of its prefix exist');
SELECT matches((SELECT last_error FROM dborch.tenants WHERE deployment = 'tap_th_rd' AND name = 'squat'),
               '^keys with the prefix "squat:" already exist in the instance', 'the reason says so');
\set out `timeout 10 redis-cli -u :'adm_uri' --no-auth-warning ACL GETUSER squat 2>&1 | head -1`
SELECT is(:'out'::text, '', 'no ACL user squat was made');

-- a runaway script of acme (read-only, so SCRIPT KILL can stop it)
SELECT max(id) AS events_before FROM dborch.events \gset
\set out `(timeout 60 redis-cli -u :'a_uri' --no-auth-warning EVAL "local i = 0 while true do i = i + 1 end" 0 >:'test_dir'/tap_th_script.out 2>&1 &); echo started`
SELECT ok(pg_temp.tap_until(format($$SELECT EXISTS (SELECT 1 FROM dborch.events WHERE id > %s
                                                    AND deployment = 'tap_th_rd' AND kind = 'script_killed')$$,
                                   :events_before), '60s'),
          'the prober killed the script once the server answered BUSY (a script_killed event)');
\set out `for i in $(seq 1 100); do grep -q . :'test_dir'/tap_th_script.out && break; sleep 0.1; done; cat :'test_dir'/tap_th_script.out`
SELECT matches(:'out'::text, 'killed', 'acme''s EVAL ended with an error saying it was killed');
SELECT is((SELECT count(*) FROM dborch.events WHERE id > :events_before AND deployment = 'tap_th_rd'
            AND kind IN ('instance_down', 'recovered', 'restarted')), 0::bigint,
          'no instance_down, no recovery: the deployment was never failed');
\set out `timeout 10 redis-cli -u :'b_uri' --no-auth-warning SET bolt:after v 2>&1`
SELECT is(:'out'::text, 'OK', 'bolt writes again');

-- drop_tenant of a tenant whose ACL user is already gone
\set out `timeout 10 redis-cli -u :'adm_uri' --no-auth-warning ACL DELUSER bolt 2>&1`
SELECT is(:'out'::text, '1', 'bolt''s ACL user is deleted behind dborch''s back');
SELECT status FROM dborch.drop_tenant('tap_th_rd', 'bolt') \gset
SELECT ok(pg_temp.tap_until($$SELECT status = 'dropped' FROM dborch.tenants WHERE deployment = 'tap_th_rd' AND name = 'bolt'$$, '60s'),
          'drop_tenant() of bolt succeeds all the same');

-- cancel_job() of a queued move runs its undo: the tenant is not left moving
SELECT status FROM dborch.deploy('tap_th_rd2', 'redis', '{"memory": "16MB"}') \gset
SELECT is((SELECT status FROM dborch.wait('tap_th_rd2', '60s')), 'ready', 'a second Redis deployment is ready');
BEGIN;
SELECT id AS move_job FROM dborch.move_tenant('acme', 'tap_th_rd', 'tap_th_rd2') \gset
SELECT is((SELECT status FROM dborch.tenants WHERE deployment = 'tap_th_rd' AND name = 'acme'), 'moving',
          'move_tenant() marks acme moving');
SELECT state FROM dborch.cancel_job(:move_job) \gset
COMMIT;
SELECT is(pg_temp.tap_job_end(:move_job, '30s'), 'cancelled', 'the queued move is cancelled by a worker');
SELECT is((SELECT status FROM dborch.tenants WHERE deployment = 'tap_th_rd' AND name = 'acme'), 'active',
          'its undo gives acme back: active on its deployment, not moving');
\set out `timeout 10 redis-cli -u :'a_uri' --no-auth-warning GET acme:k 2>&1`
SELECT is(:'out'::text, 'v', 'acme still reads its key on the source');

-- the backups of a destroyed deployment stay its owner's, whoever deploys
-- the name again
CREATE ROLE tap_th_first IN ROLE dborch_user;
CREATE ROLE tap_th_second IN ROLE dborch_user;
SET ROLE tap_th_first;
SELECT status FROM dborch.deploy('tap_th_reuse', 'redis', '{"memory": "8MB"}') \gset
SELECT status FROM dborch.wait('tap_th_reuse', '60s') \gset
SELECT id AS rb, job_id AS rb_job FROM dborch.backup('tap_th_reuse') \gset
RESET ROLE;
SELECT is(pg_temp.tap_job_result(:rb_job), 'succeeded', 'the first owner backs up tap_th_reuse');
SET ROLE tap_th_first;
SELECT status FROM dborch.destroy('tap_th_reuse') \gset
SELECT status FROM dborch.wait('tap_th_reuse', '60s') \gset
SET ROLE tap_th_second;
SELECT status FROM dborch.deploy('tap_th_reuse', 'redis', '{"memory": "8MB"}') \gset
SELECT is((SELECT status FROM dborch.wait('tap_th_reuse', '60s')), 'ready', 'another owner deploys the name again');
SELECT is(pg_temp.tap_error(format('SELECT dborch.restore(%L, backup => %s, new_name => %L)', 'tap_th_reuse', :rb, 'tap_th_stolen')),
          '42501: permission denied for deployment "tap_th_reuse"', 'the second owner cannot restore the first owner''s backup');
SET ROLE tap_th_first;
SELECT status FROM dborch.restore('tap_th_reuse', backup => :rb, new_name => 'tap_th_mine') \gset
SELECT is((SELECT status FROM dborch.wait('tap_th_mine', '60s')), 'ready', 'the first owner restores its backup by id, into a new name');
RESET ROLE;
SELECT count(dborch.destroy(name, drop_backups => true)) AS n FROM dborch.deployments
 WHERE name IN ('tap_th_reuse', 'tap_th_mine') AND status <> 'destroyed' \gset
SELECT count(pg_temp.tap_settle(name, '60s')) AS n FROM dborch.deployments WHERE name IN ('tap_th_reuse', 'tap_th_mine') \gset

-- notifications: an event id only, which another owner cannot read
CREATE ROLE tap_th_other IN ROLE dborch_user;
SELECT max(id) AS last_event FROM dborch.events WHERE deployment = 'tap_th_rd' \gset
SET ROLE tap_th_other;
SELECT is((SELECT count(*) FROM dborch.events WHERE id = :last_event), 0::bigint,
          'another owner cannot read the event a notification names');
RESET ROLE;
DROP ROLE tap_th_other;
DROP ROLE IF EXISTS tap_th_first;
DROP ROLE IF EXISTS tap_th_second;

SELECT is((SELECT count(*) FROM (SELECT dborch.destroy(n) FROM unnest(ARRAY['tap_th_rd', 'tap_th_rd2']) n) d), 2::bigint,
          'the deployments are destroyed');

SELECT * FROM finish();
