--
-- catalog: what CREATE EXTENSION dborch installs.  Tables, columns, types,
-- defaults, constraints and indexes; row-level security and policies;
-- privileges; the SQL API's signatures, search_path and grants; the roles;
-- the GUCs.  Listed from the system catalogs in a stable order (\d output
-- is too version-dependent).
--
CREATE EXTENSION IF NOT EXISTS dborch;
SET client_min_messages = warning;

SELECT e.extname, e.extversion, e.extrelocatable, e.extnamespace::regnamespace AS schema,
	   (SELECT array_agg(r.extname::text ORDER BY r.extname COLLATE "C")
		FROM pg_depend d JOIN pg_extension r ON r.oid = d.refobjid
		WHERE d.classid = 'pg_extension'::regclass AND d.objid = e.oid
		  AND d.refclassid = 'pg_extension'::regclass) AS requires
FROM pg_extension e WHERE e.extname = 'dborch';

-- Tables kept in pg_dump output.
SELECT c::regclass AS config_table
FROM pg_extension e, unnest(e.extconfig) AS c
WHERE e.extname = 'dborch'
ORDER BY c::regclass::text COLLATE "C";

-- Everything the extension owns, by kind.
SELECT pg_describe_object(d.classid, d.objid, 0) AS object
FROM pg_depend d
WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
  AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'dborch')
ORDER BY pg_describe_object(d.classid, d.objid, 0) COLLATE "C";

--
-- Roles: cluster-wide, created by the install script if missing.
--
SELECT rolname, rolcanlogin, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolbypassrls
FROM pg_roles WHERE rolname IN ('dborch_admin', 'dborch_user')
ORDER BY rolname COLLATE "C";

-- The schema: usage for the two groups, nothing for PUBLIC.
SELECT * FROM (
	SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END AS grantee,
		   a.privilege_type
	FROM pg_namespace n, aclexplode(n.nspacl) a
	WHERE n.nspname = 'dborch' AND a.grantee <> n.nspowner) AS g
ORDER BY grantee COLLATE "C", privilege_type COLLATE "C";

--
-- Tables and sequences, with their row-level security flags and comments.
--
SELECT c.relname, c.relkind, c.relrowsecurity, c.relforcerowsecurity,
	   obj_description(c.oid, 'pg_class') AS comment
FROM pg_class c
WHERE c.relnamespace = 'dborch'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
ORDER BY c.relkind, c.relname COLLATE "C";

-- Columns, in table order.
SELECT c.relname AS table_name, a.attnum, a.attname AS column_name,
	   format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS not_null,
	   a.attidentity AS identity, pg_get_expr(ad.adbin, ad.adrelid) AS default_value
FROM pg_class c
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum
WHERE c.relnamespace = 'dborch'::regnamespace AND c.relkind = 'r'
ORDER BY c.relname COLLATE "C", a.attnum;

-- Constraints.
SELECT conrelid::regclass AS table_name, conname, contype, pg_get_constraintdef(oid) AS definition
FROM pg_constraint
WHERE connamespace = 'dborch'::regnamespace
ORDER BY conrelid::regclass::text COLLATE "C", conname COLLATE "C";

-- Indexes.
SELECT tablename, indexname, indexdef
FROM pg_indexes
WHERE schemaname = 'dborch'
ORDER BY tablename COLLATE "C", indexname COLLATE "C";

-- No triggers, rules or views of its own.
SELECT count(*) AS triggers FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
WHERE c.relnamespace = 'dborch'::regnamespace AND NOT t.tgisinternal;

--
-- Row-level security: policies per table.
--
SELECT tablename, policyname, permissive, roles, cmd, qual, with_check
FROM pg_policies
WHERE schemaname = 'dborch'
ORDER BY tablename COLLATE "C", policyname COLLATE "C";

-- Every table users can read has row-level security.
SELECT c.relname
FROM pg_class c
WHERE c.relnamespace = 'dborch'::regnamespace AND c.relkind = 'r' AND NOT c.relrowsecurity
  AND (has_table_privilege('dborch_user', c.oid, 'SELECT')
	   OR has_table_privilege('dborch_admin', c.oid, 'SELECT'));

-- Table privileges (besides the owner's).
SELECT relname, grantee, string_agg(privilege_type, ', ' ORDER BY privilege_type COLLATE "C") AS privileges
FROM (
	SELECT c.relname::text AS relname, a.privilege_type,
		   CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END AS grantee
	FROM pg_class c, aclexplode(c.relacl) a
	WHERE c.relnamespace = 'dborch'::regnamespace AND a.grantee <> c.relowner) AS g
GROUP BY relname, grantee
ORDER BY relname COLLATE "C", grantee COLLATE "C";

--
-- The SQL API.
--
SELECT p.proname, pg_get_function_arguments(p.oid) AS arguments,
	   pg_get_function_result(p.oid) AS result
FROM pg_proc p
WHERE p.pronamespace = 'dborch'::regnamespace
ORDER BY p.proname COLLATE "C", pg_get_function_identity_arguments(p.oid) COLLATE "C";

SELECT p.oid::regprocedure AS function, l.lanname AS language, p.prokind, p.provolatile,
	   p.proisstrict, p.prosecdef, p.proconfig, p.prosrc
FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
WHERE p.pronamespace = 'dborch'::regnamespace
ORDER BY p.oid::regprocedure::text COLLATE "C";

SELECT p.oid::regprocedure AS function, obj_description(p.oid, 'pg_proc') AS comment
FROM pg_proc p
WHERE p.pronamespace = 'dborch'::regnamespace
ORDER BY p.oid::regprocedure::text COLLATE "C";

-- Grants on the functions (besides the owner's): the two groups, never PUBLIC.
SELECT p.oid::regprocedure AS function,
	   string_agg(CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END
				  || '=' || a.privilege_type, ', '
				  ORDER BY CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END
				  COLLATE "C") AS grants
FROM pg_proc p, aclexplode(p.proacl) a
WHERE p.pronamespace = 'dborch'::regnamespace AND a.grantee <> p.proowner
GROUP BY p.oid
ORDER BY p.oid::regprocedure::text COLLATE "C";

-- Checks that must hold for every function the extension will ever have:
-- none executable by PUBLIC (a NULL proacl means PUBLIC may), and each one
-- pins search_path.  Both lists must stay empty.
SELECT p.oid::regprocedure AS executable_by_public
FROM pg_proc p
WHERE p.pronamespace = 'dborch'::regnamespace
  AND (p.proacl IS NULL
	   OR EXISTS (SELECT 1 FROM aclexplode(p.proacl) a
				  WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE'));
SELECT p.oid::regprocedure AS search_path_not_pinned
FROM pg_proc p
WHERE p.pronamespace = 'dborch'::regnamespace
  AND NOT coalesce(p.proconfig @> ARRAY['search_path=pg_catalog, pg_temp'], false);

--
-- GUCs (boot values; test/regress.conf overrides some settings).
--
SELECT name, vartype, unit, context, min_val, max_val, boot_val
FROM pg_settings
WHERE name LIKE 'dborch.%'
ORDER BY name COLLATE "C";
