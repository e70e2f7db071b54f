-- A synchronous PostgreSQL deployment whose only replica cannot be brought
-- back: deployed with {"synchronous": true, "replicas": 1}, its primary
-- waits for the replica at commit; the replica's configuration is broken and
-- its postmaster killed (kill -9), with dborch.job_max_attempts = 1, so the
-- recover job gives up and the deployment is failed.  The primary must then
-- stop waiting for it: synchronous_standby_names is empty again and a
-- commit returns at once.
--
-- Autocommit mode and ON_ERROR_STOP off: see 10_postgres.sql.
\set ON_ERROR_STOP 0
\getenv test_dir DBORCH_TEST_DIR
SET client_min_messages = warning;
\ir helpers.psql

SELECT plan(9);

SELECT id AS dep_id FROM dborch.deploy('tap_sync_pg', 'postgres', '{"memory": "32MB", "synchronous": true, "replicas": 1}') \gset
SELECT is((SELECT status FROM dborch.wait('tap_sync_pg', '120s')), 'ready', 'the deployment is ready, with its replica');
SELECT id AS r_id, pid AS r_pid, data_directory AS r_dir FROM dborch.instances
 WHERE deployment_id = :dep_id AND role = 'replica' AND status = 'running' \gset
SELECT dborch.connection_string('tap_sync_pg') AS w_uri \gset
-- (the walsender takes up the reloaded setting a moment after the primary does)
\set out `for i in $(seq 1 100); do r=$(PGCONNECT_TIMEOUT=5 psql :'w_uri' -XAtq -c 'SHOW synchronous_standby_names' -c "SELECT string_agg(sync_state, ',') FROM pg_stat_replication" 2>&1 | tr '\n' ' '); [ "$r" = 'ANY 1 (*) quorum ' ] && break; sleep 0.1; done; echo "$r"`
SELECT is(:'out'::text, 'ANY 1 (*) quorum ', 'the primary waits for its replica at commit');

-- the replica cannot start again: a line PostgreSQL refuses in its configuration
\set out `echo 'this is not a setting' >> :'r_dir'/data/postgresql.conf && echo broken`
SELECT is(:'out'::text, 'broken', 'the replica''s configuration is broken');
ALTER SYSTEM SET dborch.job_max_attempts = 1;
SELECT pg_reload_conf() \g /dev/null
SELECT pg_sleep(0.3) \g /dev/null
\set out `kill -9 :r_pid 2>&1 && echo killed`
SELECT is(:'out'::text, 'killed', 'the replica''s postmaster is killed (kill -9)');
SELECT ok(pg_temp.tap_until(format($$SELECT status = 'failed' FROM dborch.deployments WHERE id = %s$$, :dep_id), '60s'),
          'recovery gives up after one attempt: the deployment is failed');
SELECT ok(pg_temp.tap_until(format($$SELECT count(*) = 1 AND bool_and(state = 'failed') FROM dborch.jobs
                                     WHERE deployment_id = %s AND kind = 'recover'$$, :dep_id), '30s'),
          'one recover job, failed');
\set out `PGCONNECT_TIMEOUT=5 psql :'w_uri' -XAtqc 'SHOW synchronous_standby_names' 2>&1`
SELECT is(:'out'::text, '', 'the primary no longer waits for the replica given up on');
\set out `PGCONNECT_TIMEOUT=5 PGOPTIONS='-c statement_timeout=5s' psql :'w_uri' -XAtq -c 'CREATE TABLE tap_sync (i int)' -c 'INSERT INTO tap_sync VALUES (1) RETURNING i' 2>&1`
SELECT is(:'out'::text, '1', 'a commit on the primary returns at once');

ALTER SYSTEM RESET dborch.job_max_attempts;
SELECT pg_reload_conf() \g /dev/null
SELECT is((SELECT status FROM dborch.destroy('tap_sync_pg')), 'destroying', 'destroy() of the failed deployment');
SELECT pg_temp.tap_settle('tap_sync_pg', '60s') AS end_status \gset

SELECT * FROM finish();

-- Safety net after a failure above: no changed setting, no deployment of this file left.
ALTER SYSTEM RESET dborch.job_max_attempts;
SELECT pg_reload_conf() \g /dev/null
SELECT count(dborch.destroy(name)) AS n FROM dborch.deployments
 WHERE name = 'tap_sync_pg' AND status NOT IN ('destroyed', 'destroying') \gset
SELECT count(pg_temp.tap_settle(name, '60s')) AS n FROM dborch.deployments
 WHERE name = 'tap_sync_pg' AND status = 'destroying' \gset
