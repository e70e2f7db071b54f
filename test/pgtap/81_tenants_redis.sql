-- Tenants of a real Redis deployment, checked with redis-cli the way a tenant
-- and an operator would: each tenant is an ACL user on keys and channels
-- "<name>:*"; every attempt of tenant acme on tenant bolt's keys and
-- channels, on keyspace-wide and admin commands and on server-wide state
-- other tenants rely on (their channel names, their Redis functions), is
-- refused (one test each), while acme uses its own keys and channels
-- (PUBLISH and SUBSCRIBE acme:*); the key quota (and the memory quota)
-- turns a tenant read-only within dborch.tenant_usage_interval (writes
-- refused except DEL and UNLINK, event tenant_over_quota, a firing alert),
-- and deleting keys back under it makes it writable again
-- (tenant_within_quota, the alert resolved); dborch.tenants shows keys and
-- memory_bytes; drop_tenant removes the ACL user (also from the aclfile)
-- and the keys; 50 tenants made in one transaction are one tenants job; a
-- restore into a new deployment carries the tenants over (passwords of
-- their own, keys of the backup), one in place applies them again; no
-- tenant password appears in the catalog's events, jobs or alerts, in the
-- logs or in the instance's files.
--
-- Autocommit mode and ON_ERROR_STOP off: see 10_postgres.sql.  The usage is
-- measured every second here (ALTER SYSTEM, reset at the end).
\set ON_ERROR_STOP 0
\getenv test_dir DBORCH_TEST_DIR
SET client_min_messages = warning;
\ir helpers.psql

SELECT plan(130);

-- Every tenant password seen in this file, for the leak checks at the end.
CREATE TEMP TABLE passwords (pw text);

ALTER SYSTEM SET dborch.tenant_usage_interval = '1s';
SELECT pg_reload_conf() AS reloaded \gset

------------------------------------------------------------------------------
-- a deployment with three tenants
------------------------------------------------------------------------------
SELECT id AS dep_id FROM dborch.deploy('tn_redis', 'redis', '{"memory": "64MB"}') \gset
SELECT is((SELECT status FROM dborch.wait('tn_redis', '60s')), 'ready', 'the deployment is ready');
SELECT i.port AS r_port, i.data_directory AS r_dir
  FROM dborch.instances i WHERE i.deployment_id = :dep_id AND i.status <> 'destroyed' \gset
SELECT pg_temp.tap_dborch_uri(dborch.connection_string('tn_redis'), 'tn_redis') AS adm_uri \gset

BEGIN;
SELECT id AS acme_id FROM dborch.create_tenant('tn_redis', 'acme', '{"max_keys": 50}') \gset
SELECT id AS bolt_id FROM dborch.create_tenant('tn_redis', 'bolt') \gset
SELECT id AS cram_id FROM dborch.create_tenant('tn_redis', 'cram', '{"memory": "1MB"}') \gset
COMMIT;
SELECT is((SELECT count(*) FROM dborch.jobs WHERE deployment_id = :dep_id AND kind = 'tenants'), 1::bigint,
          'three create_tenant() calls in one transaction queue one tenants job');
SELECT is((SELECT id FROM dborch.create_tenant('tn_redis', 'cram', '{"memory": "1024kB"}')),
          :cram_id::bigint, 'create_tenant() again with the same quota written another way returns the same row');
SELECT throws_ok($$SELECT dborch.create_tenant('tn_redis', 'acme', '{"max_keys": 51}')$$,
                 '42710', NULL, 'create_tenant() with the same name and another quota is refused');
SELECT is(pg_temp.tap_job_result((SELECT max(id) FROM dborch.jobs
                           WHERE deployment_id = :dep_id AND kind = 'tenants')),
          'succeeded', 'the tenants job succeeds');
SELECT results_eq(format($$SELECT name, status, key_prefix FROM dborch.tenants WHERE deployment_id = %s ORDER BY name$$, :dep_id),
                  $$VALUES ('acme', 'active', 'acme:'), ('bolt', 'active', 'bolt:'), ('cram', 'active', 'cram:')$$,
                  'the three tenants are active, with their key prefixes');
SELECT set_eq(format($$SELECT detail ->> 'tenant' FROM dborch.events WHERE deployment_id = %s AND kind = 'tenant_created'$$, :dep_id),
              ARRAY['acme', 'bolt', 'cram'], 'a tenant_created event for each');

INSERT INTO passwords SELECT value FROM dborch.secrets WHERE deployment_id = :dep_id AND name LIKE 'tenant:%';
SELECT value AS acme_pw FROM dborch.secrets WHERE deployment_id = :dep_id AND name = 'tenant:acme' \gset
SELECT dborch.connection_string('tn_redis', 'acme') AS a_uri \gset
SELECT dborch.connection_string('tn_redis', 'bolt') AS b_uri \gset
SELECT dborch.connection_string('tn_redis', 'cram') AS c_uri \gset
SELECT is(:'a_uri'::text, format('redis://acme:%s@127.0.0.1:%s/0', :'acme_pw', :r_port),
          'the tenant''s connection string has its own user and password, the deployment''s host and port');
\set out `timeout 10 redis-cli -u :'a_uri' --no-auth-warning ACL WHOAMI 2>&1`
SELECT is(:'out'::text, 'acme', 'acme is authenticated as ACL user acme');
\set out `grep -c '^user acme ' :'r_dir'/users.acl`
SELECT is(:'out'::text, '1', 'the ACL user acme is saved in the instance''s aclfile');
\set out `grep '^user acme ' :'r_dir'/users.acl | grep -o -- ' [~&%][^ ]*' | LC_ALL=C sort | tr '\n' ' '`
SELECT is(:'out'::text, ' &acme:*  ~acme:* ', 'acme''s keys and channels are acme:* only');

\set out `timeout 10 redis-cli -u :'b_uri' --no-auth-warning SET bolt:k 'bolt only' 2>&1; timeout 10 redis-cli -u :'b_uri' --no-auth-warning HSET bolt:h f v 2>&1`
SELECT is(:'out'::text, E'OK\n1', 'bolt writes its keys bolt:k and bolt:h');

------------------------------------------------------------------------------
-- isolation: every attempt of acme is refused, one test each
------------------------------------------------------------------------------
\set out `timeout 10 redis-cli -u :'a_uri' --no-auth-warning GET bolt:k 2>&1`
SELECT matches(:'out'::text, '^NOPERM', 'acme cannot GET bolt:k');
\set out `timeout 10 redis-cli -u :'a_uri' --no-auth-warning HGETALL bolt:h 2>&1`
SELECT matches(:'out'::text, '^NOPERM', 'acme cannot HGETALL bolt:h');
\set out `timeout 10 redis-cli -u :'a_uri' --no-auth-warning SET bolt:k 'acme was here' 2>&1`
SELECT matches(:'out'::text, '^NOPERM', 'acme cannot SET bolt:k');
\set out `timeout 10 redis-cli -u :'a_uri' --no-auth-warning APPEND bolt:k x 2>&1`
SELECT matches(:'out'::text, '^NOPERM', 'acme cannot APPEND to bolt:k');
\set out `timeout 10 redis-cli -u :'a_uri' --no-auth-warning SCAN 0 2>&1`
SELECT matches(:'out'::text, '^NOPERM', 'acme cannot SCAN');
\set out `timeout 10 redis-cli -u :'a_uri' --no-auth-warning SCAN 0 MATCH 'bolt:*' 2>&1`
SELECT matches(:'out'::text, '^NOPERM', 'acme cannot SCAN MATCH bolt:*');
\set out `timeout 10 redis-cli -u :'a_uri' --no-auth-warning KEYS '*' 2>&1`
SELECT matches(:'out'::text, '^NOPERM', 'acme cannot KEYS *');
\set out `timeout 10 redis-cli -u :'a_uri' --no-auth-warning RANDOMKEY 2>&1`
SELECT matches(:'out'::text, '^NOPERM', 'acme cannot RANDOMKEY');
\set out `timeout 10 redis-cli -u :'a_uri' --no-auth-warning DEL bolt:k 2>&1`
SELECT matches(:'out'::text, '^NOPERM', 'acme cannot DEL bolt:k');
\set out `timeout 10 redis-cli -u :'a_uri' --no-auth-warning UNLINK bolt:k 2>&1`
SELECT matches(:'out'::text, '^NOPERM', 'acme cannot UNLINK bolt:k');
\set out `timeout 10 redis-cli -u :'a_uri' --no-auth-warning RENAME bolt:k acme:stolen 2>&1`
SELECT matches(:'out'::text, '^NOPERM', 'acme cannot RENAME bolt:k into its own keys');
\set out `timeout 10 redis-cli -u :'a_uri' --no-auth-warning FLUSHALL 2>&1`
SELECT matches(:'out'::text, '^NOPERM', 'acme cannot FLUSHALL');
\set out `timeout 10 redis-cli -u :'a_uri' --no-auth-warning FLUSHDB 2>&1`
SELECT matches(:'out'::text, '^NOPERM', 'acme cannot FLUSHDB');
\set out `timeout 10 redis-cli -u :'a_uri' --no-auth-warning CONFIG GET '*' 2>&1`
SELECT matches(:'out'::text, '^NOPERM', 'acme cannot CONFIG GET');
\set out `timeout 10 redis-cli -u :'a_uri' --no-auth-warning CONFIG SET maxmemory 0 2>&1`
SELECT matches(:'out'::text, '^NOPERM', 'acme cannot CONFIG SET');
\set out `timeout 10 redis-cli -u :'a_uri' --no-auth-warning DEBUG SLEEP 0 2>&1`
SELECT matches(:'out'::text, '^(NOPERM|ERR DEBUG command not allowed)', 'acme cannot DEBUG');
\set out `timeout 10 redis-cli -u :'a_uri' --no-auth-warning SELECT 1 2>&1`
SELECT matches(:'out'::text, '^NOPERM', 'acme cannot SELECT another database');
\set out `timeout 10 redis-cli -u :'a_uri' --no-auth-warning SWAPDB 0 1 2>&1`
SELECT matches(:'out'::text, '^NOPERM', 'acme cannot SWAPDB');
\set out `timeout 3 redis-cli -u :'a_uri' --no-auth-warning SUBSCRIBE bolt:news 2>&1`
SELECT matches(:'out'::text, '^NOPERM', 'acme cannot SUBSCRIBE to bolt:news');
\set out `timeout 3 redis-cli -u :'a_uri' --no-auth-warning PSUBSCRIBE 'bolt:*' 2>&1`
SELECT matches(:'out'::text, '^NOPERM', 'acme cannot PSUBSCRIBE to bolt:*');
\set out `timeout 3 redis-cli -u :'a_uri' --no-auth-warning PSUBSCRIBE '*' 2>&1`
SELECT matches(:'out'::text, '^NOPERM', 'acme cannot PSUBSCRIBE to *');
\set out `timeout 10 redis-cli -u :'a_uri' --no-auth-warning PUBLISH bolt:news hi 2>&1`
SELECT matches(:'out'::text, '^NOPERM', 'acme cannot PUBLISH to bolt:news');
\set out `timeout 10 redis-cli -u :'a_uri' --no-auth-warning EVAL "return redis.call('GET', 'bolt:k')" 0 2>&1`
SELECT matches(:'out'::text, 'access|NOPERM', 'acme cannot read bolt:k from a script');
\set out `timeout 10 redis-cli -u :'a_uri' --no-auth-warning ACL SETUSER acme '~*' 2>&1`
SELECT matches(:'out'::text, '^NOPERM', 'acme cannot widen its own ACL');
\set out `timeout 10 redis-cli -u :'a_uri' --no-auth-warning ACL LIST 2>&1`
SELECT matches(:'out'::text, '^NOPERM', 'acme cannot list the ACL users');
\set out `timeout 10 redis-cli -u :'a_uri' --no-auth-warning CLIENT LIST 2>&1`
SELECT matches(:'out'::text, '^NOPERM', 'acme cannot list the clients');
\set out `timeout 3 redis-cli -u :'a_uri' --no-auth-warning MONITOR 2>&1`
SELECT matches(:'out'::text, '^NOPERM', 'acme cannot MONITOR');
\set out `timeout 10 redis-cli -u :'a_uri' --no-auth-warning SHUTDOWN NOSAVE 2>&1`
SELECT matches(:'out'::text, '^NOPERM', 'acme cannot SHUTDOWN');
SELECT regexp_replace(:'a_uri', '^redis://acme:', 'redis://bolt:') AS a_pw_as_bolt \gset
\set out `timeout 10 redis-cli -u :'a_pw_as_bolt' --no-auth-warning PING 2>&1`
SELECT matches(:'out'::text, 'WRONGPASS', 'acme''s password does not authenticate as bolt');
-- server-wide state of other tenants (Redis functions, channel names)
\set out `timeout 3 redis-cli -u :'b_uri' --no-auth-warning SUBSCRIBE bolt:secret_channel </dev/null >/dev/null 2>&1 & sleep 0.5; timeout 10 redis-cli -u :'a_uri' --no-auth-warning PUBSUB CHANNELS 2>&1`
SELECT doesnt_match(:'out'::text, 'bolt:', 'acme cannot list bolt''s channels (PUBSUB CHANNELS)');
-- function libraries and the script cache are server-wide: tenants neither
-- load nor remove them
\set out `printf '#!lua name=boltlib\nredis.register_function("bolt_hello", function(keys, args) return "bolt" end)\n' | timeout 10 redis-cli -u :'b_uri' --no-auth-warning -x FUNCTION LOAD REPLACE 2>&1`
SELECT matches(:'out'::text, '^NOPERM', 'bolt cannot load a function library (FUNCTION LOAD)');
\set out `printf '#!lua name=boltlib\nredis.register_function("bolt_hello", function(keys, args) return "bolt" end)\n' | timeout 10 redis-cli -u :'adm_uri' --no-auth-warning -x FUNCTION LOAD REPLACE 2>&1; timeout 10 redis-cli -u :'a_uri' --no-auth-warning FUNCTION FLUSH 2>&1 | head -1 | cut -c1-6; timeout 10 redis-cli -u :'adm_uri' --no-auth-warning FCALL bolt_hello 0 2>&1`
SELECT is(:'out'::text, E'boltlib\nNOPERM\nbolt', 'acme cannot remove the server''s function libraries (FUNCTION FLUSH)');
\set out `timeout 10 redis-cli -u :'a_uri' --no-auth-warning SCRIPT FLUSH 2>&1`
SELECT matches(:'out'::text, '^NOPERM', 'acme cannot empty the script cache (SCRIPT FLUSH)');
\set out `timeout 10 redis-cli -u :'adm_uri' --no-auth-warning FUNCTION FLUSH 2>&1`
\set out `timeout 10 redis-cli -u :'b_uri' --no-auth-warning GET bolt:k 2>&1; timeout 10 redis-cli -u :'b_uri' --no-auth-warning HGET bolt:h f 2>&1`
SELECT is(:'out'::text, E'bolt only\nv', 'after all that, bolt''s keys hold their values');

-- acme's own keys and channels
\set out `timeout 10 redis-cli -u :'a_uri' --no-auth-warning SET acme:x 1 2>&1; timeout 10 redis-cli -u :'a_uri' --no-auth-warning INCR acme:x 2>&1; timeout 10 redis-cli -u :'a_uri' --no-auth-warning GET acme:x 2>&1`
SELECT is(:'out'::text, E'OK\n2\n2', 'acme writes and reads its own key acme:x');
\set out `timeout 10 redis-cli -u :'a_uri' --no-auth-warning HSET acme:h f v 2>&1; timeout 10 redis-cli -u :'a_uri' --no-auth-warning RPUSH acme:l a b 2>&1; timeout 10 redis-cli -u :'a_uri' --no-auth-warning EXPIRE acme:l 600 2>&1`
SELECT is(:'out'::text, E'1\n2\n1', 'acme makes a hash and a list with a TTL');
\set out `timeout 10 redis-cli -u :'a_uri' --no-auth-warning PUBLISH acme:x hello 2>&1`
SELECT is(:'out'::text, '0', 'PUBLISH acme:x works (no subscriber yet)');
\set out `(timeout 5 redis-cli -u :'a_uri' --no-auth-warning SUBSCRIBE acme:news </dev/null >:'test_dir'/tn_acme_sub.out 2>&1 &); for i in $(seq 1 50); do n=$(timeout 10 redis-cli -u :'adm_uri' --no-auth-warning PUBSUB NUMSUB acme:news | tail -1); [ "$n" = 1 ] && break; sleep 0.1; done; timeout 10 redis-cli -u :'a_uri' --no-auth-warning PUBLISH acme:news 'hello acme' 2>&1`
SELECT is(:'out'::text, '1', 'acme subscribes to acme:news and a PUBLISH there reaches one subscriber');
\set out `for i in $(seq 1 50); do grep -q 'hello acme' :'test_dir'/tn_acme_sub.out && break; sleep 0.1; done; tr '\n' ' ' < :'test_dir'/tn_acme_sub.out`
SELECT matches(:'out'::text, 'subscribe acme:news 1 message acme:news hello acme', 'the subscriber receives the message');

------------------------------------------------------------------------------
-- key quota: read-only, then writable again
------------------------------------------------------------------------------
SELECT ok(pg_temp.tap_until(format($$SELECT (usage ->> 'keys')::int = 3 FROM dborch.tenants WHERE id = %s$$, :acme_id)),
          'dborch.tenants shows acme''s 3 keys');
SELECT ok((SELECT (usage ->> 'memory_bytes')::bigint > 0 AND usage_at IS NOT NULL FROM dborch.tenants WHERE id = :acme_id),
          'and their memory in bytes');
SELECT usage_at AS last_usage_at FROM dborch.tenants WHERE id = :acme_id \gset
SELECT ok(pg_temp.tap_until(format($$SELECT usage_at > %L FROM dborch.tenants WHERE id = %s$$, :'last_usage_at', :acme_id), '30 s'),
          'acme is measured about every second (dborch.tenant_usage_interval = 1s)');
SELECT max(id) AS events_before FROM dborch.events \gset
\set out `for i in $(seq 1 60); do echo "SET acme:k$i v$i"; done | timeout 20 redis-cli -u :'a_uri' --no-auth-warning 2>&1 | sort | uniq -c | tr -s ' '`
SELECT clock_timestamp() AS written_at \gset
SELECT is(:'out'::text, ' 60 OK', 'acme writes 60 more keys, past its quota of 50');
SELECT ok(pg_temp.tap_until(format($$SELECT read_only FROM dborch.tenants WHERE id = %s$$, :acme_id)),
          'acme becomes read-only');
SELECT ok((SELECT min(at) FROM dborch.events WHERE id > :events_before AND kind = 'tenant_over_quota'
              AND detail ->> 'tenant' = 'acme') < :'written_at'::timestamptz + interval '30 seconds',
          'after the write, at one of the next measurements (a bound of 30 s on a busy machine)');
SELECT matches((SELECT string_agg(message, '; ') FROM dborch.events WHERE id > :events_before AND kind = 'tenant_over_quota'
                  AND deployment_id = :dep_id AND detail ->> 'tenant' = 'acme'),
               '^tenant acme is over its quota and read-only: keys [0-9]+, quota 50$', 'one tenant_over_quota event, with keys and quota');
SELECT ok(pg_temp.tap_until(format($$SELECT (usage ->> 'keys')::int = 63 FROM dborch.tenants WHERE id = %s$$, :acme_id)),
          'dborch.tenants shows acme''s 63 keys');
SELECT is((SELECT count(*) FROM dborch.alerts WHERE deployment_id = :dep_id AND status = 'firing'
              AND payload -> 'commonLabels' ->> 'alertname' = 'DborchTenantOverQuota'
              AND payload -> 'commonLabels' ->> 'tenant' = 'acme'), 1::bigint,
          'a firing DborchTenantOverQuota alert for acme');
\set out `timeout 10 redis-cli -u :'a_uri' --no-auth-warning SET acme:more 1 2>&1`
SELECT matches(:'out'::text, '^NOPERM', 'read-only acme cannot SET');
\set out `timeout 10 redis-cli -u :'a_uri' --no-auth-warning INCR acme:x 2>&1`
SELECT matches(:'out'::text, '^NOPERM', 'read-only acme cannot INCR');
\set out `timeout 10 redis-cli -u :'a_uri' --no-auth-warning HSET acme:h g w 2>&1`
SELECT matches(:'out'::text, '^NOPERM', 'read-only acme cannot HSET');
\set out `timeout 10 redis-cli -u :'a_uri' --no-auth-warning RPUSH acme:l c 2>&1`
SELECT matches(:'out'::text, '^NOPERM', 'read-only acme cannot RPUSH');
\set out `timeout 10 redis-cli -u :'a_uri' --no-auth-warning EXPIRE acme:x 100 2>&1`
SELECT matches(:'out'::text, '^NOPERM', 'read-only acme cannot EXPIRE');
\set out `timeout 10 redis-cli -u :'a_uri' --no-auth-warning RENAME acme:k1 acme:renamed 2>&1`
SELECT matches(:'out'::text, '^NOPERM', 'read-only acme cannot RENAME');
\set out `timeout 10 redis-cli -u :'a_uri' --no-auth-warning EVAL "return redis.call('SET', 'acme:sneaky', 1)" 0 2>&1`
SELECT matches(:'out'::text, 'NOPERM|can.t run this command', 'read-only acme cannot write from a script');
\set out `timeout 10 redis-cli -u :'a_uri' --no-auth-warning GET acme:x 2>&1; timeout 10 redis-cli -u :'a_uri' --no-auth-warning HGET acme:h f 2>&1`
SELECT is(:'out'::text, E'2\nv', 'read-only acme can read');
\set out `timeout 10 redis-cli -u :'b_uri' --no-auth-warning SET bolt:k2 'still writable' 2>&1`
SELECT is(:'out'::text, 'OK', 'bolt is not affected: it still writes');
SELECT max(id) AS events_before FROM dborch.events \gset
\set out `timeout 10 redis-cli -u :'a_uri' --no-auth-warning DEL acme:k1 acme:k2 acme:k3 acme:k4 acme:k5 acme:k6 acme:k7 acme:k8 acme:k9 acme:k10 2>&1`
SELECT is(:'out'::text, '10', 'read-only acme can DEL');
\set out `timeout 10 redis-cli -u :'a_uri' --no-auth-warning UNLINK acme:k11 acme:k12 acme:k13 acme:k14 acme:k15 acme:k16 acme:k17 acme:k18 acme:k19 acme:k20 2>&1`
SELECT clock_timestamp() AS freed_at \gset
SELECT is(:'out'::text, '10', 'read-only acme can UNLINK, back under its quota (43 keys)');
SELECT ok(pg_temp.tap_until(format($$SELECT NOT read_only FROM dborch.tenants WHERE id = %s$$, :acme_id)),
          'acme becomes writable again');
SELECT ok((SELECT min(at) FROM dborch.events WHERE id > :events_before AND kind = 'tenant_within_quota'
              AND detail ->> 'tenant' = 'acme') < :'freed_at'::timestamptz + interval '30 seconds',
          'after the deletes, at one of the next measurements (a bound of 30 s on a busy machine)');
SELECT is((SELECT count(*) FROM dborch.events WHERE id > :events_before AND kind = 'tenant_within_quota'
              AND deployment_id = :dep_id AND detail ->> 'tenant' = 'acme'), 1::bigint,
          'one tenant_within_quota event');
SELECT is((SELECT count(*) FROM dborch.alerts WHERE deployment_id = :dep_id AND status = 'resolved'
              AND ends_at IS NOT NULL AND payload -> 'commonLabels' ->> 'tenant' = 'acme'), 1::bigint,
          'a resolved alert for acme');
SELECT ok(pg_temp.tap_until(format($$SELECT (usage ->> 'keys')::int = 43 FROM dborch.tenants WHERE id = %s$$, :acme_id)),
          'dborch.tenants shows acme''s 43 keys');
\set out `timeout 10 redis-cli -u :'a_uri' --no-auth-warning SET acme:more 1 2>&1`
SELECT is(:'out'::text, 'OK', 'acme writes again');

------------------------------------------------------------------------------
-- memory quota: read-only, then writable again
------------------------------------------------------------------------------
SELECT max(id) AS events_before FROM dborch.events \gset
\set out `head -c 2000000 /dev/zero | tr '\0' 'x' | timeout 10 redis-cli -u :'c_uri' --no-auth-warning -x SET cram:blob 2>&1`
SELECT is(:'out'::text, 'OK', 'cram writes a 2MB value, past its 1MB memory quota');
SELECT ok(pg_temp.tap_until(format($$SELECT read_only FROM dborch.tenants WHERE id = %s$$, :cram_id)),
          'cram becomes read-only');
SELECT matches((SELECT message FROM dborch.events WHERE id > :events_before AND kind = 'tenant_over_quota'
                  AND detail ->> 'tenant' = 'cram'),
               'memory [0-9]+ bytes, quota 1048576', 'a tenant_over_quota event with memory and quota');
SELECT ok((SELECT (usage ->> 'memory_bytes')::bigint > 1048576 FROM dborch.tenants WHERE id = :cram_id),
          'dborch.tenants shows cram''s memory over 1MB');
\set out `timeout 10 redis-cli -u :'c_uri' --no-auth-warning SET cram:small 1 2>&1`
SELECT matches(:'out'::text, '^NOPERM', 'read-only cram cannot SET');
\set out `timeout 10 redis-cli -u :'c_uri' --no-auth-warning DEL cram:blob 2>&1`
SELECT is(:'out'::text, '1', 'read-only cram can DEL its big key');
SELECT ok(pg_temp.tap_until(format($$SELECT NOT read_only FROM dborch.tenants WHERE id = %s$$, :cram_id)),
          'cram becomes writable again');
\set out `timeout 10 redis-cli -u :'c_uri' --no-auth-warning SET cram:small 1 2>&1`
SELECT is(:'out'::text, 'OK', 'cram writes again');

------------------------------------------------------------------------------
-- drop_tenant removes the ACL user and the keys
------------------------------------------------------------------------------
SELECT is((SELECT status FROM dborch.drop_tenant('tn_redis', 'bolt')), 'dropping', 'drop_tenant() returns the tenant as dropping');
SELECT is(pg_temp.tap_job_result((SELECT max(id) FROM dborch.jobs
                           WHERE deployment_id = :dep_id AND kind = 'tenants')),
          'succeeded', 'the tenants job of the drop succeeds');
SELECT is((SELECT status FROM dborch.tenants WHERE id = :bolt_id), 'dropped', 'the tenant row stays, as dropped');
\set out `timeout 10 redis-cli -u :'adm_uri' --no-auth-warning ACL USERS 2>&1 | tr '\n' ' '`
SELECT is(:'out'::text, 'acme cram dborch default owner ', 'the ACL user bolt is gone');
\set out `grep -c '^user bolt ' :'r_dir'/users.acl`
SELECT is(:'out'::text, '0', 'and gone from the aclfile');
\set out `timeout 10 redis-cli -u :'adm_uri' --no-auth-warning --scan --pattern 'bolt:*' 2>&1 | wc -l`
SELECT is(:'out'::text, '0', 'bolt''s keys are gone');
\set out `timeout 10 redis-cli -u :'adm_uri' --no-auth-warning --scan --pattern 'acme:*' 2>&1 | wc -l`
SELECT is(:'out'::text, '44', 'acme''s keys are all there');
\set out `timeout 10 redis-cli -u :'b_uri' --no-auth-warning PING 2>&1`
SELECT matches(:'out'::text, 'WRONGPASS', 'bolt''s connection string no longer works');
SELECT is((SELECT count(*) FROM dborch.secrets WHERE deployment_id = :dep_id AND name = 'tenant:bolt'), 0::bigint,
          'bolt''s password secret is gone');
SELECT throws_ok($$SELECT dborch.connection_string('tn_redis', 'bolt')$$, '42704', NULL,
                 'connection_string() of a dropped tenant is refused (42704)');
SELECT results_eq(format($$SELECT kind FROM dborch.events WHERE deployment_id = %s
                            AND kind IN ('tenant_drop_requested', 'tenant_dropped') ORDER BY id$$, :dep_id),
                  ARRAY['tenant_drop_requested', 'tenant_dropped'], 'tenant_drop_requested and tenant_dropped events');

------------------------------------------------------------------------------
-- 50 tenants in one transaction: one tenants job
------------------------------------------------------------------------------
SELECT count(*) AS jobs_before FROM dborch.jobs WHERE deployment_id = :dep_id AND kind = 'tenants' \gset
BEGIN;
SELECT count(*) AS n FROM generate_series(1, 50) g, dborch.create_tenant('tn_redis', 'batch_' || g, '{"max_keys": 10}') \gset
COMMIT;
SELECT is((SELECT count(*) FROM dborch.jobs WHERE deployment_id = :dep_id AND kind = 'tenants'),
          :jobs_before::bigint + 1, '50 create_tenant() calls in one transaction queue one tenants job');
SELECT is(pg_temp.tap_job_result((SELECT max(id) FROM dborch.jobs
                           WHERE deployment_id = :dep_id AND kind = 'tenants')),
          'succeeded', 'which succeeds');
SELECT is((SELECT count(*) FROM dborch.tenants WHERE deployment_id = :dep_id AND name LIKE 'batch\_%' AND status = 'active'),
          50::bigint, 'the 50 tenants are active');
\set out `timeout 10 redis-cli -u :'adm_uri' --no-auth-warning ACL USERS 2>&1 | grep -c '^batch_'`
SELECT is(:'out'::text, '50', 'with 50 ACL users');
INSERT INTO passwords SELECT value FROM dborch.secrets WHERE deployment_id = :dep_id AND name LIKE 'tenant:%';
SELECT dborch.connection_string('tn_redis', 'batch_50') AS b50_uri \gset
\set out `timeout 10 redis-cli -u :'b50_uri' --no-auth-warning SET batch_50:k v 2>&1; timeout 10 redis-cli -u :'b50_uri' --no-auth-warning GET acme:x 2>&1`
SELECT matches(:'out'::text, E'^OK\nNOPERM', 'the last of them writes its keys, not acme''s');
SELECT count(*) AS jobs_before FROM dborch.jobs WHERE deployment_id = :dep_id AND kind = 'tenants' \gset
BEGIN;
SELECT count(*) AS n FROM generate_series(1, 50) g, dborch.drop_tenant('tn_redis', 'batch_' || g) \gset
COMMIT;
SELECT is((SELECT count(*) FROM dborch.jobs WHERE deployment_id = :dep_id AND kind = 'tenants'),
          :jobs_before::bigint + 1, '50 drop_tenant() calls in one transaction queue one tenants job');
SELECT is(pg_temp.tap_job_result((SELECT max(id) FROM dborch.jobs
                           WHERE deployment_id = :dep_id AND kind = 'tenants')),
          'succeeded', 'which succeeds');
\set out `timeout 10 redis-cli -u :'adm_uri' --no-auth-warning ACL USERS 2>&1 | grep -c '^batch_'; timeout 10 redis-cli -u :'adm_uri' --no-auth-warning --scan --pattern 'batch_*' | wc -l`
SELECT is(:'out'::text, E'0\n0', 'their ACL users and keys are gone');

------------------------------------------------------------------------------
-- a backup restored into a new deployment carries the tenants over, with
-- passwords of their own, and their keys as of the backup; a restore in
-- place applies the tenants again
------------------------------------------------------------------------------
\set out `timeout 10 redis-cli -u :'a_uri' --no-auth-warning SET acme:restored yes 2>&1`
SELECT id AS bk_id, job_id AS bk_job FROM dborch.backup('tn_redis') \gset
SELECT is(pg_temp.tap_job_result(:bk_job), 'succeeded', 'a backup of the deployment with its tenants');
SELECT id AS copy_id FROM dborch.restore('tn_redis', new_name => 'tn_redis_copy') \gset
SELECT is((SELECT status FROM dborch.wait('tn_redis_copy', '60s')), 'ready', 'it is restored into a new deployment');
SELECT is((SELECT message FROM dborch.events WHERE deployment_id = :copy_id AND kind = 'tenants_restored'),
          '2 tenants of "tn_redis" carried over, with passwords of their own', 'a tenants_restored event');
SELECT is(pg_temp.tap_job_result((SELECT max(id) FROM dborch.jobs WHERE deployment_id = :copy_id AND kind = 'tenants')),
          'succeeded', 'the copy''s tenants job succeeds');
SELECT results_eq(format($$SELECT name, status, key_prefix, quota::text FROM dborch.tenants WHERE deployment_id = %s ORDER BY name$$, :copy_id),
                  format($$SELECT name, status, key_prefix, quota::text FROM dborch.tenants WHERE deployment_id = %s
                            AND status = 'active' ORDER BY name$$, :dep_id),
                  'the copy has the source''s tenants, active, with their key prefixes and quotas');
SELECT isnt((SELECT value FROM dborch.secrets WHERE deployment_id = :copy_id AND name = 'tenant:acme'), :'acme_pw',
            'acme has a password of its own on the copy');
INSERT INTO passwords SELECT value FROM dborch.secrets WHERE deployment_id = :copy_id AND name LIKE 'tenant:%';
SELECT dborch.connection_string('tn_redis_copy', 'acme') AS ca_uri,
       dborch.connection_string('tn_redis_copy', 'cram') AS cc_uri,
       dborch.connection_string('tn_redis_copy') AS cadm_uri \gset
\set out `timeout 10 redis-cli -u :'ca_uri' --no-auth-warning GET acme:restored 2>&1`
SELECT is(:'out'::text, 'yes', 'acme reads its key of the backup on the copy, with its new connection string');
SELECT pg_temp.tap_port(:'ca_uri') AS copy_port \gset
\set out `timeout 10 redis-cli -h 127.0.0.1 -p :copy_port --user acme --pass :'acme_pw' --no-auth-warning PING 2>&1`
SELECT matches(:'out'::text, 'WRONGPASS', 'acme''s password of the source does not open the copy');
\set out `timeout 10 redis-cli -u :'cc_uri' --no-auth-warning GET acme:restored 2>&1`
SELECT matches(:'out'::text, '^NOPERM', 'on the copy too, cram cannot read acme''s keys');
\set out `timeout 10 redis-cli -u :'cadm_uri' --no-auth-warning --scan --pattern 'acme:*' 2>&1 | wc -l`
SELECT is(:'out'::text, '45', 'the copy holds acme''s 45 keys');

SELECT is((SELECT status FROM dborch.restore('tn_redis', backup => :bk_id, in_place => true)), 'restoring',
          'a restore in place of the same backup');
SELECT is((SELECT status FROM dborch.wait('tn_redis', '60s')), 'ready', 'ends ready');
SELECT is(pg_temp.tap_job_result((SELECT max(id) FROM dborch.jobs WHERE deployment_id = :dep_id AND kind = 'tenants')),
          'succeeded', 'a tenants job applies the tenants again');
SELECT is((SELECT string_agg(name || ':' || status, ',' ORDER BY name) FROM dborch.tenants
            WHERE deployment_id = :dep_id AND status <> 'dropped'), 'acme:active,cram:active', 'they are active');
\set out `timeout 10 redis-cli -u :'a_uri' --no-auth-warning GET acme:restored 2>&1`
SELECT is(:'out'::text, 'yes', 'acme reads its key with its own connection string');

------------------------------------------------------------------------------
-- no tenant password in the catalog's events, jobs, alerts, logs or files
------------------------------------------------------------------------------
SELECT cmp_ok((SELECT count(DISTINCT pw) FROM passwords), '>=', 53::bigint, 'the passwords of 53 tenants were collected');
SELECT is((SELECT count(*) FROM passwords p, dborch.events e
            WHERE position(p.pw IN e.message) > 0 OR position(p.pw IN e.detail::text) > 0), 0::bigint,
          'no event holds a tenant password');
SELECT is((SELECT count(*) FROM passwords p, dborch.jobs j
            WHERE position(p.pw IN j.args::text) > 0 OR position(p.pw IN coalesce(j.error, '')) > 0), 0::bigint,
          'no job args or error holds a tenant password');
SELECT is((SELECT count(*) FROM passwords p, dborch.tenants t
            WHERE position(p.pw IN t::text) > 0), 0::bigint, 'no tenants row holds a password');
SELECT is((SELECT count(*) FROM passwords p, dborch.alerts a
            WHERE position(p.pw IN a.payload::text) > 0), 0::bigint, 'no alert holds a tenant password');
SELECT string_agg(DISTINCT pw, ' ') AS pwlist FROM passwords \gset
\set out `echo :'pwlist' | tr ' ' '\n' > :'test_dir'/tn_redis_passwords.txt; grep -cFf :'test_dir'/tn_redis_passwords.txt :'test_dir'/server.log`
SELECT is(:'out'::text, '0', 'the control plane''s server log holds no tenant password');
\set out `grep -rlFf :'test_dir'/tn_redis_passwords.txt :'r_dir' | wc -l; rm -f :'test_dir'/tn_redis_passwords.txt`
SELECT is(:'out'::text, '0', 'no file of the instance (aclfile, config, log, data) holds a tenant password in clear text');

------------------------------------------------------------------------------
-- cleanup
------------------------------------------------------------------------------
SELECT is((SELECT status FROM dborch.destroy('tn_redis', drop_backups => true)), 'destroying', 'destroy() the deployment');
SELECT is((SELECT status FROM dborch.wait('tn_redis', '60s')), 'destroyed', 'it is destroyed');
SELECT is((SELECT status FROM dborch.destroy('tn_redis_copy', drop_backups => true)), 'destroying', 'destroy() the copy');
SELECT is((SELECT status FROM dborch.wait('tn_redis_copy', '60s')), 'destroyed', 'it is destroyed');
\set out `rm -f :'test_dir'/tn_acme_sub.out; echo done`

SELECT * FROM finish();

ALTER SYSTEM RESET dborch.tenant_usage_interval;
SELECT pg_reload_conf() AS reloaded \gset
-- Safety net after a failure above: leave no deployment of this file behind.
SELECT count(dborch.destroy(name, drop_backups => true)) AS n FROM dborch.deployments
 WHERE name IN ('tn_redis', 'tn_redis_copy') AND status NOT IN ('destroyed', 'destroying') \gset
SELECT count(dborch.wait(name)) AS n FROM dborch.deployments
 WHERE name IN ('tn_redis', 'tn_redis_copy') AND status = 'destroying' \gset
