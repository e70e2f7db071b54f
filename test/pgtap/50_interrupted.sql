-- Interrupted deploys: destroy() of a PostgreSQL deployment whose deploy job
-- is running (its server already started), and cancel_job() of a running Redis
-- deploy.  Either way nothing is left: no process, port, directory or secret.
-- The deploy job is held at stage register with the testing aid
-- dborch.pause_at_stage (ALTER SYSTEM, reset at the end of the file).
--
-- Autocommit mode and ON_ERROR_STOP off: see 10_postgres.sql.
\set ON_ERROR_STOP 0
SET client_min_messages = warning;

-- Poll until job j has reached stage want, or timeout; returns the last stage.
CREATE FUNCTION pg_temp.tap_await_stage(j bigint, want text, timeout interval)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	deadline timestamptz := clock_timestamp() + timeout;
	s text;
BEGIN
	LOOP
		SELECT stage INTO s FROM dborch.jobs WHERE id = j;
		EXIT WHEN s = want OR clock_timestamp() > deadline;
		PERFORM pg_sleep(0.02);
	END LOOP;
	RETURN s;
END
$$;

SELECT plan(24);

ALTER SYSTEM SET dborch.pause_at_stage = 'deploy:register';
SELECT pg_reload_conf() \g /dev/null
SELECT pg_sleep(0.2) \g /dev/null

------------------------------------------------------------------------------
-- destroy() while the deploy job runs
------------------------------------------------------------------------------
SELECT id AS dep_id FROM dborch.deploy('tap_mid_pg', 'postgres', '{"memory": "32MB"}') \gset
SELECT id AS job_id FROM dborch.jobs WHERE deployment_id = :dep_id AND kind = 'deploy' \gset
SELECT is(pg_temp.tap_await_stage(:job_id, 'register', '30 seconds'), 'register',
          'the deploy job is held at stage register');
SELECT i.port AS pg_port, i.pid AS pg_pid, i.data_directory AS pg_dir
  FROM dborch.instances i WHERE i.deployment_id = :dep_id AND i.status <> 'destroyed' \gset
\set out `ps -o comm= -p :pg_pid`
SELECT is(:'out'::text, 'postgres', 'its postgres has started');
SELECT is((SELECT status FROM dborch.destroy('tap_mid_pg')), 'destroying', 'destroy() during the deploy');

ALTER SYSTEM RESET dborch.pause_at_stage;
SELECT pg_reload_conf() \g /dev/null

SELECT is((SELECT status FROM dborch.wait('tap_mid_pg', '60s')), 'destroyed', 'the deployment is destroyed');
SELECT is((SELECT state FROM dborch.jobs WHERE id = :job_id), 'cancelled', 'the deploy job was cancelled');
SELECT is((SELECT state FROM dborch.jobs WHERE deployment_id = :dep_id AND kind = 'destroy'), 'succeeded',
          'the destroy job succeeded');
SELECT is((SELECT count(*) FROM dborch.instances WHERE deployment_id = :dep_id AND status <> 'destroyed'),
          0::bigint, 'no live instance is left');
SELECT is((SELECT count(*) FROM dborch.secrets WHERE deployment_id = :dep_id), 0::bigint,
          'the secret row is gone');
\set out `ps -o stat= -p :pg_pid | grep -v '^Z' | wc -l`
SELECT is(:'out'::text, '0', 'the postmaster pid is gone');
\set out `ss -Htln | awk '{print $4}' | grep -cE -- ':(:pg_port)$'`
SELECT is(:'out'::text, '0', 'nothing listens on the port');
\set out `test -e :'pg_dir' && echo present || echo absent`
SELECT is(:'out'::text, 'absent', 'the instance directory is gone');

------------------------------------------------------------------------------
-- cancel_job() of a running deploy
------------------------------------------------------------------------------
ALTER SYSTEM SET dborch.pause_at_stage = 'deploy:register';
SELECT pg_reload_conf() \g /dev/null
SELECT pg_sleep(0.2) \g /dev/null

SELECT id AS dep2_id FROM dborch.deploy('tap_mid_redis', 'redis', '{"memory": "16MB"}') \gset
SELECT id AS job2_id FROM dborch.jobs WHERE deployment_id = :dep2_id AND kind = 'deploy' \gset
SELECT is(pg_temp.tap_await_stage(:job2_id, 'register', '30 seconds'), 'register',
          'the deploy job is held at stage register');
SELECT i.port AS r_port, i.pid AS r_pid, i.data_directory AS r_dir
  FROM dborch.instances i WHERE i.deployment_id = :dep2_id AND i.status <> 'destroyed' \gset
\set out `ps -o comm= -p :r_pid`
SELECT is(:'out'::text, 'redis-server', 'its redis-server has started');
SELECT is((SELECT (state, cancel_requested)::text FROM dborch.cancel_job(:job2_id)), '(running,t)',
          'cancel_job() of a running deploy asks it to stop');

ALTER SYSTEM RESET dborch.pause_at_stage;
SELECT pg_reload_conf() \g /dev/null

SELECT is((SELECT state FROM dborch.wait_job(:job2_id, '60s')), 'cancelled', 'the deploy job stops as cancelled');
SELECT is((SELECT status FROM dborch.deployments WHERE id = :dep2_id), 'failed', 'the deployment is failed');
SELECT is((SELECT count(*) FROM dborch.instances WHERE deployment_id = :dep2_id AND status <> 'destroyed'),
          0::bigint, 'the undo left no live instance');
SELECT is((SELECT count(*) FROM dborch.secrets WHERE deployment_id = :dep2_id), 0::bigint,
          'the secret row is gone');
\set out `ps -o stat= -p :r_pid | grep -v '^Z' | wc -l`
SELECT is(:'out'::text, '0', 'the redis-server pid is gone');
\set out `ss -Htln | awk '{print $4}' | grep -cE -- ':(:r_port)$'`
SELECT is(:'out'::text, '0', 'nothing listens on the port');
\set out `test -e :'r_dir' && echo present || echo absent`
SELECT is(:'out'::text, 'absent', 'the instance directory is gone');
SELECT is((SELECT count(*) FROM dborch.events WHERE job_id = :job2_id AND kind IN ('cancel_requested', 'cancelled')),
          2::bigint, 'cancel_requested and cancelled events');
SELECT is((SELECT status FROM dborch.destroy('tap_mid_redis')), 'destroying', 'destroy() of the failed deployment');
SELECT is((SELECT status FROM dborch.wait('tap_mid_redis', '60s')), 'destroyed', 'which is then destroyed');

SELECT * FROM finish();

-- Safety net after a failure above: no pause, no deployment of this file left.
ALTER SYSTEM RESET dborch.pause_at_stage;
SELECT pg_reload_conf() \g /dev/null
SELECT count(dborch.destroy(name)) AS n FROM dborch.deployments
 WHERE name IN ('tap_mid_pg', 'tap_mid_redis') AND status NOT IN ('destroyed', 'destroying') \gset
SELECT count(dborch.wait(name)) AS n FROM dborch.deployments
 WHERE name IN ('tap_mid_pg', 'tap_mid_redis') AND status = 'destroying' \gset
