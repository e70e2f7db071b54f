-- WAL archiving goes on after a failover: the primary of a deployment with
-- a replica and a backup is killed (kill -9), the replica is promoted, a row
-- is written on the new primary, a time is noted, another row is written;
-- a point-in-time restore to the noted time (no WAL switched by hand) has
-- the first row and not the second, and the new primary's archiver has no
-- failure (pgBackRest's configuration follows the primary).
--
-- Autocommit mode and ON_ERROR_STOP off: see 10_postgres.sql.
\set ON_ERROR_STOP 0
SET client_min_messages = warning;
\ir helpers.psql

SELECT plan(27);

SELECT id AS dep_id FROM dborch.deploy('tap_arch', 'postgres', '{"memory": "32MB", "replicas": 1}') \gset
SELECT is((SELECT status FROM dborch.wait('tap_arch', '120s')), 'ready', 'a deployment with a replica is ready');
SELECT dborch.connection_string('tap_arch') AS uri \gset
\set out `PGCONNECT_TIMEOUT=5 psql :'uri' -XAtq -c "CREATE TABLE t (v text)" -c "INSERT INTO t VALUES ('before')" 2>&1 && echo ok`
SELECT is(:'out'::text, 'ok', 'a row before the backup');
SELECT job_id AS bk_job FROM dborch.backup('tap_arch') \gset
SELECT is(pg_temp.tap_job_result(:bk_job), 'succeeded', 'a full backup');

SELECT i.id AS old_id, i.pid AS old_pid FROM dborch.instances i
 WHERE i.deployment_id = :dep_id AND i.role = 'primary' AND i.status <> 'destroyed' \gset
\set out `kill -9 :old_pid 2>&1 && echo killed`
SELECT is(:'out'::text, 'killed', 'the primary''s postmaster is killed (kill -9)');
SELECT ok(pg_temp.tap_until(format($$SELECT EXISTS (SELECT 1 FROM dborch.instances WHERE deployment_id = %s
                                                    AND role = 'primary' AND status = 'running' AND id <> %s)$$,
                                   :dep_id, :old_id), '60s'),
          'the replica is promoted');
SELECT dborch.connection_string('tap_arch') AS uri \gset
\set t_noted `PGCONNECT_TIMEOUT=5 psql :'uri' -XAtq -c "INSERT INTO t VALUES ('after the failover')" -c 'SELECT clock_timestamp()' 2>&1`
\set out `PGCONNECT_TIMEOUT=5 psql :'uri' -XAtq -c "INSERT INTO t VALUES ('after the noted time')" 2>&1 && echo ok`
SELECT is(:'out'::text, 'ok', 'rows after the failover, around a noted time');

SELECT status FROM dborch.restore('tap_arch', target_time => :'t_noted', new_name => 'tap_arch_pitr') \gset
SELECT is(pg_temp.tap_settle('tap_arch_pitr', '150s'), 'ready', 'a point-in-time restore to the noted time is ready');
SELECT coalesce((SELECT dborch.connection_string(name) FROM dborch.deployments
                  WHERE name = 'tap_arch_pitr' AND status = 'ready'), 'postgresql://tap-not-ready.invalid/') AS pitr_uri \gset
\set out `PGCONNECT_TIMEOUT=5 psql :'pitr_uri' -XAtqc "SELECT string_agg(v, ',' ORDER BY v) FROM t" 2>&1`
SELECT is(:'out'::text, 'after the failover,before', 'it holds the row written after the failover, not the one after the noted time');
SELECT pg_temp.tap_dborch_uri(:'uri', 'tap_arch') AS admin_uri \gset
\set out `PGCONNECT_TIMEOUT=5 psql :'admin_uri' -XAtqc "SELECT failed_count FROM pg_stat_archiver" 2>&1`
SELECT is(:'out'::text, '0', 'the new primary''s archiver never failed');

-- a restore in place of the deployment (it has a replica again: the old
-- primary rejoined) makes the replica anew from the restored primary
SELECT ok(pg_temp.tap_until(format($$SELECT count(*) = 1 FROM dborch.instances WHERE deployment_id = %s
                                     AND role = 'replica' AND status = 'running'$$, :dep_id), '60s'),
          'the old primary runs as a replica');
SELECT status FROM dborch.restore('tap_arch', backup => (SELECT id FROM dborch.backups WHERE job_id = :bk_job), in_place => true) \gset
SELECT is((SELECT status FROM dborch.wait('tap_arch', '180s')), 'ready', 'the restore in place ends ready, its replica made anew');
SELECT dborch.connection_string('tap_arch') AS uri \gset
SELECT i.port AS r_port FROM dborch.instances i
 WHERE i.deployment_id = :dep_id AND i.role = 'replica' AND i.status = 'running' \gset
SELECT regexp_replace(:'uri', ':[0-9]+/', ':' || :r_port || '/') AS r_uri \gset
\set out `PGCONNECT_TIMEOUT=5 psql :'r_uri' -XAtqc "SELECT string_agg(v, ',' ORDER BY v) FROM t" 2>&1`
SELECT is(:'out'::text, 'before', 'the replica serves the restored data, not what was written before the restore');
\set out `PGCONNECT_TIMEOUT=5 psql :'uri' -XAtqc "INSERT INTO t VALUES ('after the restore')" 2>&1; for i in $(seq 1 100); do r=$(PGCONNECT_TIMEOUT=5 psql :'r_uri' -XAtqc "SELECT count(*) FROM t WHERE v = 'after the restore'" 2>&1); [ "$r" = 1 ] && break; sleep 0.1; done; echo "$r"`
SELECT is(:'out'::text, '1', 'and streams from it: a row written after the restore reaches it');

-- a backup cancelled after pgBackRest finished it leaves no set behind for
-- a later incr to build on
ALTER SYSTEM SET dborch.pause_at_stage = 'backup:backup:after';
SELECT pg_reload_conf() \g /dev/null
SELECT pg_sleep(0.2) \g /dev/null
SELECT id AS cb, job_id AS cb_job FROM dborch.backup('tap_arch', 'incr') \gset
SELECT ok(pg_temp.tap_until($$SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE query = 'paused at backup:backup:after')$$, '120s'),
          'an incr backup is held right after pgBackRest made it');
SELECT state FROM dborch.cancel_job(:cb_job) \gset
ALTER SYSTEM RESET dborch.pause_at_stage;
SELECT pg_reload_conf() \g /dev/null
SELECT pg_temp.tap_job_end(:cb_job, '60s') AS cb_end \gset
-- (read in a statement of its own: the wait's statement sees the rows as they were when it began)
SELECT is(:'cb_end' || ' ' || (SELECT status FROM dborch.backups WHERE id = :cb),
          'cancelled failed', 'cancel_job() ends it: the job cancelled, the backup failed');
SELECT id AS nb, job_id AS nb_job FROM dborch.backup('tap_arch', 'incr') \gset
SELECT is(pg_temp.tap_job_result(:nb_job), 'succeeded', 'a later incr backup succeeds');
SELECT is((SELECT prior_label FROM dborch.backups WHERE id = :nb),
          (SELECT label FROM dborch.backups WHERE job_id = :bk_job),
          'it builds on the last backup dborch recorded, not on the cancelled one');

-- stopped, a deployment first archives its last WAL: its recoverable window
-- ends with its last transaction, and a later target is refused up front
\set t_last `PGCONNECT_TIMEOUT=5 psql :'uri' -XAtq -c "INSERT INTO t VALUES ('last words')" -c 'SELECT clock_timestamp()' 2>&1`
SELECT status FROM dborch.stop('tap_arch') \gset
SELECT is(pg_temp.tap_settle('tap_arch', '60s'), 'stopped', 'the deployment is stopped');
SELECT recoverable_until AS until FROM dborch.deployments WHERE id = :dep_id \gset
SELECT ok(:'until'::timestamptz >= :'t_last'::timestamptz AND :'until'::timestamptz <= now(),
          'its recoverable window ends after its last row');
SELECT is(dborch.deployment('tap_arch') -> 'recoverable_window' ->> 'to', to_jsonb(:'until'::timestamptz) #>> '{}',
          'dborch.deployment() shows that end');
SELECT matches(pg_temp.tap_error_full(format($$SELECT dborch.restore('tap_arch', target_time => %L::timestamptz + interval '1 s', new_name => 'tap_arch_late')$$, :'until')),
               '^22023: target time .* is outside the recoverable window of deployment "tap_arch" \| The window is from .* to ' || regexp_replace(:'until', '([.+])', '\\\1', 'g') || '\.',
               'a target after it is refused up front (22023), naming the window');
-- not in the catalog (stopped by an earlier dborch, or down without a
-- stop): the restore job reads the end from the archive and refuses a
-- later target before it restores anything
UPDATE dborch.deployments SET recoverable_until = NULL WHERE id = :dep_id;
SELECT pg_sleep(1) \g /dev/null
SELECT status FROM dborch.restore('tap_arch', target_time => :'until'::timestamptz + interval '0.5 s', new_name => 'tap_arch_late') \gset
SELECT pg_temp.tap_settle('tap_arch_late', '60s') AS late \gset
SELECT is(:'late' || ' ' ||
          (SELECT last_error LIKE '%is after the last transaction deployment "tap_arch" archived%'
             FROM dborch.deployments WHERE name = 'tap_arch_late' AND status <> 'destroyed'),
          'failed true', 'unknown in the catalog, a later target fails the restore before it begins, saying why');
SELECT ok((SELECT recoverable_until >= :'until'::timestamptz FROM dborch.deployments WHERE id = :dep_id),
          'and the end it read from the archive is recorded');

-- destroyed (its backups kept) while stopped, the deployment reads the end
-- from its archive; a restore to that end has the last row
SELECT status FROM dborch.destroy('tap_arch') \gset
SELECT is(pg_temp.tap_settle('tap_arch', '60s'), 'destroyed', 'the deployment is destroyed, its backups kept');
SELECT recoverable_until AS until FROM dborch.deployments WHERE id = :dep_id \gset
SELECT ok(:'until'::timestamptz >= :'t_last'::timestamptz, 'its window still ends after its last row');
SELECT status FROM dborch.restore('tap_arch', target_time => :'until', new_name => 'tap_arch_end') \gset
SELECT is(pg_temp.tap_settle('tap_arch_end', '150s'), 'ready', 'a restore to the end of the window is ready');
SELECT coalesce((SELECT dborch.connection_string(name) FROM dborch.deployments
                  WHERE name = 'tap_arch_end' AND status = 'ready'), 'postgresql://tap-not-ready.invalid/') AS end_uri \gset
\set out `PGCONNECT_TIMEOUT=5 psql :'end_uri' -XAtqc "SELECT count(*) FROM t WHERE v = 'last words'" 2>&1`
SELECT is(:'out'::text, '1', 'it holds the last row written before the stop');

SELECT count(dborch.destroy(name, drop_backups => true)) AS n FROM dborch.deployments
 WHERE name IN ('tap_arch_pitr', 'tap_arch_end', 'tap_arch_late') AND status <> 'destroyed' \gset
SELECT status FROM dborch.destroy('tap_arch', drop_backups => true) \gset
SELECT * FROM finish();
