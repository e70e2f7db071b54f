-- Maintenance windows: a PostgreSQL memory change (it needs restarts) waits
-- for the deployment's window.  The file sets a window that opens at the
-- next whole minute at least 25 seconds away (UTC, 'ddd:hh24:mi-ddd:hh24:mi'),
-- asks for more memory on a deployment with one replica, and checks: the
-- change is listed in dborch.pending_changes with applies_at = the window's
-- start, defer => false is refused outside the window (55000), nothing
-- changes before the window (shared_buffers, catalog); once the window opens
-- the change is applied (replica restarted, switchover, former primary back
-- as a replica, shared_buffers the new size on both), the rows are there and
-- the deployment accepts writes.  Inside the window defer => false is
-- accepted and applied at once; a Redis memory change never waits.  Also the
-- refusals of set_maintenance_window().  Takes up to about two minutes (the
-- wait for the window).
--
-- Autocommit mode and ON_ERROR_STOP off: see 10_postgres.sql.
\set ON_ERROR_STOP 0
\getenv test_dir DBORCH_TEST_DIR
SET client_min_messages = warning;
\ir helpers.psql

SELECT plan(53);

------------------------------------------------------------------------------
-- a PostgreSQL deployment with one replica, and rows
------------------------------------------------------------------------------
SELECT id AS dep_id FROM dborch.deploy('tap_mw_pg', 'postgres', '{"memory": "32MB"}') \gset
SELECT is((SELECT status FROM dborch.wait('tap_mw_pg', '90s')), 'ready', 'the deployment is ready');
SELECT 1 FROM dborch.scale('tap_mw_pg', replicas => 1) \g /dev/null
SELECT id AS scale_job FROM dborch.jobs WHERE deployment_id = :dep_id AND kind = 'scale' ORDER BY id DESC LIMIT 1 \gset
SELECT is(pg_temp.tap_job_end(:scale_job, '120s'), 'succeeded', 'it has one replica');
SELECT is((SELECT string_agg(kind || ': ' || message, '; ' ORDER BY id) FROM dborch.events
            WHERE job_id = :scale_job AND kind IN ('scale_requested', 'scaled')),
          'scale_requested: 1 replica requested; scaled: 1 replica', 'its events count one replica, in the singular');
SELECT id AS p_id, port AS p_port FROM dborch.instances WHERE deployment_id = :dep_id AND role = 'primary' AND status <> 'destroyed' \gset
SELECT id AS r_id, port AS r_port FROM dborch.instances WHERE deployment_id = :dep_id AND role = 'replica' AND status <> 'destroyed' \gset
SELECT value AS pw FROM dborch.secrets WHERE deployment_id = :dep_id AND name = 'password' \gset
SELECT format('postgresql://owner:%s@127.0.0.1:%s/postgres', :'pw', :p_port) AS p_uri,
       format('postgresql://owner:%s@127.0.0.1:%s/postgres', :'pw', :r_port) AS r_uri \gset
\set out `PGCONNECT_TIMEOUT=5 psql :'p_uri' -XAtq -c 'CREATE TABLE tap_mw (id int PRIMARY KEY)' -c 'INSERT INTO tap_mw SELECT generate_series(1, 50)' -c 'SELECT count(*) FROM tap_mw' 2>&1`
SELECT is(:'out'::text, '50', '50 rows are written to the primary');

------------------------------------------------------------------------------
-- set_maintenance_window(): refusals, then a window opening in about a minute
------------------------------------------------------------------------------
SELECT is(pg_temp.tap_error(format('SELECT dborch.set_maintenance_window(%L, %L)', 'tap_mw_pg', w)),
          format('22023: invalid maintenance window "%s"', w),
          format('set_maintenance_window(%L) is refused (22023)', w))
  FROM unnest(ARRAY['sun:02:00-sun:02:00', 'sunday 2am', 'sun:25:00-mon:01:00', 'xyz:01:00-sun:02:00',
                    'sun:02:00']) w;
SELECT is(pg_temp.tap_error($$SELECT dborch.set_maintenance_window('tap_mw_nosuch', 'sun:02:00-sun:04:00')$$),
          '42704: deployment "tap_mw_nosuch" does not exist', 'set_maintenance_window() of an unknown deployment is refused (42704)');

-- the next whole minute at least 25 s away, for an hour
SELECT s AS win_start_utc,
       (s AT TIME ZONE 'UTC') AS win_start,
       to_char(s, 'dy:HH24:MI') || '-' || to_char(s + interval '1 hour', 'dy:HH24:MI') AS win
  FROM (SELECT date_trunc('minute', (clock_timestamp() AT TIME ZONE 'UTC') + interval '25 seconds') + interval '1 minute' AS s) x \gset
SELECT is((SELECT maintenance_window FROM dborch.set_maintenance_window('tap_mw_pg', upper(:'win'))), :'win',
          'set_maintenance_window(' || upper(:'win') || ') records the window as ' || :'win');
SELECT is((SELECT message FROM dborch.events WHERE deployment_id = :dep_id AND kind = 'maintenance_window' ORDER BY id DESC LIMIT 1),
          'maintenance window ' || :'win' || ' (UTC)', 'an event records the window');

------------------------------------------------------------------------------
-- a memory change outside the window waits for it
------------------------------------------------------------------------------
SELECT is(pg_temp.tap_error($$SELECT dborch.scale('tap_mw_pg', memory => '48MB', defer => false)$$),
          format('55000: deployment "tap_mw_pg" is outside its maintenance window %s', :'win'),
          'scale(memory, defer => false) outside the window is refused (55000)');
SELECT is((SELECT count(*) FROM dborch.jobs WHERE deployment_id = :dep_id AND kind = 'scale' AND id > :scale_job), 0::bigint,
          'the refused call queued nothing');
SELECT is((SELECT status FROM dborch.scale('tap_mw_pg', memory => '48MB')), 'ready', 'scale(memory => ''48MB'') is accepted');
SELECT clock_timestamp() < :'win_start'::timestamptz AS still_before \gset
SELECT ok(:'still_before', 'the window has not opened yet (so the checks below are before it)');
SELECT id AS mem_job FROM dborch.jobs WHERE deployment_id = :dep_id AND kind = 'scale' ORDER BY id DESC LIMIT 1 \gset
SELECT is((SELECT count(*) FROM dborch.pending_changes WHERE deployment = 'tap_mw_pg'), 1::bigint,
          'dborch.pending_changes lists one change');
SELECT is((SELECT job_id || ' ' || kind || ' ' || (change ->> 'memory') || ' ' || maintenance_window
             FROM dborch.pending_changes WHERE deployment = 'tap_mw_pg'),
          :mem_job || ' scale 48MB ' || :'win', 'the pending change: its job, kind, memory and window');
SELECT is((SELECT applies_at FROM dborch.pending_changes WHERE deployment = 'tap_mw_pg'), :'win_start'::timestamptz,
          'applies_at is the window''s start, ' || :'win_start' || ', to the microsecond');
SELECT is((SELECT message FROM dborch.events WHERE job_id = :mem_job AND kind = 'scale_requested'),
          'memory 48MB requested, applied in the maintenance window ' || :'win', 'the request''s event says it waits for the window');
SELECT is((SELECT state FROM dborch.jobs WHERE id = :mem_job), 'queued', 'its job is queued');
SELECT ok((SELECT status = 'ready' AND clock_timestamp() < :'win_start'::timestamptz FROM dborch.wait('tap_mw_pg', '10s')),
          'wait() does not wait for a change deferred to the window');

\set out `for u in :'p_uri' :'r_uri'; do PGCONNECT_TIMEOUT=5 psql "$u" -XAtqc "SELECT pg_size_bytes(current_setting('shared_buffers'))" 2>&1; done | tr '\n' ' '`
SELECT is(:'out'::text, '33554432 33554432 ', 'before the window shared_buffers is still 32MB on both instances');
SELECT is((SELECT memory_bytes FROM dborch.deployments WHERE id = :dep_id), 33554432::bigint, 'before the window the catalog says 32MB');
SELECT is((SELECT string_agg(role || ':' || port, ',' ORDER BY id) FROM dborch.instances WHERE deployment_id = :dep_id AND status <> 'destroyed'),
          format('primary:%s,replica:%s', :p_port, :r_port), 'before the window no switchover happened');

------------------------------------------------------------------------------
-- the window opens: the change is applied
------------------------------------------------------------------------------
SELECT is(pg_temp.tap_job_end(:mem_job, '170s'), 'succeeded', 'the memory change is applied once the window opens');
SELECT ok((SELECT started_at >= :'win_start'::timestamptz FROM dborch.jobs WHERE id = :mem_job),
          'its job started in the window, not before');
SELECT is((SELECT count(*) FROM dborch.pending_changes WHERE deployment = 'tap_mw_pg'), 0::bigint,
          'dborch.pending_changes is empty');
SELECT is((SELECT memory_bytes FROM dborch.deployments WHERE id = :dep_id), 50331648::bigint,
          'the catalog records 48MB as the memory it runs with');
SELECT is((SELECT status FROM dborch.deployments WHERE id = :dep_id), 'ready', 'the deployment is ready');
SELECT is((SELECT string_agg(role || '/' || status, ',' ORDER BY id) FROM dborch.instances WHERE deployment_id = :dep_id AND status <> 'destroyed'),
          'replica/running,primary/running', 'switchover: the former replica is the primary, the former primary a running replica');
SELECT is((SELECT count(*) FROM dborch.events WHERE job_id = :mem_job AND kind = 'switchover'), 1::bigint, 'one switchover event');
SELECT is((SELECT message FROM dborch.events WHERE job_id = :mem_job AND kind = 'scaled'), 'memory 48MB, 1 replica',
          'the scaled event names the memory change');
SELECT dborch.connection_string('tap_mw_pg') AS w_uri \gset
SELECT is((regexp_match(:'w_uri', ':([0-9]+)/'))[1]::int, :r_port, 'the write connection string names the new primary');
\set out `PGCONNECT_TIMEOUT=5 psql :'w_uri' -XAtq -c 'INSERT INTO tap_mw SELECT generate_series(51, 60)' -c "SELECT count(*) || ' ' || pg_size_bytes(current_setting('shared_buffers')) || ' ' || pg_is_in_recovery()::text FROM tap_mw" 2>&1`
SELECT is(:'out'::text, '60 50331648 false', 'the primary has the rows, accepts writes and shared_buffers is 48MB');
\set out `for i in $(seq 1 100); do r=$(PGCONNECT_TIMEOUT=5 psql :'p_uri' -XAtqc "SELECT count(*) || ' ' || pg_size_bytes(current_setting('shared_buffers')) || ' ' || pg_is_in_recovery()::text FROM tap_mw" 2>&1); [ "$r" = '60 50331648 true' ] && break; sleep 0.1; done; echo "$r"`
SELECT is(:'out'::text, '60 50331648 true', 'the former primary is a replica with 48MB of shared_buffers and receives the new rows');
\set out `PGCONNECT_TIMEOUT=5 psql :'w_uri' -XAtqc "SELECT string_agg(slot_name || ':' || active::text, ',') FROM pg_replication_slots" 2>&1`
SELECT is(:'out'::text, format('dborch_r%s:true', :p_id), 'the new primary has the active slot of its replica');

------------------------------------------------------------------------------
-- inside the window, defer => false is applied at once
------------------------------------------------------------------------------
SELECT is(pg_temp.tap_error($$SELECT dborch.scale('tap_mw_pg', memory => '40MB', defer => false)$$), 'no error',
          'inside the window scale(memory, defer => false) is accepted');
SELECT id AS mem2_job FROM dborch.jobs WHERE deployment_id = :dep_id AND kind = 'scale' ORDER BY id DESC LIMIT 1 \gset
SELECT is((SELECT count(*) FROM dborch.pending_changes WHERE deployment = 'tap_mw_pg'), 0::bigint,
          'it is not a pending change');
SELECT ok((SELECT not_before <= clock_timestamp() FROM dborch.jobs WHERE id = :mem2_job), 'its job is due now');
SELECT is(pg_temp.tap_job_end(:mem2_job, '120s'), 'succeeded', 'it is applied');
SELECT dborch.connection_string('tap_mw_pg') AS w_uri \gset
\set out `PGCONNECT_TIMEOUT=5 psql :'w_uri' -XAtq -c 'INSERT INTO tap_mw VALUES (61)' -c "SELECT count(*) || ' ' || pg_size_bytes(current_setting('shared_buffers')) FROM tap_mw" 2>&1`
SELECT is(:'out'::text, '61 41943040', 'the primary has 40MB of shared_buffers, every row, and accepts writes');

------------------------------------------------------------------------------
-- Redis memory does not wait for a window
------------------------------------------------------------------------------
SELECT id AS rd_id FROM dborch.deploy('tap_mw_rd', 'redis', '{"memory": "16MB"}') \gset
SELECT is((SELECT status FROM dborch.wait('tap_mw_rd', '60s')), 'ready', 'a Redis deployment is ready');
-- a window that is not open now: it opens in a day
SELECT to_char(s, 'dy:HH24:MI') || '-' || to_char(s + interval '1 hour', 'dy:HH24:MI') AS rd_win
  FROM (SELECT date_trunc('minute', clock_timestamp() AT TIME ZONE 'UTC') + interval '1 day' AS s) x \gset
SELECT is((SELECT maintenance_window FROM dborch.set_maintenance_window('tap_mw_rd', :'rd_win')), :'rd_win', 'it has a window that opens in a day');
SELECT is(pg_temp.tap_error($$SELECT dborch.scale('tap_mw_rd', memory => '24MB', defer => false)$$), 'no error',
          'scale(memory, defer => false) of Redis outside its window is accepted');
SELECT id AS rd_job FROM dborch.jobs WHERE deployment_id = :rd_id AND kind = 'scale' ORDER BY id DESC LIMIT 1 \gset
SELECT is((SELECT count(*) FROM dborch.pending_changes WHERE deployment = 'tap_mw_rd'), 0::bigint, 'no pending change for Redis');
SELECT is(pg_temp.tap_job_end(:rd_job, '60s'), 'succeeded', 'the Redis memory change is applied at once');
SELECT dborch.connection_string('tap_mw_rd') AS rd_uri \gset
SELECT pg_temp.tap_dborch_uri(:'rd_uri', 'tap_mw_rd') AS rd_admin \gset
\set out `timeout 10 redis-cli -u :'rd_admin' --no-auth-warning CONFIG GET maxmemory 2>&1 | tail -1`
SELECT is(:'out'::text, '25165824', 'maxmemory is 24MB');

------------------------------------------------------------------------------
-- removing the window, destroy
------------------------------------------------------------------------------
SELECT is((SELECT maintenance_window FROM dborch.set_maintenance_window('tap_mw_pg', NULL)), NULL, 'set_maintenance_window(NULL) removes the window');
SELECT is((SELECT status FROM dborch.destroy('tap_mw_pg')), 'destroying', 'destroy() of the PostgreSQL deployment');
SELECT is((SELECT status FROM dborch.destroy('tap_mw_rd')), 'destroying', 'destroy() of the Redis deployment');
SELECT is((SELECT status FROM dborch.wait('tap_mw_pg', '60s')), 'destroyed', 'the PostgreSQL deployment is destroyed');
SELECT is((SELECT status FROM dborch.wait('tap_mw_rd', '60s')), 'destroyed', 'the Redis deployment is destroyed');

SELECT * FROM finish();

-- Safety net after a failure above: no deployment of this file left.
SELECT count(dborch.destroy(name)) AS n FROM dborch.deployments
 WHERE name IN ('tap_mw_pg', 'tap_mw_rd') AND status NOT IN ('destroyed', 'destroying') \gset
SELECT count(dborch.wait(name, '90s')) AS n FROM dborch.deployments
 WHERE name IN ('tap_mw_pg', 'tap_mw_rd') AND status = 'destroying' \gset
