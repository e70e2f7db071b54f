--
-- upgrade: the scaffolding of the upgrade path.  The extension can be
-- dropped and created again at an explicit version, which installs exactly
-- what the default install does, and ALTER EXTENSION ... UPDATE is a no-op
-- at the latest version.  When dborch--0.1--0.2.sql arrives, this suite
-- creates VERSION '0.1', updates, and compares with a fresh install.
--
CREATE EXTENSION IF NOT EXISTS dborch;
SET client_min_messages = warning;

DROP SCHEMA IF EXISTS dborch_test CASCADE;
CREATE SCHEMA dborch_test;

-- The objects of the extension, and the privileges and policies on them,
-- as one sorted list of text lines.
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
		WHERE e.extname = 'dborch') AS x
	ORDER BY o COLLATE "C"
$f$;

SELECT extname, extversion FROM pg_extension WHERE extname = 'dborch';
SELECT version, superuser, relocatable, schema, requires
FROM pg_available_extension_versions WHERE name = 'dborch'
ORDER BY version COLLATE "C";
SELECT default_version FROM pg_available_extensions WHERE name = 'dborch';

CREATE TABLE dborch_test.installed AS SELECT dborch_test.extension_objects() AS o;
SELECT count(*) AS objects FROM dborch_test.installed;

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

-- Create it again at an explicit version: the same objects as before.
CREATE EXTENSION dborch VERSION '0.1';
SELECT extname, extversion, extrelocatable, extnamespace::regnamespace AS schema
FROM pg_extension WHERE extname = 'dborch';
SELECT o AS missing FROM dborch_test.installed
EXCEPT SELECT dborch_test.extension_objects();
SELECT o AS extra FROM (SELECT dborch_test.extension_objects() AS o) AS x
EXCEPT SELECT o FROM dborch_test.installed;

-- Updating at the latest version changes nothing.
SET client_min_messages = notice;
ALTER EXTENSION dborch UPDATE;
ALTER EXTENSION dborch UPDATE TO '0.1';
SET client_min_messages = warning;
SELECT extversion FROM pg_extension WHERE extname = 'dborch';
SELECT count(*) AS changed
FROM ((SELECT o FROM dborch_test.installed EXCEPT SELECT dborch_test.extension_objects())
	  UNION ALL
	  (SELECT dborch_test.extension_objects() EXCEPT SELECT o FROM dborch_test.installed)) AS d;

-- Versions without a script are refused, and change nothing.
DO $$
BEGIN
	ALTER EXTENSION dborch UPDATE TO '99.0';
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
