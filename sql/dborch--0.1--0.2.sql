/* dborch 0.1 -> 0.2: owners never hold superuser; dborch has a login of its own. */

\echo Use "ALTER EXTENSION dborch UPDATE TO '0.2'" to load this file. \quit

-- A job kind that brings a deployment made by an earlier version to what
-- this one makes, on its running instances (src/jobs/job_upgrade.c).
ALTER TABLE dborch.jobs DROP CONSTRAINT jobs_kind_check;
ALTER TABLE dborch.jobs ADD CONSTRAINT jobs_kind_check
	CHECK (kind IN ('deploy', 'destroy', 'warm_pool', 'recover', 'stop', 'start', 'deliver_alerts',
					'backup', 'restore', 'restore_in_place', 'verify', 'tenants', 'tenant_usage',
					'move_tenant', 'scale', 'failover', 'upgrade'));

-- The secret named 'dborch' is dborch's own login in a deployment's
-- instances (the PostgreSQL superuser's password, the Redis user dborch's):
-- neither the owner nor dborch_admin reads it.  The owner's login stays the
-- secret named 'password'.
DROP POLICY own_rows ON dborch.secrets;
DROP POLICY all_rows ON dborch.secrets;
CREATE POLICY own_rows ON dborch.secrets FOR SELECT TO dborch_user
	USING (owner = current_user AND name <> 'dborch');
CREATE POLICY all_rows ON dborch.secrets FOR SELECT TO dborch_admin
	USING (name <> 'dborch');
COMMENT ON TABLE dborch.secrets IS
	'secrets: generated credentials; the owner''s readable by their owner and dborch_admin, dborch''s own by no one';

-- A tenant that a restore carried over (or a restore in place applies
-- again) takes over what the restored data holds of it; a new one never
-- takes over keys of its prefix that are already there (the owner's).
ALTER TABLE dborch.tenants ADD COLUMN adopt_data boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN dborch.tenants.adopt_data IS
	'the tenant takes over the data of its name the instance holds (carried by a restore)';

-- Each schedule remembers the last pg_cron run the launcher has looked at,
-- so that a failed run is reported once (an event and an alert).
ALTER TABLE dborch.backup_schedules ADD COLUMN last_run_id bigint NOT NULL DEFAULT 0;
COMMENT ON COLUMN dborch.backup_schedules.last_run_id IS
	'the last cron.job_run_details run of this schedule the launcher has looked at';
-- (runs before this update are history, not news)
UPDATE dborch.backup_schedules s
   SET last_run_id = coalesce((SELECT pg_catalog.max(r.runid) FROM cron.job_run_details r
							   WHERE r.jobid = s.cron_job_id), 0);

-- A PostgreSQL deployment stopped or destroyed archives its last WAL and
-- records how far a point-in-time restore of it reaches: a later target is
-- refused up front, and dborch.deployment() shows the window.
ALTER TABLE dborch.deployments ADD COLUMN recoverable_until timestamptz;
COMMENT ON COLUMN dborch.deployments.recoverable_until IS
	'stopped or destroyed PostgreSQL deployment: its last archived transaction, the latest point in time a restore reaches';

-- A policy names its deployment, as every other table a user reads does.
ALTER TABLE dborch.autoscale_policies ADD COLUMN deployment text;
UPDATE dborch.autoscale_policies p SET deployment = d.name FROM dborch.deployments d WHERE d.id = p.deployment_id;
ALTER TABLE dborch.autoscale_policies ALTER COLUMN deployment SET NOT NULL;
COMMENT ON COLUMN dborch.autoscale_policies.deployment IS 'the deployment''s name';

-- endpoints: the average latency to the microsecond (0.28, not
-- 0.27999999999999997).
CREATE OR REPLACE VIEW dborch.endpoints WITH (security_invoker = true) AS
	SELECT d.name AS deployment, d.engine, i.id AS instance_id, i.role, i.host, i.port,
		   i.status, (i.status = 'running' AND coalesce(p.up, false)) AS healthy,
		   l.latency_ms, p.connections, p.at AS probed_at
	  FROM dborch.instances i
	  JOIN dborch.deployments d ON d.id = i.deployment_id
	  LEFT JOIN LATERAL (SELECT p.up, p.connections, p.at FROM dborch.probes p
						  WHERE p.instance_id = i.id ORDER BY p.at DESC LIMIT 1) p ON true
	  LEFT JOIN LATERAL (SELECT pg_catalog.round(pg_catalog.avg(p.latency_ms)::numeric, 3)::float8 AS latency_ms
						   FROM dborch.probes p
						  WHERE p.instance_id = i.id AND p.up
						  AND p.at > pg_catalog.clock_timestamp() - interval '1 minute') l ON true
	 WHERE i.status <> 'destroyed';

-- metrics() of another owner's deployment is refused as by every other
-- function (42501), no longer reported as unknown (42704).
CREATE OR REPLACE FUNCTION dborch.metrics(name text, since interval DEFAULT '10 minutes')
RETURNS TABLE (at timestamptz, instance_id bigint, role text, up boolean,
			   latency_ms double precision, connections bigint, xact_commit bigint,
			   db_size_bytes bigint, in_recovery boolean, replication_lag_bytes bigint,
			   used_memory_bytes bigint, ops_per_sec bigint, keys bigint,
			   cpu_percent double precision, rss_bytes bigint, error text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	dep bigint;
BEGIN
	-- 42704 for an unknown name, 42501 for another owner's deployment
	dep := (dborch.deployment(metrics.name) ->> 'id')::bigint;
	RETURN QUERY
		SELECT p.at, p.instance_id, i.role, p.up, p.latency_ms, p.connections, p.xact_commit,
			   p.db_size_bytes, p.in_recovery, p.replication_lag_bytes, p.used_memory_bytes,
			   p.ops_per_sec, p.keys, p.cpu_percent, p.rss_bytes, p.error
		  FROM dborch.probes p JOIN dborch.instances i ON i.id = p.instance_id
		 WHERE p.deployment_id = dep AND p.at >= clock_timestamp() - since
		 ORDER BY p.at, p.instance_id;
END
$$;

-- The control plane's certificate authority, for clients that verify a
-- deployment's server certificate (sslmode=verify-full).
CREATE FUNCTION dborch.ca_certificate()
RETURNS text
LANGUAGE C STABLE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'dborch_ca_certificate';
COMMENT ON FUNCTION dborch.ca_certificate() IS
	'the PEM certificate of the authority that signs every instance''s server certificate';
REVOKE ALL ON FUNCTION dborch.ca_certificate() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dborch.ca_certificate() TO dborch_user, dborch_admin;

-- Every deployment in service moves to the new logins, without a restart:
-- its owner logs in as "owner" (no superuser rights) with the same password.
INSERT INTO dborch.jobs (kind, deployment_id, owner, max_attempts)
SELECT 'upgrade', d.id, d.owner,
	   GREATEST(pg_catalog.current_setting('dborch.job_max_attempts')::integer, 20)
  FROM dborch.deployments d
 WHERE d.status NOT IN ('destroyed', 'failed');

SELECT dborch._wake_workers();
