--
-- upgrade: releases and the update path.
--   1. Version 0.1 is released: its install script is byte for byte the one
--      of commit d2e54f5 (SHA-256 below), whatever changes later.
--   2. A fresh install (the default version) and an install of 0.1 updated
--      with ALTER EXTENSION dborch UPDATE have exactly the same objects,
--      columns and defaults, constraints, indexes, function and view
--      definitions, comments, privileges and policies.
--   3. While the catalog is at 0.1 and the library newer, the SQL functions
--      refuse with 55000 and a hint naming ALTER EXTENSION dborch UPDATE.
--   4. The update queues an upgrade job for every deployment in service.
--
CREATE EXTENSION IF NOT EXISTS dborch;
SET client_min_messages = warning;

DROP SCHEMA IF EXISTS dborch_test CASCADE;
CREATE SCHEMA dborch_test;

-- 1. The released install script of 0.1, as installed.
SELECT encode(sha256(pg_read_binary_file(
			(SELECT setting FROM pg_config WHERE name = 'SHAREDIR') || '/extension/dborch--0.1.sql')), 'hex')
	   = '5387fc4b413f36f36a4f30a51a41f71b922e6852a1174e61979718da8f251502' AS released_0_1_unchanged;

-- Everything the extension defines, as one sorted list of text lines.
CREATE FUNCTION dborch_test.extension_objects() RETURNS SETOF text
LANGUAGE sql AS $f$
	SELECT o FROM (
		SELECT pg_describe_object(d.classid, d.objid, 0) AS o
		FROM pg_depend d
		WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
		  AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'dborch')
		UNION ALL
		SELECT format('%s %s %s', c.relname, a.grantee::regrole, a.privilege_type)
		FROM pg_class c, aclexplode(c.relacl) a
		WHERE c.relnamespace = 'dborch'::regnamespace AND a.grantee <> c.relowner
		UNION ALL
		SELECT format('%s %s %s', p.oid::regprocedure,
					  CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END,
					  a.privilege_type)
		FROM pg_proc p, aclexplode(p.proacl) a
		WHERE p.pronamespace = 'dborch'::regnamespace AND a.grantee <> p.proowner
		UNION ALL
		SELECT format('policy %s on %s for %s to %s using %s check %s', policyname, tablename,
					  cmd, roles, qual, with_check)
		FROM pg_policies WHERE schemaname = 'dborch'
		UNION ALL
		SELECT format('rls on %s', c.relname)
		FROM pg_class c
		WHERE c.relnamespace = 'dborch'::regnamespace AND c.relrowsecurity
		UNION ALL
		SELECT format('config table %s', c::regclass)
		FROM pg_extension e, unnest(e.extconfig) AS c
		WHERE e.extname = 'dborch'
		UNION ALL
		SELECT format('column %s.%s %s%s default %s', c.relname, a.attname,
					  format_type(a.atttypid, a.atttypmod), CASE WHEN a.attnotnull THEN ' not null' END,
					  pg_get_expr(ad.adbin, ad.adrelid))
		FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
		LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
		WHERE c.relnamespace = 'dborch'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
		UNION ALL
		SELECT format('constraint %s on %s: %s', conname, conrelid::regclass, pg_get_constraintdef(oid))
		FROM pg_constraint WHERE connamespace = 'dborch'::regnamespace
		UNION ALL
		SELECT format('index %s', pg_get_indexdef(indexrelid))
		FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
		WHERE c.relnamespace = 'dborch'::regnamespace
		UNION ALL
		SELECT format('trigger %s', pg_get_triggerdef(t.oid))
		FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
		WHERE c.relnamespace = 'dborch'::regnamespace AND NOT t.tgisinternal
		UNION ALL
		SELECT format('function %s: %s', p.oid::regprocedure, md5(pg_get_functiondef(p.oid)))
		FROM pg_proc p WHERE p.pronamespace = 'dborch'::regnamespace
		UNION ALL
		SELECT format('view %s: %s', c.relname, md5(pg_get_viewdef(c.oid)))
		FROM pg_class c WHERE c.relnamespace = 'dborch'::regnamespace AND c.relkind = 'v'
		UNION ALL
		SELECT format('comment on %s: %s', pg_describe_object(d.classoid, d.objoid, d.objsubid), d.description)
		FROM pg_description d
		WHERE (d.classoid = 'pg_class'::regclass
			   AND d.objoid IN (SELECT oid FROM pg_class WHERE relnamespace = 'dborch'::regnamespace))
		   OR (d.classoid = 'pg_proc'::regclass
			   AND d.objoid IN (SELECT oid FROM pg_proc WHERE pronamespace = 'dborch'::regnamespace))
		) AS x
	ORDER BY o COLLATE "C"
$f$;

SELECT extname, extversion FROM pg_extension WHERE extname = 'dborch';
SELECT version, superuser, relocatable, schema, requires
FROM pg_available_extension_versions WHERE name = 'dborch'
ORDER BY version COLLATE "C";
SELECT default_version FROM pg_available_extensions WHERE name = 'dborch';

-- 2. A fresh install, recorded.
CREATE TABLE dborch_test.fresh AS SELECT dborch_test.extension_objects() AS o;
SELECT count(*) > 300 AS many_objects FROM dborch_test.fresh;

-- Drop it: the catalog goes, the cluster-wide roles stay.  (PostgreSQL
-- creates the schema named in the control file but does not make it a
-- member of the extension, so the schema stays too, empty.)
DROP EXTENSION dborch;
SELECT count(*) AS dborch_extensions FROM pg_extension WHERE extname = 'dborch';
SELECT count(*) AS dborch_schemas FROM pg_namespace WHERE nspname = 'dborch';
SELECT (SELECT count(*) FROM pg_class WHERE relnamespace = 'dborch'::regnamespace) AS relations,
	   (SELECT count(*) FROM pg_proc WHERE pronamespace = 'dborch'::regnamespace) AS functions;
SELECT rolname FROM pg_roles WHERE rolname IN ('dborch_admin', 'dborch_user')
ORDER BY rolname COLLATE "C";

-- Version 0.1, as a user of the released version has it, with a deployment
-- in service (written by hand: no instance runs) and a destroyed one.
CREATE EXTENSION dborch VERSION '0.1';
SELECT extname, extversion FROM pg_extension WHERE extname = 'dborch';
INSERT INTO dborch.deployments (name, engine, owner, spec, memory_bytes, status)
VALUES ('up_live', 'redis', 'postgres', '{}', 16777216, 'ready'),
	   ('up_gone', 'redis', 'postgres', '{}', 16777216, 'destroyed');

-- 3. The library is newer than the catalog: the functions refuse, clearly.
CREATE FUNCTION dborch_test.refusal(stmt text) RETURNS text
LANGUAGE plpgsql AS $f$
DECLARE
	st text; msg text; hnt text;
BEGIN
	EXECUTE stmt;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, hnt = PG_EXCEPTION_HINT;
	RETURN st || ' | ' || msg || ' | ' || hnt;
END
$f$;
SELECT dborch_test.refusal($$SELECT dborch.deploy('up_new', 'redis')$$) AS deploy;
SELECT dborch_test.refusal($$SELECT dborch.connection_string('up_live')$$) AS connection_string;

-- The update: the same objects as the fresh install, nothing missing or extra.
ALTER EXTENSION dborch UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'dborch';
SELECT o AS missing FROM dborch_test.fresh
EXCEPT SELECT dborch_test.extension_objects();
SELECT o AS extra FROM (SELECT dborch_test.extension_objects() AS o) AS x
EXCEPT SELECT o FROM dborch_test.fresh;

-- 4. The deployment in service gets an upgrade job; the destroyed one none.
SELECT d.name, j.kind, j.max_attempts >= 20 AS patient
FROM dborch.jobs j JOIN dborch.deployments d ON d.id = j.deployment_id
ORDER BY d.name COLLATE "C";

-- Updating at the latest version changes nothing.
SET client_min_messages = notice;
ALTER EXTENSION dborch UPDATE;
SET client_min_messages = warning;
SELECT count(*) AS changed
FROM ((SELECT o FROM dborch_test.fresh EXCEPT SELECT dborch_test.extension_objects())
	  UNION ALL
	  (SELECT dborch_test.extension_objects() EXCEPT SELECT o FROM dborch_test.fresh)) AS d;

-- Versions without a script are refused, and change nothing.
DO $$
BEGIN
	ALTER EXTENSION dborch UPDATE TO '99.0';
EXCEPTION WHEN OTHERS THEN
	RAISE WARNING '%: %', SQLSTATE, SQLERRM;
END
$$;
DO $$
BEGIN
	ALTER EXTENSION dborch UPDATE TO '0.1';
EXCEPTION WHEN OTHERS THEN
	RAISE WARNING '%: %', SQLSTATE, SQLERRM;
END
$$;
DROP EXTENSION dborch;
DO $$
BEGIN
	CREATE EXTENSION dborch VERSION '99.0';
EXCEPTION WHEN OTHERS THEN
	RAISE WARNING '%: %', SQLSTATE, SQLERRM;
END
$$;
SELECT count(*) AS dborch_extensions FROM pg_extension WHERE extname = 'dborch';
CREATE EXTENSION dborch;
SELECT extversion FROM pg_extension WHERE extname = 'dborch';

-- The recreated extension works: the library accepts its version.
BEGIN;
SELECT name, engine, spec, status FROM dborch.deploy('after_upgrade', 'postgres');
SELECT dborch.deployment('after_upgrade') ->> 'status' AS status;
ROLLBACK;
SELECT count(*) AS deployments FROM dborch.deployments;

DROP SCHEMA dborch_test CASCADE;
