-- Backup schedules and retention: schedule_backups() creates a pg_cron job
-- whose command calls dborch.backup(); running that command by hand makes a
-- backup; retention {"full": 2} after three full backups leaves two (the
-- oldest, and what depends on it, become expired, in the catalog and in
-- pgBackRest's repository or the Redis backup directory); expired backups can
-- be neither restored nor verified, and the point-in-time window moves;
-- unschedule_backups() and destroy() remove the pg_cron jobs; the refusals of
-- bad schedules, kinds and retentions.
--
-- Autocommit mode and ON_ERROR_STOP off: see 10_postgres.sql.
\set ON_ERROR_STOP 0
\getenv test_dir DBORCH_TEST_DIR
SET client_min_messages = warning;
\ir helpers.psql

SELECT plan(83);

SELECT id AS dep_id FROM dborch.deploy('tap_bk_sched', 'postgres', '{"memory": "32MB"}') \gset
SELECT id AS rdep_id FROM dborch.deploy('tap_bk_sched_r', 'redis', '{"memory": "16MB"}') \gset
SELECT is((SELECT status FROM dborch.wait('tap_bk_sched', '60s')), 'ready', 'a PostgreSQL deployment is ready');
SELECT is((SELECT status FROM dborch.wait('tap_bk_sched_r', '60s')), 'ready', 'a Redis deployment is ready');
SELECT :'test_dir' || '/managed/backups/tap_bk_sched-' || :dep_id AS bk_dir,
       :'test_dir' || '/managed/backups/tap_bk_sched_r-' || :rdep_id AS rbk_dir \gset

------------------------------------------------------------------------------
-- refusals
------------------------------------------------------------------------------
SELECT pg_temp.tap_error_full($$SELECT dborch.schedule_backups('tap_bk_sched', 'not a schedule')$$) AS err \gset
SELECT matches(:'err'::text, '^22023: invalid schedule', 'a schedule that is not a cron expression is refused (22023)');
-- five fields that pg_cron refuses: dborch's 22023, and no internal statement as context
CREATE FUNCTION pg_temp.tap_error_context(q text) RETURNS text LANGUAGE plpgsql AS $f$
DECLARE
	st text;
	msg text;
	ctx text;
BEGIN
	EXECUTE q;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, ctx = PG_EXCEPTION_CONTEXT;
	RETURN st || ': ' || msg || ' | ' || ctx;
END
$f$;
SELECT pg_temp.tap_error_context($$SELECT dborch.schedule_backups('tap_bk_sched', '61 * * * *')$$) AS err \gset
SELECT matches(:'err'::text, '^22023: invalid schedule "61 \* \* \* \*" \| ', 'five fields pg_cron refuses (minute 61) are refused (22023)');
SELECT unalike(:'err'::text, '%backup_schedules%', 'its context shows no statement of dborch''s');
-- (rolled back, so that the other assertions hold if it is accepted)
BEGIN;
SELECT pg_temp.tap_error_full($$SELECT dborch.schedule_backups('tap_bk_sched', '*/30 * * * * *')$$) AS err \gset
ROLLBACK;
SELECT matches(:'err'::text, '^22023: ',
               'a six-field (seconds) cron expression is refused (22023): pg_cron 1.4 would run it every 30 minutes');
SELECT pg_temp.tap_error_full($$SELECT dborch.schedule_backups('tap_bk_sched', '0 3 * * *', 'weekly')$$) AS err \gset
SELECT matches(:'err'::text, '^22023: invalid backup kind', 'an unknown kind is refused (22023)');
SELECT pg_temp.tap_error_full($$SELECT dborch.schedule_backups('tap_bk_sched_r', '0 3 * * *', 'diff')$$) AS err \gset
SELECT matches(:'err'::text, '^22023: Redis deployments only take full backups \| .*\| .*use kind ''full''',
               'scheduled diff backups of Redis are refused (22023), with a hint');
SELECT pg_temp.tap_error_full($$SELECT dborch.schedule_backups('tap_bk_sched', '0 3 * * *', 'full', '{"full": 0}')$$) AS err \gset
SELECT matches(:'err'::text, '^22023: retention "full" must be a whole number of at least 1', 'retention {"full": 0} is refused (22023)');
SELECT pg_temp.tap_error_full($$SELECT dborch.schedule_backups('tap_bk_sched', '0 3 * * *', 'full', '{"full": 1.5}')$$) AS err \gset
SELECT matches(:'err'::text, '^22023: ', 'retention {"full": 1.5} is refused (22023)');
SELECT pg_temp.tap_error_full($$SELECT dborch.schedule_backups('tap_bk_sched', '0 3 * * *', 'full', '{"max_age": "1 hour"}')$$) AS err \gset
SELECT matches(:'err'::text, '^22023: retention "max_age" must be between one day and 100 years', 'retention max_age under a day is refused (22023)');
SELECT pg_temp.tap_error_full($$SELECT dborch.schedule_backups('tap_bk_sched', '0 3 * * *', 'full', '{"max_age": "2000000000 days"}')$$) AS err \gset
SELECT matches(:'err'::text, '^22023: retention "max_age" must be between one day and 100 years', 'a max_age beyond pgBackRest''s days is refused (22023)');
SELECT pg_temp.tap_error_full($$SELECT dborch.schedule_backups('tap_bk_sched', '0 3 * * *', 'full', '{"weeks": 2}')$$) AS err \gset
SELECT matches(:'err'::text, '^22023: invalid retention option "weeks"', 'an unknown retention option is refused (22023)');
SELECT pg_temp.tap_error_full($$SELECT dborch.schedule_backups('tap_bk_sched', '0 3 * * *', 'full', '[2]')$$) AS err \gset
SELECT matches(:'err'::text, '^22023: retention must be a JSON object', 'a retention that is not an object is refused (22023)');
SELECT pg_temp.tap_error_full($$SELECT dborch.schedule_backups('tap_bk_nothere', '0 3 * * *')$$) AS err \gset
SELECT matches(:'err'::text, '^42704: ', 'scheduling backups of an unknown deployment is refused (42704)');
SELECT is((SELECT count(*) FROM dborch.backup_schedules WHERE deployment_id IN (:dep_id, :rdep_id)), 0::bigint,
          'the refused calls left no schedule');
SELECT is((SELECT count(*) FROM dborch.backup_retention WHERE deployment_id IN (:dep_id, :rdep_id)), 0::bigint,
          'nor a retention');
SELECT is((SELECT count(*) FROM cron.job WHERE command LIKE '%tap\_bk\_sched%'), 0::bigint, 'nor a pg_cron job');

------------------------------------------------------------------------------
-- a schedule is a pg_cron job calling dborch.backup()
------------------------------------------------------------------------------
SELECT id AS sched_id, cron_job_id AS cron_id, kind AS s_kind, schedule AS s_schedule, verify AS s_verify
  FROM dborch.schedule_backups('tap_bk_sched', '0 3 * * *', 'full', '{"full": 2}') \gset
SELECT is((:'s_kind', :'s_schedule', :'s_verify')::text, '(full,"0 3 * * *",f)',
          'schedule_backups() returns the schedule: kind, cron expression, verify');
SELECT is((SELECT (schedule, command, database, active)::text FROM cron.job WHERE jobid = :cron_id),
          ('0 3 * * *', 'SELECT dborch.backup(''tap_bk_sched'', ''full'', verify => false)', 'postgres', true)::text,
          'a cron.job row runs SELECT dborch.backup(...) at that schedule in this database');
SELECT is((SELECT jobname::text FROM cron.job WHERE jobid = :cron_id), 'dborch_backup_' || :sched_id,
          'the pg_cron job is named after the schedule');
SELECT is((SELECT (full_count, max_age)::text FROM dborch.backup_retention WHERE deployment_id = :dep_id), '(2,)',
          'the retention is recorded: two full backups');
SELECT is((SELECT count(*) FROM dborch.events WHERE deployment_id = :dep_id AND kind = 'backups_scheduled'), 1::bigint,
          'a backups_scheduled event');

-- The pg_cron jobs of this file must not fire while it runs (it runs their
-- commands by hand and counts the backups): each is paused once checked.
SELECT cron.alter_job(:cron_id, active => false) \g /dev/null
SELECT id AS sched2_id, cron_job_id AS cron2_id
  FROM dborch.schedule_backups('tap_bk_sched', '30 * * * *', 'incr', verify => true) \gset
SELECT cron.alter_job(:cron2_id, active => false) \g /dev/null
SELECT is((SELECT command FROM cron.job WHERE jobid = :cron2_id),
          'SELECT dborch.backup(''tap_bk_sched'', ''incr'', verify => true)',
          'a second schedule, of incr backups with verification, has its own pg_cron job');
SELECT is((SELECT (full_count, max_age)::text FROM dborch.backup_retention WHERE deployment_id = :dep_id), '(2,)',
          'a schedule without retention keeps the deployment''s retention');

------------------------------------------------------------------------------
-- the pg_cron command run by hand makes a backup; with an incr and two more
-- full backups, retention leaves the newest two full ones
------------------------------------------------------------------------------
SELECT is((SELECT pg_temp.tap_error_full(command) FROM cron.job WHERE jobid = :cron_id), 'no error',
          'the pg_cron job''s command runs');
SELECT id AS b1, job_id AS b1_job, requested_kind AS b1_req FROM dborch.backups
 WHERE deployment_id = :dep_id ORDER BY id DESC LIMIT 1 \gset
SELECT is(:'b1_req'::text, 'full', 'it queued a full backup');
SELECT is((SELECT state FROM dborch.wait_job(:b1_job, '120s')), 'succeeded', 'which succeeded');

SELECT id AS b1i, job_id AS b1i_job FROM dborch.backup('tap_bk_sched', 'incr') \gset
SELECT is((SELECT state FROM dborch.wait_job(:b1i_job, '120s')), 'succeeded', 'an incr backup on the first full one succeeded');
SELECT id AS b2, job_id AS b2_job FROM dborch.backup('tap_bk_sched', 'full') \gset
SELECT is((SELECT state FROM dborch.wait_job(:b2_job, '120s')), 'succeeded', 'a second full backup succeeded');
SELECT is((SELECT array_agg(status ORDER BY id) FROM dborch.backups WHERE deployment_id = :dep_id),
          ARRAY['succeeded', 'succeeded', 'succeeded'], 'with two full backups nothing is expired');
SELECT label AS b1_label, finished_at AS b1_finished FROM dborch.backups WHERE id = :b1 \gset
SELECT label AS b1i_label FROM dborch.backups WHERE id = :b1i \gset
SELECT id AS b3, job_id AS b3_job FROM dborch.backup('tap_bk_sched', 'full') \gset
SELECT is((SELECT state FROM dborch.wait_job(:b3_job, '120s')), 'succeeded', 'a third full backup succeeded');

SELECT is((SELECT array_agg(status ORDER BY id) FROM dborch.backups WHERE deployment_id = :dep_id),
          ARRAY['expired', 'expired', 'succeeded', 'succeeded'],
          'retention {"full": 2}: the oldest full backup and the incr on it are expired, two full ones stay');
SELECT ok((SELECT bool_and(expired_at IS NOT NULL AND expired_at >= finished_at) FROM dborch.backups WHERE id IN (:b1, :b1i)),
          'the expired backups have expired_at');
\set info `cd / && runuser -u postgres -- pgbackrest --config=:'bk_dir'/pgbackrest.conf --stanza=tap_bk_sched info --output=json 2>&1`
SELECT is((SELECT array_agg(x ->> 'label' ORDER BY x ->> 'label') FROM jsonb_array_elements(:'info'::jsonb -> 0 -> 'backup') x),
          (SELECT array_agg(label ORDER BY label) FROM dborch.backups WHERE id IN (:b2, :b3)),
          'pgbackrest info lists the two full backups kept, only');
\set out `ls :'bk_dir'/repo/backup/tap_bk_sched | grep -cE -- '^(:b1_label|:b1i_label)$'`
SELECT is(:'out'::text, '0', 'the expired backups are gone from the repository');
SELECT pg_temp.tap_error_full(format('SELECT dborch.restore(%L, backup => %s, new_name => %L)', 'tap_bk_sched', :b1, 'tap_bk_x')) AS err \gset
SELECT matches(:'err'::text, '^55000: backup [0-9]+ is expired', 'an expired backup cannot be restored (55000)');
SELECT pg_temp.tap_error_full(format('SELECT dborch.verify_backup(%s)', :b1)) AS err \gset
SELECT matches(:'err'::text, '^55000: backup [0-9]+ is expired', 'an expired backup cannot be verified (55000)');
SELECT pg_temp.tap_error_full(format('SELECT dborch.restore(%L, target_time => %L, new_name => %L)', 'tap_bk_sched',
                                (SELECT started_at - interval '1 second' FROM dborch.backups WHERE id = :b2), 'tap_bk_x')) AS err \gset
SELECT matches(:'err'::text, '^22023: target time .* is outside the recoverable window',
               'the point-in-time window now starts at the oldest backup kept');

------------------------------------------------------------------------------
-- another dborch_user member can neither see these backups nor act on them
------------------------------------------------------------------------------
DROP ROLE IF EXISTS tap_bk_mallory;
CREATE ROLE tap_bk_mallory IN ROLE dborch_user;
SET ROLE tap_bk_mallory;
SELECT pg_temp.tap_error_full($$SELECT dborch.backup('tap_bk_sched')$$) AS m_backup,
       pg_temp.tap_error_full($$SELECT dborch.restore('tap_bk_sched', new_name => 'tap_bk_mallory_copy')$$) AS m_restore,
       pg_temp.tap_error_full(format('SELECT dborch.verify_backup(%s)', :b3)) AS m_verify,
       pg_temp.tap_error_full($$SELECT dborch.schedule_backups('tap_bk_sched', '0 5 * * *')$$) AS m_schedule,
       pg_temp.tap_error_full($$SELECT dborch.unschedule_backups('tap_bk_sched')$$) AS m_unschedule,
       (SELECT count(*) FROM dborch.backups WHERE deployment = 'tap_bk_sched') AS m_backups,
       (SELECT count(*) FROM dborch.backup_schedules WHERE deployment = 'tap_bk_sched') AS m_schedules,
       (SELECT count(*) FROM dborch.backup_retention) AS m_retention \gset
RESET ROLE;
SELECT matches(:'m_backup'::text, '^42501: ', 'another owner cannot back the deployment up (42501)');
SELECT matches(:'m_restore'::text, '^42501: ', 'nor restore it (42501)');
SELECT matches(:'m_verify'::text, '^42501: ', 'nor verify its backup (42501)');
SELECT matches(:'m_schedule'::text, '^42501: ', 'nor schedule its backups (42501)');
SELECT matches(:'m_unschedule'::text, '^42501: ', 'nor unschedule them (42501)');
SELECT is((:'m_backups', :'m_schedules', :'m_retention')::text, '(0,0,0)',
          'nor see its backups, schedules or retention');
SELECT is((SELECT count(*) FROM dborch.deployments WHERE name = 'tap_bk_mallory_copy'), 0::bigint,
          'the refused restore made no deployment');
DROP ROLE tap_bk_mallory;

------------------------------------------------------------------------------
-- unschedule_backups() removes the pg_cron jobs
------------------------------------------------------------------------------
SELECT is(dborch.unschedule_backups('tap_bk_sched', 'incr'), 1, 'unschedule_backups(name, ''incr'') removes one schedule');
SELECT is((SELECT count(*) FROM cron.job WHERE jobid = :cron2_id), 0::bigint, 'its pg_cron job is gone');
SELECT is((SELECT count(*) FROM cron.job WHERE jobid = :cron_id), 1::bigint, 'the full backups'' pg_cron job stays');
SELECT is(dborch.unschedule_backups('tap_bk_sched'), 1, 'unschedule_backups(name) removes the other one');
SELECT is((SELECT count(*) FROM cron.job WHERE jobid IN (:cron_id, :cron2_id)), 0::bigint, 'no pg_cron job of the deployment is left');
SELECT is((SELECT count(*) FROM dborch.backup_schedules WHERE deployment_id = :dep_id), 0::bigint, 'no schedule row is left');
SELECT is((SELECT count(*) FROM dborch.events WHERE deployment_id = :dep_id AND kind = 'backups_unscheduled'), 2::bigint,
          'a backups_unscheduled event for each call');
SELECT is(dborch.unschedule_backups('tap_bk_sched'), 0, 'unschedule_backups() with nothing scheduled returns 0');

------------------------------------------------------------------------------
-- destroy() removes the pg_cron jobs too
------------------------------------------------------------------------------
SELECT cron_job_id AS cron3_id FROM dborch.schedule_backups('tap_bk_sched', '15 4 * * *') \gset
SELECT cron.alter_job(:cron3_id, active => false) \g /dev/null
SELECT is((SELECT count(*) FROM cron.job WHERE jobid = :cron3_id), 1::bigint, 'a schedule again, with the default kind');
SELECT is((SELECT status FROM dborch.destroy('tap_bk_sched', drop_backups => true)), 'destroying', 'destroy(drop_backups => true)');
SELECT is((SELECT count(*) FROM cron.job WHERE jobid = :cron3_id), 0::bigint, 'destroy() removed the pg_cron job');
SELECT is((SELECT count(*) FROM dborch.backup_schedules WHERE deployment_id = :dep_id), 0::bigint, 'and the schedule row');
SELECT is((SELECT status FROM dborch.wait('tap_bk_sched', '60s')), 'destroyed', 'the deployment is destroyed');
\set out `test -e :'bk_dir' && echo present || echo absent`
SELECT is(:'out'::text, 'absent', 'its backup directory is removed');
SELECT is((SELECT array_agg(DISTINCT status) FROM dborch.backups WHERE deployment_id = :dep_id), ARRAY['expired'],
          'all its backup rows are expired');

------------------------------------------------------------------------------
-- Redis: the same retention removes the oldest snapshot file
------------------------------------------------------------------------------
SELECT cron_job_id AS rcron_id FROM dborch.schedule_backups('tap_bk_sched_r', '*/10 * * * *', 'full', '{"full": 2}') \gset
SELECT cron.alter_job(:rcron_id, active => false) \g /dev/null
SELECT is((SELECT command FROM cron.job WHERE jobid = :rcron_id),
          'SELECT dborch.backup(''tap_bk_sched_r'', ''full'', verify => false)', 'a pg_cron job for the Redis backups');
SELECT is((SELECT pg_temp.tap_error_full(command) FROM cron.job WHERE jobid = :rcron_id), 'no error', 'its command runs (1)');
SELECT id AS rb1, job_id AS rb1_job FROM dborch.backups WHERE deployment_id = :rdep_id ORDER BY id DESC LIMIT 1 \gset
SELECT is((SELECT state FROM dborch.wait_job(:rb1_job, '60s')), 'succeeded', 'the first Redis backup succeeded');
SELECT file AS rb1_file FROM dborch.backups WHERE id = :rb1 \gset
SELECT is((SELECT pg_temp.tap_error_full(command) FROM cron.job WHERE jobid = :rcron_id), 'no error', 'its command runs (2)');
SELECT job_id AS rb2_job FROM dborch.backups WHERE deployment_id = :rdep_id ORDER BY id DESC LIMIT 1 \gset
SELECT is((SELECT state FROM dborch.wait_job(:rb2_job, '60s')), 'succeeded', 'the second Redis backup succeeded');
SELECT is((SELECT pg_temp.tap_error_full(command) FROM cron.job WHERE jobid = :rcron_id), 'no error', 'its command runs (3)');
SELECT job_id AS rb3_job FROM dborch.backups WHERE deployment_id = :rdep_id ORDER BY id DESC LIMIT 1 \gset
SELECT is((SELECT state FROM dborch.wait_job(:rb3_job, '60s')), 'succeeded', 'the third Redis backup succeeded');
SELECT is((SELECT array_agg(status ORDER BY id) FROM dborch.backups WHERE deployment_id = :rdep_id),
          ARRAY['expired', 'succeeded', 'succeeded'], 'retention {"full": 2}: the oldest Redis backup is expired');
\set out `test -e :'rb1_file' && echo present || echo absent; ls :'rbk_dir' | grep -c 'rdb.zst.aes$'`
SELECT is(:'out'::text, E'absent\n2', 'its file is removed, the two kept remain');
SELECT is((SELECT status FROM dborch.destroy('tap_bk_sched_r', drop_backups => true)), 'destroying', 'destroy() of the Redis deployment');
SELECT is((SELECT count(*) FROM cron.job WHERE jobid = :rcron_id), 0::bigint, 'removed its pg_cron job');
SELECT is((SELECT status FROM dborch.wait('tap_bk_sched_r', '60s')), 'destroyed', 'it is destroyed');

------------------------------------------------------------------------------
-- Real pg_cron runs (no command run by hand): a schedule of every minute on
-- a ready deployment makes a backup; the same on a stopped deployment fails
-- in pg_cron, and the launcher reports it (an event and an alert)
------------------------------------------------------------------------------
SELECT status FROM dborch.deploy('tap_bk_sched_ok', 'redis', '{"memory": "8MB"}') \gset
SELECT status FROM dborch.deploy('tap_bk_sched_off', 'redis', '{"memory": "8MB"}') \gset
SELECT is((SELECT status FROM dborch.wait('tap_bk_sched_ok', '60s')), 'ready', 'a Redis deployment for a real schedule is ready');
SELECT is((SELECT status FROM dborch.wait('tap_bk_sched_off', '60s')), 'ready', 'and one that will be stopped');
SELECT status FROM dborch.stop('tap_bk_sched_off') \gset
SELECT is((SELECT status FROM dborch.wait('tap_bk_sched_off', '60s')), 'stopped', 'it is stopped');
SELECT id AS ok_dep FROM dborch.deployments WHERE name = 'tap_bk_sched_ok' AND status <> 'destroyed' \gset
SELECT id AS off_dep FROM dborch.deployments WHERE name = 'tap_bk_sched_off' AND status <> 'destroyed' \gset
SELECT cron_job_id AS ok_cron FROM dborch.schedule_backups('tap_bk_sched_ok', '* * * * *') \gset
SELECT id AS off_sched FROM dborch.schedule_backups('tap_bk_sched_off', '* * * * *') \gset
SELECT ok(pg_temp.tap_until(format($$SELECT EXISTS (SELECT 1 FROM dborch.backups WHERE deployment_id = %s
                                                    AND status = 'succeeded')$$, :ok_dep), '150s'),
          'pg_cron ran the schedule (at the next minute): a backup of the ready deployment succeeded');
SELECT is((SELECT status FROM cron.job_run_details WHERE jobid = :ok_cron ORDER BY runid LIMIT 1), 'succeeded',
          'cron.job_run_details records the run as succeeded');
SELECT ok(pg_temp.tap_until(format($$SELECT EXISTS (SELECT 1 FROM dborch.events WHERE deployment_id = %s
                                                    AND kind = 'scheduled_backup_failed')$$, :off_dep), '150s'),
          'the run for the stopped deployment failed in pg_cron, and the launcher reported it');
SELECT matches((SELECT message FROM dborch.events WHERE deployment_id = :off_dep AND kind = 'scheduled_backup_failed'
                 ORDER BY id LIMIT 1),
               'the scheduled full backup \("\* \* \* \* \*"\) did not run: .*stopped',
               'the event says which schedule and why');
SELECT ok((SELECT count(*) = 1 FROM dborch.alerts WHERE deployment_id = :off_dep
            AND payload -> 'commonLabels' ->> 'alertname' = 'DborchScheduledBackupFailed'
            AND payload -> 'commonLabels' ->> 'schedule_id' = :'off_sched'),
          'a DborchScheduledBackupFailed alert, once for that run');
SELECT is((SELECT count(*) FROM dborch.events WHERE deployment_id = :ok_dep AND kind = 'scheduled_backup_failed'), 0::bigint,
          'no failure is reported for the schedule that ran');
SELECT count(dborch.destroy(name, drop_backups => true)) AS n FROM dborch.deployments
 WHERE name IN ('tap_bk_sched_ok', 'tap_bk_sched_off') AND status <> 'destroyed' \gset
SELECT is((SELECT count(*) FROM cron.job WHERE command LIKE '%tap\_bk\_sched\_o%'), 0::bigint,
          'destroy() removes their pg_cron jobs');

SELECT * FROM finish();

-- Safety net after a failure above: no deployment, schedule or pg_cron job of this file left.
SELECT count(dborch.destroy(name, drop_backups => true)) AS n FROM dborch.deployments
 WHERE name LIKE 'tap\_bk\_sched%' AND status NOT IN ('destroyed', 'destroying') \gset
SELECT count(pg_temp.tap_settle(name, '60s')) AS n FROM dborch.deployments
 WHERE name LIKE 'tap\_bk\_sched%' AND status = 'destroying' \gset
SELECT count(cron.unschedule(jobid)) AS n FROM cron.job WHERE command LIKE '%tap\_bk\_sched%' \gset
RESET ROLE;
DROP ROLE IF EXISTS tap_bk_mallory;
