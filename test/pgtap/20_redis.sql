-- A real Redis deployment from deploy() to destroy(): SET and GET with the
-- password from the connection string, a wrong or missing password is refused
-- (WRONGPASS, NOAUTH), it binds 127.0.0.1 only, maxmemory is the memory option,
-- appendonly is on, the directory is private, every stage left an event and no
-- secret leaked; after destroy no process, port, directory or secret is left
-- and the name can be used again.
--
-- Autocommit mode and ON_ERROR_STOP off: see 10_postgres.sql.
\set ON_ERROR_STOP 0
\getenv test_dir DBORCH_TEST_DIR
SET client_min_messages = warning;
\ir helpers.psql

SELECT plan(55);

------------------------------------------------------------------------------
-- deploy
------------------------------------------------------------------------------
SELECT id AS dep_id, status AS first_status
  FROM dborch.deploy('tap_redis1', 'redis', '{"memory": "64MB"}') \gset

SELECT is(:'first_status'::text, 'pending', 'deploy() returns the new deployment as pending');
SELECT is((SELECT status FROM dborch.wait('tap_redis1', '60s')), 'ready',
          'wait() returns once the deployment is ready');
SELECT is((SELECT id FROM dborch.deploy('tap_redis1', 'redis', '{"memory": "64MB"}')),
          :dep_id::bigint, 'deploy() with the same spec returns the same row');
SELECT throws_ok($$SELECT dborch.deploy('tap_redis1', 'redis', '{"memory": "32MB"}')$$,
                 '42710', NULL, 'deploy() with the same name and another spec is refused');
SELECT throws_ok($$SELECT dborch.deploy('tap_redis1', 'postgres', '{"memory": "64MB"}')$$,
                 '42710', NULL, 'deploy() with the same name and another engine is refused');

SELECT i.id AS inst_id, i.port AS r_port, i.pid AS r_pid, i.data_directory AS r_dir
  FROM dborch.instances i WHERE i.deployment_id = :dep_id AND i.status <> 'destroyed' \gset
SELECT value AS pw FROM dborch.secrets WHERE deployment_id = :dep_id AND name = 'password' \gset

SELECT is(:'r_dir', :'test_dir' || '/managed/instances/tap_redis1-' || :'inst_id',
          'the instance lives in <data_directory>/instances/<name>-<id>');

------------------------------------------------------------------------------
-- dborch.deployment(name)
------------------------------------------------------------------------------
SELECT dborch.deployment('tap_redis1') AS info \gset
SELECT is(:'info'::jsonb ->> 'status', 'ready', 'deployment() reports status ready');
SELECT is(:'info'::jsonb ->> 'engine', 'redis', 'deployment() reports engine redis');
SELECT is(jsonb_array_length(:'info'::jsonb -> 'instances'), 1, 'deployment() lists one instance');
SELECT is((SELECT (i ->> 'host', (i ->> 'port')::int, i ->> 'status', (i ->> 'pid')::int)::text
             FROM jsonb_array_elements(:'info'::jsonb -> 'instances') i),
          ('127.0.0.1', :r_port, 'running', :r_pid)::text,
          'deployment() shows the instance with host 127.0.0.1, its port, status running and pid');
SELECT ok(position(:'pw' IN :'info') = 0, 'deployment() does not show the password');

------------------------------------------------------------------------------
-- SET and GET with the password; without it, or with a wrong one, refused
------------------------------------------------------------------------------
SELECT dborch.connection_string('tap_redis1') AS r_uri \gset
SELECT pg_temp.tap_dborch_uri(:'r_uri', 'tap_redis1') AS r_admin \gset
SELECT is(:'r_uri', format('redis://owner:%s@127.0.0.1:%s/0', :'pw', :r_port),
          'connection_string() is a redis:// URI with the password, host and port');

\set out `timeout 10 redis-cli -u :'r_uri' --no-auth-warning SET tap:greeting 'written by pgtap' 2>&1`
SELECT is(:'out'::text, 'OK', 'SET with the password from the connection string');
\set out `timeout 10 redis-cli -u :'r_uri' --no-auth-warning GET tap:greeting 2>&1`
SELECT is(:'out'::text, 'written by pgtap', 'GET reads the value back');

SELECT regexp_replace(:'r_uri', ':[^:@/]+@', ':not-the-password@') AS bad_uri \gset
\set out `timeout 10 redis-cli -u :'bad_uri' --no-auth-warning GET tap:greeting 2>&1`
SELECT matches(:'out'::text, 'WRONGPASS', 'a wrong password is refused (WRONGPASS)');
SELECT doesnt_match(:'out'::text, 'written by pgtap', 'with a wrong password the value is not read');
\set out `timeout 10 redis-cli -h 127.0.0.1 -p :r_port GET tap:greeting 2>&1`
SELECT matches(:'out'::text, '^NOAUTH', 'a connection without a password is refused (NOAUTH)');
\set out `timeout 10 redis-cli -h 127.0.0.1 -p :r_port PING 2>&1`
SELECT matches(:'out'::text, '^NOAUTH', 'even PING needs the password');

------------------------------------------------------------------------------
-- configuration an operator checks (with dborch's login: the owner may not CONFIG)
------------------------------------------------------------------------------
\set out `timeout 10 redis-cli -u :'r_admin' --no-auth-warning CONFIG GET maxmemory 2>&1 | tail -1`
SELECT is(:'out'::text, '67108864', 'maxmemory is the memory option, 64MB');
SELECT is((SELECT memory_bytes FROM dborch.deployments WHERE id = :dep_id), 67108864::bigint,
          'the catalog records 64MB of memory');
\set out `timeout 10 redis-cli -u :'r_admin' --no-auth-warning CONFIG GET appendonly 2>&1 | tail -1`
SELECT is(:'out'::text, 'yes', 'appendonly is yes');
\set out `timeout 10 redis-cli -u :'r_admin' --no-auth-warning CONFIG GET bind 2>&1 | tail -1`
SELECT is(:'out'::text, '127.0.0.1', 'bind is 127.0.0.1');
\set out `timeout 10 redis-cli -u :'r_admin' --no-auth-warning CONFIG GET protected-mode 2>&1 | tail -1`
SELECT is(:'out'::text, 'yes', 'protected-mode is yes');
\set out `ss -Htln | awk '{print $4}' | grep -E -- ':(:r_port)$' | sort -u | tr '\n' ' '`
SELECT is(:'out'::text, '127.0.0.1:' || :r_port || ' ', 'the only socket listening on its port is 127.0.0.1');
\set out `stat -c %a :'r_dir'`
SELECT is(:'out'::text, '700', 'the instance directory is mode 0700');
\set out `cd :'r_dir' && stat -c '%n %a %U' data redis.conf users.acl | tr '\n' ' '`
SELECT is(:'out'::text, 'data 700 postgres redis.conf 600 postgres users.acl 600 postgres ',
          'data/ is 0700, redis.conf and users.acl 0600, owned by postgres');
\set out `grep -rlF -- :'pw' :'r_dir' 2>&1 | tr '\n' ' '`
SELECT is(:'out'::text, '', 'no file holds the password (users.acl holds its SHA-256)');
\setenv TAP_PW :pw
\set out `ps -eo args= | awk 'index($0, ENVIRON["TAP_PW"]) > 0 { n++ } END { print n + 0 }'`
\setenv TAP_PW
SELECT is(:'out'::text, '0', 'no process shows the password on its command line');
\set out `ps -o comm=,user= -p :r_pid`
SELECT matches(:'out'::text, '^redis-server +postgres$', 'the recorded pid is a running redis-server, as OS user postgres');
\set out `ls :'r_dir'/data/appendonlydir | grep -c '\.aof$'`
SELECT cmp_ok(:'out'::int, '>', 0, 'the append-only files are in the data directory');

------------------------------------------------------------------------------
-- events of the deploy
------------------------------------------------------------------------------
SELECT id AS deploy_job FROM dborch.jobs WHERE deployment_id = :dep_id AND kind = 'deploy' \gset
SELECT is((SELECT state FROM dborch.jobs WHERE id = :deploy_job), 'succeeded', 'the deploy job succeeded');
SELECT set_eq(format($$SELECT detail ->> 'stage' FROM dborch.events
                      WHERE job_id = %s AND kind = 'stage'$$, :deploy_job),
              ARRAY['quota_check', 'node_selection', 'prepare', 'provision', 'network',
                    'security', 'start', 'register', 'health_validation', 'logins', 'finalize'],
              'the deploy left an event for each of its stages');
SELECT results_eq(format($$SELECT kind FROM dborch.events
                          WHERE deployment_id = %s AND kind IN ('deploy_requested', 'ready')
                          ORDER BY id$$, :dep_id),
                  ARRAY['deploy_requested', 'ready'],
                  'deploy_requested and ready events, in that order');

------------------------------------------------------------------------------
-- destroy
------------------------------------------------------------------------------
SELECT is((SELECT status FROM dborch.destroy('tap_redis1')), 'destroying', 'destroy() returns the deployment as destroying');
SELECT is((SELECT status FROM dborch.wait('tap_redis1', '60s')), 'destroyed', 'wait() returns once it is destroyed');
SELECT is((SELECT status FROM dborch.deployments WHERE id = :dep_id), 'destroyed',
          'the deployment row stays, with status destroyed');
SELECT is((SELECT status FROM dborch.instances WHERE id = :inst_id), 'destroyed', 'the instance is destroyed');
SELECT is((SELECT count(*) FROM dborch.secrets WHERE deployment_id = :dep_id), 0::bigint,
          'the secret row is gone');
\set out `ps -o stat= -p :r_pid | grep -v '^Z' | wc -l`
SELECT is(:'out'::text, '0', 'the redis-server pid is gone');
\set out `for p in /proc/[0-9]*; do readlink $p/cwd; done 2>/dev/null | grep -cF -- :'r_dir'`
SELECT is(:'out'::text, '0', 'no process works in the instance directory');
\set out `ss -Htln | awk '{print $4}' | grep -cE -- ':(:r_port)$'`
SELECT is(:'out'::text, '0', 'nothing listens on the port any more');
\set out `timeout 10 redis-cli -u :'r_uri' --no-auth-warning PING 2>&1`
SELECT matches(:'out'::text, 'Connection refused', 'a client with the old connection string is refused');
\set out `test -e :'r_dir' && echo present || echo absent`
SELECT is(:'out'::text, 'absent', 'the instance directory is gone');
SELECT set_eq(format($$SELECT detail ->> 'stage' FROM dborch.events e JOIN dborch.jobs j ON j.id = e.job_id
                      WHERE j.deployment_id = %s AND j.kind = 'destroy' AND e.kind = 'stage'$$, :dep_id),
              ARRAY['stop', 'remove_data', 'release', 'drop_backups', 'finalize'],
              'the destroy left an event for each of its stages');
SELECT results_eq(format($$SELECT kind FROM dborch.events
                          WHERE deployment_id = %s AND kind IN ('destroy_requested', 'destroyed')
                          ORDER BY id$$, :dep_id),
                  ARRAY['destroy_requested', 'destroyed'],
                  'destroy_requested and destroyed events, in that order');
SELECT is((SELECT count(*) FROM dborch.events
            WHERE position(:'pw' IN message) > 0 OR position(:'pw' IN detail::text) > 0),
          0::bigint, 'no event holds the password');
SELECT is((SELECT count(*) FROM dborch.jobs
            WHERE position(:'pw' IN args::text) > 0 OR position(:'pw' IN coalesce(error, '')) > 0),
          0::bigint, 'no job args or error holds the password');
SELECT is((SELECT count(*) FROM dborch.deployments
            WHERE position(:'pw' IN spec::text) > 0 OR position(:'pw' IN coalesce(last_error, '')) > 0),
          0::bigint, 'no deployment spec or error holds the password');
\set out `grep -cF -- :'pw' :'test_dir'/server.log`
SELECT is(:'out'::text, '0', 'the control plane''s server log does not hold the password');

------------------------------------------------------------------------------
-- the name can be deployed again, and starts empty
------------------------------------------------------------------------------
SELECT id AS dep2_id FROM dborch.deploy('tap_redis1', 'redis', '{"memory": "64MB"}') \gset
SELECT isnt(:dep2_id::bigint, :dep_id::bigint, 'deploying the name again makes a new deployment');
SELECT is((SELECT status FROM dborch.wait('tap_redis1', '60s')), 'ready', 'which becomes ready');
SELECT value AS pw2 FROM dborch.secrets WHERE deployment_id = :dep2_id AND name = 'password' \gset
SELECT isnt(:'pw2'::text, :'pw'::text, 'with a new password');
SELECT dborch.connection_string('tap_redis1') AS r_uri2 \gset
\set out `timeout 10 redis-cli -u :'r_uri2' --no-auth-warning EXISTS tap:greeting 2>&1`
SELECT is(:'out'::text, '0', 'and without the old data');
SELECT is((SELECT status FROM dborch.destroy('tap_redis1')), 'destroying', 'destroy() of the second deployment');
SELECT is((SELECT status FROM dborch.wait('tap_redis1', '60s')), 'destroyed', 'the second deployment is destroyed');

SELECT * FROM finish();

-- Safety net after a failure above: leave no deployment of this file behind.
SELECT count(dborch.destroy(name)) AS n FROM dborch.deployments
 WHERE name = 'tap_redis1' AND status NOT IN ('destroyed', 'destroying') \gset
SELECT count(dborch.wait(name)) AS n FROM dborch.deployments WHERE name = 'tap_redis1' AND status = 'destroying' \gset
