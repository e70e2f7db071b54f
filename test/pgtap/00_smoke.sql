-- Smoke test: the control plane has dborch installed at the library's version,
-- its launcher runs, and managed instances go under $DBORCH_TEST_DIR/managed,
-- where the other files look for them.
\getenv test_dir DBORCH_TEST_DIR
BEGIN;
SELECT plan(5);
SELECT has_extension('dborch', 'dborch is installed');
SELECT is((SELECT extversion FROM pg_extension WHERE extname = 'dborch'), '0.2', 'version 0.2');
SELECT is((SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'dborch launcher'), 1::bigint,
          'one dborch launcher runs');
SELECT ok(:{?test_dir}, 'DBORCH_TEST_DIR is set');
SELECT is(current_setting('dborch.data_directory'), :'test_dir' || '/managed',
          'dborch.data_directory is $DBORCH_TEST_DIR/managed');
SELECT * FROM finish();
ROLLBACK;
