-- Backups and restores of a Redis deployment: keys written, a backup (an RDB
-- snapshot, compressed and encrypted into one file with its SHA-256), keys
-- changed, the backup restored into a new deployment gives the keys as at the
-- backup (values, types, TTLs), and survives a restart; restore in place does
-- the same to the deployment itself; verification of a good backup sets
-- verified_at; a flipped byte in the file makes verification fail (also when
-- the recorded checksum was changed with it: the AES-GCM tag) and a restore of
-- it fail cleanly; the refusals of what Redis backups cannot do; no plaintext
-- in the backup file and no passphrase anywhere; destroy with drop_backups.
--
-- Autocommit mode and ON_ERROR_STOP off: see 10_postgres.sql.
\set ON_ERROR_STOP 0
\getenv test_dir DBORCH_TEST_DIR
SET client_min_messages = warning;
\ir helpers.psql

SELECT plan(80);

------------------------------------------------------------------------------
-- the deployment, and what Redis backups cannot do
------------------------------------------------------------------------------
SELECT id AS dep_id FROM dborch.deploy('tap_bk_redis', 'redis', '{"memory": "32MB"}') \gset
SELECT is((SELECT status FROM dborch.wait('tap_bk_redis', '60s')), 'ready', 'the Redis deployment is ready');
SELECT dborch.connection_string('tap_bk_redis') AS r_uri \gset
SELECT pg_temp.tap_dborch_uri(:'r_uri', 'tap_bk_redis') AS r_admin \gset
SELECT i.data_directory AS r_dir FROM dborch.instances i WHERE i.deployment_id = :dep_id AND i.status <> 'destroyed' \gset
SELECT value AS pw FROM dborch.secrets WHERE deployment_id = :dep_id AND name = 'password' \gset
SELECT :'test_dir' || '/managed/backups/tap_bk_redis-' || :dep_id AS bk_dir,
       'dborch-canary-' || md5(random()::text) AS canary \gset

SELECT pg_temp.tap_error_full($$SELECT dborch.backup('tap_bk_redis', 'diff')$$) AS err \gset
SELECT matches(:'err'::text, '^22023: Redis deployments only take full backups \| .*\| .*use kind ''full''',
               'kind diff on Redis is refused (22023), with a hint to use kind full');
SELECT pg_temp.tap_error_full($$SELECT dborch.backup('tap_bk_redis', 'incr')$$) AS err \gset
SELECT matches(:'err'::text, '^22023: Redis deployments only take full backups', 'kind incr on Redis is refused (22023)');
SELECT is((SELECT count(*) FROM dborch.backups WHERE deployment_id = :dep_id), 0::bigint, 'the refused backups left no row');

------------------------------------------------------------------------------
-- keys, and a backup of them
------------------------------------------------------------------------------
\set out `seq 1 5000 | awk '{ printf "SET tap:k%d value-%d-of-the-compressible-backup-test\n", $1, $1 }' | timeout 30 redis-cli -u :'r_uri' --no-auth-warning --pipe 2>&1 | tail -1`
SELECT is(:'out'::text, 'errors: 0, replies: 5000', '5000 keys are written');
\set out `timeout 10 redis-cli -u :'r_uri' --no-auth-warning SET tap:canary ':canary' 2>&1`
SELECT is(:'out'::text, 'OK', 'a key holding a canary string is written');
\set out `(timeout 10 redis-cli -u :'r_uri' --no-auth-warning SET tap:ttl short-lived EX 3600; timeout 10 redis-cli -u :'r_uri' --no-auth-warning HSET tap:hash f1 v1 f2 v2; timeout 10 redis-cli -u :'r_uri' --no-auth-warning RPUSH tap:list a b c) 2>&1 | tr '\n' ' '`
SELECT is(:'out'::text, 'OK 2 3 ', 'a key with a TTL, a hash and a list are written');

SELECT id AS b1, job_id AS b1_job, status AS b1_status FROM dborch.backup('tap_bk_redis') \gset
SELECT is(:'b1_status'::text, 'queued', 'backup() with the default kind returns the queued backup');
SELECT is((SELECT state FROM dborch.wait_job(:b1_job, '60s')), 'succeeded', 'the backup job succeeded');
SELECT is((SELECT (kind, requested_kind, status, encrypted, compressed, engine)::text FROM dborch.backups WHERE id = :b1),
          '(full,full,succeeded,t,t,redis)', 'the backup: a full one, succeeded, encrypted and compressed');
SELECT is((SELECT (keys, keys_with_ttl)::text FROM dborch.backups WHERE id = :b1), '(5004,1)',
          'it records 5004 keys, one of them with a TTL');
SELECT ok((SELECT size_bytes > 0 AND stored_bytes > 0 AND stored_bytes < size_bytes FROM dborch.backups WHERE id = :b1),
          'stored_bytes (zstd) is below size_bytes (the RDB)');
SELECT ok((SELECT snapshot_at IS NOT NULL AND snapshot_at <= finished_at AND started_at <= finished_at FROM dborch.backups WHERE id = :b1),
          'the snapshot time, start and finish are recorded');
SELECT ok((SELECT start_lsn IS NULL AND stop_lsn IS NULL AND wal_start IS NULL FROM dborch.backups WHERE id = :b1),
          'no LSN range for a Redis backup');
SELECT matches((SELECT checksum FROM dborch.backups WHERE id = :b1), '^[0-9a-f]{64}$', 'a SHA-256 checksum is recorded');
SELECT file AS b1_file FROM dborch.backups WHERE id = :b1 \gset
SELECT is(:'b1_file'::text, :'bk_dir' || '/' || :b1 || '.rdb.zst.aes', 'the file is <backup directory>/<id>.rdb.zst.aes');
\set out `sha256sum :'b1_file' | cut -d' ' -f1`
SELECT is(:'out'::text, (SELECT checksum FROM dborch.backups WHERE id = :b1), 'the checksum is the SHA-256 of the file');
\set out `stat -c %s :'b1_file'`
SELECT is(:'out'::bigint, (SELECT stored_bytes FROM dborch.backups WHERE id = :b1), 'stored_bytes is the size of the file');
\set out `stat -c '%a %U' :'bk_dir' :'b1_file' | tr '\n' ' '`
SELECT is(:'out'::text, '700 postgres 600 postgres ', 'the backup directory is 0700, the file 0600, owned by postgres');
\set out `head -c 8 :'b1_file'`
SELECT is(:'out'::text, 'DBORCHR1', 'the file starts with the dborch format''s magic (not an RDB header)');
\set out `grep -rlF -- :'canary' :'r_dir' | wc -l`
SELECT cmp_ok(:'out'::int, '>', 0, 'the canary string is in the deployment''s own files (the search works)');
\set out `grep -rlaF -e :'canary' -e tap:k1 -e REDIS0 :'bk_dir' | tr '\n' ' '`
SELECT is(:'out'::text, '', 'the backup file holds neither the canary, a key name nor an RDB header in clear text');
SELECT is((SELECT (detail ->> 'backup_id')::bigint FROM dborch.events WHERE job_id = :b1_job AND kind = 'backup'),
          :b1::bigint, 'a backup event names the backup');

------------------------------------------------------------------------------
-- keys changed; the backup restored into a new deployment has them as they were
------------------------------------------------------------------------------
\set out `(timeout 10 redis-cli -u :'r_uri' --no-auth-warning SET tap:k1 changed; timeout 10 redis-cli -u :'r_uri' --no-auth-warning DEL tap:k2 tap:hash; timeout 10 redis-cli -u :'r_uri' --no-auth-warning SET tap:new added; timeout 10 redis-cli -u :'r_uri' --no-auth-warning RPUSH tap:list d) 2>&1 | tr '\n' ' '`
SELECT is(:'out'::text, 'OK 2 OK 4 ', 'keys are changed, deleted and added after the backup');

SELECT pg_temp.tap_error_full($$SELECT dborch.restore('tap_bk_redis', target_time => now(), new_name => 'tap_bk_x')$$) AS err \gset
SELECT matches(:'err'::text, '^22023: Redis deployments cannot be restored to a point in time \| .*\| .*backup => id',
               'a point-in-time restore of Redis is refused (22023), with a hint to restore a backup');

SELECT status AS rr_status FROM dborch.restore('tap_bk_redis', backup => :b1, new_name => 'tap_bk_redis_r') \gset
SELECT is(:'rr_status'::text, 'pending', 'restore() into a new name returns the new deployment, pending');
SELECT is((SELECT status FROM dborch.wait('tap_bk_redis_r', '60s')), 'ready', 'the restored deployment is ready');
SELECT dborch.connection_string('tap_bk_redis_r') AS rr_uri \gset
SELECT pg_temp.tap_dborch_uri(:'rr_uri', 'tap_bk_redis_r') AS rr_admin \gset
\set out `for c in 'GET tap:k1' 'EXISTS tap:k2' 'EXISTS tap:new' 'GET tap:k4999' 'HGET tap:hash f2' 'LRANGE tap:list 0 -1' 'DBSIZE'; do timeout 10 redis-cli -u :'rr_uri' --no-auth-warning $c; done 2>&1 | tr '\n' ' '`
SELECT is(:'out'::text, 'value-1-of-the-compressible-backup-test 1 0 value-4999-of-the-compressible-backup-test v2 a b c 5004 ',
          'the restored deployment has the keys as at the backup: old values, deleted keys back, added keys absent');
\set out `timeout 10 redis-cli -u :'rr_uri' --no-auth-warning GET tap:canary 2>&1`
SELECT is(:'out'::text, :'canary', 'the canary value is restored');
\set out `timeout 10 redis-cli -u :'rr_uri' --no-auth-warning TTL tap:ttl 2>&1`
SELECT ok(:'out'::int BETWEEN 3000 AND 3600, 'the key with a TTL keeps its TTL');
\set out `timeout 10 redis-cli -u :'rr_admin' --no-auth-warning CONFIG GET appendonly 2>&1 | tail -1`
SELECT is(:'out'::text, 'yes', 'the restored deployment has its append-only file on');
SELECT isnt((SELECT value FROM dborch.secrets WHERE name = 'password'
              AND deployment_id = (SELECT id FROM dborch.deployments WHERE name = 'tap_bk_redis_r' AND status <> 'destroyed')),
            :'pw', 'the restored deployment has its own password');
SELECT regexp_replace(:'rr_uri', ':[^:@/]+@', ':' || :'pw' || '@') AS rr_with_source_pw \gset
\set out `timeout 10 redis-cli -u :'rr_with_source_pw' --no-auth-warning PING 2>&1`
SELECT matches(:'out'::text, 'WRONGPASS', 'the source''s password is refused by the restored deployment');

-- a stopped deployment cannot be backed up; after a restart the restored keys
-- (the append-only file's base) and one written since (its increment) are there
\set out `timeout 10 redis-cli -u :'rr_uri' --no-auth-warning SET tap:after_restore yes 2>&1`
SELECT is(:'out'::text, 'OK', 'a key is written to the restored deployment');
SELECT is((SELECT status FROM dborch.stop('tap_bk_redis_r')), 'stopping', 'stop() of the restored deployment');
SELECT is((SELECT status FROM dborch.wait('tap_bk_redis_r', '60s')), 'stopped', 'it is stopped');
SELECT pg_temp.tap_error_full($$SELECT dborch.backup('tap_bk_redis_r')$$) AS err \gset
SELECT matches(:'err'::text, '^55000: cannot back up deployment "tap_bk_redis_r" while it is stopped',
               'backup() of a stopped deployment is refused (55000)');
SELECT is((SELECT status FROM dborch.start('tap_bk_redis_r')), 'starting', 'start() of the restored deployment');
SELECT is((SELECT status FROM dborch.wait('tap_bk_redis_r', '60s')), 'ready', 'it is ready again');
\set out `for c in 'DBSIZE' 'GET tap:k1' 'EXISTS tap:new' 'GET tap:after_restore'; do timeout 10 redis-cli -u :'rr_uri' --no-auth-warning $c; done 2>&1 | tr '\n' ' '`
SELECT is(:'out'::text, '5005 value-1-of-the-compressible-backup-test 0 yes ',
          'after a restart it still has the restored keys and the one written since (its append-only file holds them)');

------------------------------------------------------------------------------
-- verification of the good backup
------------------------------------------------------------------------------
SELECT id AS v1_job FROM dborch.verify_backup(:b1) \gset
SELECT is(pg_temp.tap_job_end(:v1_job, '60s'), 'succeeded', 'the verification of the backup succeeded');
SELECT ok((SELECT verified_at IS NOT NULL AND verify_error IS NULL FROM dborch.backups WHERE id = :b1),
          'verified_at is set, verify_error empty');
SELECT is((SELECT count(*) FROM dborch.events WHERE job_id = :v1_job AND kind = 'backup_verified'), 1::bigint,
          'a backup_verified event');

------------------------------------------------------------------------------
-- restore in place
------------------------------------------------------------------------------
SELECT status AS ip_status FROM dborch.restore('tap_bk_redis', backup => :b1, in_place => true) \gset
SELECT is(:'ip_status'::text, 'restoring', 'restore(in_place => true) returns the deployment, restoring');
SELECT is(pg_temp.tap_settle('tap_bk_redis', '60s'), 'ready', 'the deployment restored in place ends ready');
\set out `for c in 'GET tap:k1' 'EXISTS tap:k2' 'EXISTS tap:new' 'LRANGE tap:list 0 -1' 'DBSIZE'; do timeout 10 redis-cli -u :'r_uri' --no-auth-warning $c; done 2>&1 | tr '\n' ' '`
SELECT is(:'out'::text, 'value-1-of-the-compressible-backup-test 1 0 a b c 5004 ',
          'restored in place, it has the keys as at the backup');
\set out `timeout 10 redis-cli -u :'r_admin' --no-auth-warning CONFIG GET appendonly 2>&1 | tail -1`
SELECT is(:'out'::text, 'yes', 'and its append-only file on again');
SELECT is((SELECT count(*) FROM dborch.events WHERE deployment_id = :dep_id AND kind = 'restored'), 1::bigint,
          'a restored event');

------------------------------------------------------------------------------
-- a flipped byte in a backup file
------------------------------------------------------------------------------
SELECT id AS b2, job_id AS b2_job FROM dborch.backup('tap_bk_redis') \gset
SELECT is((SELECT state FROM dborch.wait_job(:b2_job, '60s')), 'succeeded', 'a second backup succeeded');
SELECT file AS b2_file FROM dborch.backups WHERE id = :b2 \gset
-- flip one bit of the byte at offset ARGV[1] (negative: from the end) of file ARGV[0]
\set flip 'perl -e ''open(my $f, "+<", $ARGV[0]) or die; my $o = $ARGV[1] < 0 ? (-s $ARGV[0]) + $ARGV[1] : $ARGV[1]; seek($f, $o, 0); read($f, my $c, 1); seek($f, $o, 0); print $f chr(ord($c) ^ 1); close $f or die'''
\set out `:flip :'b2_file' $(( $(stat -c %s :'b2_file') / 2 )) && sha256sum :'b2_file' | cut -d' ' -f1`
SELECT isnt(:'out'::text, (SELECT checksum FROM dborch.backups WHERE id = :b2), 'one byte in the middle of the file is flipped');
SELECT id AS v2_job FROM dborch.verify_backup(:b2) \gset
SELECT is(pg_temp.tap_job_end(:v2_job, '60s'), 'failed', 'the verification of the damaged backup fails');
SELECT ok((SELECT verified_at IS NULL FROM dborch.backups WHERE id = :b2), 'verified_at stays empty');
SELECT matches((SELECT verify_error FROM dborch.backups WHERE id = :b2), 'does not match its recorded SHA-256',
               'verify_error says the file does not match its checksum');
SELECT is((SELECT count(*) FROM dborch.events WHERE job_id = :v2_job AND kind = 'backup_verify_failed'), 1::bigint,
          'a backup_verify_failed event');
\set out `ls :'test_dir'/managed/backups | grep -c '^verify-'`
SELECT is(:'out'::text, '0', 'no scratch instance of a verification is left');

SELECT status AS rd_status FROM dborch.restore('tap_bk_redis', backup => :b2, new_name => 'tap_bk_redis_dmg') \gset
SELECT is(pg_temp.tap_settle('tap_bk_redis_dmg', '60s'), 'failed', 'a restore of the damaged backup fails');
SELECT matches((SELECT last_error FROM dborch.deployments WHERE name = 'tap_bk_redis_dmg' ORDER BY id DESC LIMIT 1),
               'SHA-256', 'its error says why');
SELECT is((SELECT count(*) FROM dborch.instances i JOIN dborch.deployments d ON d.id = i.deployment_id
            WHERE d.name = 'tap_bk_redis_dmg' AND i.status <> 'destroyed'), 0::bigint,
          'the failed restore left no live instance');
\set out `ls :'test_dir'/managed/instances | grep -c '^tap_bk_redis_dmg-'`
SELECT is(:'out'::text, '0', 'nor an instance directory');

-- the last byte (of the AES-GCM tag) flipped and the recorded checksum changed
-- with it: the tag still catches it
SELECT id AS b3, job_id AS b3_job FROM dborch.backup('tap_bk_redis') \gset
SELECT is((SELECT state FROM dborch.wait_job(:b3_job, '60s')), 'succeeded', 'a third backup succeeded');
SELECT file AS b3_file FROM dborch.backups WHERE id = :b3 \gset
\set out `:flip :'b3_file' -1 && sha256sum :'b3_file' | cut -d' ' -f1`
UPDATE dborch.backups SET checksum = :'out' WHERE id = :b3;
SELECT id AS v3_job FROM dborch.verify_backup(:b3) \gset
SELECT is(pg_temp.tap_job_end(:v3_job, '60s'), 'failed',
          'the verification fails when the checksum was changed with the file');
SELECT matches((SELECT verify_error FROM dborch.backups WHERE id = :b3), 'failed authentication',
               'verify_error says the file failed authentication');

------------------------------------------------------------------------------
-- backup(verify => true): a verification follows the backup
------------------------------------------------------------------------------
SELECT id AS b4, job_id AS b4_job, verify_requested AS b4_vr FROM dborch.backup('tap_bk_redis', verify => true) \gset
SELECT is(:'b4_vr'::text, 't', 'backup(verify => true) records that a verification is asked for');
SELECT is((SELECT state FROM dborch.wait_job(:b4_job, '60s')), 'succeeded', 'the backup succeeded');
SELECT id AS v4_job FROM dborch.jobs WHERE kind = 'verify' AND (args ->> 'backup_id')::bigint = :b4 \gset
SELECT is(pg_temp.tap_job_end(:v4_job, '60s'), 'succeeded', 'a verification of it was queued and succeeded');
SELECT ok((SELECT verified_at IS NOT NULL AND verify_error IS NULL FROM dborch.backups WHERE id = :b4),
          'its verified_at is set');

------------------------------------------------------------------------------
-- no passphrase anywhere
------------------------------------------------------------------------------
SELECT value AS pp FROM dborch.secrets WHERE deployment_id = :dep_id AND name = 'backup_passphrase' \gset
SELECT cmp_ok(length(:'pp'), '>=', 32, 'the Redis backups have a long passphrase');
SELECT is((SELECT count(*) FROM dborch.events
            WHERE position(:'pp' IN message) > 0 OR position(:'pp' IN detail::text) > 0), 0::bigint,
          'no event holds the backup passphrase');
SELECT is((SELECT count(*) FROM dborch.jobs
            WHERE position(:'pp' IN args::text) > 0 OR position(:'pp' IN coalesce(error, '')) > 0), 0::bigint,
          'no job args or error holds the backup passphrase');
\set out `grep -cF -- :'pp' :'test_dir'/server.log`
SELECT is(:'out'::text, '0', 'the control plane''s server log does not hold the backup passphrase');
\set out `grep -rlF -- :'pp' :'test_dir'/managed | wc -l`
SELECT is(:'out'::text, '0', 'no managed file holds the backup passphrase');

------------------------------------------------------------------------------
-- a restore in place of a damaged backup replaces nothing: the snapshot is
-- unpacked and checked before the live append-only file is touched
------------------------------------------------------------------------------
SELECT i.data_directory AS live_dir FROM dborch.instances i
 WHERE i.deployment_id = :dep_id AND i.status <> 'destroyed' \gset
\set live_sums `cd :'live_dir'/data/appendonlydir && sha256sum * | sort | sha256sum | cut -d' ' -f1`
SELECT status AS dmg_ip FROM dborch.restore('tap_bk_redis', backup => :b3, in_place => true) \gset
SELECT is(pg_temp.tap_settle('tap_bk_redis', '60s'), 'failed', 'a restore in place of the backup with the broken tag fails');
\set out `cd :'live_dir'/data/appendonlydir && sha256sum * | sort | sha256sum | cut -d' ' -f1`
SELECT is(:'out'::text, :'live_sums', 'the live append-only files are as they were: nothing was removed or replaced');

------------------------------------------------------------------------------
-- destroy with drop_backups
------------------------------------------------------------------------------
SELECT is((SELECT status FROM dborch.destroy('tap_bk_redis', drop_backups => true)), 'destroying',
          'destroy(drop_backups => true) of the source');
SELECT is((SELECT status FROM dborch.wait('tap_bk_redis', '60s')), 'destroyed', 'the source is destroyed');
\set out `test -e :'bk_dir' && echo present || echo absent`
SELECT is(:'out'::text, 'absent', 'its backup directory is removed');
SELECT is((SELECT array_agg(DISTINCT status) FROM dborch.backups WHERE deployment_id = :dep_id), ARRAY['expired'],
          'its backup rows stay, all expired');
SELECT throws_ok(format('SELECT dborch.restore(%L, backup => %s, new_name => %L)', 'tap_bk_redis', :b1, 'tap_bk_x'),
                 '55000', NULL, 'an expired backup cannot be restored (55000)');
SELECT is((SELECT status FROM dborch.destroy('tap_bk_redis_r', drop_backups => true)), 'destroying',
          'destroy() of the restored deployment');
SELECT is((SELECT status FROM dborch.wait('tap_bk_redis_r', '60s')), 'destroyed', 'it is destroyed');

SELECT * FROM finish();

-- Safety net after a failure above: no deployment of this file left.
SELECT count(dborch.destroy(name, drop_backups => true)) AS n FROM dborch.deployments
 WHERE name LIKE 'tap\_bk\_redis%' AND status NOT IN ('destroyed', 'destroying') \gset
SELECT count(pg_temp.tap_settle(name, '60s')) AS n FROM dborch.deployments
 WHERE name LIKE 'tap\_bk\_redis%' AND status = 'destroying' \gset
