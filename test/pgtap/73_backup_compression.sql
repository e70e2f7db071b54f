-- The deploy option backup_compression: values are checked and normalized;
-- a PostgreSQL deployment without it has its backups and WAL compressed with
-- dborch's default (zstd: the repository's files end in .zst); one with
-- "none" stores them uncompressed (the backup row says compressed = false)
-- and restores from them; a Redis deployment takes zstd with a level, and
-- its snapshot at that level restores.
--
-- Autocommit mode and ON_ERROR_STOP off: see 10_postgres.sql.
\set ON_ERROR_STOP 0
\getenv test_dir DBORCH_TEST_DIR
SET client_min_messages = warning;
\ir helpers.psql

SELECT plan(23);

------------------------------------------------------------------------------
-- refusals (22023, nothing queued) and the normalized spec (in transactions
-- rolled back: the deployments never exist)
------------------------------------------------------------------------------
SELECT is(pg_temp.tap_error($$SELECT dborch.deploy('tap_cmp_x', 'postgres', '{"backup_compression": "xz"}')$$),
          '22023: invalid value for option "backup_compression": ''xz''', 'an unknown compression type is refused (22023)');
SELECT is(pg_temp.tap_error($$SELECT dborch.deploy('tap_cmp_x', 'postgres', '{"backup_compression": "lz4:13"}')$$),
          '22023: invalid value for option "backup_compression": ''lz4:13''', 'a level out of range is refused');
SELECT matches(pg_temp.tap_error_full($$SELECT dborch.deploy('tap_cmp_x', 'postgres', '{"backup_compression": "zst:"}')$$),
               '^22023: .*\| The level of zst is a whole number from 1 to 19\.', 'an empty level is refused, with the range');
SELECT matches(pg_temp.tap_error_full($$SELECT dborch.deploy('tap_cmp_x', 'postgres', '{"backup_compression": "none:1"}')$$),
               '^22023: .*\| "none" has no level\.', '"none" with a level is refused');
SELECT matches(pg_temp.tap_error_full($$SELECT dborch.deploy('tap_cmp_x', 'postgres', '{"backup_compression": 3}')$$),
               '^22023: ', 'a number is refused');
SELECT matches(pg_temp.tap_error_full($$SELECT dborch.deploy('tap_cmp_x', 'redis', '{"backup_compression": "lz4"}')$$),
               '^22023: .*\| .*Redis snapshot is compressed with zstd', 'Redis refuses another type, with a hint');
SELECT is((SELECT count(*) FROM dborch.deployments WHERE name = 'tap_cmp_x'), 0::bigint, 'no refused deploy left a row');
BEGIN;
SELECT is((SELECT array_agg(d.spec ->> 'backup_compression' ORDER BY d.name)
             FROM (VALUES ('tap_cmp_n1', 'zst'), ('tap_cmp_n2', 'gz:0'), ('tap_cmp_n3', 'bz2')) v(n, c),
             LATERAL (SELECT * FROM dborch.deploy(v.n, 'postgres', jsonb_build_object('backup_compression', v.c))) d),
          ARRAY['zst:3', 'gz:0', 'bz2:9'], 'a type alone gets its level: zst:3, bz2:9; gz:0 stays');
ROLLBACK;

------------------------------------------------------------------------------
-- PostgreSQL: the default, and "none"
------------------------------------------------------------------------------
SELECT id AS def_id FROM dborch.deploy('tap_cmp_def', 'postgres', '{"memory": "32MB"}') \gset
SELECT id AS none_id FROM dborch.deploy('tap_cmp_none', 'postgres', '{"memory": "32MB", "backup_compression": "none"}') \gset
SELECT is((SELECT spec ->> 'backup_compression' FROM dborch.deployments WHERE id = :none_id), 'none', 'the spec keeps "none"');
SELECT is((SELECT array_agg(status ORDER BY name) FROM (SELECT (dborch.wait(n, '120s')).* FROM unnest(ARRAY['tap_cmp_def', 'tap_cmp_none']) n) w),
          ARRAY['ready', 'ready'], 'both deployments are ready');
SELECT dborch.connection_string('tap_cmp_none') AS none_uri \gset
\set out `psql -X -q -A -t -d :'none_uri' -c "CREATE TABLE t AS SELECT g AS id, repeat('compressible ', 20) AS v FROM generate_series(1, 5000) g" -c "SELECT count(*) FROM t" 2>&1`
SELECT is(:'out'::text, '5000', 'rows are written to tap_cmp_none');

SELECT id AS def_b, job_id AS def_job FROM dborch.backup('tap_cmp_def') \gset
SELECT id AS none_b, job_id AS none_job FROM dborch.backup('tap_cmp_none') \gset
SELECT is(pg_temp.tap_job_result(:def_job), 'succeeded', 'the default deployment''s backup succeeds');
SELECT is(pg_temp.tap_job_result(:none_job), 'succeeded', 'the "none" deployment''s backup succeeds');
SELECT is((SELECT array_agg(compressed ORDER BY id) FROM dborch.backups WHERE id IN (:def_b, :none_b)),
          ARRAY[true, false], 'the backup rows say compressed, and not compressed');
SELECT label AS def_label FROM dborch.backups WHERE id = :def_b \gset
SELECT label AS none_label FROM dborch.backups WHERE id = :none_b \gset
\set out `find :'test_dir'/managed/backups/tap_cmp_def-:'def_id'/repo/backup/tap_cmp_def/:'def_label'/pg_data -maxdepth 1 -type f -name 'PG_VERSION*' -printf '%f\n'`
SELECT is(:'out'::text, 'PG_VERSION.zst', 'the default deployment''s repository holds zstd files');
\set out `find :'test_dir'/managed/backups/tap_cmp_none-:'none_id'/repo/backup/tap_cmp_none/:'none_label'/pg_data -maxdepth 1 -type f -name 'PG_VERSION*' -printf '%f\n'`
SELECT is(:'out'::text, 'PG_VERSION', 'the "none" deployment''s repository holds uncompressed files');
SELECT ok((SELECT stored_bytes >= size_bytes * 0.9 FROM dborch.backups WHERE id = :none_b)
          AND (SELECT stored_bytes < size_bytes * 0.5 FROM dborch.backups WHERE id = :def_b),
          'stored_bytes: about the size uncompressed, far below it with zstd');

SELECT 1 FROM dborch.restore('tap_cmp_none', backup => :none_b, new_name => 'tap_cmp_none_r') \gset
SELECT is((SELECT status FROM dborch.wait('tap_cmp_none_r', '120s')), 'ready', 'the uncompressed backup restores into a new deployment');
SELECT dborch.connection_string('tap_cmp_none_r') AS r_uri \gset
\set out `psql -X -q -A -t -d :'r_uri' -c "SELECT count(*) FROM t" 2>&1`
SELECT is(:'out'::text, '5000', 'with the rows of the backup');

------------------------------------------------------------------------------
-- Redis with a zstd level
------------------------------------------------------------------------------
SELECT 1 FROM dborch.deploy('tap_cmp_redis', 'redis', '{"memory": "16MB", "backup_compression": "zst:9"}') \gset
SELECT is((SELECT status FROM dborch.wait('tap_cmp_redis', '60s')), 'ready', 'a Redis deployment with zst:9 is ready');
SELECT dborch.connection_string('tap_cmp_redis') AS redis_uri \gset
\set out `timeout 10 redis-cli -u :'redis_uri' --no-auth-warning SET tap:k level-nine 2>&1`
SELECT job_id AS redis_job, id AS redis_b FROM dborch.backup('tap_cmp_redis') \gset
SELECT is(pg_temp.tap_job_result(:redis_job), 'succeeded', 'its backup at zstd level 9 succeeds');
SELECT 1 FROM dborch.restore('tap_cmp_redis', backup => :redis_b, new_name => 'tap_cmp_redis_r') \gset
SELECT is((SELECT status FROM dborch.wait('tap_cmp_redis_r', '60s')), 'ready', 'and restores');
SELECT dborch.connection_string('tap_cmp_redis_r') AS rr_uri \gset
\set out `timeout 10 redis-cli -u :'rr_uri' --no-auth-warning GET tap:k 2>&1`
SELECT is(:'out'::text, 'level-nine', 'with its key');

SELECT * FROM finish();

------------------------------------------------------------------------------
-- cleanup, also after a failure above
------------------------------------------------------------------------------
SELECT count(dborch.destroy(name, drop_backups => true)) AS n FROM dborch.deployments
 WHERE name LIKE 'tap\_cmp\_%' AND status NOT IN ('destroyed', 'destroying') \gset
SELECT count(pg_temp.tap_settle(name, '60s')) AS n FROM dborch.deployments
 WHERE name LIKE 'tap\_cmp\_%' AND status = 'destroying' \gset
