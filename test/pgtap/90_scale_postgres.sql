-- Scaling a PostgreSQL deployment, checked the way an operator would: the
-- refusals of scale() and connection_string() (bad replicas, memory, intent,
-- strategy); without replicas a read goes to the primary; scale() to 2
-- replicas: two streaming replicas, one slot dborch_r<id> each on the
-- primary, rows written to the primary (through the write connection string)
-- appear on both, a write on a replica is refused, dborch.endpoints shows the
-- roles and health; read routing: round_robin gives N/2 calls to each replica
-- (within one), least_connections avoids the replica holding sessions,
-- response_time picks a healthy replica, multi-host URIs with
-- target_session_attrs; a replica that is down is never returned, the
-- primary is when no replica is healthy, and both replicas come back; scale()
-- to 0: the replicas, their directories, processes and slots are gone.  The
-- deployment is synchronous: its primary waits for a replica's flush while
-- it has replicas, and for none before and after.
--
-- Autocommit mode and ON_ERROR_STOP off: see 10_postgres.sql.  scale()
-- returns the deployment row and leaves its status ready (it stays in
-- service), so the file waits for the scale job with wait_job().
\set ON_ERROR_STOP 0
\getenv test_dir DBORCH_TEST_DIR
SET client_min_messages = warning;
\ir helpers.psql

SELECT plan(85);

------------------------------------------------------------------------------
-- a deployment without replicas
------------------------------------------------------------------------------
SELECT id AS dep_id FROM dborch.deploy('tap_scale_pg', 'postgres', '{"memory": "32MB", "synchronous": true}') \gset
SELECT is((SELECT status FROM dborch.wait('tap_scale_pg', '90s')), 'ready', 'the deployment is ready');
SELECT i.id AS p_id, i.port AS p_port, i.data_directory AS p_dir
  FROM dborch.instances i WHERE i.deployment_id = :dep_id AND i.status <> 'destroyed' \gset
SELECT value AS pw FROM dborch.secrets WHERE deployment_id = :dep_id AND name = 'password' \gset
SELECT dborch.connection_string('tap_scale_pg') AS w_uri \gset
\set out `PGCONNECT_TIMEOUT=5 psql :'w_uri' -XAtqc "SHOW synchronous_standby_names" 2>&1`
SELECT is(:'out'::text, '', 'synchronous, but without replicas: the primary waits for none');

------------------------------------------------------------------------------
-- refusals
------------------------------------------------------------------------------
SELECT is(pg_temp.tap_error($$SELECT dborch.scale('tap_scale_pg', replicas => -1)$$),
          '22023: replicas must be between 0 and 10', 'scale() with negative replicas is refused (22023)');
SELECT is(pg_temp.tap_error($$SELECT dborch.scale('tap_scale_pg', replicas => 11)$$),
          '22023: replicas must be between 0 and 10', 'scale() with more than 10 replicas is refused (22023)');
SELECT is(pg_temp.tap_error($$SELECT dborch.scale('tap_scale_pg', memory => 'lots')$$),
          '22023: invalid value for argument "memory": ''lots''', 'scale() with a memory that is no size is refused (22023)');
SELECT is(pg_temp.tap_error_full($$SELECT dborch.scale('tap_scale_pg', memory => '1MB')$$),
          '22023: invalid value for argument "memory": ''1MB'' | A postgres deployment needs between 16MB and 1TB. | ',
          'scale() below the minimum memory is refused (22023), with deploy()''s bounds');
-- past deploy()'s bound; 8000000TB times 11 instances would overflow a bigint
-- (and so pass the quota check) if it were accepted
SELECT is(pg_temp.tap_error($$SELECT dborch.scale('tap_scale_pg', replicas => 10, memory => '8000000TB')$$),
          '22023: invalid value for argument "memory": ''8000000TB''',
          'scale() above the maximum memory is refused (22023), before any quota arithmetic');
SELECT is(pg_temp.tap_error($$SELECT dborch.scale('tap_scale_pg', memory => '2TB')$$),
          '22023: invalid value for argument "memory": ''2TB''', 'scale() to 2TB is refused like deploy() (22023)');
SELECT matches(pg_temp.tap_error($$SELECT dborch.scale('tap_scale_pg', memory => '100GB')$$),
               '^53400: quota exceeded', 'scale() past the memory quota is refused (53400)');
SELECT is(pg_temp.tap_error($$SELECT dborch.scale('tap_scale_pg')$$),
          '22023: nothing to change', 'scale() without replicas or memory is refused (22023)');
SELECT is(pg_temp.tap_error($$SELECT dborch.scale('tap_scale_nosuch', replicas => 1)$$),
          '42704: deployment "tap_scale_nosuch" does not exist', 'scale() of an unknown deployment is refused (42704)');
SELECT is(pg_temp.tap_error($$SELECT dborch.connection_string('tap_scale_pg', intent => 'sideways')$$),
          '22023: invalid intent "sideways"', 'connection_string() with an unknown intent is refused (22023)');
SELECT is(pg_temp.tap_error($$SELECT dborch.connection_string('tap_scale_pg', intent => 'read', strategy => 'random')$$),
          '22023: invalid strategy "random"', 'connection_string() with an unknown strategy is refused (22023)');
SELECT is((SELECT count(*) FROM dborch.jobs WHERE deployment_id = :dep_id AND kind = 'scale'), 0::bigint,
          'the refused calls queued no scale job');

------------------------------------------------------------------------------
-- without replicas, reads go to the primary
------------------------------------------------------------------------------
SELECT is(pg_temp.tap_read_ports('tap_scale_pg', s, 4), :p_port || 'x4',
          'without replicas, intent read with ' || s || ' gives the primary')
  FROM unnest(ARRAY['round_robin', 'least_connections', 'response_time']) s;
SELECT is(dborch.connection_string('tap_scale_pg', multi_host => true),
          format('postgresql://owner:%s@127.0.0.1:%s/postgres?target_session_attrs=read-write&sslmode=verify-full&sslrootcert=%s', :'pw', :p_port, :'test_dir' || '/managed/tls/ca/ca.crt'),
          'without replicas, the multi-host write URI names the primary only');

------------------------------------------------------------------------------
-- rows written before scaling; scale to 2 replicas
------------------------------------------------------------------------------
\set out `PGCONNECT_TIMEOUT=5 psql :'w_uri' -XAtq -c 'CREATE TABLE tap_rows (id int PRIMARY KEY, v text)' -c "INSERT INTO tap_rows SELECT g, 'before' FROM generate_series(1, 100) g" -c 'SELECT count(*) FROM tap_rows' 2>&1`
SELECT is(:'out'::text, '100', '100 rows are written to the primary through the write connection string');

SELECT is((SELECT status FROM dborch.scale('tap_scale_pg', replicas => 2)), 'ready',
          'scale(replicas => 2) returns the deployment, still ready');
SELECT id AS scale_job FROM dborch.jobs WHERE deployment_id = :dep_id AND kind = 'scale' ORDER BY id DESC LIMIT 1 \gset
SELECT is((SELECT status FROM dborch.wait('tap_scale_pg', '180s')), 'ready', 'wait() returns the deployment ready');
SELECT is((SELECT state FROM dborch.jobs WHERE id = :scale_job), 'succeeded', 'once wait() returns, the scale job has succeeded');
SELECT is((SELECT count(*) FROM dborch.endpoints WHERE deployment = 'tap_scale_pg' AND role = 'replica' AND healthy), 2::bigint,
          'once wait() returns, dborch.endpoints shows both replicas healthy');
SELECT isnt(pg_temp.tap_port(dborch.connection_string('tap_scale_pg', intent => 'read')), :p_port,
            'once wait() returns, a read connection string names a replica');

SELECT is((SELECT string_agg(role || '/' || status, ',' ORDER BY id) FROM dborch.instances
            WHERE deployment_id = :dep_id AND status <> 'destroyed'),
          'primary/running,replica/running,replica/running', 'the deployment has a primary and two running replicas');
SELECT id AS r1_id, port AS r1_port, pid AS r1_pid, data_directory AS r1_dir FROM dborch.instances
 WHERE deployment_id = :dep_id AND role = 'replica' AND status <> 'destroyed' ORDER BY id LIMIT 1 \gset
SELECT id AS r2_id, port AS r2_port, pid AS r2_pid, data_directory AS r2_dir FROM dborch.instances
 WHERE deployment_id = :dep_id AND role = 'replica' AND status <> 'destroyed' ORDER BY id OFFSET 1 LIMIT 1 \gset
SELECT format('postgresql://owner:%s@127.0.0.1:%s/postgres', :'pw', :r1_port) AS r1_uri,
       format('postgresql://owner:%s@127.0.0.1:%s/postgres', :'pw', :r2_port) AS r2_uri \gset
SELECT ok(:r1_port <> :p_port AND :r2_port <> :p_port AND :r1_port <> :r2_port, 'each replica has a port of its own');
SELECT is((SELECT count(*) FROM dborch.events WHERE job_id = :scale_job AND kind = 'replica_added'), 2::bigint,
          'a replica_added event for each replica');
SELECT is((SELECT id FROM dborch.deploy('tap_scale_pg', 'postgres', '{"memory": "32MB", "synchronous": true}')), :dep_id::bigint,
          'deploy() with the original options is still a no-op after scaling');
SELECT is(dborch.connection_string('tap_scale_pg'), :'w_uri', 'the write connection string still names the primary');

------------------------------------------------------------------------------
-- replication
------------------------------------------------------------------------------
\set out `PGCONNECT_TIMEOUT=5 psql :'w_uri' -XAtqc "SELECT string_agg(slot_name || ':' || active::text || ':' || slot_type, ',' ORDER BY slot_name) FROM pg_replication_slots" 2>&1`
SELECT is(:'out'::text, format('dborch_r%s:true:physical,dborch_r%s:true:physical', :r1_id, :r2_id),
          'the primary has one active physical slot per replica, dborch_r<instance id>');
\set out `PGCONNECT_TIMEOUT=5 psql :'w_uri' -XAtqc "SELECT count(*) FILTER (WHERE state = 'streaming') || '/' || count(*) FROM pg_stat_replication" 2>&1`
SELECT is(:'out'::text, '2/2', 'pg_stat_replication on the primary: two replicas streaming');
-- (the walsenders take up the reloaded setting a moment after the primary does)
\set out `for i in $(seq 1 100); do r=$(PGCONNECT_TIMEOUT=5 psql :'w_uri' -XAtq -c "SHOW synchronous_standby_names" -c "SELECT string_agg(sync_state, ',' ORDER BY sync_state) FROM pg_stat_replication" 2>&1 | tr '\n' ' '); [ "$r" = 'ANY 1 (*) quorum,quorum ' ] && break; sleep 0.1; done; echo "$r"`
SELECT is(:'out'::text, 'ANY 1 (*) quorum,quorum ', 'synchronous with replicas: a commit waits for any one of them (quorum)');
\set out `PGCONNECT_TIMEOUT=5 psql :'w_uri' -XAtq -c "INSERT INTO tap_rows SELECT g, 'after' FROM generate_series(101, 200) g" -c 'SELECT count(*) FROM tap_rows' 2>&1`
SELECT is(:'out'::text, '200', '100 more rows are written to the primary after scaling');
\set out `for i in $(seq 1 100); do r=$(PGCONNECT_TIMEOUT=5 psql :'r1_uri' -XAtqc "SELECT count(*) || '/' || count(*) FILTER (WHERE v = 'after') FROM tap_rows" 2>&1); [ "$r" = 200/100 ] && break; sleep 0.1; done; echo "$r"`
SELECT is(:'out'::text, '200/100', 'the first replica has every row, those written before and after it joined');
\set out `for i in $(seq 1 100); do r=$(PGCONNECT_TIMEOUT=5 psql :'r2_uri' -XAtqc "SELECT count(*) || '/' || count(*) FILTER (WHERE v = 'after') FROM tap_rows" 2>&1); [ "$r" = 200/100 ] && break; sleep 0.1; done; echo "$r"`
SELECT is(:'out'::text, '200/100', 'the second replica has every row, those written before and after it joined');
\set out `PGCONNECT_TIMEOUT=5 psql :'r1_uri' -XAtqc "INSERT INTO tap_rows VALUES (1000, 'on a replica')" 2>&1`
SELECT matches(:'out'::text, 'cannot execute INSERT in a read-only transaction', 'an INSERT on the first replica is refused');
\set out `PGCONNECT_TIMEOUT=5 psql :'r2_uri' -XAtqc "CREATE TABLE tap_not_here (i int)" 2>&1`
SELECT matches(:'out'::text, 'cannot execute CREATE TABLE in a read-only transaction', 'a CREATE TABLE on the second replica is refused');
\set out `for u in :'r1_uri' :'r2_uri' :'w_uri'; do PGCONNECT_TIMEOUT=5 psql "$u" -XAtqc 'SELECT pg_is_in_recovery()' 2>&1; done | tr '\n' ' '`
SELECT is(:'out'::text, 't t f ', 'both replicas are in recovery, the primary is not');
\set out `PGCONNECT_TIMEOUT=5 psql :'r2_uri' -XAtqc "SELECT pg_size_bytes(current_setting('shared_buffers')) || ' ' || current_setting('cluster_name')" 2>&1`
SELECT is(:'out'::text, '33554432 tap_scale_pg', 'a replica has the deployment''s memory and cluster name');

------------------------------------------------------------------------------
-- dborch.endpoints and dborch.deployment()
------------------------------------------------------------------------------
SELECT ok(pg_temp.tap_until(format($$SELECT count(*) = 3 FROM dborch.endpoints WHERE deployment = 'tap_scale_pg'
                                      AND healthy AND latency_ms >= 0 AND connections >= 1$$), '30s'),
          'dborch.endpoints shows all three instances healthy, with latency and connections');
SELECT is((SELECT string_agg(instance_id || ':' || role || ':' || host || ':' || port || ':' || status, ',' ORDER BY instance_id)
             FROM dborch.endpoints WHERE deployment = 'tap_scale_pg'),
          format('%s:primary:127.0.0.1:%s:running,%s:replica:127.0.0.1:%s:running,%s:replica:127.0.0.1:%s:running',
                 :p_id, :p_port, :r1_id, :r1_port, :r2_id, :r2_port),
          'dborch.endpoints: each instance with its role, host, port and status');
SELECT is((SELECT string_agg(e ->> 'role', ',' ORDER BY (e ->> 'port')::int)
             FROM jsonb_array_elements(dborch.deployment('tap_scale_pg') -> 'instances') e),
          (SELECT string_agg(role, ',' ORDER BY port) FROM dborch.instances WHERE deployment_id = :dep_id AND status <> 'destroyed'),
          'dborch.deployment() lists the three instances with their roles');

------------------------------------------------------------------------------
-- read routing over two healthy replicas
------------------------------------------------------------------------------
SELECT pg_temp.tap_read_ports('tap_scale_pg', 'round_robin', 21) AS rr \gset
SELECT ok(:'rr' IN (format('%sx10 %sx11', least(:r1_port, :r2_port), greatest(:r1_port, :r2_port)),
                    format('%sx11 %sx10', least(:r1_port, :r2_port), greatest(:r1_port, :r2_port))),
          'round_robin: 21 calls give 10 or 11 to each replica, none to the primary (got ' || :'rr' || ')');
SELECT pg_temp.tap_read_ports('tap_scale_pg', 'round_robin', 40) AS rr \gset
SELECT is(:'rr', format('%sx20 %sx20', least(:r1_port, :r2_port), greatest(:r1_port, :r2_port)),
          'round_robin: 40 calls give 20 to each replica');
SELECT ok(pg_temp.tap_port(dborch.connection_string('tap_scale_pg', intent => 'read', strategy => 'response_time'))
            IN (:r1_port, :r2_port), 'response_time gives a replica');
SELECT ok(pg_temp.tap_port(dborch.connection_string('tap_scale_pg', intent => 'read', strategy => 'least_connections'))
            IN (:r1_port, :r2_port), 'least_connections gives a replica');
SELECT is(pg_temp.tap_port(dborch.connection_string('tap_scale_pg', intent => 'write', strategy => s)), :p_port,
          'intent write with ' || s || ' gives the primary')
  FROM unnest(ARRAY['round_robin', 'least_connections', 'response_time']) s;

-- least_connections: four sessions held on the replica it picks now; once
-- the prober has counted them, it picks the other one.
SELECT pg_temp.tap_port(dborch.connection_string('tap_scale_pg', intent => 'read', strategy => 'least_connections')) AS busy_port \gset
SELECT CASE WHEN :busy_port = :r1_port THEN :r2_port ELSE :r1_port END AS idle_port,
       format('postgresql://owner:%s@127.0.0.1:%s/postgres?application_name=tap_hold', :'pw', :busy_port) AS busy_uri \gset
\set out `for i in 1 2 3 4; do (timeout 120 psql :'busy_uri' -XAtqc 'SELECT pg_sleep(100)' >/dev/null 2>&1 &); done; echo started`
SELECT ok(pg_temp.tap_until(format($$SELECT connections >= 5 FROM dborch.endpoints WHERE port = %s AND probed_at > clock_timestamp() - interval '2 seconds'$$, :busy_port), '30s'),
          'the prober counts the four sessions held on the busy replica');
SELECT is(pg_temp.tap_read_ports('tap_scale_pg', 'least_connections', 10), :idle_port || 'x10',
          'least_connections: 10 calls all give the replica with fewer connections');
\set out `PGCONNECT_TIMEOUT=5 psql :'busy_uri' -XAtqc "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'tap_hold' AND pid <> pg_backend_pid()" 2>&1`
SELECT is(:'out'::text, '4', 'the held sessions are ended');

-- multi-host URIs: every instance, the primary first
SELECT is(dborch.connection_string('tap_scale_pg', multi_host => true),
          format('postgresql://owner:%s@127.0.0.1:%s,127.0.0.1:%s,127.0.0.1:%s/postgres?target_session_attrs=read-write&sslmode=verify-full&sslrootcert=%s',
                 :'pw', :p_port, :r1_port, :r2_port, :'test_dir' || '/managed/tls/ca/ca.crt'),
          'multi_host write: every instance, the primary first, target_session_attrs=read-write');
SELECT is(dborch.connection_string('tap_scale_pg', intent => 'read', multi_host => true),
          format('postgresql://owner:%s@127.0.0.1:%s,127.0.0.1:%s,127.0.0.1:%s/postgres?target_session_attrs=prefer-standby&sslmode=verify-full&sslrootcert=%s',
                 :'pw', :p_port, :r1_port, :r2_port, :'test_dir' || '/managed/tls/ca/ca.crt'),
          'multi_host read: every instance, target_session_attrs=prefer-standby');
SELECT dborch.connection_string('tap_scale_pg', multi_host => true) AS mw_uri,
       dborch.connection_string('tap_scale_pg', intent => 'read', multi_host => true) AS mr_uri \gset
\set out `PGCONNECT_TIMEOUT=5 psql :'mw_uri' -XAtqc "SELECT pg_is_in_recovery()::text || ' ' || current_setting('port')" 2>&1`
SELECT is(:'out'::text, 'false ' || :p_port, 'libpq with the multi-host write URI reaches the primary');
\set out `PGCONNECT_TIMEOUT=5 psql :'mr_uri' -XAtqc "SELECT pg_is_in_recovery()" 2>&1`
SELECT is(:'out'::text, 't', 'libpq with the multi-host read URI reaches a standby');
SELECT is(pg_temp.tap_error($$SELECT dborch.connection_string('tap_scale_pg', intent => 'write', strategy => 'fastest')$$),
          '22023: invalid strategy "fastest"', 'an unknown strategy is refused with intent write too (22023)');

------------------------------------------------------------------------------
-- a replica that is down is never returned; without a healthy replica, the
-- primary is.  The recover job is held at its restart stage meanwhile.
------------------------------------------------------------------------------
ALTER SYSTEM SET dborch.pause_at_stage = 'recover:restart';
SELECT pg_reload_conf() \g /dev/null
SELECT pg_sleep(0.5) \g /dev/null
SELECT pid AS r1_pid FROM dborch.instances WHERE id = :r1_id \gset
SELECT pid AS r2_pid FROM dborch.instances WHERE id = :r2_id \gset
\set out `kill -9 :r1_pid 2>&1 && echo killed`
SELECT is(:'out'::text, 'killed', 'the first replica''s postmaster is killed (kill -9)');
SELECT ok(pg_temp.tap_until(format($$SELECT status = 'down' FROM dborch.instances WHERE id = %s$$, :r1_id), '30s'),
          'the first replica is down');
SELECT is((SELECT status FROM dborch.deployments WHERE id = :dep_id), 'degraded', 'the deployment is degraded');
SELECT is(pg_temp.tap_read_ports('tap_scale_pg', s, 10), :r2_port || 'x10',
          'one replica down: 10 calls with ' || s || ' all give the other replica')
  FROM unnest(ARRAY['round_robin', 'least_connections', 'response_time']) s;
\set out `kill -9 :r2_pid 2>&1 && echo killed`
SELECT is(:'out'::text, 'killed', 'the second replica''s postmaster is killed too');
SELECT ok(pg_temp.tap_until(format($$SELECT status = 'down' FROM dborch.instances WHERE id = %s$$, :r2_id), '30s'),
          'the second replica is down');
SELECT is(pg_temp.tap_read_ports('tap_scale_pg', s, 6), :p_port || 'x6',
          'no healthy replica: intent read with ' || s || ' gives the primary')
  FROM unnest(ARRAY['round_robin', 'least_connections', 'response_time']) s;
ALTER SYSTEM RESET dborch.pause_at_stage;
SELECT pg_reload_conf() \g /dev/null
SELECT ok(pg_temp.tap_until(format($$SELECT count(*) = 2 FROM dborch.instances WHERE id IN (%s, %s) AND status = 'running'$$,
                                   :r1_id, :r2_id), '30s'),
          'both replicas killed together are recovered');
SELECT ok(pg_temp.tap_until($$SELECT status = 'ready' FROM dborch.deployments WHERE name = 'tap_scale_pg' AND status <> 'destroyed'$$, '10s'),
          'the deployment is ready again');

------------------------------------------------------------------------------
-- scale to 0: the replicas and their slots are gone
------------------------------------------------------------------------------
SELECT is((SELECT name FROM dborch.scale('tap_scale_pg', replicas => 0)), 'tap_scale_pg', 'scale(replicas => 0) is accepted');
SELECT id AS scale0_job FROM dborch.jobs WHERE deployment_id = :dep_id AND kind = 'scale' ORDER BY id DESC LIMIT 1 \gset
SELECT is(pg_temp.tap_job_end(:scale0_job, '120s'), 'succeeded', 'the scale job to 0 replicas succeeded');
SELECT is((SELECT string_agg(id || ':' || role || ':' || status, ',' ORDER BY id) FROM dborch.instances WHERE deployment_id = :dep_id),
          format('%s:primary:running,%s:replica:destroyed,%s:replica:destroyed', :p_id, :r1_id, :r2_id),
          'dborch.instances: the primary runs, both replicas are destroyed');
SELECT is((SELECT string_agg(instance_id::text, ',') FROM dborch.endpoints WHERE deployment = 'tap_scale_pg'), :p_id::text,
          'dborch.endpoints lists the primary only');
\set out `PGCONNECT_TIMEOUT=5 psql :'w_uri' -XAtqc "SELECT count(*) FROM pg_replication_slots" 2>&1`
SELECT is(:'out'::text, '0', 'the replicas'' slots are dropped on the primary');
\set out `PGCONNECT_TIMEOUT=5 PGOPTIONS='-c statement_timeout=5s' psql :'w_uri' -XAtq -c "SHOW synchronous_standby_names" -c "INSERT INTO tap_rows VALUES (5000, 'no replica left') RETURNING id" -c 'DELETE FROM tap_rows WHERE id = 5000' 2>&1 | tr '\n' ' '`
SELECT is(:'out'::text, ' 5000 ', 'without replicas the primary waits for none again: a commit returns at once');
\set out `for d in :'r1_dir' :'r2_dir'; do test -e "$d" && echo present || echo absent; done | tr '\n' ' '`
SELECT is(:'out'::text, 'absent absent ', 'the replicas'' directories are removed');
\set out `for p in /proc/[0-9]*; do readlink $p/cwd; done 2>/dev/null | grep -cE -- '(:r1_dir|:r2_dir)(/|$)'`
SELECT is(:'out'::text, '0', 'no process of a replica is left');
\set out `ss -Htln | awk '{print $4}' | grep -cE -- ':(:r1_port|:r2_port)$'`
SELECT is(:'out'::text, '0', 'nothing listens on the replicas'' ports');
SELECT is((SELECT count(*) FROM dborch.events WHERE job_id = :scale0_job AND kind = 'replica_removed'), 2::bigint,
          'a replica_removed event for each replica');
SELECT is(pg_temp.tap_read_ports('tap_scale_pg', 'round_robin', 4), :p_port || 'x4',
          'without replicas again, reads go to the primary');
\set out `PGCONNECT_TIMEOUT=5 psql :'w_uri' -XAtq -c "INSERT INTO tap_rows VALUES (201, 'at the end')" -c 'SELECT count(*) FROM tap_rows' 2>&1`
SELECT is(:'out'::text, '201', 'the primary kept every row and accepts writes');

------------------------------------------------------------------------------
-- destroy
------------------------------------------------------------------------------
SELECT is((SELECT status FROM dborch.destroy('tap_scale_pg')), 'destroying', 'destroy()');
SELECT is((SELECT status FROM dborch.wait('tap_scale_pg', '60s')), 'destroyed', 'the deployment is destroyed');
\set out `test -e :'p_dir' && echo present || echo absent`
SELECT is(:'out'::text, 'absent', 'the primary''s directory is gone');

SELECT * FROM finish();

-- Safety net after a failure above: no pause, no session held, no deployment
-- of this file left.
ALTER SYSTEM RESET dborch.pause_at_stage;
SELECT pg_reload_conf() \g /dev/null
SELECT count(dborch.destroy(name)) AS n FROM dborch.deployments
 WHERE name = 'tap_scale_pg' AND status NOT IN ('destroyed', 'destroying') \gset
SELECT count(dborch.wait(name, '90s')) AS n FROM dborch.deployments WHERE name = 'tap_scale_pg' AND status = 'destroying' \gset
