--
-- rls: dborch_user members see and act on their own deployments only;
-- dborch_admin members see and manage everything; other roles (PUBLIC)
-- can do nothing.  Users change the catalog only through the functions.
--
-- Two users, alice and bob, deploy in one transaction that rolls back;
-- what a deploy job would add (instances, passwords, ready status) is
-- written by hand in the same transaction.
--
CREATE EXTENSION IF NOT EXISTS dborch;
SET client_min_messages = warning;

-- Test helpers (schema dborch_test, dropped at the end of the suite):
-- catalog_state(), catalog_rows(), expect_error(sql), error_report(sql).
\set ECHO none
\i test/regress_helpers.sql
\set ECHO all

-- What the current role sees of each catalog table: rows, and whose.
CREATE FUNCTION dborch_test.visible()
RETURNS TABLE (catalog_table text, row_count bigint, owners text)
LANGUAGE sql AS $f$
	SELECT 'deployments', count(*), string_agg(DISTINCT owner::text COLLATE "C", ', ') FROM dborch.deployments
	UNION ALL
	SELECT 'instances', count(*), string_agg(DISTINCT split_part(data_directory, '/', 3) COLLATE "C", ', ')
	FROM dborch.instances
	UNION ALL
	SELECT 'jobs', count(*), string_agg(DISTINCT owner::text COLLATE "C", ', ') FROM dborch.jobs
	UNION ALL
	SELECT 'events', count(*), string_agg(DISTINCT owner::text COLLATE "C", ', ') FROM dborch.events
	UNION ALL
	SELECT 'secrets', count(*), string_agg(DISTINCT owner::text COLLATE "C", ', ') FROM dborch.secrets
	UNION ALL
	SELECT 'quotas', count(*), string_agg(DISTINCT owner::text COLLATE "C", ', ') FROM dborch.quotas
$f$;

DROP ROLE IF EXISTS regress_dborch_alice, regress_dborch_bob, regress_dborch_admin,
	regress_dborch_nobody;
CREATE ROLE regress_dborch_alice IN ROLE dborch_user;
CREATE ROLE regress_dborch_bob IN ROLE dborch_user;
CREATE ROLE regress_dborch_admin IN ROLE dborch_admin;
CREATE ROLE regress_dborch_nobody;

--
-- Privileges: functions and schema for the two groups only; SELECT on the
-- catalog (quotas also writable by admins); warm_pool for no one.
--
SELECT p.oid::regprocedure AS function,
	   has_function_privilege('regress_dborch_alice', p.oid, 'EXECUTE') AS dborch_user,
	   has_function_privilege('regress_dborch_admin', p.oid, 'EXECUTE') AS dborch_admin,
	   has_function_privilege('regress_dborch_nobody', p.oid, 'EXECUTE') AS other_role
FROM pg_proc p
WHERE p.pronamespace = 'dborch'::regnamespace
ORDER BY p.oid::regprocedure::text COLLATE "C";

SELECT r.rolname,
	   has_schema_privilege(r.rolname, 'dborch', 'USAGE') AS schema_usage,
	   has_schema_privilege(r.rolname, 'dborch', 'CREATE') AS schema_create
FROM pg_roles r
WHERE r.rolname IN ('regress_dborch_alice', 'regress_dborch_admin', 'regress_dborch_nobody')
ORDER BY r.rolname COLLATE "C";

SELECT c.relname AS catalog_table, r.rolname,
	   coalesce(string_agg(p.priv, ', ' ORDER BY p.n)
				FILTER (WHERE has_table_privilege(r.rolname, c.oid, p.priv)), '') AS privileges
FROM pg_class c
CROSS JOIN pg_roles r
CROSS JOIN (VALUES (1, 'SELECT'), (2, 'INSERT'), (3, 'UPDATE'), (4, 'DELETE'), (5, 'TRUNCATE'),
				   (6, 'REFERENCES'), (7, 'TRIGGER')) AS p(n, priv)
WHERE c.relnamespace = 'dborch'::regnamespace AND c.relkind = 'r'
  AND r.rolname IN ('regress_dborch_alice', 'regress_dborch_admin', 'regress_dborch_nobody')
GROUP BY c.relname, r.rolname
ORDER BY c.relname COLLATE "C", r.rolname COLLATE "C";

BEGIN;

--
-- alice and bob deploy.
--
SET ROLE regress_dborch_alice;
SELECT name, engine, owner, status FROM dborch.deploy('alice_db', 'postgres');
SELECT name, engine, owner, status FROM dborch.deploy('alice_cache', 'redis', '{"memory": "64MB"}');
SELECT j.id AS alice_job FROM dborch.jobs j JOIN dborch.deployments d ON d.id = j.deployment_id
WHERE d.name = 'alice_db' \gset
SELECT j.id AS alice_cache_job FROM dborch.jobs j JOIN dborch.deployments d ON d.id = j.deployment_id
WHERE d.name = 'alice_cache' \gset
SET ROLE regress_dborch_bob;
SELECT name, engine, owner, status FROM dborch.deploy('bob_db', 'postgres');
SELECT id AS bob_job FROM dborch.jobs WHERE kind = 'deploy' \gset

-- What the deploy jobs would record (by hand): an instance and a password
-- each; the two PostgreSQL deployments ready and their jobs succeeded, the
-- Redis one still pending.  And a quota row for each user.
RESET ROLE;
INSERT INTO dborch.instances (deployment_id, host, port, data_directory, status)
SELECT id, '127.0.0.1',
	   CASE name WHEN 'alice_db' THEN 32001 WHEN 'alice_cache' THEN 32002 ELSE 32003 END,
	   '/regress/' || name, 'running'
FROM dborch.deployments;
INSERT INTO dborch.secrets (deployment_id, name, owner, value)
SELECT id, 'password', owner, 'secret_of_' || name FROM dborch.deployments;
-- dborch's own login in each deployment: neither its owner nor an admin reads it
INSERT INTO dborch.secrets (deployment_id, name, owner, value)
SELECT id, 'dborch', owner, 'dborch_login_of_' || name FROM dborch.deployments;
UPDATE dborch.deployments SET status = 'ready' WHERE name IN ('alice_db', 'bob_db');
UPDATE dborch.jobs j SET state = 'succeeded', attempts = 1
FROM dborch.deployments d WHERE d.id = j.deployment_id AND d.status = 'ready';
INSERT INTO dborch.quotas (owner, max_deployments)
	VALUES ('regress_dborch_alice', 10), ('regress_dborch_bob', 10);
SELECT dborch_test.catalog_rows();

--
-- bob sees his own rows only, in every table.
--
SET ROLE regress_dborch_bob;
SELECT * FROM dborch_test.visible();
SELECT name, owner, status FROM dborch.deployments ORDER BY name COLLATE "C";
SELECT count(*) AS alice_rows FROM dborch.deployments WHERE name LIKE 'alice%';
SELECT count(*) AS alice_jobs FROM dborch.jobs WHERE id = :alice_job;
SELECT value FROM dborch.secrets;
SELECT regexp_replace(dborch.connection_string('bob_db'), 'sslrootcert=.*$', 'sslrootcert=<CA file>') AS connection_string;

-- bob cannot act on alice's deployment or jobs (42501) ...
SELECT dborch_test.expect_error($$SELECT dborch.destroy('alice_db')$$);
SELECT * FROM dborch_test.error_report($$SELECT dborch.destroy('alice_db')$$);
SELECT dborch_test.expect_error($$SELECT dborch.wait('alice_db')$$);
SELECT dborch_test.expect_error($$SELECT dborch.wait('alice_cache', '0')$$);
SELECT dborch_test.expect_error($$SELECT dborch.deployment('alice_db')$$);
SELECT dborch_test.expect_error($$SELECT * FROM dborch.metrics('alice_db')$$);
SELECT dborch_test.expect_error($$SELECT dborch.connection_string('alice_db')$$);
SELECT dborch_test.expect_error($$SELECT dborch.connection_string('alice_db', NULL, 'read')$$);
SELECT dborch_test.expect_error(format('SELECT dborch.wait_job(%s)', :alice_job));
SELECT dborch_test.expect_error(format('SELECT dborch.cancel_job(%s)', :alice_job));
SELECT dborch_test.expect_error(format('SELECT dborch.cancel_job(%s)', :alice_cache_job));
-- ... nor take its name, with its spec or another (42710)
SELECT * FROM dborch_test.error_report($$SELECT dborch.deploy('alice_db', 'postgres')$$);
SELECT dborch_test.expect_error($$SELECT dborch.deploy('alice_db', 'redis')$$);

-- bob cannot write the catalog directly (42501), not even his own rows.
SELECT stmt, dborch_test.expect_error(stmt) AS result
FROM (VALUES
	(1, $$INSERT INTO dborch.deployments (name, engine, owner, spec, memory_bytes) VALUES ('x', 'postgres', 'regress_dborch_bob', '{}', 1)$$),
	(2, $$UPDATE dborch.deployments SET status = 'destroyed' WHERE name = 'alice_db'$$),
	(3, $$UPDATE dborch.deployments SET status = 'ready' WHERE name = 'bob_db'$$),
	(4, $$DELETE FROM dborch.deployments$$),
	(5, $$TRUNCATE dborch.deployments CASCADE$$),
	(6, $$INSERT INTO dborch.jobs (kind, owner, max_attempts) VALUES ('deploy', 'regress_dborch_bob', 1)$$),
	(7, $$UPDATE dborch.jobs SET state = 'cancelled'$$),
	(8, $$DELETE FROM dborch.jobs$$),
	(9, $$INSERT INTO dborch.events (actor, kind, message) VALUES ('regress_dborch_bob', 'x', 'y')$$),
	(10, $$UPDATE dborch.events SET message = 'rewritten'$$),
	(11, $$DELETE FROM dborch.events$$),
	(12, $$INSERT INTO dborch.secrets (deployment_id, name, owner, value) SELECT id, 'stolen', 'regress_dborch_bob', 'x' FROM dborch.deployments$$),
	(13, $$UPDATE dborch.secrets SET owner = 'regress_dborch_bob'$$),
	(14, $$DELETE FROM dborch.secrets$$),
	(15, $$UPDATE dborch.instances SET status = 'down'$$),
	(16, $$DELETE FROM dborch.instances$$),
	(17, $$INSERT INTO dborch.quotas (owner, max_deployments) VALUES ('regress_dborch_carol', 100)$$),
	(18, $$UPDATE dborch.quotas SET max_deployments = 100$$),
	(19, $$DELETE FROM dborch.quotas$$),
	(20, $$SELECT * FROM dborch.warm_pool$$)) AS v(i, stmt)
ORDER BY i;

--
-- alice sees her own rows only, and can use her deployments.
--
SET ROLE regress_dborch_alice;
SELECT * FROM dborch_test.visible();
SELECT name, owner, status FROM dborch.deployments ORDER BY name COLLATE "C";
SELECT d.name, s.name AS secret, s.value
FROM dborch.secrets s JOIN dborch.deployments d ON d.id = s.deployment_id ORDER BY d.name COLLATE "C";
SELECT regexp_replace(dborch.connection_string('alice_db'), 'sslrootcert=.*$', 'sslrootcert=<CA file>') AS connection_string;
SELECT regexp_replace(dborch.connection_string('alice_db', NULL, 'read'), 'sslrootcert=.*$', 'sslrootcert=<CA file>') AS connection_string;
SELECT dborch_test.expect_error($$SELECT dborch.connection_string('alice_cache')$$);
SELECT dborch.deployment('alice_db') -> 'endpoints' AS endpoints;
SELECT dborch_test.expect_error($$SELECT dborch.destroy('bob_db')$$);
SELECT dborch_test.expect_error(format('SELECT dborch.cancel_job(%s)', :bob_job));

--
-- A dborch_admin member sees everything and manages everyone's deployments.
--
SET ROLE regress_dborch_admin;
SELECT * FROM dborch_test.visible();
SELECT name, owner, status FROM dborch.deployments ORDER BY name COLLATE "C";
SELECT regexp_replace(dborch.connection_string('bob_db'), 'sslrootcert=.*$', 'sslrootcert=<CA file>') AS connection_string;
SELECT dborch.deployment('alice_db') ->> 'owner' AS owner;
-- the same name and spec from an admin is the owner's deployment, not a new one
SELECT name, owner, status FROM dborch.deploy('alice_cache', 'redis', '{"memory": "64MB"}');
SELECT name, owner, status FROM dborch.destroy('alice_db');
SELECT kind, state FROM dborch.cancel_job(:alice_cache_job);
-- (a finished job stays as it is)
SELECT kind, state FROM dborch.cancel_job(:bob_job);
-- admins manage quotas directly, and the rest through the functions only
UPDATE dborch.quotas SET max_deployments = 5 WHERE owner = 'regress_dborch_alice';
INSERT INTO dborch.quotas (owner, max_deployments) VALUES ('regress_dborch_carol', 1);
SELECT owner, max_deployments FROM dborch.quotas ORDER BY owner COLLATE "C";
SELECT dborch_test.expect_error($$UPDATE dborch.deployments SET status = 'ready'$$);
SELECT dborch_test.expect_error($$DELETE FROM dborch.events$$);
SELECT dborch_test.expect_error($$SELECT * FROM dborch.warm_pool$$);

-- alice sees what the admin did to her deployments, and who did it; bob
-- sees none of it.
SET ROLE regress_dborch_alice;
SELECT name, status, last_error FROM dborch.deployments ORDER BY name COLLATE "C";
SELECT row_number() OVER (ORDER BY id) AS n, actor, deployment, kind
FROM dborch.events ORDER BY id;
SELECT row_number() OVER (ORDER BY id) AS n, kind, state FROM dborch.jobs ORDER BY id;
SET ROLE regress_dborch_bob;
SELECT row_number() OVER (ORDER BY id) AS n, actor, deployment, kind
FROM dborch.events ORDER BY id;
SELECT * FROM dborch_test.visible();

--
-- A role in neither group can do nothing (42501).
--
SET ROLE regress_dborch_nobody;
SELECT dborch_test.expect_error($$SELECT dborch.deploy('nobody_db', 'postgres')$$);
SELECT dborch_test.expect_error($$SELECT * FROM dborch.deployments$$);
SELECT dborch_test.expect_error($$SELECT dborch.connection_string('bob_db')$$);
-- even with USAGE on the schema, it may not execute the functions or read
-- the tables
RESET ROLE;
GRANT USAGE ON SCHEMA dborch TO regress_dborch_nobody;
SET ROLE regress_dborch_nobody;
SELECT dborch_test.expect_error($$SELECT dborch.deploy('nobody_db', 'postgres')$$);
SELECT dborch_test.expect_error($$SELECT dborch.destroy('bob_db')$$);
SELECT dborch_test.expect_error($$SELECT dborch.wait('bob_db')$$);
SELECT dborch_test.expect_error($$SELECT dborch.deployment('bob_db')$$);
SELECT dborch_test.expect_error($$SELECT dborch.connection_string('bob_db')$$);
SELECT dborch_test.expect_error(format('SELECT dborch.wait_job(%s)', :bob_job));
SELECT dborch_test.expect_error(format('SELECT dborch.cancel_job(%s)', :bob_job));
SELECT dborch_test.expect_error($$SELECT * FROM dborch.deployments$$);
SELECT dborch_test.expect_error($$SELECT * FROM dborch.secrets$$);

RESET ROLE;
ROLLBACK;

SELECT dborch_test.catalog_rows();

DROP ROLE regress_dborch_alice, regress_dborch_bob, regress_dborch_admin, regress_dborch_nobody;
DROP SCHEMA dborch_test CASCADE;
