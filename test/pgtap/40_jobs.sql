-- Jobs: a queued deploy cancelled by cancel_job() is undone by a worker
-- before any of its stages runs, wait() refuses to wait where it could never finish, a cancelled
-- (failed) deployment is retried by deploy() with the same spec, and a destroy
-- job cannot be cancelled.
--
-- Autocommit mode outside the explicit transactions, ON_ERROR_STOP off: see
-- 10_postgres.sql.
\set ON_ERROR_STOP 0
\getenv test_dir DBORCH_TEST_DIR
SET client_min_messages = warning;
\ir helpers.psql

SELECT plan(26);

------------------------------------------------------------------------------
-- cancel a queued deploy: queue and cancel it in one transaction, so no
-- worker can have claimed it
------------------------------------------------------------------------------
BEGIN;
SELECT id AS dep_id FROM dborch.deploy('tap_cancel', 'redis', '{"memory": "16MB"}') \gset
SELECT id AS job_id FROM dborch.jobs WHERE deployment_id = :dep_id AND kind = 'deploy' \gset
SELECT is((SELECT state FROM dborch.jobs WHERE id = :job_id), 'queued', 'deploy() queued a deploy job');
SELECT throws_ok($$SELECT dborch.wait('tap_cancel', '5s')$$, '55000',
                 'cannot wait for deployment "tap_cancel" in the transaction that queued its work',
                 'wait() refuses to wait in the transaction that queued the work');
SELECT throws_ok(format('SELECT dborch.wait_job(%s, ''5s'')', :job_id), '55000', NULL,
                 'wait_job() refuses to wait in the transaction that queued the job');
SELECT is((SELECT (state, cancel_requested)::text FROM dborch.cancel_job(:job_id)), '(queued,t)',
          'cancel_job() of a queued deploy asks for its undo (run by a worker once this commits)');
COMMIT;

SELECT is(pg_temp.tap_job_end(:job_id, '30s'), 'cancelled', 'a worker undoes the job: it ends cancelled');
SELECT ok((SELECT stage IS NULL FROM dborch.jobs WHERE id = :job_id),
          'the cancelled job never reached a stage');
SELECT is((SELECT count(*) FROM dborch.events WHERE job_id = :job_id AND kind = 'stage'), 0::bigint,
          'the cancelled job ran no stage');
SELECT is((SELECT (status, last_error)::text FROM dborch.deployments WHERE id = :dep_id),
          ('failed', 'deploy cancelled by ' || current_user)::text,
          'the deployment is failed, with the reason');
SELECT is((SELECT count(*) FROM dborch.events WHERE deployment_id = :dep_id AND kind = 'cancel_requested'),
          1::bigint, 'a cancel_requested event records who cancelled');
SELECT is((SELECT count(*) FROM dborch.instances WHERE deployment_id = :dep_id), 0::bigint,
          'no instance was created');
\set out `ls :'test_dir'/managed/instances | grep -c '^tap_cancel-'`
SELECT is(:'out'::text, '0', 'no instance directory was created');
SELECT is((SELECT state FROM dborch.wait_job(:job_id, '5s')), 'cancelled',
          'wait_job() of the cancelled job returns it');
SELECT throws_ok($$SELECT dborch.wait('tap_cancel', '5s')$$, '55000',
                 'deployment "tap_cancel" failed', 'wait() reports the cancelled deployment as failed');
SELECT is((SELECT state FROM dborch.cancel_job(:job_id)), 'cancelled',
          'cancel_job() of a finished job changes nothing');
SELECT throws_ok('SELECT dborch.cancel_job(-1)', '42704', NULL, 'cancel_job() of an unknown job is refused');

------------------------------------------------------------------------------
-- deploy() with the same spec retries the cancelled deployment
------------------------------------------------------------------------------
SELECT is((SELECT (id, status)::text FROM dborch.deploy('tap_cancel', 'redis', '{"memory": "16MB"}')),
          (:dep_id, 'pending')::text, 'deploy() with the same spec retries the same deployment');
SELECT is((SELECT status FROM dborch.wait('tap_cancel', '60s')), 'ready', 'which becomes ready');
SELECT is((SELECT count(*) FROM dborch.jobs WHERE deployment_id = :dep_id AND kind = 'deploy'), 2::bigint,
          'with a second deploy job');
SELECT ok((SELECT expires_at IS NULL FROM dborch.deployments WHERE id = :dep_id),
          'a deployment without ttl does not expire');

BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT throws_ok($$SELECT dborch.wait('tap_cancel', '5s')$$, '55000', NULL,
                 'wait() refuses to wait in a REPEATABLE READ transaction');
COMMIT;

------------------------------------------------------------------------------
-- a destroy job cannot be cancelled
------------------------------------------------------------------------------
BEGIN;
SELECT status AS destroy_status FROM dborch.destroy('tap_cancel') \gset
SELECT id AS destroy_job FROM dborch.jobs WHERE deployment_id = :dep_id AND kind = 'destroy' \gset
SELECT throws_ok(format('SELECT dborch.cancel_job(%s)', :destroy_job), '55000',
                 'destroy jobs cannot be cancelled', 'cancel_job() of a destroy job is refused');
COMMIT;
SELECT is(:'destroy_status'::text, 'destroying', 'destroy() returns the deployment as destroying');
SELECT is((SELECT state FROM dborch.wait_job(:destroy_job, '60s')), 'succeeded', 'the destroy job succeeded');
SELECT is((SELECT status FROM dborch.wait('tap_cancel', '60s')), 'destroyed', 'the deployment is destroyed');
\set out `ls :'test_dir'/managed/instances | grep -c '^tap_cancel-'`
SELECT is(:'out'::text, '0', 'no instance directory is left');
SELECT is((SELECT count(*) FROM dborch.instances WHERE deployment_id = :dep_id AND status <> 'destroyed'),
          0::bigint, 'no live instance is left');

SELECT * FROM finish();

-- Safety net after a failure above: leave no deployment of this file behind.
SELECT count(dborch.destroy(name)) AS n FROM dborch.deployments
 WHERE name = 'tap_cancel' AND status NOT IN ('destroyed', 'destroying') \gset
SELECT count(dborch.wait(name)) AS n FROM dborch.deployments WHERE name = 'tap_cancel' AND status = 'destroying' \gset
