-- Scaling a Redis deployment, checked with redis-cli the way an operator
-- would: scale() to 1 replica: it replicates from the primary with the
-- password (keys written on the primary reach it), refuses writes (READONLY);
-- scale(memory => '64MB') is applied live on every instance (CONFIG GET
-- maxmemory, same processes, redis.conf rewritten); read routing by each
-- strategy: one replica gets every read, with two round_robin gives N/2 calls
-- to each (within one), least_connections avoids the replica holding
-- clients, response_time picks a replica, writes go to the primary, no
-- multi-host URI for Redis; scale() to 0: the replicas are gone.
--
-- Autocommit mode and ON_ERROR_STOP off: see 10_postgres.sql.  scale()
-- leaves the deployment ready, so the file waits for its jobs (wait_job
-- semantics, polled so a failure shows as a state).
\set ON_ERROR_STOP 0
\getenv test_dir DBORCH_TEST_DIR
SET client_min_messages = warning;
\ir helpers.psql

SELECT plan(52);

------------------------------------------------------------------------------
-- a Redis deployment with keys
------------------------------------------------------------------------------
SELECT id AS dep_id FROM dborch.deploy('tap_scale_rd', 'redis', '{"memory": "32MB"}') \gset
SELECT is((SELECT status FROM dborch.wait('tap_scale_rd', '60s')), 'ready', 'the deployment is ready');
SELECT i.id AS p_id, i.port AS p_port, i.pid AS p_pid, i.data_directory AS p_dir
  FROM dborch.instances i WHERE i.deployment_id = :dep_id AND i.status <> 'destroyed' \gset
SELECT value AS pw FROM dborch.secrets WHERE deployment_id = :dep_id AND name = 'password' \gset
SELECT dborch.connection_string('tap_scale_rd') AS w_uri \gset

\set out `seq 1 500 | awk '{ printf "SET tap:k%d value-%d\n", $1, $1 }' | timeout 30 redis-cli -u :'w_uri' --no-auth-warning --pipe 2>&1 | tail -1`
SELECT matches(:'out'::text, 'errors: 0, replies: 500', '500 keys are written to the primary');
SELECT is(pg_temp.tap_read_ports('tap_scale_rd', 'round_robin', 3), :p_port || 'x3', 'without replicas, reads go to the primary');

------------------------------------------------------------------------------
-- one replica
------------------------------------------------------------------------------
SELECT is((SELECT status FROM dborch.scale('tap_scale_rd', replicas => 1)), 'ready', 'scale(replicas => 1) returns the deployment, ready');
SELECT id AS scale_job FROM dborch.jobs WHERE deployment_id = :dep_id AND kind = 'scale' ORDER BY id DESC LIMIT 1 \gset
SELECT is((SELECT status FROM dborch.wait('tap_scale_rd', '60s')), 'ready', 'wait() returns the deployment ready');
SELECT is((SELECT state FROM dborch.jobs WHERE id = :scale_job), 'succeeded', 'once wait() returns, the scale job has succeeded');
SELECT is((SELECT string_agg(role || '/' || status, ',' ORDER BY id) FROM dborch.instances
            WHERE deployment_id = :dep_id AND status <> 'destroyed'),
          'primary/running,replica/running', 'the deployment has a primary and a running replica');
SELECT id AS r1_id, port AS r1_port, pid AS r1_pid, data_directory AS r1_dir FROM dborch.instances
 WHERE deployment_id = :dep_id AND role = 'replica' AND status <> 'destroyed' \gset
SELECT format('redis://owner:%s@127.0.0.1:%s/0', :'pw', :r1_port) AS r1_uri \gset

\set out `timeout 10 redis-cli -u :'r1_uri' --no-auth-warning INFO replication 2>&1 | grep -E '^(role|master_host|master_port|master_link_status):' | tr -d '\r' | tr '\n' ' '`
SELECT is(:'out'::text, format('role:slave master_host:127.0.0.1 master_port:%s master_link_status:up ', :p_port),
          'INFO replication on the replica: a replica of the primary, link up');
\set out `timeout 10 redis-cli -u :'w_uri' --no-auth-warning INFO replication 2>&1 | grep -E '^(role|connected_slaves):' | tr -d '\r' | tr '\n' ' '`
SELECT is(:'out'::text, 'role:master connected_slaves:1 ', 'INFO replication on the primary: one connected replica');
\set out `for i in $(seq 1 100); do r=$(timeout 10 redis-cli -u :'r1_uri' --no-auth-warning DBSIZE 2>&1); [ "$r" = 500 ] && break; sleep 0.1; done; echo "$r"`
SELECT is(:'out'::text, '500', 'the replica has the 500 keys written before it joined');
\set out `timeout 10 redis-cli -u :'w_uri' --no-auth-warning SET tap:after 'written after the replica joined' 2>&1`
SELECT is(:'out'::text, 'OK', 'a key is written on the primary after the replica joined');
\set out `for i in $(seq 1 100); do r=$(timeout 10 redis-cli -u :'r1_uri' --no-auth-warning GET tap:after 2>&1); [ -n "$r" ] && break; sleep 0.1; done; echo "$r"`
SELECT is(:'out'::text, 'written after the replica joined', 'it reaches the replica');
\set out `timeout 10 redis-cli -u :'r1_uri' --no-auth-warning GET tap:k321 2>&1`
SELECT is(:'out'::text, 'value-321', 'the replica reads a key written before it joined');
\set out `timeout 10 redis-cli -u :'r1_uri' --no-auth-warning SET tap:onreplica x 2>&1`
SELECT matches(:'out'::text, '^READONLY', 'a SET on the replica is refused (READONLY)');
\set out `timeout 10 redis-cli -h 127.0.0.1 -p :r1_port PING 2>&1`
SELECT matches(:'out'::text, '^NOAUTH', 'the replica needs the password too');
SELECT is((SELECT count(*) FROM dborch.events WHERE job_id = :scale_job AND kind = 'replica_added'), 1::bigint,
          'a replica_added event');
SELECT ok(pg_temp.tap_until($$SELECT count(*) = 2 FROM dborch.endpoints WHERE deployment = 'tap_scale_rd' AND healthy$$, '30s'),
          'dborch.endpoints shows both instances healthy');
SELECT is((SELECT string_agg(role || ':' || port, ',' ORDER BY instance_id) FROM dborch.endpoints WHERE deployment = 'tap_scale_rd'),
          format('primary:%s,replica:%s', :p_port, :r1_port), 'dborch.endpoints shows the roles and ports');

-- every strategy sends reads to the one replica, writes to the primary
SELECT is(pg_temp.tap_read_ports('tap_scale_rd', s, 5), :r1_port || 'x5',
          'one replica: 5 reads with ' || s || ' all give the replica')
  FROM unnest(ARRAY['round_robin', 'least_connections', 'response_time']) s;
SELECT is(pg_temp.tap_port(dborch.connection_string('tap_scale_rd', intent => 'write', strategy => s)), :p_port,
          'intent write with ' || s || ' gives the primary')
  FROM unnest(ARRAY['round_robin', 'least_connections', 'response_time']) s;
SELECT is(pg_temp.tap_error($$SELECT dborch.connection_string('tap_scale_rd', multi_host => true)$$),
          '22023: multi-host connection strings are for PostgreSQL deployments',
          'multi_host for Redis is refused (22023)');

------------------------------------------------------------------------------
-- memory, applied live on every instance
------------------------------------------------------------------------------
SELECT is((SELECT status FROM dborch.scale('tap_scale_rd', memory => '64MB')), 'ready', 'scale(memory => ''64MB'') is accepted');
SELECT id AS mem_job FROM dborch.jobs WHERE deployment_id = :dep_id AND kind = 'scale' ORDER BY id DESC LIMIT 1 \gset
SELECT is((SELECT count(*) FROM dborch.pending_changes WHERE deployment = 'tap_scale_rd'), 0::bigint,
          'a Redis memory change does not wait for a maintenance window');
SELECT is(pg_temp.tap_job_end(:mem_job, '60s'), 'succeeded', 'the memory change succeeded');
SELECT pg_temp.tap_dborch_uri(:'w_uri', 'tap_scale_rd') AS w_admin, pg_temp.tap_dborch_uri(:'r1_uri', 'tap_scale_rd') AS r1_admin \gset
\set out `for u in :'w_admin' :'r1_admin'; do timeout 10 redis-cli -u "$u" --no-auth-warning CONFIG GET maxmemory 2>&1 | tail -1; done | tr '\n' ' '`
SELECT is(:'out'::text, '67108864 67108864 ', 'CONFIG GET maxmemory is 64MB on the primary and the replica');
SELECT is((SELECT string_agg(pid::text, ',' ORDER BY id) FROM dborch.instances WHERE id IN (:p_id, :r1_id)),
          :p_pid || ',' || :r1_pid, 'applied live: both keep their process');
\set out `grep -h '^maxmemory ' :'p_dir'/redis.conf :'r1_dir'/redis.conf | tr '\n' ' '`
SELECT is(:'out'::text, 'maxmemory 67108864 maxmemory 67108864 ', 'redis.conf of both says 64MB (kept across restarts)');
SELECT is((SELECT memory_bytes FROM dborch.deployments WHERE id = :dep_id), 67108864::bigint,
          'the catalog records 64MB as the memory it runs with');
\set out `timeout 10 redis-cli -u :'w_uri' --no-auth-warning GET tap:k1 2>&1`
SELECT is(:'out'::text, 'value-1', 'the keys are still there');

------------------------------------------------------------------------------
-- two replicas: round_robin, least_connections, response_time
------------------------------------------------------------------------------
SELECT is((SELECT name FROM dborch.scale('tap_scale_rd', replicas => 2)), 'tap_scale_rd', 'scale(replicas => 2) is accepted');
SELECT id AS scale2_job FROM dborch.jobs WHERE deployment_id = :dep_id AND kind = 'scale' ORDER BY id DESC LIMIT 1 \gset
SELECT is(pg_temp.tap_job_end(:scale2_job, '60s'), 'succeeded', 'the scale job to 2 replicas succeeded');
SELECT id AS r2_id, port AS r2_port FROM dborch.instances
 WHERE deployment_id = :dep_id AND role = 'replica' AND status <> 'destroyed' AND id <> :r1_id \gset
SELECT format('redis://owner:%s@127.0.0.1:%s/0', :'pw', :r2_port) AS r2_uri \gset
SELECT pg_temp.tap_dborch_uri(:'r2_uri', 'tap_scale_rd') AS r2_admin \gset
\set out `for i in $(seq 1 100); do r=$(timeout 10 redis-cli -u :'r2_uri' --no-auth-warning DBSIZE 2>&1); [ "$r" = 501 ] && break; sleep 0.1; done; echo "$r"; timeout 10 redis-cli -u :'r2_admin' --no-auth-warning CONFIG GET maxmemory 2>&1 | tail -1`
SELECT is(:'out'::text, E'501\n67108864', 'the second replica has every key and the new memory');
SELECT ok(pg_temp.tap_until($$SELECT count(*) = 3 FROM dborch.endpoints WHERE deployment = 'tap_scale_rd' AND healthy$$, '30s'),
          'dborch.endpoints shows the three instances healthy');

SELECT pg_temp.tap_read_ports('tap_scale_rd', 'round_robin', 21) AS rr \gset
SELECT ok(:'rr' IN (format('%sx10 %sx11', least(:r1_port, :r2_port), greatest(:r1_port, :r2_port)),
                    format('%sx11 %sx10', least(:r1_port, :r2_port), greatest(:r1_port, :r2_port))),
          'round_robin: 21 calls give 10 or 11 to each replica, none to the primary (got ' || :'rr' || ')');
SELECT pg_temp.tap_read_ports('tap_scale_rd', 'round_robin', 40) AS rr \gset
SELECT is(:'rr', format('%sx20 %sx20', least(:r1_port, :r2_port), greatest(:r1_port, :r2_port)),
          'round_robin: 40 calls give 20 to each replica');
SELECT ok(pg_temp.tap_port(dborch.connection_string('tap_scale_rd', intent => 'read', strategy => 'response_time'))
            IN (:r1_port, :r2_port), 'response_time gives a replica');

-- least_connections: four clients held (SUBSCRIBE) on the replica it picks
-- now; once the prober has counted them, it picks the other one.
SELECT dborch.connection_string('tap_scale_rd', intent => 'read', strategy => 'least_connections') AS busy_uri \gset
SELECT pg_temp.tap_port(:'busy_uri') AS busy_port \gset
SELECT CASE WHEN :busy_port = :r1_port THEN :r2_port ELSE :r1_port END AS idle_port \gset
SELECT ok(:busy_port IN (:r1_port, :r2_port), 'least_connections gives a replica');
\set out `for i in 1 2 3 4; do (timeout 120 redis-cli -u :'busy_uri' --no-auth-warning SUBSCRIBE tap:hold >/dev/null 2>&1 &); done; echo started`
SELECT ok(pg_temp.tap_until(format($$SELECT connections >= 5 FROM dborch.endpoints WHERE port = %s AND probed_at > clock_timestamp() - interval '2 seconds'$$, :busy_port), '30s'),
          'the prober counts the four clients held on the busy replica');
SELECT is(pg_temp.tap_read_ports('tap_scale_rd', 'least_connections', 10), :idle_port || 'x10',
          'least_connections: 10 calls all give the replica with fewer clients');
\set out `timeout 10 redis-cli -u :'busy_uri' --no-auth-warning CLIENT KILL TYPE pubsub 2>&1`
SELECT is(:'out'::text, '4', 'the held clients are ended');

------------------------------------------------------------------------------
-- scale to 0, destroy
------------------------------------------------------------------------------
SELECT is((SELECT name FROM dborch.scale('tap_scale_rd', replicas => 0)), 'tap_scale_rd', 'scale(replicas => 0) is accepted');
SELECT id AS scale0_job FROM dborch.jobs WHERE deployment_id = :dep_id AND kind = 'scale' ORDER BY id DESC LIMIT 1 \gset
SELECT is(pg_temp.tap_job_end(:scale0_job, '60s'), 'succeeded', 'the scale job to 0 replicas succeeded');
SELECT is((SELECT string_agg(role || '/' || status, ',' ORDER BY id) FROM dborch.instances WHERE deployment_id = :dep_id),
          'primary/running,replica/destroyed,replica/destroyed', 'the replicas are destroyed, the primary runs');
\set out `timeout 10 redis-cli -u :'w_uri' --no-auth-warning INFO replication 2>&1 | grep -E '^connected_slaves:' | tr -d '\r'`
SELECT is(:'out'::text, 'connected_slaves:0', 'the primary has no replica any more');
\set out `ss -Htln | awk '{print $4}' | grep -cE -- ':(:r1_port|:r2_port)$'`
SELECT is(:'out'::text, '0', 'nothing listens on the replicas'' ports');
SELECT is(pg_temp.tap_read_ports('tap_scale_rd', 'least_connections', 3), :p_port || 'x3', 'reads go to the primary again');

SELECT is((SELECT status FROM dborch.destroy('tap_scale_rd')), 'destroying', 'destroy()');
SELECT is((SELECT status FROM dborch.wait('tap_scale_rd', '60s')), 'destroyed', 'the deployment is destroyed');

SELECT * FROM finish();

-- Safety net after a failure above: no deployment of this file left.
SELECT count(dborch.destroy(name)) AS n FROM dborch.deployments
 WHERE name = 'tap_scale_rd' AND status NOT IN ('destroyed', 'destroying') \gset
SELECT count(dborch.wait(name, '60s')) AS n FROM dborch.deployments WHERE name = 'tap_scale_rd' AND status = 'destroying' \gset
