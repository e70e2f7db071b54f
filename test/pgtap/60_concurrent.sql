-- Several deployments queued in one transaction run side by side: each gets
-- its own port and directory, answers its clients, and one transaction of
-- destroy() calls removes them all.
--
-- Autocommit mode outside the explicit transactions, ON_ERROR_STOP off: see
-- 10_postgres.sql.
\set ON_ERROR_STOP 0
SET client_min_messages = warning;
\ir helpers.psql

SELECT plan(14);

BEGIN;
SELECT count(*) AS n FROM (
  SELECT dborch.deploy('tap_many_pg1', 'postgres', '{"memory": "32MB"}')
  UNION ALL SELECT dborch.deploy('tap_many_pg2', 'postgres', '{"memory": "48MB"}')
  UNION ALL SELECT dborch.deploy('tap_many_r1', 'redis', '{"memory": "16MB"}')
  UNION ALL SELECT dborch.deploy('tap_many_r2', 'redis', '{"memory": "24MB"}')) s \gset
COMMIT;
SELECT is(:n::int, 4, 'four deployments queued in one transaction');

SELECT results_eq($$SELECT name, (dborch.wait(name, '60s')).status FROM dborch.deployments
                    WHERE name LIKE 'tap\_many\_%' AND status <> 'destroyed' ORDER BY name$$,
                  $$VALUES ('tap_many_pg1', 'ready'), ('tap_many_pg2', 'ready'),
                           ('tap_many_r1', 'ready'), ('tap_many_r2', 'ready')$$,
                  'all four become ready');
SELECT is((SELECT count(DISTINCT i.port) FROM dborch.instances i JOIN dborch.deployments d ON d.id = i.deployment_id
            WHERE d.name LIKE 'tap\_many\_%' AND i.status = 'running'), 4::bigint,
          'each has its own port');
SELECT is((SELECT count(DISTINCT i.data_directory) FROM dborch.instances i JOIN dborch.deployments d ON d.id = i.deployment_id
            WHERE d.name LIKE 'tap\_many\_%' AND i.status = 'running'), 4::bigint,
          'each has its own directory');
SELECT string_agg(i.port::text, '|') AS ports, string_agg(i.data_directory, ' ') AS dirs
  FROM dborch.instances i JOIN dborch.deployments d ON d.id = i.deployment_id
 WHERE d.name LIKE 'tap\_many\_%' AND i.status = 'running' \gset

SELECT dborch.connection_string('tap_many_pg1') AS pg1, dborch.connection_string('tap_many_pg2') AS pg2,
       dborch.connection_string('tap_many_r1') AS r1, dborch.connection_string('tap_many_r2') AS r2 \gset
SELECT pg_temp.tap_dborch_uri(:'r1', 'tap_many_r1') AS r1a, pg_temp.tap_dborch_uri(:'r2', 'tap_many_r2') AS r2a \gset
\set out `PGCONNECT_TIMEOUT=5 psql :'pg1' -XAtqc "SELECT current_setting('cluster_name') || ' ' || current_setting('shared_buffers')" 2>&1`
SELECT is(:'out'::text, 'tap_many_pg1 32MB', 'tap_many_pg1 answers with its own settings');
\set out `PGCONNECT_TIMEOUT=5 psql :'pg2' -XAtqc "SELECT current_setting('cluster_name') || ' ' || current_setting('shared_buffers')" 2>&1`
SELECT is(:'out'::text, 'tap_many_pg2 48MB', 'tap_many_pg2 answers with its own settings');
\set out `timeout 10 redis-cli -u :'r1a' --no-auth-warning CONFIG GET maxmemory 2>&1 | tail -1`
SELECT is(:'out'::text, (16 * 1024 * 1024)::text, 'tap_many_r1 answers with its own maxmemory');
\set out `timeout 10 redis-cli -u :'r2a' --no-auth-warning CONFIG GET maxmemory 2>&1 | tail -1`
SELECT is(:'out'::text, (24 * 1024 * 1024)::text, 'tap_many_r2 answers with its own maxmemory');
SELECT regexp_replace(:'r1', ':[^:@/]+@', ':' || split_part(split_part(:'r2', '@', 1), ':', 3) || '@') AS r1_with_r2_pw \gset
\set out `timeout 10 redis-cli -u :'r1_with_r2_pw' --no-auth-warning PING 2>&1`
SELECT matches(:'out'::text, 'WRONGPASS', 'the password of one deployment does not open another');

SELECT string_agg(id::text, ',') AS many_ids FROM dborch.deployments
 WHERE name LIKE 'tap\_many\_%' AND status NOT IN ('destroyed', 'destroying') \gset
BEGIN;
SELECT count(dborch.destroy(name)) AS n FROM dborch.deployments
 WHERE name LIKE 'tap\_many\_%' AND status NOT IN ('destroyed', 'destroying') \gset
COMMIT;
SELECT is(:n::int, 4, 'four destroy() calls in one transaction');
-- (by id: a fast destroy may be over before the next line reads its status)
SELECT results_eq(format($$SELECT name, (dborch.wait(name, '60s')).status FROM dborch.deployments
                           WHERE id IN (%s) ORDER BY name$$, :'many_ids'),
                  $$VALUES ('tap_many_pg1', 'destroyed'), ('tap_many_pg2', 'destroyed'),
                           ('tap_many_r1', 'destroyed'), ('tap_many_r2', 'destroyed')$$,
                  'all four are destroyed');
\set out `ss -Htln | awk '{print $4}' | grep -cE -- ':(:ports)$'`
SELECT is(:'out'::text, '0', 'nothing listens on their ports');
\set out `ls -d :dirs 2>/dev/null | wc -l`
SELECT is(:'out'::text, '0', 'their directories are gone');
\set out `for p in /proc/[0-9]*; do readlink $p/cwd; done 2>/dev/null | grep -c '/instances/tap_many_'`
SELECT is(:'out'::text, '0', 'no process works in their directories');

SELECT * FROM finish();

-- Safety net after a failure above: leave no deployment of this file behind.
SELECT count(dborch.destroy(name)) AS n FROM dborch.deployments
 WHERE name LIKE 'tap\_many\_%' AND status NOT IN ('destroyed', 'destroying') \gset
SELECT count(dborch.wait(name)) AS n FROM dborch.deployments
 WHERE name LIKE 'tap\_many\_%' AND status = 'destroying' \gset
