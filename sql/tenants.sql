--
-- tenants: bad input to create_tenant, drop_tenant, move_tenant and
-- connection_string(name, tenant) gets a clear error with the right SQLSTATE
-- (bad name or quota 22023, unknown deployment or tenant 42704, a tenant of
-- that name with another quota or already on the target 42710, wrong state
-- 55000, not the owner 42501) and writes nothing; create_tenant() is
-- idempotent (the same quota written another way is the same row); a batch
-- of creations is one tenants job.
--
-- Deploys and tenants are never committed here (the launcher would run
-- them): they happen in transactions that roll back.  A tenant of a
-- deployment created in the same transaction is a pending row, which is
-- enough for the validation.
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

-- The tenants table too: its row count, identity and contents.
CREATE FUNCTION dborch_test.tenant_state() RETURNS text
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $f$
	SELECT format('%s rows, seq %s, %s',
				  (SELECT count(*) FROM dborch.tenants),
				  coalesce(pg_sequence_last_value(
					  pg_get_serial_sequence('dborch.tenants', 'id')::regclass), 0),
				  (SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY t.id), ''))
					 FROM dborch.tenants t))
$f$;

-- Rows in dborch.tenants, whatever RLS says.
CREATE FUNCTION dborch_test.tenant_count() RETURNS bigint
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $f$
	SELECT count(*) FROM dborch.tenants
$f$;

-- expect_error(sql), also saying if the call left a trace in dborch.tenants.
CREATE FUNCTION dborch_test.tenant_error(sql text) RETURNS text
LANGUAGE plpgsql AS $f$
DECLARE
	before text := dborch_test.tenant_state();
	result text;
BEGIN
	result := dborch_test.expect_error(sql);
	IF dborch_test.tenant_state() <> before THEN
		result := result || ' [tenants changed]';
	END IF;
	RETURN result;
END
$f$;

-- Tenant rows of a deployment as a user sees them (no ids, no times).
CREATE FUNCTION dborch_test.tenant_rows() RETURNS TABLE (deployment text, name text, engine text,
	quota jsonb, key_prefix text, status text, read_only boolean, last_error text)
LANGUAGE sql AS $f$
	SELECT t.deployment, t.name, t.engine, t.quota, t.key_prefix, t.status, t.read_only,
		   t.last_error
	FROM dborch.tenants t ORDER BY t.deployment COLLATE "C", t.name COLLATE "C"
$f$;

DROP ROLE IF EXISTS regress_dborch_erin;
DROP ROLE IF EXISTS regress_dborch_frank;
CREATE ROLE regress_dborch_erin IN ROLE dborch_user;
CREATE ROLE regress_dborch_frank IN ROLE dborch_user;
SET ROLE regress_dborch_erin;

SELECT dborch_test.catalog_rows();

--
-- Tenant names: ^[a-z][a-z0-9_]{0,39}$ (22023), checked before anything
-- else, so even an unknown deployment reports the name.
--
SELECT coalesce(to_json(name)::text, 'NULL') AS name,
	   dborch_test.tenant_error(format('SELECT dborch.create_tenant(''nope'', %L)', name)) AS result
FROM (VALUES (1, ''), (2, repeat('a', 41)), (3, 'Acme'), (4, 'ACME'), (5, 'a-b'),
			 (6, 'a b'), (7, ' acme'), (8, 'acme '), (9, '1acme'), (10, '_acme'),
			 (11, 'acme$owner'), (12, 'a"b'), (13, 'a''b'), (14, 'a:b'), (15, 'a*'),
			 (16, 'a.b'), (17, 'a/b'), (18, E'acme\n'), (19, 'x; drop role y'),
			 (20, 'a%b'), (21, 'a\b'), (22, NULL)) AS v(i, name)
ORDER BY i;
-- non-ASCII letters too (only the SQLSTATE: the message depends on the encoding)
SELECT split_part(dborch_test.tenant_error(
		format('SELECT dborch.create_tenant(''nope'', %L)', 'caf' || chr(233))), ':', 1) AS sqlstate;
SELECT * FROM dborch_test.error_report($$SELECT dborch.create_tenant('nope', 'Acme')$$);

-- The same rule in every function that takes a tenant name.
SELECT dborch_test.tenant_error($$SELECT dborch.drop_tenant('nope', 'Acme')$$);
SELECT dborch_test.tenant_error($$SELECT dborch.drop_tenant('nope', '')$$);
SELECT dborch_test.tenant_error($$SELECT dborch.drop_tenant('nope', NULL)$$);
SELECT dborch_test.tenant_error($$SELECT dborch.move_tenant('a b', 'src', 'dst')$$);
SELECT dborch_test.tenant_error($$SELECT dborch.move_tenant(NULL, 'src', 'dst')$$);
SELECT dborch_test.tenant_error($$SELECT dborch.connection_string('nope', 'acme$owner')$$);
SELECT dborch_test.tenant_error($$SELECT dborch.connection_string('nope', repeat('a', 41))$$);
-- and deployment names follow theirs
SELECT dborch_test.tenant_error($$SELECT dborch.create_tenant('Orders', 'acme')$$);
SELECT dborch_test.tenant_error($$SELECT dborch.create_tenant(NULL, 'acme')$$);
SELECT dborch_test.tenant_error($$SELECT dborch.drop_tenant('../x', 'acme')$$);
SELECT dborch_test.tenant_error($$SELECT dborch.move_tenant('acme', 'Src', 'dst')$$);
SELECT dborch_test.tenant_error($$SELECT dborch.move_tenant('acme', 'src', NULL)$$);

-- Names the instances use themselves are reserved (22023).
SELECT name,
	   dborch_test.tenant_error(format('SELECT dborch.create_tenant(''nope'', %L)', name)) AS result
FROM (VALUES (1, 'postgres'), (2, 'public'), (3, 'default'), (4, 'information_schema'),
			 (5, 'pg_x'), (6, 'pg_'), (7, 'pg_catalog'), (8, 'pg_toast'),
			 (9, 'pg_read_all_data'), (10, 'owner'), (11, 'dborch')) AS v(i, name)
ORDER BY i;
SELECT * FROM dborch_test.error_report($$SELECT dborch.create_tenant('nope', 'pg_x')$$);

--
-- Unknown deployment (42704) in every function.
--
SELECT dborch_test.tenant_error($$SELECT dborch.create_tenant('nope', 'acme')$$);
SELECT dborch_test.tenant_error($$SELECT dborch.create_tenant('nope', 'acme', '{"storage": "1MB"}')$$);
SELECT dborch_test.tenant_error($$SELECT dborch.drop_tenant('nope', 'acme')$$);
SELECT dborch_test.tenant_error($$SELECT dborch.move_tenant('acme', 'nope', 'other')$$);
SELECT dborch_test.tenant_error($$SELECT dborch.connection_string('nope', 'acme')$$);
SELECT * FROM dborch_test.error_report($$SELECT dborch.create_tenant('nope', 'acme')$$);

SELECT dborch_test.catalog_rows();
SELECT dborch_test.tenant_count();

--
-- With deployments (pending, in a transaction that rolls back).
--
BEGIN;
SELECT name, engine, status FROM dborch.deploy('tn_pg', 'postgres');
SELECT name, engine, status FROM dborch.deploy('tn_pg2', 'postgres');
SELECT name, engine, status FROM dborch.deploy('tn_redis', 'redis', '{"memory": "64MB"}');
SELECT name, engine, status FROM dborch.deploy('tn_redis2', 'redis', '{"memory": "64MB"}');

-- The helper reports a tenant written (with its secret and the job).
SAVEPOINT probe;
SELECT dborch_test.tenant_error($$SELECT dborch.create_tenant('tn_pg', 'probe')$$);
ROLLBACK TO SAVEPOINT probe;

-- A tenant of each engine, with its quota normalized.
SELECT deployment, name, owner, engine, quota, key_prefix, status, read_only, usage, last_error
FROM dborch.create_tenant('tn_pg', 'acme', '{"max_connections": 5, "storage": "50MB"}');
SELECT deployment, name, owner, engine, quota, key_prefix, status, read_only, usage, last_error
FROM dborch.create_tenant('tn_redis', 'acme', '{"max_keys": 1000, "memory": "16384kB"}');
SELECT deployment, name, engine, quota, key_prefix, status
FROM dborch.create_tenant('tn_pg', 'bare');
SELECT deployment, name, engine, quota, key_prefix, status
FROM dborch.create_tenant('tn_redis', 'bare', '{}');
-- names at the edges of the rule
SELECT deployment, name, status FROM dborch.create_tenant('tn_pg', 'a');
SELECT deployment, name, status FROM dborch.create_tenant('tn_pg', repeat('z', 40));
SELECT deployment, name, status FROM dborch.create_tenant('tn_pg', 'a_1_b2');
-- names near the reserved ones are not reserved
SELECT deployment, name, status FROM dborch.create_tenant('tn_pg', 'pg');
SELECT deployment, name, status FROM dborch.create_tenant('tn_pg', 'pgx');
SELECT deployment, name, status FROM dborch.create_tenant('tn_pg', 'postgres2');
-- a password each, as a secret named tenant:<name>; one tenants job per deployment
SELECT d.name AS deployment, s.name AS secret, length(s.value) AS password_length
FROM dborch.secrets s JOIN dborch.deployments d ON d.id = s.deployment_id
WHERE s.name LIKE 'tenant:%'
ORDER BY d.name COLLATE "C", s.name COLLATE "C";
SELECT d.name AS deployment, j.kind, j.state, j.args
FROM dborch.jobs j JOIN dborch.deployments d ON d.id = j.deployment_id
WHERE j.kind = 'tenants'
ORDER BY d.name COLLATE "C";
SELECT dborch_test.catalog_rows();
SELECT id AS acme_pg_id FROM dborch.tenants WHERE deployment = 'tn_pg' AND name = 'acme' \gset
SELECT id AS acme_redis_id FROM dborch.tenants WHERE deployment = 'tn_redis' AND name = 'acme' \gset

-- The same tenant and quota again, written other ways: the same row, and no
-- trace (no row, no identity value, no job, no event, no secret).
SELECT quota,
	   dborch_test.tenant_error(format('SELECT dborch.create_tenant(''tn_pg'', ''acme'', %L)', quota)) AS result
FROM (VALUES (1, '{"max_connections": 5, "storage": "50MB"}'),
			 (2, '{"storage": "50MB", "max_connections": 5}'),
			 (3, '{"storage": "50 mb", "max_connections": 5}'),
			 (4, '{"storage": " 51200kB ", "max_connections": 5}'),
			 (5, '{"max_connections": 5, "storage": "51200 KB"}')) AS v(i, quota)
ORDER BY i;
SELECT id = :acme_pg_id AS same_row, deployment, name, quota, status
FROM dborch.create_tenant('tn_pg', 'acme', '{"storage": "51200kB", "max_connections": 5}');
SELECT id = :acme_redis_id AS same_row, deployment, name, quota, status
FROM dborch.create_tenant('tn_redis', 'acme', '{"memory": "16MB", "max_keys": 1000}');
SELECT quota,
	   dborch_test.tenant_error(format('SELECT dborch.create_tenant(''tn_redis'', ''acme'', %L)', quota)) AS result
FROM (VALUES (1, '{"memory": "16MB", "max_keys": 1000}'),
			 (2, '{"max_keys": 1000, "memory": "16384 kB"}'),
			 (3, '{"max_keys": 1000, "memory": "16 MB"}')) AS v(i, quota)
ORDER BY i;
-- without a quota, and with the default one
SELECT dborch_test.tenant_error($$SELECT dborch.create_tenant('tn_pg', 'bare')$$);
SELECT dborch_test.tenant_error($$SELECT dborch.create_tenant('tn_pg', 'bare', '{}')$$);
SELECT dborch_test.catalog_rows();

-- The same name with another quota: 42710, naming the way to change it.
SELECT * FROM dborch_test.error_report($$SELECT dborch.create_tenant('tn_pg', 'acme', '{"max_connections": 6, "storage": "50MB"}')$$);
SELECT * FROM dborch_test.error_report($$SELECT dborch.create_tenant('tn_redis', 'bare', '{"max_keys": 10}')$$);
SELECT quota,
	   dborch_test.tenant_error(format('SELECT dborch.create_tenant(''tn_pg'', ''acme'', %L)', quota)) AS result
FROM (VALUES (1, '{}'), (2, '{"max_connections": 5}'), (3, '{"storage": "50MB"}'),
			 (4, '{"max_connections": 5, "storage": "51MB"}')) AS v(i, quota)
ORDER BY i;
-- invalid quotas are still invalid, whatever exists
SELECT dborch_test.tenant_error($$SELECT dborch.create_tenant('tn_pg', 'acme', '{"storage": "-1MB"}')$$);
-- the same name in another deployment is another tenant
SELECT deployment, name, quota, status FROM dborch.create_tenant('tn_pg2', 'acme', '{"storage": "1GB"}');

--
-- Quotas (22023): an object; max_connections and storage for a PostgreSQL
-- tenant, max_keys and memory for a Redis one; counts are whole numbers of
-- at least 1, sizes a whole number with a unit.
--
SELECT engine, quota,
	   dborch_test.tenant_error(format('SELECT dborch.create_tenant(%L, ''other'', %L)',
									   CASE engine WHEN 'postgres' THEN 'tn_pg' ELSE 'tn_redis' END,
									   quota)) AS result
FROM (VALUES (1, 'postgres', '{"max_keys": 10}'), (2, 'postgres', '{"memory": "16MB"}'),
			 (3, 'postgres', '{"storage": "1MB", "max_keys": 10}'),
			 (4, 'redis', '{"storage": "1MB"}'), (5, 'redis', '{"max_connections": 3}'),
			 (6, 'redis', '{"max_keys": 10, "storage": "1MB"}'),
			 (7, 'postgres', '{"Storage": "1MB"}'), (8, 'postgres', '{"foo": 1}'),
			 (9, 'postgres', '{"": 1}'), (10, 'redis', '{"MAX_KEYS": 10}'))
	AS v(i, engine, quota)
ORDER BY i;
SELECT * FROM dborch_test.error_report($$SELECT dborch.create_tenant('tn_pg', 'other', '{"max_keys": 10}')$$);
SELECT * FROM dborch_test.error_report($$SELECT dborch.create_tenant('tn_redis', 'other', '{"storage": "1MB"}')$$);

-- Not an object.
SELECT quota,
	   dborch_test.tenant_error(format('SELECT dborch.create_tenant(''tn_pg'', ''other'', %L)', quota)) AS result
FROM (VALUES (1, '[]'), (2, '[{"storage": "1MB"}]'), (3, '"50MB"'), (4, '5'), (5, 'true'),
			 (6, 'null')) AS v(i, quota)
ORDER BY i;
SELECT * FROM dborch_test.error_report($$SELECT dborch.create_tenant('tn_pg', 'other', '[]')$$);
SELECT * FROM dborch_test.error_report($$SELECT dborch.create_tenant('tn_pg', 'other', NULL)$$);

-- Counts: max_connections and max_keys.
SELECT engine, quota,
	   dborch_test.tenant_error(format('SELECT dborch.create_tenant(%L, ''other'', %L)',
									   CASE engine WHEN 'postgres' THEN 'tn_pg' ELSE 'tn_redis' END,
									   quota)) AS result
FROM (VALUES (1, 'postgres', '{"max_connections": -1}'), (2, 'postgres', '{"max_connections": 0}'),
			 (3, 'postgres', '{"max_connections": 1.5}'), (4, 'postgres', '{"max_connections": "3"}'),
			 (5, 'postgres', '{"max_connections": null}'), (6, 'postgres', '{"max_connections": true}'),
			 (7, 'postgres', '{"max_connections": [3]}'), (8, 'postgres', '{"max_connections": 1e20}'),
			 (9, 'postgres', '{"max_connections": -0.5}'),
			 (10, 'redis', '{"max_keys": -5}'), (11, 'redis', '{"max_keys": 0}'),
			 (12, 'redis', '{"max_keys": "ten"}'), (13, 'redis', '{"max_keys": 2.5}'),
			 (14, 'redis', '{"max_keys": 99999999999999999999}'), (15, 'redis', '{"max_keys": {}}'))
	AS v(i, engine, quota)
ORDER BY i;
SELECT * FROM dborch_test.error_report($$SELECT dborch.create_tenant('tn_pg', 'other', '{"max_connections": -1}')$$);
SELECT * FROM dborch_test.error_report($$SELECT dborch.create_tenant('tn_pg', 'other', '{"max_connections": "3"}')$$);

-- Sizes: storage and memory.
SELECT engine, quota,
	   dborch_test.tenant_error(format('SELECT dborch.create_tenant(%L, ''other'', %L)',
									   CASE engine WHEN 'postgres' THEN 'tn_pg' ELSE 'tn_redis' END,
									   quota)) AS result
FROM (VALUES (1, 'postgres', '{"storage": "-1MB"}'), (2, 'postgres', '{"storage": "-50MB"}'),
			 (3, 'postgres', '{"storage": "abc"}'), (4, 'postgres', '{"storage": ""}'),
			 (5, 'postgres', '{"storage": 50}'), (6, 'postgres', '{"storage": "50"}'),
			 (7, 'postgres', '{"storage": "1.5GB"}'), (8, 'postgres', '{"storage": "50 XB"}'),
			 (9, 'postgres', '{"storage": "50MBs"}'), (10, 'postgres', '{"storage": "50 MB x"}'),
			 (11, 'postgres', '{"storage": null}'), (12, 'postgres', '{"storage": ["50MB"]}'),
			 (13, 'postgres', '{"storage": "MB"}'), (14, 'postgres', '{"storage": "99999999999999999999MB"}'),
			 (15, 'postgres', '{"storage": "9999999999TB"}'),
			 (16, 'redis', '{"memory": "-16MB"}'), (17, 'redis', '{"memory": "x"}'),
			 (18, 'redis', '{"memory": 16}'), (19, 'redis', '{"memory": "16 MB 2"}'))
	AS v(i, engine, quota)
ORDER BY i;
SELECT * FROM dborch_test.error_report($$SELECT dborch.create_tenant('tn_pg', 'other', '{"storage": "-1MB"}')$$);
SELECT * FROM dborch_test.error_report($$SELECT dborch.create_tenant('tn_pg', 'other', '{"storage": 50}')$$);

-- Values that parse but cannot be a quota: nothing fits in zero bytes, and
-- a connection limit is a 32-bit integer on the instance (CONNECTION LIMIT),
-- so a larger one could only fail later, in the tenants job, together with
-- every other tenant of its batch.  22023 is expected; only the SQLSTATE is
-- shown (the wording is the implementation's), and whatever gets created
-- is rolled back.
SAVEPOINT unfit;
SELECT engine, quota,
	   regexp_replace(dborch_test.tenant_error(format('SELECT dborch.create_tenant(%L, %L, %L)',
									   CASE engine WHEN 'postgres' THEN 'tn_pg' ELSE 'tn_redis' END,
									   name, quota)), '^(no error|[0-9A-Z]{5}).*$', '\1') AS sqlstate
FROM (VALUES (1, 'postgres', 'zero_storage', '{"storage": "0MB"}'),
			 (2, 'redis', 'zero_memory', '{"memory": "0kB"}'),
			 (3, 'postgres', 'conn_2g', '{"max_connections": 2147483648}'),
			 (4, 'postgres', 'conn_1t', '{"max_connections": 999999999999}'))
	AS v(i, engine, name, quota)
ORDER BY i;
ROLLBACK TO SAVEPOINT unfit;

SELECT dborch_test.catalog_rows();
SELECT * FROM dborch_test.tenant_rows();

--
-- Unknown tenants (42704).
--
SELECT dborch_test.tenant_error($$SELECT dborch.drop_tenant('tn_pg', 'nobody')$$);
SELECT dborch_test.tenant_error($$SELECT dborch.drop_tenant('tn_redis2', 'acme')$$);
SELECT dborch_test.tenant_error($$SELECT dborch.connection_string('tn_pg', 'nobody')$$);
SELECT dborch_test.tenant_error($$SELECT dborch.connection_string('tn_redis2', 'acme')$$);
SELECT dborch_test.tenant_error($$SELECT dborch.move_tenant('nobody', 'tn_pg', 'tn_pg2')$$);
SELECT * FROM dborch_test.error_report($$SELECT dborch.drop_tenant('tn_pg', 'nobody')$$);
SELECT * FROM dborch_test.error_report($$SELECT dborch.connection_string('tn_pg', 'nobody')$$);
-- a reserved name is simply no tenant of the deployment
SELECT dborch_test.tenant_error($$SELECT dborch.drop_tenant('tn_pg', 'postgres')$$);
SELECT dborch_test.tenant_error($$SELECT dborch.connection_string('tn_redis', 'default')$$);

--
-- Moves that cannot be: to itself and between engines (22023), to a
-- deployment that holds the tenant already (42710), to or from an unknown
-- deployment (42704).
--
SELECT dborch_test.tenant_error($$SELECT dborch.move_tenant('acme', 'tn_pg', 'tn_pg')$$);
SELECT dborch_test.tenant_error($$SELECT dborch.move_tenant('acme', 'tn_pg', 'tn_redis')$$);
SELECT dborch_test.tenant_error($$SELECT dborch.move_tenant('acme', 'tn_redis', 'tn_pg2')$$);
SELECT dborch_test.tenant_error($$SELECT dborch.move_tenant('acme', 'tn_pg', 'tn_pg2')$$);
SELECT dborch_test.tenant_error($$SELECT dborch.move_tenant('acme', 'tn_pg2', 'tn_pg')$$);
SELECT dborch_test.tenant_error($$SELECT dborch.move_tenant('acme', 'tn_pg', 'nope')$$);
SELECT dborch_test.tenant_error($$SELECT dborch.move_tenant('acme', 'nope', 'tn_pg')$$);
SELECT * FROM dborch_test.error_report($$SELECT dborch.move_tenant('acme', 'tn_pg', 'tn_pg')$$);
SELECT * FROM dborch_test.error_report($$SELECT dborch.move_tenant('acme', 'tn_pg', 'tn_redis')$$);
SELECT * FROM dborch_test.error_report($$SELECT dborch.move_tenant('acme', 'tn_pg', 'tn_pg2')$$);
-- A tenant still pending, or a target not ready, cannot move yet (55000).
SELECT * FROM dborch_test.error_report($$SELECT dborch.move_tenant('bare', 'tn_pg', 'tn_pg2')$$);
SELECT * FROM dborch_test.error_report($$SELECT dborch.move_tenant('bare', 'tn_redis', 'tn_redis2')$$);
-- A deployment still pending has no connection string yet, not even for
-- its tenants (55000).
SELECT * FROM dborch_test.error_report($$SELECT dborch.connection_string('tn_pg', 'bare')$$);
SELECT dborch_test.catalog_rows();
ROLLBACK;

SELECT dborch_test.catalog_rows();
SELECT dborch_test.tenant_count();

--
-- 50 tenants in one transaction: one tenants job for the batch, 50 pending
-- tenants, 50 secrets (50 different passwords).
--
BEGIN;
SELECT name, status FROM dborch.deploy('tn_batch', 'postgres');
SELECT count(*) AS created
FROM generate_series(1, 50) g, dborch.create_tenant('tn_batch', 'batch_' || g, '{"storage": "10MB"}');
SELECT kind, state, count(*) AS jobs
FROM dborch.jobs j JOIN dborch.deployments d ON d.id = j.deployment_id
WHERE d.name = 'tn_batch' GROUP BY kind, state ORDER BY kind COLLATE "C";
SELECT status, count(*) FROM dborch.tenants WHERE deployment = 'tn_batch' GROUP BY status;
SELECT count(*) AS tenant_secrets FROM dborch.secrets s JOIN dborch.deployments d ON d.id = s.deployment_id
WHERE d.name = 'tn_batch' AND s.name LIKE 'tenant:batch\_%';
SELECT count(DISTINCT s.value) AS distinct_passwords FROM dborch.secrets s
WHERE s.name LIKE 'tenant:batch\_%';
-- creating them all again changes nothing
SELECT dborch_test.tenant_error($$SELECT count(*) FROM generate_series(1, 50) g, dborch.create_tenant('tn_batch', 'batch_' || g, '{"storage": "10240kB"}')$$);
-- and the next batch of the same transaction joins the queued job
SELECT name, status FROM dborch.create_tenant('tn_batch', 'batch_late');
SELECT count(*) AS tenants_jobs FROM dborch.jobs j JOIN dborch.deployments d ON d.id = j.deployment_id
WHERE d.name = 'tn_batch' AND j.kind = 'tenants';
ROLLBACK;

--
-- What the jobs would do, by hand (as in rls.sql): the deployments ready
-- with an instance and a password, the tenants active.  Then connection
-- strings, moves and drops.
--
BEGIN;
SELECT name, status FROM dborch.deploy('tn_pg', 'postgres');
SELECT name, status FROM dborch.deploy('tn_pg2', 'postgres');
SELECT name, status FROM dborch.deploy('tn_redis', 'redis', '{"memory": "64MB"}');
SELECT deployment, name, status FROM dborch.create_tenant('tn_pg', 'acme', '{"storage": "50MB"}');
SELECT deployment, name, status FROM dborch.create_tenant('tn_pg', 'beta');
SELECT deployment, name, status FROM dborch.create_tenant('tn_redis', 'acme', '{"max_keys": 100}');
SELECT deployment, name, status FROM dborch.create_tenant('tn_pg2', 'gamma');
RESET ROLE;
INSERT INTO dborch.instances (deployment_id, host, port, data_directory, status)
SELECT id, '127.0.0.1',
	   CASE name WHEN 'tn_pg' THEN 32011 WHEN 'tn_pg2' THEN 32012 ELSE 32013 END,
	   '/regress/' || name, 'running'
FROM dborch.deployments WHERE name LIKE 'tn\_%';
INSERT INTO dborch.secrets (deployment_id, name, owner, value)
SELECT id, 'password', owner, 'secret_of_' || name FROM dborch.deployments WHERE name LIKE 'tn\_%';
UPDATE dborch.deployments SET status = 'ready' WHERE name LIKE 'tn\_%';
UPDATE dborch.jobs j SET state = 'succeeded', attempts = 1
FROM dborch.deployments d WHERE d.id = j.deployment_id AND d.name LIKE 'tn\_%';
UPDATE dborch.tenants SET status = 'active' WHERE deployment LIKE 'tn\_%';
SET ROLE regress_dborch_erin;

-- The tenant's own URI: its name and password, the deployment's host and port.
SELECT regexp_replace(regexp_replace(dborch.connection_string('tn_pg', 'acme'), ':[A-Za-z0-9]{32}@', ':<password>@'),
                      'sslrootcert=.*$', 'sslrootcert=<CA file>') AS uri;
SELECT regexp_replace(dborch.connection_string('tn_redis', 'acme'), ':[A-Za-z0-9]{32}@', ':<password>@') AS uri;
SELECT regexp_replace(dborch.connection_string('tn_pg', 'acme'), '\?.*$', '') =
	   format('postgresql://acme:%s@127.0.0.1:32011/postgres',
			  (SELECT value FROM dborch.secrets s JOIN dborch.deployments d ON d.id = s.deployment_id
				WHERE d.name = 'tn_pg' AND s.name = 'tenant:acme')) AS uri_has_the_tenant_password;
-- the tenant names its own deployment: the other one does not know it
SELECT dborch_test.tenant_error($$SELECT dborch.connection_string('tn_pg2', 'acme')$$);
SELECT dborch_test.tenant_error($$SELECT dborch.connection_string('tn_pg', 'acme', 'sideways')$$);

-- frank may not touch erin's deployments' tenants (42501), nor see them.
SET ROLE regress_dborch_frank;
SELECT dborch_test.tenant_error($$SELECT dborch.create_tenant('tn_pg', 'frank')$$);
SELECT dborch_test.tenant_error($$SELECT dborch.drop_tenant('tn_pg', 'acme')$$);
SELECT dborch_test.tenant_error($$SELECT dborch.move_tenant('acme', 'tn_pg', 'tn_pg2')$$);
SELECT dborch_test.tenant_error($$SELECT dborch.connection_string('tn_pg', 'acme')$$);
SELECT count(*) AS tenants_frank_sees FROM dborch.tenants;
SELECT count(*) AS tenant_secrets_frank_sees FROM dborch.secrets WHERE name LIKE 'tenant:%';
SET ROLE regress_dborch_erin;

-- A target that is not ready yet takes no move (55000).
SELECT name, status FROM dborch.deploy('tn_pg3', 'postgres');
SELECT * FROM dborch_test.error_report($$SELECT dborch.move_tenant('acme', 'tn_pg', 'tn_pg3')$$);

-- A move: a queued move_tenant job of the source, the tenant moving.
SELECT d.name AS deployment, j.kind, j.state, j.args ? 'tenant_id' AS has_tenant_id,
	   (j.args ->> 'target_id')::bigint = (SELECT id FROM dborch.deployments WHERE name = 'tn_pg2') AS target_ok
FROM dborch.move_tenant('acme', 'tn_pg', 'tn_pg2') j
JOIN dborch.deployments d ON d.id = j.deployment_id;
SELECT * FROM dborch_test.tenant_rows();
SELECT kind, message FROM dborch.events WHERE kind LIKE 'tenant%' ORDER BY id;
-- while it moves: no second move (55000), no drop (55000), create_tenant
-- with its quota returns it, the URI still works
SELECT * FROM dborch_test.error_report($$SELECT dborch.move_tenant('acme', 'tn_pg', 'tn_pg2')$$);
SELECT * FROM dborch_test.error_report($$SELECT dborch.drop_tenant('tn_pg', 'acme')$$);
SELECT name, status FROM dborch.create_tenant('tn_pg', 'acme', '{"storage": "50MB"}');
SELECT dborch.connection_string('tn_pg', 'acme') IS NOT NULL AS has_uri;
-- the target holds a tenant of that name (pending there): 42710
SELECT deployment, name, status FROM dborch.create_tenant('tn_pg', 'gamma');
SELECT * FROM dborch_test.error_report($$SELECT dborch.move_tenant('gamma', 'tn_pg2', 'tn_pg')$$);
-- a tenant still pending on a ready deployment has no connection string
-- yet (55000), and the hint points at its job
SELECT regexp_replace(r, 'deployment_id = [0-9]+', 'deployment_id = N') AS report
FROM dborch_test.error_report($$SELECT dborch.connection_string('tn_pg', 'gamma')$$) AS r;

-- A drop: the tenant is dropping, one tenants job; a second drop is the same.
SELECT deployment, name, status FROM dborch.drop_tenant('tn_pg', 'beta');
SELECT dborch_test.tenant_error($$SELECT dborch.drop_tenant('tn_pg', 'beta')$$);
SELECT deployment, name, status FROM dborch.drop_tenant('tn_redis', 'acme');
SELECT d.name AS deployment, j.kind, j.state
FROM dborch.jobs j JOIN dborch.deployments d ON d.id = j.deployment_id
WHERE j.state = 'queued' ORDER BY d.name COLLATE "C", j.kind COLLATE "C";
SELECT kind, deployment, message FROM dborch.events WHERE kind LIKE 'tenant%' ORDER BY id;
SELECT * FROM dborch_test.tenant_rows();
-- no event, job or error holds a tenant password
SELECT count(*) AS leaks
FROM dborch.secrets s, dborch.events e
WHERE s.name LIKE 'tenant:%' AND (position(s.value IN e.message) > 0 OR position(s.value IN e.detail::text) > 0);
SELECT count(*) AS leaks
FROM dborch.secrets s, dborch.jobs j
WHERE s.name LIKE 'tenant:%' AND position(s.value IN j.args::text || coalesce(j.error, '')) > 0;
ROLLBACK;

-- A deployment on its way out takes no tenant (55000).
BEGIN;
SELECT name, status FROM dborch.deploy('tn_gone', 'postgres');
SELECT name, status FROM dborch.destroy('tn_gone');
SELECT dborch_test.tenant_error($$SELECT dborch.create_tenant('tn_gone', 'acme')$$);
ROLLBACK;

SELECT dborch_test.catalog_rows();
SELECT dborch_test.tenant_count();

RESET ROLE;
DROP ROLE regress_dborch_erin, regress_dborch_frank;
DROP SCHEMA dborch_test CASCADE;
