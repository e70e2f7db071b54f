-- Smoke test: the control plane has dborch installed at the library's version.
BEGIN;
SELECT plan(2);
SELECT has_extension('dborch', 'dborch is installed');
SELECT is((SELECT extversion FROM pg_extension WHERE extname = 'dborch'), '0.1', 'version 0.1');
SELECT * FROM finish();
ROLLBACK;
