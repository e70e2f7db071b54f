-- A real PostgreSQL deployment from deploy() to destroy(), checked the way an
-- operator would: connect with the connection string and write and read a row,
-- a wrong or missing password is refused, it listens on 127.0.0.1 only with
-- SCRAM authentication, shared_buffers is the memory option, the directory is
-- private, every stage left an event and no secret leaked; after destroy no
-- process, port, directory or secret is left and the name can be used again.
--
-- Runs in autocommit mode: each statement commits, so the launcher sees the
-- queued work and wait() may wait for it.  Errors do not stop the file, so the
-- cleanup at the end always runs (a failed statement shows as a missing test).
\set ON_ERROR_STOP 0
\getenv test_dir DBORCH_TEST_DIR
SET client_min_messages = warning;
\ir helpers.psql

SELECT plan(58);

------------------------------------------------------------------------------
-- deploy
------------------------------------------------------------------------------
SELECT id AS dep_id, status AS first_status
  FROM dborch.deploy('tap_pg1', 'postgres', '{"memory": "128MB"}') \gset

SELECT is(:'first_status'::text, 'pending', 'deploy() returns the new deployment as pending');
SELECT is((SELECT status FROM dborch.wait('tap_pg1', '60s')), 'ready',
          'wait() returns once the deployment is ready');
SELECT is((SELECT id FROM dborch.deploy('tap_pg1', 'postgres', '{"memory": "128MB"}')),
          :dep_id::bigint, 'deploy() with the same spec returns the same row');
SELECT is((SELECT id FROM dborch.deploy('tap_pg1', 'postgres', '{"memory": "128 mb"}')),
          :dep_id::bigint, 'deploy() with the same spec written another way returns the same row');
SELECT throws_ok($$SELECT dborch.deploy('tap_pg1', 'postgres', '{"memory": "256MB"}')$$,
                 '42710', NULL, 'deploy() with the same name and another spec is refused');
SELECT is((SELECT count(*) FROM dborch.jobs WHERE deployment_id = :dep_id AND kind = 'deploy'),
          1::bigint, 'repeated deploy() calls queued no second deploy job');

SELECT i.id AS inst_id, i.host AS pg_host, i.port AS pg_port, i.pid AS pg_pid,
       i.data_directory AS pg_dir
  FROM dborch.instances i WHERE i.deployment_id = :dep_id AND i.status <> 'destroyed' \gset
SELECT value AS pw FROM dborch.secrets WHERE deployment_id = :dep_id AND name = 'password' \gset

SELECT is(:'pg_dir', :'test_dir' || '/managed/instances/tap_pg1-' || :'inst_id',
          'the instance lives in <data_directory>/instances/<name>-<id>');

------------------------------------------------------------------------------
-- dborch.deployment(name)
------------------------------------------------------------------------------
SELECT dborch.deployment('tap_pg1') AS info \gset
SELECT is(:'info'::jsonb ->> 'status', 'ready', 'deployment() reports status ready');
SELECT is(jsonb_array_length(:'info'::jsonb -> 'instances'), 1, 'deployment() lists one instance');
SELECT is((SELECT (i ->> 'host', (i ->> 'port')::int, i ->> 'status', (i ->> 'pid')::int)::text
             FROM jsonb_array_elements(:'info'::jsonb -> 'instances') i),
          ('127.0.0.1', :pg_port, 'running', :pg_pid)::text,
          'deployment() shows the instance with host 127.0.0.1, its port, status running and pid');
SELECT ok(position(:'pw' IN :'info') = 0, 'deployment() does not show the password');

------------------------------------------------------------------------------
-- connect with the connection string: write and read a row
------------------------------------------------------------------------------
SELECT dborch.connection_string('tap_pg1') AS pg_uri \gset
SELECT is(:'pg_uri', format('postgresql://owner:%s@127.0.0.1:%s/postgres', :'pw', :pg_port) || '?sslmode=verify-full&sslrootcert=' || :'test_dir' || '/managed/tls/ca/ca.crt',
          'connection_string() is a postgresql:// URI with the password, host and port, verifying TLS');

\set out `PGCONNECT_TIMEOUT=5 psql :'pg_uri' -XAtq -c 'CREATE TABLE tap_t (id int PRIMARY KEY, v text)' -c "INSERT INTO tap_t VALUES (1, 'written by pgtap')" -c 'SELECT v FROM tap_t WHERE id = 1' 2>&1`
SELECT is(:'out'::text, 'written by pgtap', 'a client with the connection string creates a table, writes a row and reads it');
\set out `PGCONNECT_TIMEOUT=5 psql :'pg_uri' -XAtqc 'SELECT count(*) FROM tap_t' 2>&1`
SELECT is(:'out'::text, '1', 'a new connection sees the committed row');

SELECT regexp_replace(:'pg_uri', ':[^:@/]+@', ':not-the-password@') AS bad_uri,
       regexp_replace(:'pg_uri', ':[^:@/]+@', '@') AS nopw_uri \gset
\set out `PGCONNECT_TIMEOUT=5 psql :'bad_uri' -XAtqc 'SELECT 1' 2>&1`
SELECT matches(:'out'::text, 'password authentication failed for user "owner"',
               'a wrong password is refused');
\set out `PGCONNECT_TIMEOUT=5 PGPASSFILE=/dev/null psql :'nopw_uri' -XAtqw -c 'SELECT 1' 2>&1`
SELECT matches(:'out'::text, 'no password supplied', 'a connection without a password is refused');

------------------------------------------------------------------------------
-- configuration an operator checks
------------------------------------------------------------------------------
\set out `PGCONNECT_TIMEOUT=5 psql :'pg_uri' -XAtqc 'SHOW listen_addresses' 2>&1`
SELECT is(:'out'::text, '127.0.0.1', 'listen_addresses is 127.0.0.1');
\set out `ss -Htln | awk '{print $4}' | grep -E -- ':(:pg_port)$' | sort -u | tr '\n' ' '`
SELECT is(:'out'::text, '127.0.0.1:' || :pg_port || ' ', 'the only socket listening on its port is 127.0.0.1');
SELECT pg_temp.tap_dborch_uri(:'pg_uri', 'tap_pg1') AS pg_admin \gset
\set out `PGCONNECT_TIMEOUT=5 psql :'pg_admin' -XAtqc "SELECT string_agg(type || ' ' || array_to_string(database, ',') || ' ' || array_to_string(user_name, ',') || ' ' || coalesce(address || '/' || netmask, '-') || ' ' || auth_method, '; ' ORDER BY line_number) FROM pg_hba_file_rules" 2>&1`
SELECT is(:'out'::text, 'local all postgres - peer; local replication postgres - peer; hostssl all all 127.0.0.1/255.255.255.255 scram-sha-256; hostnossl all all - reject',
          'pg_hba.conf: peer for postgres on the socket, scram-sha-256 over TLS from 127.0.0.1 only, no TCP without TLS');
\set out `PGCONNECT_TIMEOUT=5 psql :'pg_admin' -XAtqc 'SELECT count(*) FROM pg_hba_file_rules WHERE error IS NOT NULL' 2>&1`
SELECT is(:'out'::text, '0', 'pg_hba.conf has no invalid line');
\set out `PGCONNECT_TIMEOUT=5 psql :'pg_uri' -XAtqc 'SHOW password_encryption' 2>&1`
SELECT is(:'out'::text, 'scram-sha-256', 'password_encryption is scram-sha-256');
\set out `PGCONNECT_TIMEOUT=5 psql :'pg_uri' -XAtqc "SELECT left(rolpassword, 14) FROM pg_authid WHERE rolname = 'postgres'" 2>&1`
SELECT is(:'out'::text, 'SCRAM-SHA-256$', 'the password of postgres is stored as a SCRAM verifier');
\set out `PGCONNECT_TIMEOUT=5 psql :'pg_uri' -XAtqc "SELECT pg_size_bytes(current_setting('shared_buffers'))" 2>&1`
SELECT is(:'out'::text, '134217728', 'shared_buffers is the memory option, 128MB');
SELECT is((SELECT memory_bytes FROM dborch.deployments WHERE id = :dep_id), 134217728::bigint,
          'the catalog records 128MB of memory');
\set out `PGCONNECT_TIMEOUT=5 psql :'pg_uri' -XAtqc 'SHOW cluster_name' 2>&1`
SELECT is(:'out'::text, 'tap_pg1', 'cluster_name is the deployment name');
\set out `stat -c %a :'pg_dir'`
SELECT is(:'out'::text, '700', 'the instance directory is mode 0700');
\set out `stat -c '%a %U' :'pg_dir'/data :'pg_dir'/data/pg_hba.conf | tr '\n' ' '`
SELECT is(:'out'::text, '700 postgres 600 postgres ', 'the data directory is 0700 and pg_hba.conf 0600, owned by postgres');
\set out `grep -rlF -- :'pw' :'pg_dir' 2>&1 | tr '\n' ' '`
SELECT is(:'out'::text, '', 'no file in the instance directory holds the password in clear text');
\setenv TAP_PW :pw
\set out `ps -eo args= | awk 'index($0, ENVIRON["TAP_PW"]) > 0 { n++ } END { print n + 0 }'`
\setenv TAP_PW
SELECT is(:'out'::text, '0', 'no process shows the password on its command line');
\set out `ps -o comm=,user= -p :pg_pid`
SELECT matches(:'out'::text, '^postgres +postgres$', 'the recorded pid is a running postgres, as OS user postgres');

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
SELECT is((SELECT detail ->> 'port' FROM dborch.events WHERE deployment_id = :dep_id AND kind = 'ready'),
          :'pg_port', 'the ready event names the port');

------------------------------------------------------------------------------
-- destroy
------------------------------------------------------------------------------
SELECT is((SELECT status FROM dborch.destroy('tap_pg1')), 'destroying', 'destroy() returns the deployment as destroying');
SELECT is((SELECT status FROM dborch.wait('tap_pg1', '60s')), 'destroyed', 'wait() returns once it is destroyed');
SELECT is((SELECT status FROM dborch.deployments WHERE id = :dep_id), 'destroyed',
          'the deployment row stays, with status destroyed');
SELECT isnt((SELECT destroyed_at FROM dborch.deployments WHERE id = :dep_id), NULL, 'destroyed_at is set');
SELECT is((SELECT status FROM dborch.instances WHERE id = :inst_id), 'destroyed', 'the instance is destroyed');
SELECT is(dborch.deployment('tap_pg1') -> 'instances', '[]'::jsonb, 'deployment() lists no live instance');
SELECT is((SELECT count(*) FROM dborch.secrets WHERE deployment_id = :dep_id), 0::bigint,
          'the secret row is gone');
SELECT throws_ok($$SELECT dborch.connection_string('tap_pg1')$$, '42704', NULL,
                 'connection_string() of a destroyed deployment is refused');
\set out `ps -o stat= -p :pg_pid | grep -v '^Z' | wc -l`
SELECT is(:'out'::text, '0', 'the postmaster pid is gone');
\set out `for p in /proc/[0-9]*; do readlink $p/cwd; done 2>/dev/null | grep -cF -- :'pg_dir'`
SELECT is(:'out'::text, '0', 'no process works in the instance directory');
\set out `ss -Htln | awk '{print $4}' | grep -cE -- ':(:pg_port)$'`
SELECT is(:'out'::text, '0', 'nothing listens on the port any more');
\set out `PGCONNECT_TIMEOUT=5 psql :'pg_uri' -XAtqc 'SELECT 1' 2>&1`
SELECT matches(:'out'::text, 'Connection refused', 'a client with the old connection string is refused');
\set out `test -e :'pg_dir' && echo present || echo absent`
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
            WHERE position(:'pw' IN message) > 0 OR position(:'pw' IN detail::text) > 0
               OR position(:'pw' IN deployment) > 0),
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
-- the name can be deployed again
------------------------------------------------------------------------------
SELECT id AS dep2_id FROM dborch.deploy('tap_pg1', 'postgres', '{"memory": "128MB"}') \gset
SELECT isnt(:dep2_id::bigint, :dep_id::bigint, 'deploying the name again makes a new deployment');
SELECT is((SELECT status FROM dborch.wait('tap_pg1', '60s')), 'ready', 'which becomes ready');
SELECT dborch.connection_string('tap_pg1') AS pg_uri2 \gset
\set out `PGCONNECT_TIMEOUT=5 psql :'pg_uri2' -XAtqc "SELECT count(*) FROM pg_class WHERE relname = 'tap_t'" 2>&1`
SELECT is(:'out'::text, '0', 'and starts empty: the old data is gone');
SELECT is((SELECT status FROM dborch.destroy('tap_pg1')), 'destroying', 'destroy() of the second deployment');
SELECT is((SELECT status FROM dborch.wait('tap_pg1', '60s')), 'destroyed', 'the second deployment is destroyed');

SELECT * FROM finish();

-- Safety net after a failure above: leave no deployment of this file behind.
SELECT count(dborch.destroy(name)) AS n FROM dborch.deployments
 WHERE name = 'tap_pg1' AND status NOT IN ('destroyed', 'destroying') \gset
SELECT count(dborch.wait(name)) AS n FROM dborch.deployments WHERE name = 'tap_pg1' AND status = 'destroying' \gset
