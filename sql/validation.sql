--
-- validation: bad input to the SQL API gets a clear error with the right
-- SQLSTATE (DESIGN: bad option or name 22023, unknown deployment 42704,
-- quota 53400, wrong state 55000), and nothing is written.
--
-- Deploys are never committed here (the launcher would run them): they
-- happen in transactions that roll back.
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

-- The helper reports catalog writes, even those rolled back with the
-- failing statement (an identity value was drawn).
BEGIN;
SELECT dborch_test.expect_error($$SELECT dborch.deploy('probe', 'postgres')$$);
ROLLBACK;
SELECT dborch_test.expect_error($$INSERT INTO dborch.deployments (name, engine, owner, spec, memory_bytes) VALUES ('Bad', 'postgres', 'x', '{}', 1)$$);

-- Every call below runs as a plain dborch_user member.
DROP ROLE IF EXISTS regress_dborch_carol;
CREATE ROLE regress_dborch_carol IN ROLE dborch_user;
SET ROLE regress_dborch_carol;

SELECT dborch_test.catalog_rows();

--
-- Deployment names: ^[a-z][a-z0-9_]{0,39}$, nothing else (22023).
--
SELECT coalesce(to_json(name)::text, 'NULL') AS name,
	   dborch_test.expect_error(format('SELECT dborch.deploy(%L, ''postgres'')', name)) AS result
FROM (VALUES (1, ''), (2, repeat('a', 41)), (3, 'Orders'), (4, 'ORDERS'),
			 (5, 'a"b'), (6, 'a''b'), (7, 'a/b'), (8, '/tmp'), (9, '..'), (10, 'a..b'),
			 (11, 'a b'), (12, ' orders'), (13, 'orders '), (14, 'x; drop table y'),
			 (15, '1orders'), (16, '_orders'), (17, 'orders-eu'), (18, 'orders.eu'),
			 (19, 'orders$'), (20, E'a\tb'), (21, E'orders\n'), (22, 'a%b'),
			 (23, 'a*'), (24, 'a\b'), (25, NULL)) AS v(i, name)
ORDER BY i;

-- Non-ASCII letters are refused too (only the SQLSTATE is shown: the
-- message would depend on the database encoding).
SELECT split_part(dborch_test.expect_error(
		format('SELECT dborch.deploy(%L, ''postgres'')', 'caf' || chr(233))), ':', 1) AS sqlstate;

-- The same rule in every function that takes a name.
SELECT dborch_test.expect_error($$SELECT dborch.destroy('Orders')$$);
SELECT dborch_test.expect_error($$SELECT dborch.wait('../orders')$$);
SELECT dborch_test.expect_error($$SELECT dborch.deployment('x; drop table y')$$);
SELECT dborch_test.expect_error($$SELECT dborch.connection_string('a b')$$);
SELECT dborch_test.expect_error($$SELECT dborch.destroy(NULL)$$);
SELECT dborch_test.expect_error($$SELECT dborch.wait(NULL)$$);
SELECT dborch_test.expect_error($$SELECT dborch.deployment(NULL)$$);
SELECT dborch_test.expect_error($$SELECT dborch.connection_string(NULL)$$);
-- tenant names follow the same rule
SELECT dborch_test.expect_error($$SELECT dborch.connection_string('orders', 'Acme')$$);
SELECT dborch_test.expect_error($$SELECT dborch.connection_string('orders', '')$$);

-- The full report of one: message, detail.
SELECT * FROM dborch_test.error_report($$SELECT dborch.deploy('x; drop table y', 'postgres')$$);

-- Valid names at the edges of the rule.
BEGIN;
SELECT name, engine, status FROM dborch.deploy('a', 'postgres');
SELECT name, engine, status FROM dborch.deploy(repeat('z', 40), 'postgres');
SELECT name, engine, status FROM dborch.deploy('a_1_b2', 'redis');
SELECT dborch_test.catalog_rows();
ROLLBACK;

--
-- Engines: postgres or redis (22023).
--
SELECT quote_nullable(engine) AS engine,
	   dborch_test.expect_error(format('SELECT dborch.deploy(''orders'', %L)', engine)) AS result
FROM (VALUES (1, 'mysql'), (2, 'Postgres'), (3, 'POSTGRES'), (4, 'postgresql'),
			 (5, ' redis'), (6, ''), (7, NULL)) AS v(i, engine)
ORDER BY i;
SELECT * FROM dborch_test.error_report($$SELECT dborch.deploy('orders', 'mysql')$$);

--
-- Options (22023): an object with the keys environment, max_connections,
-- memory, replicas, synchronous, ttl and version only.
--
SELECT options,
	   dborch_test.expect_error(format('SELECT dborch.deploy(''orders'', ''postgres'', %L)', options)) AS result
FROM (VALUES (1, '[]'), (2, '[{"memory": "128MB"}]'), (3, '"128MB"'), (4, '128'),
			 (5, 'true'), (6, 'null'),
			 (7, '{"shards": 2}'), (8, '{"Memory": "128MB"}'),
			 (9, '{"memory": "128MB", "foo": 1}'), (10, '{"": 1}'),
			 (11, '{"name": "other"}'), (12, '{"engine": "redis"}')) AS v(i, options)
ORDER BY i;
SELECT * FROM dborch_test.error_report($$SELECT dborch.deploy('orders', 'postgres', '[]')$$);
SELECT * FROM dborch_test.error_report($$SELECT dborch.deploy('orders', 'postgres', '{"shards": 2}')$$);

-- memory: a string, a whole number and a unit (kB, MB, GB, TB), within the
-- engine's bounds.
SELECT options,
	   dborch_test.expect_error(format('SELECT dborch.deploy(''orders'', ''postgres'', %L)', options)) AS result
FROM (VALUES (1, '{"memory": "-1"}'), (2, '{"memory": "-128MB"}'), (3, '{"memory": "abc"}'),
			 (4, '{"memory": 128}'), (5, '{"memory": "128"}'), (6, '{"memory": ""}'),
			 (7, '{"memory": "128 XB"}'), (8, '{"memory": "128MBs"}'), (9, '{"memory": "128 MB x"}'),
			 (10, '{"memory": "1.5GB"}'), (11, '{"memory": "MB"}'), (12, '{"memory": "128B"}'),
			 (13, '{"memory": null}'), (14, '{"memory": {"MB": 128}}'), (15, '{"memory": ["128MB"]}'),
			 (16, '{"memory": "0MB"}'), (17, '{"memory": "15MB"}'), (18, '{"memory": "2TB"}'),
			 (19, '{"memory": "99999999999999999999MB"}'), (20, '{"memory": "9999999999TB"}'))
	AS v(i, options)
ORDER BY i;
SELECT * FROM dborch_test.error_report($$SELECT dborch.deploy('orders', 'postgres', '{"memory": "128"}')$$);
SELECT * FROM dborch_test.error_report($$SELECT dborch.deploy('orders', 'postgres', '{"memory": "15MB"}')$$);
-- redis has a lower floor than postgres
SELECT dborch_test.expect_error($$SELECT dborch.deploy('cache', 'redis', '{"memory": "3MB"}')$$);

-- ttl: a positive interval of at most 100 years, as a string.
SELECT options,
	   dborch_test.expect_error(format('SELECT dborch.deploy(''orders'', ''postgres'', %L)', options)) AS result
FROM (VALUES (1, '{"ttl": "-1 hour"}'), (2, '{"ttl": "-1 day"}'), (3, '{"ttl": "0"}'),
			 (4, '{"ttl": "0 seconds"}'), (5, '{"ttl": "garbage"}'), (6, '{"ttl": ""}'),
			 (7, '{"ttl": 3600}'), (8, '{"ttl": "2 hours; drop table y"}'),
			 (9, '{"ttl": "101 years"}'), (10, '{"ttl": "40000 days"}'), (11, '{"ttl": "P-1D"}'),
			 (12, '{"ttl": "2026-01-01"}'), (13, '{"ttl": null}')) AS v(i, options)
ORDER BY i;
SELECT * FROM dborch_test.error_report($$SELECT dborch.deploy('orders', 'postgres', '{"ttl": "garbage"}')$$);

-- environment: development, staging or production.
SELECT options,
	   dborch_test.expect_error(format('SELECT dborch.deploy(''orders'', ''postgres'', %L)', options)) AS result
FROM (VALUES (1, '{"environment": "prod"}'), (2, '{"environment": "Production"}'),
			 (3, '{"environment": "test"}'), (4, '{"environment": ""}'),
			 (5, '{"environment": 1}'), (6, '{"environment": null}')) AS v(i, options)
ORDER BY i;
SELECT * FROM dborch_test.error_report($$SELECT dborch.deploy('orders', 'postgres', '{"environment": "prod"}')$$);

-- max_connections: a whole number from 10 to 10000, as a number or a string.
SELECT options,
	   dborch_test.expect_error(format('SELECT dborch.deploy(''orders'', ''postgres'', %L)', options)) AS result
FROM (VALUES (1, '{"max_connections": 9}'), (2, '{"max_connections": 10001}'),
			 (3, '{"max_connections": 10.5}'), (4, '{"max_connections": "20 conns"}'),
			 (5, '{"max_connections": ""}'), (6, '{"max_connections": -20}'),
			 (7, '{"max_connections": true}'), (8, '{"max_connections": null}')) AS v(i, options)
ORDER BY i;
SELECT * FROM dborch_test.error_report($$SELECT dborch.deploy('orders', 'postgres', '{"max_connections": 9}')$$);

-- replicas: a whole number from 0 to 10.
SELECT options,
	   dborch_test.expect_error(format('SELECT dborch.deploy(''orders'', ''postgres'', %L)', options)) AS result
FROM (VALUES (1, '{"replicas": -1}'), (2, '{"replicas": 11}'), (3, '{"replicas": 1.5}'),
			 (4, '{"replicas": "two"}'), (5, '{"replicas": true}')) AS v(i, options)
ORDER BY i;

-- synchronous: true or false; true for PostgreSQL only.
SELECT engine, options,
	   dborch_test.expect_error(format('SELECT dborch.deploy(''orders'', %L, %L)', engine, options)) AS result
FROM (VALUES (1, 'postgres', '{"synchronous": "yes"}'), (2, 'postgres', '{"synchronous": 1}'),
			 (3, 'postgres', '{"synchronous": null}'), (4, 'redis', '{"synchronous": true}'))
	AS v(i, engine, options)
ORDER BY i;
SELECT * FROM dborch_test.error_report($$SELECT dborch.deploy('orders', 'redis', '{"synchronous": true}')$$);

-- version: one the engine supports (postgres 15, redis 7).
SELECT engine, options,
	   dborch_test.expect_error(format('SELECT dborch.deploy(''orders'', %L, %L)', engine, options)) AS result
FROM (VALUES (1, 'postgres', '{"version": "14"}'), (2, 'postgres', '{"version": "16"}'),
			 (3, 'postgres', '{"version": "15.1"}'), (4, 'postgres', '{"version": 15.0}'),
			 (5, 'postgres', '{"version": "7"}'), (6, 'postgres', '{"version": ""}'),
			 (7, 'postgres', '{"version": true}'), (8, 'redis', '{"version": "6"}'),
			 (9, 'redis', '{"version": "15"}'), (10, 'redis', '{"version": "7.0"}'))
	AS v(i, engine, options)
ORDER BY i;
SELECT * FROM dborch_test.error_report($$SELECT dborch.deploy('orders', 'postgres', '{"version": "14"}')$$);

-- Valid options are accepted, and normalized into the spec.
BEGIN;
SELECT name, engine, environment, spec, memory_bytes, status,
	   CASE WHEN expires_at IS NULL THEN 'never'
			WHEN expires_at = created_at + (spec->>'ttl')::interval THEN 'created_at + ttl'
	   END AS expires
FROM dborch.deploy('pg1', 'postgres', '{"version": "15", "memory": "1 gb", "environment": "production", "ttl": "2 hours", "replicas": 2}');
SELECT name, engine, environment, spec, memory_bytes, status,
	   CASE WHEN expires_at IS NULL THEN 'never'
			WHEN expires_at = created_at + (spec->>'ttl')::interval THEN 'created_at + ttl'
	   END AS expires
FROM dborch.deploy('pg2', 'postgres', '{"version": 15, "memory": "16MB", "environment": "staging", "ttl": "P1DT2H", "max_connections": 10000, "synchronous": true}');
SELECT name, engine, environment, spec, memory_bytes, status,
	   CASE WHEN expires_at IS NULL THEN 'never'
			WHEN expires_at = created_at + (spec->>'ttl')::interval THEN 'created_at + ttl'
	   END AS expires
FROM dborch.deploy('cache1', 'redis', '{"version": "7", "memory": "4096kB", "ttl": "100 years", "max_connections": "50"}');
SELECT name, engine, environment, spec, memory_bytes, status,
	   CASE WHEN expires_at IS NULL THEN 'never'
			WHEN expires_at = created_at + (spec->>'ttl')::interval THEN 'created_at + ttl'
	   END AS expires
FROM dborch.deploy('cache2', 'redis', '{"synchronous": false}');
ROLLBACK;

--
-- Quotas (53400): by default 20 deployments and 4096 MB of memory per owner;
-- a row in dborch.quotas overrides them.
--
SELECT * FROM dborch_test.error_report($$SELECT dborch.deploy('big', 'postgres', '{"memory": "5GB"}')$$);
SELECT dborch_test.expect_error($$SELECT dborch.deploy('big', 'postgres', '{"memory": "4097MB"}')$$);
BEGIN;
-- exactly the default quota fits
SELECT name, memory_bytes, status FROM dborch.deploy('big', 'postgres', '{"memory": "4GB"}');
SELECT * FROM dborch_test.error_report($$SELECT dborch.deploy('more', 'redis', '{"memory": "4MB"}')$$);
ROLLBACK;

BEGIN;
RESET ROLE;
INSERT INTO dborch.quotas (owner, max_deployments, max_memory_bytes)
	VALUES ('regress_dborch_carol', 2, 256 * 1024 * 1024);
SET ROLE regress_dborch_carol;
SELECT name, status FROM dborch.deploy('one', 'postgres');
SELECT * FROM dborch_test.error_report($$SELECT dborch.deploy('two', 'postgres', '{"memory": "256MB"}')$$);
SELECT name, status FROM dborch.deploy('two', 'redis', '{"memory": "128MB"}');
SELECT * FROM dborch_test.error_report($$SELECT dborch.deploy('three', 'redis', '{"memory": "4MB"}')$$);
SELECT dborch_test.catalog_rows();
ROLLBACK;

BEGIN;
RESET ROLE;
INSERT INTO dborch.quotas (owner, max_deployments) VALUES ('regress_dborch_carol', 0);
SET ROLE regress_dborch_carol;
SELECT dborch_test.expect_error($$SELECT dborch.deploy('one', 'postgres')$$);
ROLLBACK;

--
-- Unknown deployments and jobs (42704).
--
SELECT dborch_test.expect_error($$SELECT dborch.destroy('nosuch')$$);
SELECT dborch_test.expect_error($$SELECT dborch.wait('nosuch')$$);
SELECT dborch_test.expect_error($$SELECT dborch.deployment('nosuch')$$);
SELECT dborch_test.expect_error($$SELECT dborch.connection_string('nosuch')$$);
SELECT dborch_test.expect_error($$SELECT dborch.wait_job(-1)$$);
SELECT dborch_test.expect_error($$SELECT dborch.wait_job(0, '1s')$$);
SELECT dborch_test.expect_error($$SELECT dborch.cancel_job(-1)$$);
SELECT dborch_test.expect_error($$SELECT dborch.cancel_job(0)$$);

-- Other bad arguments of the functions (22023).
SELECT dborch_test.expect_error($$SELECT dborch.connection_string('nosuch', NULL, 'admin')$$);
SELECT dborch_test.expect_error($$SELECT dborch.connection_string('nosuch', NULL, 'WRITE')$$);
SELECT dborch_test.expect_error($$SELECT dborch.connection_string('nosuch', NULL, '')$$);
SELECT dborch_test.expect_error($$SELECT dborch.connection_string('nosuch', NULL, NULL)$$);
SELECT * FROM dborch_test.error_report($$SELECT dborch.connection_string('orders', NULL, 'admin')$$);
SELECT dborch_test.expect_error($$SELECT dborch.wait('nosuch', NULL)$$);
SELECT dborch_test.expect_error($$SELECT dborch.wait('nosuch', '-1 second')$$);
SELECT dborch_test.expect_error($$SELECT dborch.wait_job(NULL)$$);
SELECT dborch_test.expect_error($$SELECT dborch.wait_job(1, NULL)$$);
SELECT dborch_test.expect_error($$SELECT dborch.wait_job(1, '-1 day')$$);
SELECT dborch_test.expect_error($$SELECT dborch.cancel_job(NULL)$$);

--
-- Wrong state for the request (55000).
--
BEGIN;
SELECT name, status FROM dborch.deploy('orders', 'postgres');
SELECT id AS job_id FROM dborch.jobs WHERE kind = 'deploy' \gset
-- wait in the transaction that queued the work: it could never finish
SELECT * FROM dborch_test.error_report($$SELECT dborch.wait('orders')$$);
SELECT dborch_test.expect_error($$SELECT dborch.wait('orders', '0')$$);
SELECT dborch_test.expect_error(format('SELECT dborch.wait_job(%s)', :job_id));
-- no connection string before the deployment is ready
SELECT * FROM dborch_test.error_report($$SELECT dborch.connection_string('orders')$$);
SELECT dborch_test.expect_error($$SELECT dborch.connection_string('orders', NULL, 'read')$$);
-- ... and no tenant that does not exist (42704)
SELECT dborch_test.expect_error($$SELECT dborch.connection_string('orders', 'acme')$$);
-- a destroy job cannot be cancelled, and a deployment being destroyed
-- cannot be deployed again until it is gone
SELECT name, status FROM dborch.destroy('orders');
SELECT id AS destroy_job_id FROM dborch.jobs WHERE kind = 'destroy' \gset
SELECT dborch_test.expect_error(format('SELECT dborch.cancel_job(%s)', :destroy_job_id));
SELECT * FROM dborch_test.error_report($$SELECT dborch.deploy('orders', 'postgres')$$);
SELECT dborch_test.expect_error($$SELECT dborch.wait('orders')$$);
SELECT dborch_test.catalog_rows();
ROLLBACK;

-- REPEATABLE READ and SERIALIZABLE snapshots would never see the change.
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT name, status FROM dborch.deploy('orders', 'postgres');
SELECT * FROM dborch_test.error_report($$SELECT dborch.wait('orders')$$);
SELECT dborch_test.expect_error(format('SELECT dborch.wait_job(%s)',
	(SELECT id FROM dborch.jobs WHERE kind = 'deploy')));
ROLLBACK;
BEGIN ISOLATION LEVEL SERIALIZABLE;
SELECT name, status FROM dborch.deploy('orders', 'postgres');
SELECT dborch_test.expect_error($$SELECT dborch.wait('orders')$$);
ROLLBACK;

-- Nothing was left behind by any of this.
SELECT dborch_test.catalog_rows();

RESET ROLE;
DROP ROLE regress_dborch_carol;
DROP SCHEMA dborch_test CASCADE;
