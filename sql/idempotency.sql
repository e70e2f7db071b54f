--
-- idempotency: deploy() of the same name and spec returns the existing row
-- and writes nothing; another spec is refused (42710) with a hint; a failed
-- deployment is retried by deploying it again; destroy() twice is one
-- destroy.  Nothing happens until commit, and nothing here commits.
--
CREATE EXTENSION IF NOT EXISTS dborch;
SET client_min_messages = warning;
-- Intervals as a session with the default IntervalStyle shows them (pg_regress
-- sets postgres_verbose).
SET IntervalStyle = postgres;

-- Test helpers (schema dborch_test, dropped at the end of the suite):
-- catalog_state(), catalog_rows(), expect_error(sql), error_report(sql).
\set ECHO none
\i test/regress_helpers.sql
\set ECHO all

DROP ROLE IF EXISTS regress_dborch_dave;
CREATE ROLE regress_dborch_dave IN ROLE dborch_user;
SET ROLE regress_dborch_dave;

--
-- Same name, same spec: the same row, nothing written.
--
BEGIN;
SELECT name, engine, owner, environment, spec, memory_bytes, status
FROM dborch.deploy('orders', 'postgres', '{"memory": "128MB"}');
SELECT id AS orders_id FROM dborch.deployments WHERE name = 'orders' \gset
SELECT dborch_test.catalog_rows();

-- The same request written other ways is the same spec: each call succeeds
-- and leaves no trace (no row, no identity value drawn).
SELECT options,
	   dborch_test.expect_error(format('SELECT dborch.deploy(''orders'', ''postgres'', %L)', options)) AS result
FROM (VALUES (1, '{"memory": "128MB"}'), (2, '{"memory": "128 mb"}'), (3, '{"memory": " 128mB "}'),
			 (4, '{"memory": "131072kB"}'), (5, '{}'), (6, '{"version": "15"}'),
			 (7, '{"version": 15}'), (8, '{"environment": "development"}'),
			 (9, '{"environment": "development", "version": "15", "memory": "128MB"}'))
	AS v(i, options)
ORDER BY i;
-- and returns the existing row
SELECT id = :orders_id AS same_row, name, status FROM dborch.deploy('orders', 'postgres');
SELECT id = :orders_id AS same_row, name, status FROM dborch.deploy('orders', 'postgres', '{"memory": "131072 KB"}');
SELECT dborch_test.catalog_rows();

-- Same name, another spec: 42710, naming the function that changes it.
SELECT * FROM dborch_test.error_report($$SELECT dborch.deploy('orders', 'postgres', '{"memory": "256MB"}')$$);
SELECT * FROM dborch_test.error_report($$SELECT dborch.deploy('orders', 'redis')$$);
SELECT options,
	   dborch_test.expect_error(format('SELECT dborch.deploy(''orders'', ''postgres'', %L)', options)) AS result
FROM (VALUES (1, '{"memory": "1GB"}'), (2, '{"environment": "production"}'),
			 (3, '{"ttl": "1 day"}'), (4, '{"memory": "129MB"}')) AS v(i, options)
ORDER BY i;
-- invalid options are still invalid, whatever exists
SELECT dborch_test.expect_error($$SELECT dborch.deploy('orders', 'postgres', '{"memory": "-1"}')$$);
SELECT dborch_test.catalog_rows();

-- Other names are independent of it.
SELECT name, engine, spec, status FROM dborch.deploy('sessions', 'redis', '{"memory": "64MB", "ttl": "P1D"}');
SELECT dborch_test.expect_error($$SELECT dborch.deploy('sessions', 'redis', '{"memory": "65536kB", "ttl": "1 day"}')$$);
SELECT dborch_test.expect_error($$SELECT dborch.deploy('sessions', 'redis', '{"memory": "64MB", "ttl": "2 days"}')$$);
SELECT dborch_test.expect_error($$SELECT dborch.deploy('sessions', 'redis', '{"memory": "64MB"}')$$);
SELECT row_number() OVER (ORDER BY id) AS n, name, engine, spec, status
FROM dborch.deployments ORDER BY id;
SELECT dborch_test.catalog_rows();
ROLLBACK;

-- Nothing happened: the rolled-back deploys left no row, and the name is
-- free for any spec.
SELECT dborch_test.catalog_rows();
BEGIN;
SELECT name, spec, status FROM dborch.deploy('orders', 'postgres', '{"memory": "256MB"}');
ROLLBACK;

-- A deploy rolled back to a savepoint is gone too.
BEGIN;
SAVEPOINT s;
SELECT name, status FROM dborch.deploy('orders', 'postgres');
ROLLBACK TO SAVEPOINT s;
SELECT dborch_test.expect_error($$SELECT dborch.wait('orders', '0')$$);
SELECT name, spec, status FROM dborch.deploy('orders', 'postgres', '{"memory": "1GB"}');
SELECT dborch_test.catalog_rows();
ROLLBACK;

--
-- cancel_job() of a queued job asks a worker to run its undo once this
-- transaction commits: here it is still queued, with cancel_requested.
-- A failed deployment is retried by deploying it again with its spec.
-- (The worker's undo of the cancelled deploy marks it failed: done here by hand.)
--
BEGIN;
SELECT name, status FROM dborch.deploy('orders', 'postgres');
SELECT id AS job_id FROM dborch.jobs WHERE kind = 'deploy' \gset
SELECT kind, state, cancel_requested, error FROM dborch.cancel_job(:job_id);
-- cancelling it again changes nothing
SELECT kind, state, cancel_requested, error FROM dborch.cancel_job(:job_id);
RESET ROLE;
UPDATE dborch.jobs SET state = 'cancelled', finished_at = now() WHERE id = :job_id;
UPDATE dborch.deployments SET status = 'failed', last_error = 'deploy cancelled by regress_dborch_dave';
SET ROLE regress_dborch_dave;
SELECT name, status, last_error FROM dborch.deployments;
-- another spec is still refused while the failed row holds the name
SELECT dborch_test.expect_error($$SELECT dborch.deploy('orders', 'postgres', '{"memory": "1GB"}')$$);
-- the same spec queues a new deploy job for the same row
SELECT id AS failed_id FROM dborch.deployments \gset
SELECT id = :failed_id AS same_row, name, status, last_error FROM dborch.deploy('orders', 'postgres');
SELECT row_number() OVER (ORDER BY id) AS n, kind, state, cancel_requested, attempts
FROM dborch.jobs ORDER BY id;
SELECT row_number() OVER (ORDER BY id) AS n, actor, owner, deployment, kind,
	   regexp_replace(message, '[0-9]+', 'N') AS message, job_id IS NOT NULL AS has_job
FROM dborch.events ORDER BY id;
-- once it is pending again, deploying it again is a no-op
SELECT dborch_test.expect_error($$SELECT dborch.deploy('orders', 'postgres')$$);
ROLLBACK;

--
-- destroy() twice is one destroy; a destroyed name can be used again.
--
BEGIN;
SELECT name, status FROM dborch.deploy('orders', 'postgres');
SELECT name, status FROM dborch.destroy('orders');
SELECT name, status FROM dborch.destroy('orders');
SELECT dborch_test.expect_error($$SELECT dborch.destroy('orders')$$);
-- the queued deploy job was cancelled; one destroy job is queued
SELECT row_number() OVER (ORDER BY id) AS n, kind, state, cancel_requested
FROM dborch.jobs ORDER BY id;
SELECT row_number() OVER (ORDER BY id) AS n, kind, message FROM dborch.events ORDER BY id;
-- deploying a name that is being destroyed waits for the destroy (55000)
SELECT dborch_test.expect_error($$SELECT dborch.deploy('orders', 'postgres')$$);
-- what the destroy job does at its end (done here by hand)
RESET ROLE;
UPDATE dborch.jobs SET state = 'succeeded' WHERE kind = 'destroy';
UPDATE dborch.deployments SET status = 'destroyed';
SET ROLE regress_dborch_dave;
-- destroying it again is a no-op (a NOTICE says so)
SELECT name, status FROM dborch.destroy('orders');
SELECT dborch_test.catalog_rows();
-- the name is free again, for any spec; the destroyed row stays as history
SELECT name, spec, status FROM dborch.deploy('orders', 'redis');
SELECT name, spec, status FROM dborch.deploy('orders', 'redis');
SELECT row_number() OVER (ORDER BY id) AS n, name, engine, status
FROM dborch.deployments ORDER BY id;
-- and the functions act on the live one
SELECT name, engine, status FROM dborch.destroy('orders');
SELECT dborch.deployment('orders') ->> 'engine' AS engine,
	   dborch.deployment('orders') ->> 'status' AS status;
ROLLBACK;

--
-- An idempotent deploy does not count against the quota a second time.
--
BEGIN;
RESET ROLE;
INSERT INTO dborch.quotas (owner, max_deployments) VALUES ('regress_dborch_dave', 1);
SET ROLE regress_dborch_dave;
SELECT name, status FROM dborch.deploy('orders', 'postgres');
SELECT name, status FROM dborch.deploy('orders', 'postgres');
SELECT dborch_test.expect_error($$SELECT dborch.deploy('orders', 'postgres', '{"memory": "128MB"}')$$);
SELECT dborch_test.expect_error($$SELECT dborch.deploy('other', 'postgres')$$);
ROLLBACK;

SELECT dborch_test.catalog_rows();

RESET ROLE;
DROP ROLE regress_dborch_dave;
DROP SCHEMA dborch_test CASCADE;
