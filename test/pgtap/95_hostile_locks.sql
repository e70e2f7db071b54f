-- No user can stall dborch or another user, tried as a hostile dborch_user
-- member (tap_mallory) logged in over TCP with a password of its own:
--   1. dborch's locks are no advisory keys a user can take: mallory holds
--      every key dborch 0.1 used for alice's next deploy (its name, its
--      owner's quota, the next 200 job ids) and alice's deploy runs all the
--      same;
--   2. the prober does not stop writing health when a user's open
--      transaction holds a deployment row (set_maintenance_window() and
--      then nothing): mallory's own deployment waits, alice's instance is
--      found down and restarted, samples keep coming;
--   3. the launcher's housekeeping goes on meanwhile: alice's TTL expires
--      while mallory holds its own expired deployment's row.
--
-- Autocommit mode and ON_ERROR_STOP off: see 10_postgres.sql.
\set ON_ERROR_STOP 0
SET client_min_messages = warning;
\ir helpers.psql

SELECT plan(16);

SELECT current_setting('port') AS cp_port \gset
CREATE ROLE tap_mallory LOGIN PASSWORD 'tap-mallory-secret' IN ROLE dborch_user;
CREATE ROLE tap_alice IN ROLE dborch_user;
SELECT format('host=127.0.0.1 port=%s user=tap_mallory password=tap-mallory-secret dbname=postgres application_name=tap_mallory',
              :'cp_port') AS mallory \gset

------------------------------------------------------------------------------
-- 1. advisory keys
------------------------------------------------------------------------------
SELECT coalesce(max(id), 0) AS last_job FROM dborch.jobs \gset
\set out `(timeout 120 psql :'mallory' -Xq -c "SELECT pg_advisory_lock(x'64620002'::int, hashtext('tap_lk_alice')), pg_advisory_lock(x'64620003'::int, hashtext('tap_alice'))" -c "SELECT count(pg_advisory_lock(x'64620001'::int, g)) FROM generate_series(:last_job + 1, :last_job + 200) g" -c "SELECT pg_sleep(100)" >/dev/null 2>&1 &); echo started`
SELECT ok(pg_temp.tap_until($$SELECT count(*) >= 202 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                              WHERE a.usename = 'tap_mallory' AND l.locktype = 'advisory' AND l.granted$$, '30s'),
          'mallory holds dborch 0.1''s advisory keys of alice''s name, quota and the next 200 jobs');

SET ROLE tap_alice;
SET statement_timeout = '20s';
SELECT is((SELECT status FROM dborch.deploy('tap_lk_alice', 'redis', '{"memory": "8MB", "ttl": "1 hour"}')),
          'pending', 'alice''s deploy() is not held up by mallory''s advisory locks');
RESET statement_timeout;
SELECT is((SELECT status FROM dborch.wait('tap_lk_alice', '60s')), 'ready',
          'alice''s deployment becomes ready: its job ran under a job id mallory locked');
RESET ROLE;
SELECT ok((SELECT count(*) > 0 FROM dborch.jobs WHERE id BETWEEN :last_job + 1 AND :last_job + 200
            AND state = 'succeeded'), 'jobs with ids mallory holds advisory locks on have run');
SELECT is((SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = 'tap_mallory'),
          1::bigint, 'mallory''s lock session is ended');
-- (deploy() is idempotent: this makes sure the rest has alice's deployment)
SET ROLE tap_alice;
SELECT status FROM dborch.deploy('tap_lk_alice', 'redis', '{"memory": "8MB", "ttl": "1 hour"}') \gset
SELECT status FROM dborch.wait('tap_lk_alice', '60s') \gset
RESET ROLE;

------------------------------------------------------------------------------
-- 2. the prober, while mallory's open transaction holds its deployment's row
------------------------------------------------------------------------------
SET ROLE tap_mallory;
SELECT status FROM dborch.deploy('tap_lk_mallory', 'redis', '{"memory": "8MB", "ttl": "1 hour"}') \gset
SELECT is((SELECT status FROM dborch.wait('tap_lk_mallory', '60s')), 'ready', 'mallory''s deployment is ready');
RESET ROLE;
SELECT i.pid AS m_pid, d.id AS m_dep FROM dborch.instances i JOIN dborch.deployments d ON d.id = i.deployment_id
 WHERE d.name = 'tap_lk_mallory' AND i.status = 'running' \gset
SELECT i.pid AS a_pid, d.id AS a_dep FROM dborch.instances i JOIN dborch.deployments d ON d.id = i.deployment_id
 WHERE d.name = 'tap_lk_alice' AND i.status = 'running' \gset

-- mallory's deployment expires 20 s from now, while its transaction below holds its row
UPDATE dborch.deployments SET expires_at = clock_timestamp() + interval '20 seconds' WHERE id = :m_dep
RETURNING expires_at AS m_expires \gset
\set out `(timeout 120 psql :'mallory' -Xq -c "BEGIN" -c "SELECT dborch.set_maintenance_window('tap_lk_mallory', 'sun:03:00-sun:04:00')" -c "SELECT pg_sleep(100)" >/dev/null 2>&1 &); echo started`
SELECT ok(pg_temp.tap_until($$SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE usename = 'tap_mallory'
                                             AND query LIKE '%pg_sleep%' AND xact_start IS NOT NULL)$$, '30s'),
          'mallory sits in an open transaction after set_maintenance_window()');

\set out `kill -9 :m_pid :a_pid 2>&1 && echo killed`
SELECT is(:'out'::text, 'killed', 'both Redis servers are killed (kill -9)');
SELECT ok(pg_temp.tap_until(format($$SELECT EXISTS (SELECT 1 FROM dborch.events WHERE deployment_id = %s
                                                    AND kind = 'recovered')$$, :a_dep), '60s'),
          'alice''s instance is found down and recovered while mallory holds its row');
SELECT ok(pg_temp.tap_until(format($$SELECT max(at) > clock_timestamp() - interval '3 seconds'
                                      FROM dborch.probes WHERE deployment_id = %s AND up$$, :a_dep), '30s'),
          'the prober keeps writing alice''s samples');

------------------------------------------------------------------------------
-- 3. the launcher: alice's TTL passes while mallory's expired row is held
------------------------------------------------------------------------------
SELECT ok(pg_temp.tap_until(format($$SELECT clock_timestamp() > %L::timestamptz + interval '1 second'$$, :'m_expires'), '60s'),
          'mallory''s deployment has expired');
UPDATE dborch.deployments SET expires_at = clock_timestamp() - interval '1 second' WHERE id = :a_dep;
SELECT dborch._wake_workers() \g /dev/null
SELECT ok(pg_temp.tap_until(format($$SELECT status = 'destroyed' FROM dborch.deployments WHERE id = %s$$, :a_dep), '60s'),
          'alice''s expired deployment is destroyed while mallory holds its own expired row');
SELECT ok((SELECT at FROM dborch.events WHERE deployment_id = :a_dep AND kind = 'destroy_requested') > :'m_expires',
          'mallory''s expiry was due before alice''s destroy was requested');
SELECT is((SELECT status FROM dborch.deployments WHERE id = :m_dep),
          'ready', 'mallory''s deployment waits for mallory''s transaction (its health change is not written yet)');

-- mallory's transaction ends: its deployment's health and expiry catch up
SELECT is((SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = 'tap_mallory'),
          1::bigint, 'mallory''s transaction is ended');
SELECT ok(pg_temp.tap_until(format($$SELECT status = 'destroyed' FROM dborch.deployments WHERE id = %s$$, :m_dep), '60s'),
          'then mallory''s expired deployment is destroyed too');

DROP ROLE tap_alice;
DROP ROLE tap_mallory;

SELECT * FROM finish();
