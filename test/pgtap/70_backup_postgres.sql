-- Backups and restores of a PostgreSQL deployment, checked the way an operator
-- would: a full, a diff and an incr backup with rows written between them;
-- restoring each into a new deployment gives exactly the rows of that backup;
-- a point-in-time restore gives exactly the rows committed before the noted
-- time; the catalog rows (kind, label, sizes, LSN range, encrypted,
-- compressed) agree with pgbackrest info; the repository holds no plaintext
-- and cannot be read without the passphrase; dborch.progress shows the
-- running backup; the refusals an operator meets (kind, state, target, names);
-- verification; a diff or incr without a full becomes a full; restore in
-- place; destroy keeps backups and a destroyed deployment can be restored,
-- destroy with drop_backups removes them; no passphrase leaks.
--
-- Autocommit mode and ON_ERROR_STOP off: see 10_postgres.sql.  Waits for
-- jobs and restores poll the catalog (pg_temp helpers below) where wait() or
-- wait_job() would raise an error and hide the state an assertion needs.
\set ON_ERROR_STOP 0
\getenv test_dir DBORCH_TEST_DIR
SET client_min_messages = warning;
\ir helpers.psql

-- Wait until a job worker reports that it is paused at point ('kind:stage[:after]').
CREATE FUNCTION pg_temp.tap_await_paused(point text, timeout interval)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
	deadline timestamptz := clock_timestamp() + timeout;
BEGIN
	LOOP
		PERFORM pg_stat_clear_snapshot();	-- pg_stat_activity is read once per transaction otherwise
		IF EXISTS (SELECT 1 FROM pg_stat_activity
				    WHERE backend_type = 'dborch job' AND query = 'paused at ' || point) THEN
			RETURN true;
		END IF;
		EXIT WHEN clock_timestamp() > deadline;
		PERFORM pg_sleep(0.02);
	END LOOP;
	RETURN false;
END
$$;

SELECT plan(138);

------------------------------------------------------------------------------
-- a deployment that is not ready yet cannot be backed up (in the transaction
-- that queued it, rolled back: it never exists)
------------------------------------------------------------------------------
BEGIN;
SELECT 1 FROM dborch.deploy('tap_bk_nr', 'postgres', '{"memory": "32MB"}') \g /dev/null
SELECT pg_temp.tap_error_full($$SELECT dborch.backup('tap_bk_nr', 'full')$$) AS err_not_ready \gset
ROLLBACK;
SELECT matches(:'err_not_ready'::text, '^55000: cannot back up deployment "tap_bk_nr" while it is pending',
               'backup() of a deployment that is not ready is refused (55000)');

------------------------------------------------------------------------------
-- the source deployment and its first rows
------------------------------------------------------------------------------
SELECT id AS dep_id FROM dborch.deploy('tap_bk_pg', 'postgres', '{"memory": "32MB"}') \gset
SELECT is((SELECT status FROM dborch.wait('tap_bk_pg', '60s')), 'ready', 'the source deployment is ready');
SELECT dborch.connection_string('tap_bk_pg') AS pg_uri \gset
SELECT pg_temp.tap_dborch_uri(:'pg_uri', 'tap_bk_pg') AS pg_admin \gset
SELECT i.data_directory AS pg_dir, i.pid AS pg_pid
  FROM dborch.instances i WHERE i.deployment_id = :dep_id AND i.status <> 'destroyed' \gset
SELECT value AS pw FROM dborch.secrets WHERE deployment_id = :dep_id AND name = 'password' \gset
SELECT :'test_dir' || '/managed/backups/tap_bk_pg-' || :dep_id AS bk_dir,
       'dborch-canary-' || md5(random()::text) AS canary \gset

SELECT pg_temp.tap_error_full($$SELECT dborch.restore('tap_bk_pg', new_name => 'tap_bk_x')$$) AS err_no_backup \gset
SELECT matches(:'err_no_backup'::text, '^55000: deployment "tap_bk_pg" has no backup to restore .*dborch\.backup',
               'restore() of a deployment without a backup is refused (55000), with a hint naming dborch.backup()');
SELECT pg_temp.tap_error_full($$SELECT dborch.backup('tap_bk_pg', 'weekly')$$) AS err_kind \gset
SELECT matches(:'err_kind'::text, '^22023: invalid backup kind "weekly" .*full.*diff.*incr',
               'an unknown backup kind is refused (22023), with a hint listing the kinds');

\set out `PGCONNECT_TIMEOUT=5 psql :'pg_uri' -XAtq -v ON_ERROR_STOP=1 -c 'CREATE TABLE tap_t (id int PRIMARY KEY, v text)' -c "INSERT INTO tap_t VALUES (1, ':canary')" -c 'SELECT count(*) FROM tap_t' 2>&1`
SELECT is(:'out'::text, '1', 'row 1 (holding a canary string) is written to the deployment');

------------------------------------------------------------------------------
-- full backup
------------------------------------------------------------------------------
SELECT id AS b1, job_id AS b1_job, status AS b1_status, kind AS b1_kind
  FROM dborch.backup('tap_bk_pg', 'full') \gset
SELECT is(:'b1_status'::text, 'queued', 'backup() returns the new backup row, queued');
SELECT is((SELECT state FROM dborch.wait_job(:b1_job, '120s')), 'succeeded', 'the full backup job succeeded');
SELECT is((SELECT (kind, requested_kind, status, encrypted, compressed, engine, deployment)::text
             FROM dborch.backups WHERE id = :b1),
          '(full,full,succeeded,t,t,postgres,tap_bk_pg)',
          'full backup: kind full, succeeded, encrypted and compressed');
SELECT matches((SELECT label FROM dborch.backups WHERE id = :b1), '^[0-9]{8}-[0-9]{6}F$',
               'full backup: its label is a pgBackRest full label');
SELECT ok((SELECT size_bytes > 0 AND stored_bytes > 0 AND stored_bytes < size_bytes FROM dborch.backups WHERE id = :b1),
          'full backup: stored_bytes (compressed in the repository) is below size_bytes');
SELECT ok((SELECT delta_bytes = size_bytes FROM dborch.backups WHERE id = :b1),
          'full backup: delta_bytes is the whole size');
SELECT ok((SELECT start_lsn IS NOT NULL AND start_lsn < stop_lsn FROM dborch.backups WHERE id = :b1),
          'full backup: an LSN range, start before stop');
SELECT ok((SELECT wal_start ~ '^[0-9A-F]{24}$' AND wal_stop ~ '^[0-9A-F]{24}$' AND wal_start <= wal_stop
             FROM dborch.backups WHERE id = :b1),
          'full backup: the WAL segment range it needs');
SELECT ok((SELECT started_at <= finished_at AND finished_at <= now() AND prior_label IS NULL AND error IS NULL
             FROM dborch.backups WHERE id = :b1),
          'full backup: started and finished times, no prior backup, no error');
SELECT set_eq(format($$SELECT detail ->> 'stage' FROM dborch.events WHERE job_id = %s AND kind = 'stage'$$, :b1_job),
              ARRAY['check', 'prepare', 'backup', 'record', 'retention', 'finalize'],
              'the backup job left an event for each of its stages');
SELECT is((SELECT count(*) FROM dborch.events WHERE deployment_id = :dep_id AND kind = 'backup_requested'
             AND message = 'full backup ' || :b1 || ' requested'), 1::bigint,
          'a backup_requested event names the backup');
SELECT is((SELECT (detail ->> 'backup_id')::bigint FROM dborch.events WHERE job_id = :b1_job AND kind = 'backup'),
          :b1::bigint, 'a backup event names the finished backup');

------------------------------------------------------------------------------
-- diff backup, then an incr backup held before and after its backup stage
-- to see it in dborch.progress
------------------------------------------------------------------------------
\set out `PGCONNECT_TIMEOUT=5 psql :'pg_uri' -XAtq -c "INSERT INTO tap_t VALUES (2, 'two')" -c 'SELECT count(*) FROM tap_t' 2>&1`
SELECT is(:'out'::text, '2', 'row 2 is written');
SELECT id AS b2, job_id AS b2_job FROM dborch.backup('tap_bk_pg', 'diff') \gset
SELECT is((SELECT state FROM dborch.wait_job(:b2_job, '120s')), 'succeeded', 'the diff backup job succeeded');
SELECT is((SELECT (kind, requested_kind, status, encrypted, compressed)::text FROM dborch.backups WHERE id = :b2),
          '(diff,diff,succeeded,t,t)', 'diff backup: kind diff, succeeded, encrypted and compressed');
SELECT is((SELECT b2.prior_label FROM dborch.backups b2 WHERE b2.id = :b2),
          (SELECT b1.label FROM dborch.backups b1 WHERE b1.id = :b1), 'diff backup: its prior is the full backup');
SELECT ok((SELECT b2.label ~ ('^' || b1.label || '_[0-9]{8}-[0-9]{6}D$')
             FROM dborch.backups b1, dborch.backups b2 WHERE b1.id = :b1 AND b2.id = :b2),
          'diff backup: its label is a pgBackRest diff label on the full one');
SELECT ok((SELECT delta_bytes < size_bytes AND stored_delta_bytes <= stored_bytes FROM dborch.backups WHERE id = :b2),
          'diff backup: it copied less than the whole size');
SELECT ok((SELECT b2.start_lsn >= b1.stop_lsn AND b2.start_lsn < b2.stop_lsn
             FROM dborch.backups b1, dborch.backups b2 WHERE b1.id = :b1 AND b2.id = :b2),
          'diff backup: its LSN range follows the full backup''s');

\set out `PGCONNECT_TIMEOUT=5 psql :'pg_uri' -XAtq -c "INSERT INTO tap_t VALUES (3, 'three')" -c 'SELECT count(*) FROM tap_t' 2>&1`
SELECT is(:'out'::text, '3', 'row 3 is written');

ALTER SYSTEM SET dborch.pause_at_stage = 'backup:backup';
SELECT pg_reload_conf() \g /dev/null
SELECT pg_sleep(0.3) \g /dev/null
SELECT id AS b3, job_id AS b3_job FROM dborch.backup('tap_bk_pg', 'incr') \gset
SELECT ok(pg_temp.tap_await_paused('backup:backup', '60s'), 'the incr backup is held before its backup stage');
SELECT is((SELECT (kind, deployment, phase)::text FROM dborch.progress WHERE job_id = :b3_job),
          '(backup,tap_bk_pg,backup)', 'dborch.progress lists the running backup, in phase backup');
SELECT ok((SELECT started_at IS NOT NULL AND elapsed >= '0'::interval FROM dborch.progress WHERE job_id = :b3_job),
          'dborch.progress shows when it started and how long it runs');
SELECT is((SELECT status FROM dborch.backups WHERE id = :b3), 'running', 'the backup row is running meanwhile');
ALTER SYSTEM SET dborch.pause_at_stage = 'backup:backup:after';
SELECT pg_reload_conf() \g /dev/null
SELECT ok(pg_temp.tap_await_paused('backup:backup:after', '120s'), 'the incr backup is held after its backup stage');
SELECT ok((SELECT bytes_total > 0 AND bytes_done = bytes_total AND percent = 100 FROM dborch.progress WHERE job_id = :b3_job),
          'dborch.progress reports the bytes of the data directory, all done');
ALTER SYSTEM RESET dborch.pause_at_stage;
SELECT pg_reload_conf() \g /dev/null
SELECT is((SELECT state FROM dborch.wait_job(:b3_job, '120s')), 'succeeded', 'the incr backup job succeeded');
SELECT is((SELECT count(*) FROM dborch.progress WHERE job_id = :b3_job), 0::bigint,
          'dborch.progress no longer lists the finished backup');
SELECT is((SELECT (kind, requested_kind, status)::text FROM dborch.backups WHERE id = :b3),
          '(incr,incr,succeeded)', 'incr backup: kind incr, succeeded');
SELECT is((SELECT b3.prior_label FROM dborch.backups b3 WHERE b3.id = :b3),
          (SELECT b2.label FROM dborch.backups b2 WHERE b2.id = :b2), 'incr backup: its prior is the diff backup');
SELECT ok((SELECT label ~ '_[0-9]{8}-[0-9]{6}I$' FROM dborch.backups WHERE id = :b3),
          'incr backup: its label is a pgBackRest incr label');

------------------------------------------------------------------------------
-- what pgBackRest itself says, and what it says without the passphrase
------------------------------------------------------------------------------
\set info `cd / && runuser -u postgres -- pgbackrest --config=:'bk_dir'/pgbackrest.conf --stanza=tap_bk_pg info --output=json 2>&1`
SELECT is((SELECT array_agg(x ->> 'label' ORDER BY x ->> 'label') FROM jsonb_array_elements(:'info'::jsonb -> 0 -> 'backup') x),
          (SELECT array_agg(label ORDER BY label) FROM dborch.backups WHERE deployment_id = :dep_id AND status = 'succeeded'),
          'pgbackrest info lists exactly the succeeded backups of the catalog');
SELECT is((SELECT (x -> 'lsn' ->> 'start', x -> 'lsn' ->> 'stop', x -> 'info' ->> 'size', x -> 'info' -> 'repository' ->> 'size')::text
             FROM jsonb_array_elements(:'info'::jsonb -> 0 -> 'backup') x
             JOIN dborch.backups b ON b.label = x ->> 'label' WHERE b.id = :b1),
          (SELECT (start_lsn, stop_lsn, size_bytes, stored_bytes)::text FROM dborch.backups WHERE id = :b1),
          'the full backup''s LSN range and sizes are pgBackRest''s');
SELECT is(:'info'::jsonb -> 0 -> 'cipher', '"aes-256-cbc"', 'the repository is encrypted with aes-256-cbc');
\set out `stat -c '%a %U' :'bk_dir' :'bk_dir'/pgbackrest.conf | tr '\n' ' '`
SELECT is(:'out'::text, '700 postgres 600 postgres ', 'the backup directory is 0700, pgbackrest.conf 0600, owned by postgres');
\set out `grep -c '^repo1-cipher-pass=' :'bk_dir'/pgbackrest.conf`
SELECT is(:'out'::text, '1', 'the passphrase is in pgbackrest.conf (not on a command line)');

SELECT :'test_dir' || '/tap-nopass.conf' AS nopass_conf, :'test_dir' || '/tap-wrongpass.conf' AS wrongpass_conf \gset
\set out `sed '/^repo1-cipher-pass/d' :'bk_dir'/pgbackrest.conf > :'nopass_conf' && sed 's/^repo1-cipher-pass=.*/repo1-cipher-pass=not-the-passphrase/' :'bk_dir'/pgbackrest.conf > :'wrongpass_conf' && chmod 644 :'nopass_conf' :'wrongpass_conf' && echo ok`
SELECT is(:'out'::text, 'ok', 'copies of pgbackrest.conf without and with a wrong passphrase');
\set out `cd / && runuser -u postgres -- pgbackrest --config=:'nopass_conf' --stanza=tap_bk_pg info 2>&1; echo "exit $?"`
SELECT matches(:'out'::text, 'requires option: repo1-cipher-pass',
               'pgbackrest info without the passphrase fails: it requires repo1-cipher-pass');
SELECT doesnt_match(:'out'::text, 'exit 0$', 'pgbackrest info without the passphrase exits non-zero');
\set out `cd / && runuser -u postgres -- pgbackrest --config=:'wrongpass_conf' --stanza=tap_bk_pg info 2>&1 | LC_ALL=C tr -c '[:print:]\n' '?'`
SELECT matches(:'out'::text, 'status: error', 'pgbackrest info with a wrong passphrase cannot read the repository');
SELECT is(position((SELECT label FROM dborch.backups WHERE id = :b1) IN :'out'), 0,
          'pgbackrest info with a wrong passphrase shows no backup label');

------------------------------------------------------------------------------
-- restore each backup into a new deployment; a point in time into another
------------------------------------------------------------------------------
\set t_noted `PGCONNECT_TIMEOUT=5 psql :'pg_uri' -XAtq -c 'CREATE TABLE tap_p (v text)' -c "INSERT INTO tap_p VALUES ('p1')" -c 'SELECT clock_timestamp()' 2>&1`
-- (no WAL is switched by hand: the restore itself makes the source archive
-- up to now, so a moment ago of a quiet database can be restored)
\set out `PGCONNECT_TIMEOUT=5 psql :'pg_uri' -XAtq -c "INSERT INTO tap_p VALUES ('p2')" -c "SELECT string_agg(v, ',' ORDER BY v) FROM tap_p" 2>&1`
SELECT is(:'out'::text, 'p1,p2', 'after p1 and the noted time, p2 is written; then the database is quiet');

SELECT status AS r1_status FROM dborch.restore('tap_bk_pg', backup => :b1, new_name => 'tap_bk_pg_r1') \gset
SELECT status AS r2_status FROM dborch.restore('tap_bk_pg', backup => :b2, new_name => 'tap_bk_pg_r2') \gset
SELECT status AS r3_status FROM dborch.restore('tap_bk_pg', backup => :b3, new_name => 'tap_bk_pg_r3') \gset
SELECT status AS pitr_status FROM dborch.restore('tap_bk_pg', target_time => :'t_noted', new_name => 'tap_bk_pg_pitr') \gset
SELECT is(:'r1_status'::text, 'pending', 'restore() into a new name returns the new deployment, pending');

SELECT is((SELECT status FROM dborch.wait('tap_bk_pg_r1', '120s')), 'ready', 'the full backup restored into tap_bk_pg_r1 is ready');
SELECT is((SELECT status FROM dborch.wait('tap_bk_pg_r2', '120s')), 'ready', 'the diff backup restored into tap_bk_pg_r2 is ready');
SELECT is((SELECT status FROM dborch.wait('tap_bk_pg_r3', '120s')), 'ready', 'the incr backup restored into tap_bk_pg_r3 is ready');
SELECT is((SELECT status FROM dborch.wait('tap_bk_pg_pitr', '120s')), 'ready', 'the point-in-time restore into tap_bk_pg_pitr is ready');

SELECT dborch.connection_string('tap_bk_pg_r1') AS r1_uri, dborch.connection_string('tap_bk_pg_r2') AS r2_uri,
       dborch.connection_string('tap_bk_pg_r3') AS r3_uri, dborch.connection_string('tap_bk_pg_pitr') AS pitr_uri \gset
\set out `PGCONNECT_TIMEOUT=5 psql :'r1_uri' -XAtqc "SELECT string_agg(cast(id AS text), ',' ORDER BY id) FROM tap_t" 2>&1`
SELECT is(:'out'::text, '1', 'the full backup restored holds exactly row 1');
\set out `PGCONNECT_TIMEOUT=5 psql :'r1_uri' -XAtqc 'SELECT v FROM tap_t WHERE id = 1' 2>&1`
SELECT is(:'out'::text, :'canary', 'with its value');
\set out `PGCONNECT_TIMEOUT=5 psql :'r2_uri' -XAtqc "SELECT string_agg(cast(id AS text), ',' ORDER BY id) FROM tap_t" 2>&1`
SELECT is(:'out'::text, '1,2', 'the diff backup restored holds exactly rows 1 and 2');
\set out `PGCONNECT_TIMEOUT=5 psql :'r3_uri' -XAtqc "SELECT string_agg(cast(id AS text), ',' ORDER BY id) FROM tap_t" 2>&1`
SELECT is(:'out'::text, '1,2,3', 'the incr backup restored holds exactly rows 1, 2 and 3');
\set out `PGCONNECT_TIMEOUT=5 psql :'r3_uri' -XAtqc "SELECT count(*) FROM pg_class WHERE relname = 'tap_p'" 2>&1`
SELECT is(:'out'::text, '0', 'and not the table created after it');
\set out `PGCONNECT_TIMEOUT=5 psql :'pitr_uri' -XAtqc "SELECT string_agg(v, ',' ORDER BY v) FROM tap_p" 2>&1`
SELECT is(:'out'::text, 'p1', 'the point-in-time restore holds exactly p1, committed before the noted time');
\set out `PGCONNECT_TIMEOUT=5 psql :'pitr_uri' -XAtqc "SELECT string_agg(cast(id AS text), ',' ORDER BY id) FROM tap_t" 2>&1`
SELECT is(:'out'::text, '1,2,3', 'and rows 1, 2 and 3 of tap_t');
\set out `PGCONNECT_TIMEOUT=5 psql :'pitr_uri' -XAtqc 'SELECT pg_is_in_recovery()' 2>&1`
SELECT is(:'out'::text, 'f', 'the point-in-time restore is promoted (not in recovery)');
\set out `PGCONNECT_TIMEOUT=5 psql :'r1_uri' -XAtqc "INSERT INTO tap_t VALUES (100, 'writable') RETURNING id" 2>&1`
SELECT is(:'out'::text, '100', 'a restored deployment takes writes');
-- a replica of a restored deployment streams from it (the restore's
-- restore_command and recovery target are gone from postgresql.auto.conf)
SELECT pg_temp.tap_dborch_uri(:'r1_uri', 'tap_bk_pg_r1') AS r1_admin \gset
\set out `PGCONNECT_TIMEOUT=5 psql :'r1_admin' -XAtqc "SELECT count(*) FROM pg_file_settings WHERE name LIKE 'recovery_target%' OR name = 'restore_command'" 2>&1`
SELECT is(:'out'::text, '0', 'the restored server keeps no recovery setting of the restore');
SELECT status AS r1_scale FROM dborch.scale('tap_bk_pg_r1', replicas => 1) \gset
SELECT is((SELECT status FROM dborch.wait('tap_bk_pg_r1', '120s')), 'ready', 'a replica is added to the restored deployment');
SELECT is((SELECT count(*) FROM dborch.endpoints WHERE deployment = 'tap_bk_pg_r1' AND role = 'replica' AND healthy), 1::bigint,
          'it runs and is healthy (it streams, it did not promote itself)');

SELECT is((SELECT count(DISTINCT value) FROM dborch.secrets
            WHERE name = 'password' AND deployment_id IN
                  (SELECT id FROM dborch.deployments WHERE name IN ('tap_bk_pg', 'tap_bk_pg_r1', 'tap_bk_pg_r2', 'tap_bk_pg_r3', 'tap_bk_pg_pitr')
                      AND status <> 'destroyed')),
          5::bigint, 'each restored deployment has its own password');
SELECT regexp_replace(:'r1_uri', ':[^:@/]+@', ':' || :'pw' || '@') AS r1_with_source_pw \gset
\set out `PGCONNECT_TIMEOUT=5 psql :'r1_with_source_pw' -XAtqc 'SELECT 1' 2>&1`
SELECT matches(:'out'::text, 'password authentication failed', 'the source''s password is refused by the restored deployment');
SELECT is((SELECT (engine, memory_bytes, spec)::text FROM dborch.deployments WHERE name = 'tap_bk_pg_r1' AND status <> 'destroyed'),
          (SELECT (engine, memory_bytes, spec)::text FROM dborch.deployments WHERE id = :dep_id),
          'a restored deployment has the engine and spec of its source');
SELECT set_eq($$SELECT e.detail ->> 'stage' FROM dborch.events e JOIN dborch.jobs j ON j.id = e.job_id
                 JOIN dborch.deployments d ON d.id = j.deployment_id
                WHERE d.name = 'tap_bk_pg_r1' AND j.kind = 'restore' AND e.kind = 'stage'$$,
              ARRAY['quota_check', 'node_selection', 'prepare', 'archive_wal', 'restore_data', 'network', 'security',
                    'start', 'register', 'credentials', 'health_validation', 'tenants', 'finalize'],
              'the restore left an event for each of its stages');
SELECT is((SELECT count(*) FROM dborch.events e JOIN dborch.deployments d ON d.id = e.deployment_id
            WHERE d.name = 'tap_bk_pg_pitr' AND e.kind = 'restore_requested'
              AND e.message = format('restore of "tap_bk_pg" to %s requested', :'t_noted'::timestamptz)),
          1::bigint, 'the point-in-time restore_requested event names the source and the time');

------------------------------------------------------------------------------
-- the repository holds no plaintext
------------------------------------------------------------------------------
\set out `grep -rlF -- :'canary' :'pg_dir'/data | wc -l`
SELECT cmp_ok(:'out'::int, '>', 0, 'the canary string is in the deployment''s own files (the search works)');
\set out `grep -rlF -- :'canary' :'bk_dir' | tr '\n' ' '`
SELECT is(:'out'::text, '', 'no file of the backup directory (repository, WAL archive, logs) holds the canary string');
\set out `find :'bk_dir'/repo/archive -type f -name '0000*' | wc -l`
SELECT cmp_ok(:'out'::int, '>', 0, 'the repository holds archived WAL (searched above)');

------------------------------------------------------------------------------
-- refusals
------------------------------------------------------------------------------
SELECT pg_temp.tap_error_full(format('SELECT dborch.restore(%L, backup => %s)', 'tap_bk_pg', :b1)) AS err \gset
SELECT matches(:'err'::text, '^22023: restore needs new_name, or in_place => true', 'restore() with neither new_name nor in_place is refused (22023)');
SELECT pg_temp.tap_error_full(format('SELECT dborch.restore(%L, backup => %s, new_name => %L, in_place => true)', 'tap_bk_pg', :b1, 'tap_bk_x')) AS err \gset
SELECT matches(:'err'::text, '^22023: a restore in place takes no new_name', 'restore() with both new_name and in_place is refused (22023)');
SELECT pg_temp.tap_error_full(format('SELECT dborch.restore(%L, backup => %s, target_time => now(), new_name => %L)', 'tap_bk_pg', :b1, 'tap_bk_x')) AS err \gset
SELECT matches(:'err'::text, '^22023: give either backup or target_time, not both', 'restore() with both backup and target_time is refused (22023)');
SELECT pg_temp.tap_error_full(format('SELECT dborch.restore(%L, target_time => %L, new_name => %L)', 'tap_bk_pg',
                                (SELECT started_at - interval '1 hour' FROM dborch.backups WHERE id = :b1), 'tap_bk_x')) AS err \gset
SELECT matches(:'err'::text, '^22023: target time .* is outside the recoverable window of deployment "tap_bk_pg"',
               'restore() to a time before the first backup is refused (22023)');
SELECT ok(position('The window is from ' || (SELECT finished_at::text FROM dborch.backups WHERE id = :b1) IN :'err') > 0,
          'the refusal names the window, from the end of the first backup');
SELECT pg_temp.tap_error_full(format('SELECT dborch.restore(%L, target_time => now() + interval %L, new_name => %L)', 'tap_bk_pg', '1 hour', 'tap_bk_x')) AS err \gset
SELECT matches(:'err'::text, '^22023: target time .* is outside the recoverable window', 'restore() to a time in the future is refused (22023)');
SELECT pg_temp.tap_error_full(format('SELECT dborch.restore(%L, backup => %s, new_name => %L)', 'tap_bk_pg', :b1, 'tap_bk_pg_r1')) AS err \gset
SELECT matches(:'err'::text, '^42710: deployment "tap_bk_pg_r1" already exists', 'restore() into an existing name is refused (42710)');
SELECT pg_temp.tap_error_full(format('SELECT dborch.restore(%L, backup => %s, new_name => %L)', 'tap_bk_pg', :b1, 'tap_bk_pg')) AS err \gset
SELECT matches(:'err'::text, '^42710: ', 'restore() into the source''s own name is refused (42710)');
SELECT pg_temp.tap_error_full(format('SELECT dborch.restore(%L, backup => -1, new_name => %L)', 'tap_bk_pg', 'tap_bk_x')) AS err \gset
SELECT matches(:'err'::text, '^42704: ', 'restore() of an unknown backup is refused (42704)');
SELECT pg_temp.tap_error_full(format('SELECT dborch.restore(%L, backup => %s, new_name => %L)', 'tap_bk_pg', :b1, 'Bad-Name')) AS err \gset
SELECT matches(:'err'::text, '^22023: ', 'restore() into an invalid name is refused (22023)');
SELECT pg_temp.tap_error_full($$SELECT dborch.restore('tap_bk_nothere', new_name => 'tap_bk_x')$$) AS err \gset
SELECT matches(:'err'::text, '^42704: ', 'restore() of an unknown deployment is refused (42704)');
SELECT is((SELECT count(*) FROM dborch.deployments WHERE name = 'tap_bk_x'), 0::bigint,
          'no refused restore left a deployment row');

------------------------------------------------------------------------------
-- verification
------------------------------------------------------------------------------
SELECT id AS v_job, kind AS v_kind FROM dborch.verify_backup(:b2) \gset
SELECT is(:'v_kind'::text, 'verify', 'verify_backup() returns a verify job');
SELECT is(pg_temp.tap_job_end(:v_job, '120s'), 'succeeded', 'the verification of the diff backup succeeded');
SELECT ok((SELECT verified_at IS NOT NULL AND verified_at >= finished_at AND verify_error IS NULL FROM dborch.backups WHERE id = :b2),
          'verified_at is set and verify_error is empty');
SELECT is((SELECT count(*) FROM dborch.events WHERE job_id = :v_job AND kind = 'backup_verified'), 1::bigint,
          'a backup_verified event');
\set out `ls :'test_dir'/managed/backups | grep -c '^verify-'`
SELECT is(:'out'::text, '0', 'the scratch instance of the verification is gone');
SELECT throws_ok('SELECT dborch.verify_backup(-1)', '42704', NULL, 'verify_backup() of an unknown backup is refused (42704)');

------------------------------------------------------------------------------
-- an incr without a full backup before it becomes a full one; the backups of
-- a deployment destroyed with drop_backups are removed
------------------------------------------------------------------------------
SELECT id AS r3_id FROM dborch.deployments WHERE name = 'tap_bk_pg_r3' AND status <> 'destroyed' \gset
SELECT :'test_dir' || '/managed/backups/tap_bk_pg_r3-' || :r3_id AS r3_bk_dir \gset
SELECT id AS b4, job_id AS b4_job FROM dborch.backup('tap_bk_pg_r3', 'incr') \gset
SELECT is((SELECT state FROM dborch.wait_job(:b4_job, '120s')), 'succeeded', 'an incr backup of a deployment without a full backup succeeded');
SELECT is((SELECT (requested_kind, kind, status)::text FROM dborch.backups WHERE id = :b4), '(incr,full,succeeded)',
          'it was taken as a full backup (requested incr, kind full)');
SELECT matches((SELECT label FROM dborch.backups WHERE id = :b4), 'F$', 'its label is a full label');
SELECT is((SELECT count(*) FROM dborch.events WHERE job_id = :b4_job AND kind = 'backup_promoted'), 1::bigint,
          'a backup_promoted event says so');
\set out `test -d :'r3_bk_dir'/repo && echo present || echo absent`
SELECT is(:'out'::text, 'present', 'the restored deployment has its own repository');

SELECT is((SELECT status FROM dborch.destroy('tap_bk_pg_r3', drop_backups => true)), 'destroying', 'destroy(drop_backups => true)');
SELECT is((SELECT status FROM dborch.wait('tap_bk_pg_r3', '60s')), 'destroyed', 'the deployment is destroyed');
\set out `test -e :'r3_bk_dir' && echo present || echo absent`
SELECT is(:'out'::text, 'absent', 'its backup directory is removed');
SELECT is((SELECT (status, expired_at IS NOT NULL)::text FROM dborch.backups WHERE id = :b4), '(expired,t)',
          'its backup rows stay, expired');
SELECT is((SELECT count(*) FROM dborch.secrets WHERE deployment_id = :r3_id), 0::bigint,
          'its backup passphrase is gone with them');

------------------------------------------------------------------------------
-- restore in place: stop, restore the diff backup, start; ready again
------------------------------------------------------------------------------
SELECT status AS ip_status FROM dborch.restore('tap_bk_pg', backup => :b2, in_place => true) \gset
SELECT is(:'ip_status'::text, 'restoring', 'restore(in_place => true) returns the deployment, restoring');
SELECT pg_temp.tap_error_full(format('SELECT dborch.restore(%L, backup => %s, in_place => true)', 'tap_bk_pg', :b1)) AS err \gset
SELECT matches(:'err'::text, '^55000: ', 'a second restore in place while one runs is refused (55000)');
-- restoring is a transitional state like stopping or starting: while it lasts
-- connection_string() refuses with the hint "Wait for it with dborch.wait()"
SELECT is((SELECT status FROM dborch.wait('tap_bk_pg', '120s')), 'ready',
          'wait() returns once the restore in place is done: the deployment is ready');
SELECT is(pg_temp.tap_settle('tap_bk_pg', '120s'), 'ready', 'the deployment restored in place ends ready');
\set out `PGCONNECT_TIMEOUT=5 psql :'pg_uri' -XAtqc "SELECT string_agg(cast(id AS text), ',' ORDER BY id) FROM tap_t" 2>&1`
SELECT is(:'out'::text, '1,2', 'restored in place, it holds exactly the rows of the diff backup');
\set out `PGCONNECT_TIMEOUT=5 psql :'pg_uri' -XAtqc "SELECT count(*) FROM pg_class WHERE relname = 'tap_p'" 2>&1`
SELECT is(:'out'::text, '0', 'the table created after the backup is gone');
SELECT isnt((SELECT pid FROM dborch.instances WHERE deployment_id = :dep_id AND status <> 'destroyed'), :pg_pid,
            'its server was restarted (a new pid)');
SELECT is((SELECT status FROM dborch.instances WHERE deployment_id = :dep_id AND status <> 'destroyed'), 'running',
          'its instance is running');
SELECT set_eq(format($$SELECT e.detail ->> 'stage' FROM dborch.events e JOIN dborch.jobs j ON j.id = e.job_id
                      WHERE j.deployment_id = %s AND j.kind = 'restore_in_place' AND e.kind = 'stage'$$, :dep_id),
              ARRAY['archive_wal', 'stop', 'restore_data', 'network', 'security', 'start', 'register', 'credentials',
                    'health_validation', 'finalize'],
              'the restore in place stopped, restored and started the deployment');
SELECT is((SELECT count(*) FROM dborch.events WHERE deployment_id = :dep_id AND kind = 'restored'), 1::bigint,
          'a restored event');

------------------------------------------------------------------------------
-- a point in time after the restore in place (on its new timeline, which
-- forked from the old one at the end of the diff backup; the incr backup, on
-- the old timeline, is newer than the fork).  A quick start_timeout and a
-- single attempt make a failure show at once.
------------------------------------------------------------------------------
ALTER SYSTEM SET dborch.start_timeout = '10s';
ALTER SYSTEM SET dborch.job_max_attempts = 1;
SELECT pg_reload_conf() \g /dev/null
SELECT pg_sleep(0.3) \g /dev/null
\set t_noted2 `PGCONNECT_TIMEOUT=5 psql :'pg_uri' -XAtq -c "INSERT INTO tap_t VALUES (9, 'after the restore in place')" -c 'SELECT clock_timestamp()' 2>&1`
\set out `PGCONNECT_TIMEOUT=5 psql :'pg_uri' -XAtq -c "INSERT INTO tap_t VALUES (10, 'after the noted time')" 2>&1 && echo written`
SELECT is(:'out'::text, 'written', 'rows 9 and 10 are written around a noted time (no WAL switched by hand)');
-- the caller's DateStyle does not change the time restored to: with 'SQL,
-- DMY' the noted time prints as 08/12/...; dborch keeps it as a timestamp
SET DateStyle = 'SQL, DMY';
SELECT status AS pitr2_status FROM dborch.restore('tap_bk_pg', target_time => :'t_noted2', new_name => 'tap_bk_pg_pitr2') \gset
RESET DateStyle;
SELECT is(pg_temp.tap_settle('tap_bk_pg_pitr2', '120s'), 'ready',
          'a point-in-time restore to a time after the restore in place ends ready');
SELECT coalesce((SELECT dborch.connection_string(name) FROM dborch.deployments
                  WHERE name = 'tap_bk_pg_pitr2' AND status = 'ready'), 'postgresql://tap-not-ready.invalid/') AS pitr2_uri \gset
\set out `PGCONNECT_TIMEOUT=5 psql :'pitr2_uri' -XAtqc "SELECT string_agg(cast(id AS text), ',' ORDER BY id) FROM tap_t" 2>&1`
SELECT is(:'out'::text, '1,2,9', 'and holds the rows of the restored timeline up to the noted time');
ALTER SYSTEM RESET dborch.start_timeout;
ALTER SYSTEM RESET dborch.job_max_attempts;
SELECT pg_reload_conf() \g /dev/null

------------------------------------------------------------------------------
-- destroy keeps the backups; a destroyed deployment can be restored
------------------------------------------------------------------------------
SELECT is((SELECT status FROM dborch.destroy('tap_bk_pg')), 'destroying', 'destroy() of the source, keeping its backups');
SELECT is((SELECT status FROM dborch.wait('tap_bk_pg', '60s')), 'destroyed', 'the source is destroyed');
SELECT is((SELECT array_agg(status ORDER BY id) FROM dborch.backups WHERE id IN (:b1, :b2, :b3)),
          ARRAY['succeeded', 'succeeded', 'succeeded'], 'its backup rows stay, succeeded');
\set out `test -f :'bk_dir'/pgbackrest.conf && test -d :'bk_dir'/repo/backup/tap_bk_pg && echo present || echo absent`
SELECT is(:'out'::text, 'present', 'its repository stays');
SELECT is((SELECT array_agg(name ORDER BY name) FROM dborch.secrets WHERE deployment_id = :dep_id),
          ARRAY['backup_passphrase'], 'its password is gone, its backup passphrase stays');
SELECT status AS r4_status FROM dborch.restore('tap_bk_pg', new_name => 'tap_bk_pg_r4') \gset
SELECT is((SELECT status FROM dborch.wait('tap_bk_pg_r4', '120s')), 'ready', 'the destroyed deployment''s newest backup restores into a new name');
SELECT dborch.connection_string('tap_bk_pg_r4') AS r4_uri \gset
\set out `PGCONNECT_TIMEOUT=5 psql :'r4_uri' -XAtqc "SELECT string_agg(cast(id AS text), ',' ORDER BY id) FROM tap_t" 2>&1`
SELECT is(:'out'::text, '1,2,3', 'it holds the rows of the newest backup (the incr one)');

------------------------------------------------------------------------------
-- the backup passphrase never leaks
------------------------------------------------------------------------------
SELECT value AS pp FROM dborch.secrets WHERE deployment_id = :dep_id AND name = 'backup_passphrase' \gset
SELECT cmp_ok(length(:'pp'), '>=', 32, 'the backup passphrase is a long secret');
SELECT is((SELECT count(*) FROM dborch.events
            WHERE position(:'pp' IN message) > 0 OR position(:'pp' IN detail::text) > 0), 0::bigint,
          'no event holds the backup passphrase');
SELECT is((SELECT count(*) FROM dborch.jobs
            WHERE position(:'pp' IN args::text) > 0 OR position(:'pp' IN coalesce(error, '')) > 0), 0::bigint,
          'no job args or error holds the backup passphrase');
SELECT is((SELECT count(*) FROM dborch.backups
            WHERE position(:'pp' IN coalesce(error, '') || coalesce(verify_error, '') || coalesce(file, '')) > 0), 0::bigint,
          'no backup row holds the backup passphrase');
\set out `grep -cF -- :'pp' :'test_dir'/server.log`
SELECT is(:'out'::text, '0', 'the control plane''s server log does not hold the backup passphrase');
\set out `grep -rlF -- :'pp' :'test_dir'/managed | tr '\n' ' '`
SELECT is(:'out'::text, :'bk_dir' || '/pgbackrest.conf ', 'of all managed files only pgbackrest.conf holds it (not the logs, not restored instances)');

------------------------------------------------------------------------------
-- the backups a destroyed deployment kept are dropped later with
-- destroy(drop_backups => true), but not while a job is to read them
------------------------------------------------------------------------------
BEGIN;
SELECT id AS v2_job FROM dborch.verify_backup(:b1) \gset
SELECT pg_temp.tap_error($$SELECT dborch.destroy('tap_bk_pg', drop_backups => true)$$) AS err \gset
ROLLBACK;
SELECT is(:'err'::text, '55006: backups of deployment "tap_bk_pg" are in use by job ' || :v2_job,
          'dropping backups that a queued verification is to read is refused (55006)');
SELECT count(*) AS destroy_jobs FROM dborch.jobs WHERE deployment_id = :dep_id AND kind = 'destroy' \gset
SELECT is((SELECT status FROM dborch.destroy('tap_bk_pg', drop_backups => true)), 'destroyed',
          'destroy(drop_backups => true) of the destroyed deployment: it stays destroyed');
SELECT max(id) AS drop_job FROM dborch.jobs WHERE deployment_id = :dep_id AND kind = 'destroy' \gset
SELECT is((SELECT count(*) FROM dborch.jobs WHERE deployment_id = :dep_id AND kind = 'destroy'), :destroy_jobs::bigint + 1,
          'a destroy job is queued for the kept backups');
SELECT is((SELECT state FROM dborch.wait_job(:drop_job, '60s')), 'succeeded', 'it succeeds');
\set out `test -e :'bk_dir' && echo present || echo absent`
SELECT is(:'out'::text, 'absent', 'the kept repository is removed');
SELECT is((SELECT array_agg(status ORDER BY id) FROM dborch.backups WHERE id IN (:b1, :b2, :b3)),
          ARRAY['expired', 'expired', 'expired'], 'the backup rows stay, expired');
SELECT is((SELECT count(*) FROM dborch.secrets WHERE deployment_id = :dep_id), 0::bigint, 'the backup passphrase is gone');
SELECT is((SELECT count(*) FROM dborch.events WHERE job_id = :drop_job AND kind = 'backups_dropped'), 1::bigint,
          'a backups_dropped event');
SELECT is((SELECT count(*) FROM dborch.events WHERE job_id = :drop_job AND kind = 'destroyed'), 0::bigint,
          'no second destroyed event');
SELECT is((SELECT status FROM dborch.destroy('tap_bk_pg', drop_backups => true)), 'destroyed',
          'destroy(drop_backups => true) once more is a notice');
SELECT is((SELECT count(*) FROM dborch.jobs WHERE deployment_id = :dep_id AND kind = 'destroy'), :destroy_jobs::bigint + 1,
          'and queues nothing');
SELECT is(pg_temp.tap_error($$SELECT dborch.restore('tap_bk_pg', new_name => 'tap_bk_pg_r5')$$),
          '55000: deployment "tap_bk_pg" has no backup to restore', 'nothing is left to restore');

SELECT * FROM finish();

------------------------------------------------------------------------------
-- cleanup, also after a failure above: no pause, no changed setting, no
-- deployment of this file left, their backups dropped (the source's
-- directory is removed by hand too, in case the test that drops it failed).
------------------------------------------------------------------------------
ALTER SYSTEM RESET dborch.pause_at_stage;
ALTER SYSTEM RESET dborch.start_timeout;
ALTER SYSTEM RESET dborch.job_max_attempts;
SELECT pg_reload_conf() \g /dev/null
SELECT count(dborch.destroy(name, drop_backups => true)) AS n FROM dborch.deployments
 WHERE name LIKE 'tap\_bk\_pg%' AND status NOT IN ('destroyed', 'destroying') \gset
SELECT count(pg_temp.tap_settle(name, '60s')) AS n FROM dborch.deployments
 WHERE name LIKE 'tap\_bk\_pg%' AND status = 'destroying' \gset
\set out `rm -rf :'bk_dir' :'nopass_conf' :'wrongpass_conf'`
