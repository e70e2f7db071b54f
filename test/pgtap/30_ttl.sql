-- Time to live: a deployment deployed with a ttl is destroyed by the launcher
-- once it expires (its expires_at moved to 2 seconds from now), with a destroy_requested event about its
-- time to live, and leaves nothing behind.
--
-- Autocommit mode and ON_ERROR_STOP off: see 10_postgres.sql.
\set ON_ERROR_STOP 0
SET client_min_messages = warning;

-- Poll the catalog until deployment dep has status want, or timeout; returns the last status.
CREATE FUNCTION pg_temp.tap_await_status(dep bigint, want text, timeout interval)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	deadline timestamptz := clock_timestamp() + timeout;
	s text;
BEGIN
	LOOP
		SELECT status INTO s FROM dborch.deployments WHERE id = dep;
		EXIT WHEN s = want OR clock_timestamp() > deadline;
		PERFORM pg_sleep(0.05);
	END LOOP;
	RETURN s;
END
$$;

SELECT plan(18);

SELECT throws_ok($$SELECT dborch.deploy('tap_ttl_bad', 'redis', '{"ttl": "-2 seconds"}')$$,
                 '22023', NULL, 'a negative ttl is refused');
SELECT throws_ok($$SELECT dborch.deploy('tap_ttl_bad', 'redis', '{"ttl": "soon"}')$$,
                 '22023', NULL, 'a ttl that is no interval is refused');

SELECT id AS dep_id, expires_at - created_at AS ttl, spec ? 'ttl' AS spec_has_ttl
  FROM dborch.deploy('tap_ttl', 'redis', '{"memory": "16MB", "ttl": "1 hour"}') \gset
SELECT is(:'ttl'::interval, '1 hour'::interval, 'expires_at is the ttl after created_at');
SELECT ok(:'spec_has_ttl'::boolean, 'the spec records the ttl');
SELECT is((SELECT status FROM dborch.wait('tap_ttl', '60s')), 'ready', 'the deployment becomes ready');
SELECT i.id AS inst_id, i.port AS r_port, i.pid AS r_pid, i.data_directory AS r_dir
  FROM dborch.instances i WHERE i.deployment_id = :dep_id AND i.status <> 'destroyed' \gset
SELECT ok(now() < (SELECT expires_at FROM dborch.deployments WHERE id = :dep_id),
          'it is ready before its time to live is over');
\set out `ps -o comm= -p :r_pid`
SELECT is(:'out'::text, 'redis-server', 'its redis-server runs');

-- An hour passes in 2 seconds: expires_at moves (however long the deploy
-- took on a busy machine, the deployment is ready first).
UPDATE dborch.deployments SET expires_at = clock_timestamp() + interval '2 seconds' WHERE id = :dep_id;
SELECT dborch._wake_workers() \g /dev/null

-- nobody calls destroy(): the launcher does, once expires_at has passed
SELECT is(pg_temp.tap_await_status(:dep_id, 'destroyed', '30 seconds'), 'destroyed',
          'the launcher destroys the deployment after its time to live');
SELECT results_eq(format($$SELECT actor, kind FROM dborch.events
                          WHERE deployment_id = %s AND kind IN ('destroy_requested', 'destroyed')
                          ORDER BY id$$, :dep_id),
                  $$VALUES ('dborch', 'destroy_requested'), ('dborch', 'destroyed')$$,
                  'dborch itself requested the destroy, and it finished');
SELECT matches((SELECT message FROM dborch.events WHERE deployment_id = :dep_id AND kind = 'destroy_requested'),
               'time to live', 'the destroy_requested event says the time to live expired');
SELECT cmp_ok((SELECT e.at FROM dborch.events e WHERE e.deployment_id = :dep_id AND e.kind = 'destroy_requested'),
              '>=', (SELECT expires_at FROM dborch.deployments WHERE id = :dep_id),
              'the destroy was requested after expires_at, not before');
SELECT is((SELECT state FROM dborch.jobs WHERE deployment_id = :dep_id AND kind = 'destroy'), 'succeeded',
          'its destroy job succeeded');
SELECT is((SELECT status FROM dborch.instances WHERE id = :inst_id), 'destroyed', 'the instance is destroyed');
SELECT is((SELECT count(*) FROM dborch.secrets WHERE deployment_id = :dep_id), 0::bigint,
          'the secret row is gone');
\set out `ps -o stat= -p :r_pid | grep -v '^Z' | wc -l`
SELECT is(:'out'::text, '0', 'the redis-server pid is gone');
\set out `ss -Htln | awk '{print $4}' | grep -cE -- ':(:r_port)$'`
SELECT is(:'out'::text, '0', 'nothing listens on the port any more');
\set out `test -e :'r_dir' && echo present || echo absent`
SELECT is(:'out'::text, 'absent', 'the instance directory is gone');
SELECT is((SELECT count(*) FROM dborch.deployments WHERE name = 'tap_ttl_bad'), 0::bigint,
          'the refused deploys left no row');

SELECT * FROM finish();

-- Safety net after a failure above: leave no deployment of this file behind.
SELECT count(dborch.destroy(name)) AS n FROM dborch.deployments
 WHERE name IN ('tap_ttl', 'tap_ttl_bad') AND status NOT IN ('destroyed', 'destroying') \gset
SELECT count(dborch.wait(name)) AS n FROM dborch.deployments
 WHERE name IN ('tap_ttl', 'tap_ttl_bad') AND status = 'destroying' \gset
