/* dborch 0.1: catalog, roles, row-level security and the SQL API. */

\echo Use "CREATE EXTENSION dborch" to load this file. \quit

-- Roles are cluster-wide: create them only if an earlier install left none.
DO $roles$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'dborch_admin') THEN
		CREATE ROLE dborch_admin NOLOGIN;
	END IF;
	IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'dborch_user') THEN
		CREATE ROLE dborch_user NOLOGIN;
	END IF;
END
$roles$;

GRANT USAGE ON SCHEMA dborch TO dborch_user, dborch_admin;

------------------------------------------------------------------------------
-- Catalog
------------------------------------------------------------------------------

-- One row per deployment: desired state (spec) and observed state (status).
CREATE TABLE dborch.deployments (
	id			bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	name		text NOT NULL CHECK (name ~ '^[a-z][a-z0-9_]{0,39}$'),
	engine		text NOT NULL CHECK (engine IN ('postgres', 'redis')),
	owner		name NOT NULL,
	environment text NOT NULL DEFAULT 'development'
		CHECK (environment IN ('development', 'staging', 'production')),
	spec		jsonb NOT NULL,
	memory_bytes bigint NOT NULL CHECK (memory_bytes > 0),
	status		text NOT NULL DEFAULT 'pending'
		CHECK (status IN ('pending', 'provisioning', 'ready', 'degraded', 'down',
						  'stopping', 'stopped', 'starting', 'restoring', 'destroying',
						  'destroyed', 'failed')),
	node		text,
	created_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	updated_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	ready_at	timestamptz,
	destroyed_at timestamptz,
	expires_at	timestamptz,
	last_error	text,
	maintenance_window text
);
-- A name is unique among deployments that are not destroyed; destroyed rows
-- stay as history, and the name can be used again.
CREATE UNIQUE INDEX deployments_live_name ON dborch.deployments (name)
	WHERE status <> 'destroyed';
CREATE INDEX deployments_owner ON dborch.deployments (owner);
CREATE INDEX deployments_expiry ON dborch.deployments (expires_at)
	WHERE expires_at IS NOT NULL AND status NOT IN ('destroying', 'destroyed');
COMMENT ON TABLE dborch.deployments IS 'deployments: desired spec and observed status';

-- One row per database process.
CREATE TABLE dborch.instances (
	id			bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	deployment_id bigint NOT NULL REFERENCES dborch.deployments (id),
	role		text NOT NULL DEFAULT 'primary' CHECK (role IN ('primary', 'replica')),
	node		text NOT NULL DEFAULT 'local',
	host		text NOT NULL,
	port		integer NOT NULL CHECK (port BETWEEN 1 AND 65535),
	data_directory text NOT NULL,
	pid			integer,
	status		text NOT NULL DEFAULT 'creating'
		CHECK (status IN ('creating', 'starting', 'running', 'stopped', 'down', 'destroyed')),
	last_probe_at timestamptz,
	created_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	updated_at	timestamptz NOT NULL DEFAULT pg_catalog.now()
);
-- A port is held by at most one live instance per node.
CREATE UNIQUE INDEX instances_live_port ON dborch.instances (node, port)
	WHERE status <> 'destroyed';
CREATE INDEX instances_deployment ON dborch.instances (deployment_id);
COMMENT ON TABLE dborch.instances IS 'instances: one row per managed database process';

-- Work for the background workers; a job runs as a list of named stages.
CREATE TABLE dborch.jobs (
	id			bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	kind		text NOT NULL CHECK (kind IN ('deploy', 'destroy', 'warm_pool', 'recover',
											  'stop', 'start', 'deliver_alerts', 'backup',
											  'restore', 'restore_in_place', 'verify', 'tenants',
											  'tenant_usage', 'move_tenant', 'scale', 'failover')),
	deployment_id bigint REFERENCES dborch.deployments (id),
	owner		name NOT NULL,
	args		jsonb NOT NULL DEFAULT '{}',
	state		text NOT NULL DEFAULT 'queued'
		CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
	stage		text,
	attempts	integer NOT NULL DEFAULT 0,
	max_attempts integer NOT NULL CHECK (max_attempts > 0),
	not_before	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	cancel_requested boolean NOT NULL DEFAULT false,
	worker_pid	integer,
	error		text,
	created_at	timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
	started_at	timestamptz,
	finished_at timestamptz,
	updated_at	timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp()
);
CREATE INDEX jobs_queued ON dborch.jobs (not_before, id) WHERE state = 'queued';
CREATE INDEX jobs_unfinished ON dborch.jobs (deployment_id, id)
	WHERE state IN ('queued', 'running');
CREATE INDEX jobs_deployment ON dborch.jobs (deployment_id);
COMMENT ON TABLE dborch.jobs IS 'jobs: queued and finished work of the background workers';

-- Append-only audit log. Never holds a secret.
CREATE TABLE dborch.events (
	id			bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	at			timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
	actor		text NOT NULL,
	owner		name,
	deployment	text,
	deployment_id bigint,
	job_id		bigint,
	kind		text NOT NULL,
	message		text NOT NULL,
	detail		jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX events_deployment ON dborch.events (deployment, at);
CREATE INDEX events_deployment_id ON dborch.events (deployment_id);
COMMENT ON TABLE dborch.events IS 'events: append-only audit log of what dborch and its users did';

-- Credentials of deployments; readable by the owner and dborch_admin only.
CREATE TABLE dborch.secrets (
	deployment_id bigint NOT NULL REFERENCES dborch.deployments (id),
	name		text NOT NULL,
	owner		name NOT NULL,
	value		text NOT NULL,
	created_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	PRIMARY KEY (deployment_id, name)
);
COMMENT ON TABLE dborch.secrets IS 'secrets: generated credentials, readable by their owner and dborch_admin';

-- Per-owner limits; NULL means the default from dborch.default_max_* GUCs.
CREATE TABLE dborch.quotas (
	owner		name PRIMARY KEY,
	max_deployments integer CHECK (max_deployments >= 0),
	max_memory_bytes bigint CHECK (max_memory_bytes >= 0)
);
COMMENT ON TABLE dborch.quotas IS 'quotas: per-owner limits on deployments and memory';

-- Health and metric samples written by the prober, one per instance and
-- probe period; deleted after dborch.metrics_retention.  Unlogged: samples
-- are cheap to lose in a crash and expensive to WAL-log.
CREATE UNLOGGED TABLE dborch.probes (
	at			timestamptz NOT NULL,
	instance_id bigint NOT NULL,
	deployment_id bigint NOT NULL,
	up			boolean NOT NULL,
	latency_ms	double precision,
	error		text,
	connections bigint,
	xact_commit bigint,
	db_size_bytes bigint,
	in_recovery boolean,
	replication_lag_bytes bigint,
	used_memory_bytes bigint,
	ops_per_sec bigint,
	keys		bigint,
	cpu_percent double precision,
	rss_bytes	bigint
);
CREATE INDEX probes_instance_at ON dborch.probes (instance_id, at);
CREATE INDEX probes_at ON dborch.probes (at);
COMMENT ON TABLE dborch.probes IS 'probes: health and metric samples of every instance';

-- Alerts for the webhook, Alertmanager-shaped; delivered by a job worker,
-- retried with backoff, kept after delivery.
CREATE TABLE dborch.alerts (
	id			bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	created_at	timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
	deployment_id bigint REFERENCES dborch.deployments (id),
	instance_id bigint,
	owner		name,
	status		text NOT NULL CHECK (status IN ('firing', 'resolved')),
	starts_at	timestamptz NOT NULL,
	ends_at		timestamptz,
	payload		jsonb NOT NULL,
	delivery	text NOT NULL DEFAULT 'pending' CHECK (delivery IN ('pending', 'sent', 'failed')),
	attempts	integer NOT NULL DEFAULT 0,
	next_attempt_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
	last_error	text,
	sent_at		timestamptz
);
CREATE INDEX alerts_pending ON dborch.alerts (next_attempt_at) WHERE delivery = 'pending';
COMMENT ON TABLE dborch.alerts IS 'alerts: webhook notifications and their delivery';

-- Backups: pgBackRest backups of PostgreSQL deployments, encrypted RDB
-- snapshots of Redis ones.  Rows stay after expiry (status expired) and
-- after the deployment is destroyed, so it can be restored later.
CREATE TABLE dborch.backups (
	id			bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	deployment_id bigint NOT NULL REFERENCES dborch.deployments (id),
	deployment	text NOT NULL,
	engine		text NOT NULL,
	owner		name NOT NULL,
	kind		text NOT NULL CHECK (kind IN ('full', 'diff', 'incr')),
	requested_kind text NOT NULL CHECK (requested_kind IN ('full', 'diff', 'incr')),
	status		text NOT NULL DEFAULT 'queued'
		CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'expired')),
	job_id		bigint,
	label		text,
	prior_label text,
	created_at	timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
	started_at	timestamptz,
	finished_at timestamptz,
	size_bytes	bigint,
	delta_bytes bigint,
	stored_bytes bigint,
	stored_delta_bytes bigint,
	start_lsn	pg_lsn,
	stop_lsn	pg_lsn,
	wal_start	text,
	wal_stop	text,
	snapshot_at timestamptz,
	keys		bigint,
	keys_with_ttl bigint,
	compressed	boolean NOT NULL DEFAULT true,
	encrypted	boolean NOT NULL DEFAULT true,
	checksum	text,
	file		text,
	verify_requested boolean NOT NULL DEFAULT false,
	verified_at timestamptz,
	verify_error text,
	expired_at	timestamptz,
	error		text
);
CREATE INDEX backups_deployment ON dborch.backups (deployment_id, id);
COMMENT ON TABLE dborch.backups IS 'backups: every backup of every deployment, kept after expiry and destroy';

-- Recurring backups, as pg_cron jobs calling dborch.backup().
CREATE TABLE dborch.backup_schedules (
	id			bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	deployment_id bigint NOT NULL REFERENCES dborch.deployments (id),
	deployment	text NOT NULL,
	owner		name NOT NULL,
	kind		text NOT NULL CHECK (kind IN ('full', 'diff', 'incr')),
	schedule	text NOT NULL,
	verify		boolean NOT NULL DEFAULT false,
	cron_job_id bigint NOT NULL,
	created_at	timestamptz NOT NULL DEFAULT pg_catalog.now()
);
CREATE INDEX backup_schedules_deployment ON dborch.backup_schedules (deployment_id);
COMMENT ON TABLE dborch.backup_schedules IS 'backup_schedules: pg_cron jobs that call dborch.backup()';

-- How long a deployment's backups are kept: the newest full_count full
-- backups (with what depends on them) and/or those younger than max_age.
CREATE TABLE dborch.backup_retention (
	deployment_id bigint PRIMARY KEY REFERENCES dborch.deployments (id),
	full_count	integer CHECK (full_count > 0),
	max_age		interval,
	updated_at	timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE dborch.backup_retention IS 'backup_retention: how many full backups, and for how long, a deployment keeps';

-- Tenants: isolated users of one deployment.  PostgreSQL: a schema owned by
-- the NOLOGIN role "<name>$owner", used through the login role <name>.
-- Redis: an ACL user limited to keys and channels "<name>:*".  Their
-- passwords are secrets named tenant:<name>.
CREATE TABLE dborch.tenants (
	id			bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	deployment_id bigint NOT NULL REFERENCES dborch.deployments (id),
	deployment	text NOT NULL,
	name		text NOT NULL CHECK (name ~ '^[a-z][a-z0-9_]{0,39}$'),
	owner		name NOT NULL,
	engine		text NOT NULL,
	quota		jsonb NOT NULL DEFAULT '{}',
	key_prefix	text,
	status		text NOT NULL DEFAULT 'pending'
		CHECK (status IN ('pending', 'active', 'moving', 'dropping', 'dropped', 'failed')),
	read_only	boolean NOT NULL DEFAULT false,
	usage		jsonb NOT NULL DEFAULT '{}',
	usage_at	timestamptz,
	created_at	timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
	updated_at	timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
	last_error	text
);
-- One live tenant of a name per deployment.
CREATE UNIQUE INDEX tenants_live_name ON dborch.tenants (deployment_id, name)
	WHERE status <> 'dropped';
CREATE INDEX tenants_pending ON dborch.tenants (deployment_id)
	WHERE status IN ('pending', 'dropping');
COMMENT ON TABLE dborch.tenants IS 'tenants: isolated users of a deployment, their quota, usage and status';

-- Auto-scaling policies: replicas follow a metric (share of its limit).
CREATE TABLE dborch.autoscale_policies (
	deployment_id bigint PRIMARY KEY REFERENCES dborch.deployments (id),
	policy		jsonb NOT NULL,
	metric		text NOT NULL CHECK (metric IN ('cpu', 'memory', 'connections')),
	scale_up_at double precision NOT NULL,
	scale_down_at double precision NOT NULL,
	min_replicas integer NOT NULL,
	max_replicas integer NOT NULL,
	cooldown	interval NOT NULL,
	last_decision_at timestamptz,
	CHECK (scale_down_at < scale_up_at AND min_replicas <= max_replicas)
);
COMMENT ON TABLE dborch.autoscale_policies IS 'autoscale_policies: when the launcher adds or removes replicas';

-- The Alertmanager webhook payload of one alert.
CREATE FUNCTION dborch._alert_payload(status text, labels jsonb, summary text, description text,
									  starts_at timestamptz, ends_at timestamptz)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT jsonb_build_object('version', '4', 'status', status, 'receiver', 'dborch',
		'groupKey', 'dborch/' || (labels ->> 'deployment') || '/' || (labels ->> 'alertname'),
		'truncatedAlerts', 0,
		'groupLabels', jsonb_build_object('alertname', labels ->> 'alertname'),
		'commonLabels', labels,
		'commonAnnotations', jsonb_build_object('summary', summary, 'description', description),
		'externalURL', '',
		'alerts', jsonb_build_array(jsonb_build_object(
			'status', status, 'labels', labels,
			'annotations', jsonb_build_object('summary', summary, 'description', description),
			'startsAt', to_char(starts_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
			'endsAt', coalesce(to_char(ends_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
							   '0001-01-01T00:00:00Z'),
			'generatorURL', '',
			'fingerprint', left(md5(labels::text), 16))))
$$;
COMMENT ON FUNCTION dborch._alert_payload(text, jsonb, text, text, timestamptz, timestamptz) IS
	'internal: the Alertmanager webhook JSON of one alert';

-- Pre-initialized PostgreSQL data directories that make a deploy skip initdb.
-- Holds the bootstrap password of each entry: superuser only.
CREATE TABLE dborch.warm_pool (
	id			bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	engine		text NOT NULL DEFAULT 'postgres' CHECK (engine = 'postgres'),
	version		text NOT NULL,
	directory	text NOT NULL,
	password	text NOT NULL,
	status		text NOT NULL DEFAULT 'building'
		CHECK (status IN ('building', 'ready', 'claimed')),
	claimed_by	bigint REFERENCES dborch.instances (id),
	created_at	timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE dborch.warm_pool IS 'warm_pool: initdb-ed data directories waiting for a deploy';

-- Keep the catalog in pg_dump output.
SELECT pg_catalog.pg_extension_config_dump('dborch.deployments', '');
SELECT pg_catalog.pg_extension_config_dump('dborch.instances', '');
SELECT pg_catalog.pg_extension_config_dump('dborch.jobs', '');
SELECT pg_catalog.pg_extension_config_dump('dborch.events', '');
SELECT pg_catalog.pg_extension_config_dump('dborch.secrets', '');
SELECT pg_catalog.pg_extension_config_dump('dborch.quotas', '');
SELECT pg_catalog.pg_extension_config_dump('dborch.warm_pool', '');
SELECT pg_catalog.pg_extension_config_dump('dborch.alerts', '');
SELECT pg_catalog.pg_extension_config_dump('dborch.backups', '');
SELECT pg_catalog.pg_extension_config_dump('dborch.backup_schedules', '');
SELECT pg_catalog.pg_extension_config_dump('dborch.backup_retention', '');
SELECT pg_catalog.pg_extension_config_dump('dborch.tenants', '');
SELECT pg_catalog.pg_extension_config_dump('dborch.autoscale_policies', '');

------------------------------------------------------------------------------
-- Privileges and row-level security
--
-- Users only read the catalog; every change goes through the functions below,
-- which check ownership themselves.  dborch_user members see their own rows,
-- dborch_admin members see everything.
------------------------------------------------------------------------------

REVOKE ALL ON ALL TABLES IN SCHEMA dborch FROM PUBLIC;
GRANT SELECT ON dborch.deployments, dborch.instances, dborch.jobs, dborch.events,
	dborch.secrets, dborch.quotas, dborch.probes, dborch.alerts, dborch.backups,
	dborch.backup_schedules, dborch.backup_retention, dborch.tenants, dborch.autoscale_policies
	TO dborch_user, dborch_admin;
GRANT INSERT, UPDATE, DELETE ON dborch.quotas TO dborch_admin;

ALTER TABLE dborch.deployments ENABLE ROW LEVEL SECURITY;
ALTER TABLE dborch.instances ENABLE ROW LEVEL SECURITY;
ALTER TABLE dborch.jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE dborch.events ENABLE ROW LEVEL SECURITY;
ALTER TABLE dborch.secrets ENABLE ROW LEVEL SECURITY;
ALTER TABLE dborch.quotas ENABLE ROW LEVEL SECURITY;
ALTER TABLE dborch.probes ENABLE ROW LEVEL SECURITY;
ALTER TABLE dborch.alerts ENABLE ROW LEVEL SECURITY;
ALTER TABLE dborch.backups ENABLE ROW LEVEL SECURITY;
ALTER TABLE dborch.backup_schedules ENABLE ROW LEVEL SECURITY;
ALTER TABLE dborch.backup_retention ENABLE ROW LEVEL SECURITY;
ALTER TABLE dborch.tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE dborch.autoscale_policies ENABLE ROW LEVEL SECURITY;

CREATE POLICY own_rows ON dborch.deployments FOR SELECT TO dborch_user
	USING (owner = current_user);
CREATE POLICY all_rows ON dborch.deployments FOR SELECT TO dborch_admin
	USING (true);
-- Instances follow the visibility of their deployment.
CREATE POLICY visible_deployment ON dborch.instances FOR SELECT TO dborch_user, dborch_admin
	USING (deployment_id IN (SELECT d.id FROM dborch.deployments d));
CREATE POLICY visible_deployment ON dborch.probes FOR SELECT TO dborch_user, dborch_admin
	USING (deployment_id IN (SELECT d.id FROM dborch.deployments d));
CREATE POLICY own_rows ON dborch.alerts FOR SELECT TO dborch_user
	USING (owner = current_user);
CREATE POLICY all_rows ON dborch.alerts FOR SELECT TO dborch_admin
	USING (true);
CREATE POLICY own_rows ON dborch.backups FOR SELECT TO dborch_user
	USING (owner = current_user);
CREATE POLICY all_rows ON dborch.backups FOR SELECT TO dborch_admin
	USING (true);
CREATE POLICY own_rows ON dborch.backup_schedules FOR SELECT TO dborch_user
	USING (owner = current_user);
CREATE POLICY all_rows ON dborch.backup_schedules FOR SELECT TO dborch_admin
	USING (true);
CREATE POLICY visible_deployment ON dborch.backup_retention FOR SELECT TO dborch_user, dborch_admin
	USING (deployment_id IN (SELECT d.id FROM dborch.deployments d));
CREATE POLICY own_rows ON dborch.tenants FOR SELECT TO dborch_user
	USING (owner = current_user);
CREATE POLICY all_rows ON dborch.tenants FOR SELECT TO dborch_admin
	USING (true);
CREATE POLICY visible_deployment ON dborch.autoscale_policies FOR SELECT TO dborch_user, dborch_admin
	USING (deployment_id IN (SELECT d.id FROM dborch.deployments d));
CREATE POLICY own_rows ON dborch.jobs FOR SELECT TO dborch_user
	USING (owner = current_user);
CREATE POLICY all_rows ON dborch.jobs FOR SELECT TO dborch_admin
	USING (true);
CREATE POLICY own_rows ON dborch.events FOR SELECT TO dborch_user
	USING (owner = current_user);
CREATE POLICY all_rows ON dborch.events FOR SELECT TO dborch_admin
	USING (true);
CREATE POLICY own_rows ON dborch.secrets FOR SELECT TO dborch_user
	USING (owner = current_user);
CREATE POLICY all_rows ON dborch.secrets FOR SELECT TO dborch_admin
	USING (true);
CREATE POLICY own_rows ON dborch.quotas FOR SELECT TO dborch_user
	USING (owner = current_user);
CREATE POLICY all_rows ON dborch.quotas FOR ALL TO dborch_admin
	USING (true) WITH CHECK (true);

------------------------------------------------------------------------------
-- SQL API
--
-- The functions are written in C.  They run as the caller (so they know who
-- acts), switch to the catalog owner only for their catalog statements, and
-- pin search_path so no caller object can stand in for a catalog one.
------------------------------------------------------------------------------

CREATE FUNCTION dborch.deploy(name text, engine text, options jsonb DEFAULT '{}')
RETURNS dborch.deployments
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'dborch_deploy';
COMMENT ON FUNCTION dborch.deploy(text, text, jsonb) IS
	'queue a deployment; the same name and spec again returns the existing row';

CREATE FUNCTION dborch.wait(name text, timeout interval DEFAULT '60s')
RETURNS dborch.deployments
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'dborch_wait';
COMMENT ON FUNCTION dborch.wait(text, interval) IS
	'block until the deployment leaves its transitional states';

CREATE FUNCTION dborch.destroy(name text, drop_backups boolean DEFAULT false)
RETURNS dborch.deployments
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'dborch_destroy';
COMMENT ON FUNCTION dborch.destroy(text, boolean) IS
	'queue the removal of a deployment''s processes and data; its row, events and (unless drop_backups) backups stay';

CREATE FUNCTION dborch.deployment(name text)
RETURNS jsonb
LANGUAGE C STABLE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'dborch_deployment';
COMMENT ON FUNCTION dborch.deployment(text) IS
	'details of a deployment: spec, status, instances, endpoints, last job';

CREATE FUNCTION dborch.connection_string(name text, tenant text DEFAULT NULL,
										 intent text DEFAULT 'write',
										 strategy text DEFAULT 'round_robin',
										 multi_host boolean DEFAULT false)
RETURNS text
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'dborch_connection_string';
COMMENT ON FUNCTION dborch.connection_string(text, text, text, text, boolean) IS
	'URI to connect to a deployment: the primary (write), or a healthy instance chosen by strategy (read)';

CREATE FUNCTION dborch.wait_job(id bigint, timeout interval DEFAULT '60s')
RETURNS dborch.jobs
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'dborch_wait_job';
COMMENT ON FUNCTION dborch.wait_job(bigint, interval) IS
	'block until a job has finished';

CREATE FUNCTION dborch.cancel_job(id bigint)
RETURNS dborch.jobs
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'dborch_cancel_job';
COMMENT ON FUNCTION dborch.cancel_job(bigint) IS
	'cancel a queued job, or ask a running one to stop at its next stage';

CREATE FUNCTION dborch.stop(name text)
RETURNS dborch.deployments
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'dborch_stop';
COMMENT ON FUNCTION dborch.stop(text) IS
	'stop a deployment''s processes on purpose: no alert, no automatic restart';

CREATE FUNCTION dborch.start(name text)
RETURNS dborch.deployments
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'dborch_start';
COMMENT ON FUNCTION dborch.start(text) IS
	'start a stopped deployment again';

-- State of the background workers, from shared memory (used by health()).
CREATE FUNCTION dborch._worker_status(
	OUT launcher_pid integer, OUT prober_pid integer, OUT job_workers integer,
	OUT probe_targets integer, OUT probe_connections integer,
	OUT probe_descriptors_exhausted boolean, OUT prober_loop_at timestamptz)
RETURNS record
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'dborch_worker_status';
COMMENT ON FUNCTION dborch._worker_status() IS
	'internal: state of the background workers in shared memory, for dborch.health()';

-- Statement trigger: a change to what the prober probes or connection strings
-- name moves the catalog generation at commit.
CREATE FUNCTION dborch._catalog_changed()
RETURNS trigger
LANGUAGE C
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'dborch_catalog_changed';
COMMENT ON FUNCTION dborch._catalog_changed() IS
	'internal: statement trigger that tells the prober and connection_string''s cache that instances, deployments or secrets changed';
CREATE TRIGGER catalog_changed
	AFTER INSERT OR DELETE OR UPDATE OF status, host, port, pid, role ON dborch.instances
	FOR EACH STATEMENT EXECUTE FUNCTION dborch._catalog_changed();
CREATE TRIGGER catalog_changed
	AFTER UPDATE OF status ON dborch.deployments
	FOR EACH STATEMENT EXECUTE FUNCTION dborch._catalog_changed();
CREATE TRIGGER catalog_changed
	AFTER INSERT OR DELETE OR UPDATE ON dborch.secrets
	FOR EACH STATEMENT EXECUTE FUNCTION dborch._catalog_changed();

-- One row about the whole system, as the caller may see it.
CREATE FUNCTION dborch.health(
	OUT instances_up bigint, OUT instances_down bigint, OUT instances_total bigint,
	OUT deployments jsonb,
	OUT jobs_queued bigint, OUT jobs_running bigint, OUT jobs_failed bigint,
	OUT launcher_alive boolean, OUT prober_alive boolean, OUT job_workers integer,
	OUT last_probe_age interval, OUT probe_targets integer, OUT probe_connections integer,
	OUT probe_descriptors_exhausted boolean, OUT alerts_pending bigint)
RETURNS record
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT
		(SELECT count(*) FROM dborch.instances WHERE status = 'running'),
		(SELECT count(*) FROM dborch.instances WHERE status = 'down'),
		(SELECT count(*) FROM dborch.instances WHERE status <> 'destroyed'),
		(SELECT coalesce(jsonb_object_agg(status, n), '{}')
		   FROM (SELECT status, count(*) AS n FROM dborch.deployments GROUP BY status) s),
		(SELECT count(*) FROM dborch.jobs WHERE state = 'queued'),
		(SELECT count(*) FROM dborch.jobs WHERE state = 'running'),
		(SELECT count(*) FROM dborch.jobs WHERE state = 'failed'),
		w.launcher_pid IS NOT NULL, w.prober_pid IS NOT NULL, w.job_workers,
		clock_timestamp() - (SELECT max(at) FROM dborch.probes),
		w.probe_targets, w.probe_connections, w.probe_descriptors_exhausted,
		(SELECT count(*) FROM dborch.alerts WHERE delivery = 'pending')
	FROM dborch._worker_status() w
$$;
COMMENT ON FUNCTION dborch.health() IS
	'instances up and down, deployments by status, jobs, workers, probe age, pending alerts';

-- Samples of a deployment's instances since an interval ago, oldest first.
CREATE FUNCTION dborch.metrics(name text, since interval DEFAULT '10 minutes')
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
	SELECT d.id INTO dep FROM dborch.deployments d
	 WHERE d.name = metrics.name ORDER BY d.status = 'destroyed', d.id DESC LIMIT 1;
	IF dep IS NULL THEN
		RAISE EXCEPTION 'deployment "%" does not exist', metrics.name USING ERRCODE = '42704';
	END IF;
	RETURN QUERY
		SELECT p.at, p.instance_id, i.role, p.up, p.latency_ms, p.connections, p.xact_commit,
			   p.db_size_bytes, p.in_recovery, p.replication_lag_bytes, p.used_memory_bytes,
			   p.ops_per_sec, p.keys, p.cpu_percent, p.rss_bytes, p.error
		  FROM dborch.probes p JOIN dborch.instances i ON i.id = p.instance_id
		 WHERE p.deployment_id = dep AND p.at >= clock_timestamp() - since
		 ORDER BY p.at, p.instance_id;
END
$$;
COMMENT ON FUNCTION dborch.metrics(text, interval) IS
	'health and metric samples of a deployment''s instances';

-- The latest sample of every live instance, shaped for postgres_exporter's
-- custom queries (one row per instance, labels then values; see
-- prometheus/queries.yaml).
CREATE VIEW dborch.prometheus_metrics WITH (security_invoker = true) AS
	SELECT d.name AS deployment, d.engine, i.role,
		   i.host || ':' || i.port AS instance,
		   CASE WHEN i.status = 'running' AND p.up THEN 1 ELSE 0 END AS up,
		   coalesce(p.latency_ms, 0) / 1000 AS latency_seconds,
		   coalesce(p.connections, 0) AS connections,
		   coalesce(p.xact_commit, 0) AS xact_commit,
		   coalesce(p.db_size_bytes, 0) AS database_size_bytes,
		   coalesce(p.replication_lag_bytes, 0) AS replication_lag_bytes,
		   coalesce(p.used_memory_bytes, 0) AS used_memory_bytes,
		   coalesce(p.ops_per_sec, 0) AS ops_per_second,
		   coalesce(p.keys, 0) AS keys,
		   coalesce(p.cpu_percent, 0) AS cpu_percent,
		   coalesce(p.rss_bytes, 0) AS resident_memory_bytes,
		   extract(epoch FROM clock_timestamp() - p.at) AS sample_age_seconds
	  FROM dborch.instances i
	  JOIN dborch.deployments d ON d.id = i.deployment_id
	  LEFT JOIN LATERAL (SELECT * FROM dborch.probes p
						  WHERE p.instance_id = i.id ORDER BY p.at DESC LIMIT 1) p ON true
	 WHERE i.status <> 'destroyed';
GRANT SELECT ON dborch.prometheus_metrics TO dborch_user, dborch_admin;
COMMENT ON VIEW dborch.prometheus_metrics IS 'latest metrics per instance, for postgres_exporter';

CREATE FUNCTION dborch.backup(name text, kind text DEFAULT 'full', verify boolean DEFAULT false)
RETURNS dborch.backups
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'dborch_backup';
COMMENT ON FUNCTION dborch.backup(text, text, boolean) IS
	'queue a backup (full, diff or incr for PostgreSQL; full for Redis), verified afterwards if asked';

CREATE FUNCTION dborch.restore(name text, backup bigint DEFAULT NULL,
							   target_time timestamptz DEFAULT NULL, new_name text DEFAULT NULL,
							   in_place boolean DEFAULT false)
RETURNS dborch.deployments
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'dborch_restore';
COMMENT ON FUNCTION dborch.restore(text, bigint, timestamptz, text, boolean) IS
	'restore a backup (or a point in time) into a new deployment, or in place';

CREATE FUNCTION dborch.verify_backup(id bigint)
RETURNS dborch.jobs
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'dborch_verify_backup';
COMMENT ON FUNCTION dborch.verify_backup(bigint) IS
	'queue a verification: restore into a scratch instance, check it, remove it';

CREATE FUNCTION dborch.schedule_backups(name text, schedule text, kind text DEFAULT 'full',
										retention jsonb DEFAULT NULL, verify boolean DEFAULT false)
RETURNS dborch.backup_schedules
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'dborch_schedule_backups';
COMMENT ON FUNCTION dborch.schedule_backups(text, text, text, jsonb, boolean) IS
	'schedule backups with pg_cron (5-field cron); retention {"full": N, "max_age": "30 days"}';

CREATE FUNCTION dborch.unschedule_backups(name text, kind text DEFAULT NULL)
RETURNS integer
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'dborch_unschedule_backups';
COMMENT ON FUNCTION dborch.unschedule_backups(text, text) IS
	'remove a deployment''s backup schedules (of one kind, or all); returns how many';

CREATE FUNCTION dborch.create_tenant(deployment text, tenant text, quota jsonb DEFAULT '{}')
RETURNS dborch.tenants
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'dborch_create_tenant';
COMMENT ON FUNCTION dborch.create_tenant(text, text, jsonb) IS
	'queue a tenant (PostgreSQL: a schema and its login role; Redis: an ACL user on a key prefix); idempotent';

CREATE FUNCTION dborch.drop_tenant(deployment text, tenant text)
RETURNS dborch.tenants
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'dborch_drop_tenant';
COMMENT ON FUNCTION dborch.drop_tenant(text, text) IS
	'queue the removal of a tenant: its role or ACL user and its data';

CREATE FUNCTION dborch.move_tenant(tenant text, source text, target text)
RETURNS dborch.jobs
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'dborch_move_tenant';
COMMENT ON FUNCTION dborch.move_tenant(text, text, text) IS
	'move a tenant and its data to another deployment of the same engine';

CREATE FUNCTION dborch.scale(name text, replicas integer DEFAULT NULL, memory text DEFAULT NULL,
							 defer boolean DEFAULT true)
RETURNS dborch.deployments
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'dborch_scale';
COMMENT ON FUNCTION dborch.scale(text, integer, text, boolean) IS
	'change the number of replicas and/or the memory; a PostgreSQL memory change waits for the maintenance window';

CREATE FUNCTION dborch.set_autoscale(name text, policy jsonb)
RETURNS dborch.autoscale_policies
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'dborch_set_autoscale';
COMMENT ON FUNCTION dborch.set_autoscale(text, jsonb) IS
	'set (or with NULL remove) the auto-scaling policy of a deployment';

CREATE FUNCTION dborch.set_maintenance_window(name text, maintenance_window text)
RETURNS dborch.deployments
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'dborch_set_maintenance_window';
COMMENT ON FUNCTION dborch.set_maintenance_window(text, text) IS
	'set (or with NULL remove) the weekly window, ddd:hh24:mi-ddd:hh24:mi in UTC, for changes that need a restart';

-- Every live instance: its role, health, latency (average of the last
-- minute of probes) and connections (latest probe).
CREATE VIEW dborch.endpoints WITH (security_invoker = true) AS
	SELECT d.name AS deployment, d.engine, i.id AS instance_id, i.role, i.host, i.port,
		   i.status, (i.status = 'running' AND coalesce(p.up, false)) AS healthy,
		   l.latency_ms, p.connections, p.at AS probed_at
	  FROM dborch.instances i
	  JOIN dborch.deployments d ON d.id = i.deployment_id
	  LEFT JOIN LATERAL (SELECT p.up, p.connections, p.at FROM dborch.probes p
						  WHERE p.instance_id = i.id ORDER BY p.at DESC LIMIT 1) p ON true
	  LEFT JOIN LATERAL (SELECT avg(p.latency_ms) AS latency_ms FROM dborch.probes p
						  WHERE p.instance_id = i.id AND p.up
						  AND p.at > pg_catalog.clock_timestamp() - interval '1 minute') l ON true
	 WHERE i.status <> 'destroyed';
GRANT SELECT ON dborch.endpoints TO dborch_user, dborch_admin;
COMMENT ON VIEW dborch.endpoints IS 'endpoints: every instance, its role, health, latency and connections';

-- Changes that wait for a maintenance window.
CREATE VIEW dborch.pending_changes WITH (security_invoker = true) AS
	SELECT d.name AS deployment, j.id AS job_id, j.kind, j.args AS change,
		   j.not_before AS applies_at, d.maintenance_window, j.created_at AS requested_at
	  FROM dborch.jobs j JOIN dborch.deployments d ON d.id = j.deployment_id
	 WHERE j.state = 'queued' AND (j.args ->> 'deferred')::boolean;
GRANT SELECT ON dborch.pending_changes TO dborch_user, dborch_admin;
COMMENT ON VIEW dborch.pending_changes IS 'pending_changes: changes waiting for their maintenance window';

-- Progress of running jobs, from the job workers' shared memory.
CREATE FUNCTION dborch._job_progress(OUT job_id bigint, OUT bytes_done bigint, OUT bytes_total bigint)
RETURNS SETOF record
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'dborch_job_progress';
COMMENT ON FUNCTION dborch._job_progress() IS
	'internal: bytes done and total of running jobs, for dborch.progress';

-- Running backups, restores and verifications: their phase (the job's
-- stage) and, where the tool reports it, bytes done and total.
CREATE VIEW dborch.progress WITH (security_invoker = true) AS
	SELECT j.id AS job_id, j.kind, d.name AS deployment, j.stage AS phase, j.started_at,
		   pg_catalog.clock_timestamp() - j.started_at AS elapsed,
		   p.bytes_done, p.bytes_total,
		   CASE WHEN p.bytes_total > 0
				THEN round(100.0 * p.bytes_done / p.bytes_total, 1) END AS percent
	  FROM dborch.jobs j
	  LEFT JOIN dborch.deployments d ON d.id = j.deployment_id
	  LEFT JOIN dborch._job_progress() p ON p.job_id = j.id
	 WHERE j.state = 'running'
	   AND j.kind IN ('backup', 'restore', 'restore_in_place', 'verify', 'move_tenant');
GRANT SELECT ON dborch.progress TO dborch_user, dborch_admin;
COMMENT ON VIEW dborch.progress IS 'progress: running backups, restores, verifications and tenant moves';

-- Wakes the launcher and the prober when this transaction commits; the
-- install script calls it, so they start work without waiting for a deploy.
CREATE FUNCTION dborch._wake_workers()
RETURNS void
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'dborch_wake_workers';
COMMENT ON FUNCTION dborch._wake_workers() IS
	'internal: wake the launcher and the prober at commit (called by CREATE EXTENSION)';

-- Nothing is callable by PUBLIC; dborch_user and dborch_admin get the API.
DO $grants$
DECLARE
	f regprocedure;
BEGIN
	FOR f IN SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
			 WHERE p.pronamespace = 'dborch'::regnamespace
			   AND p.prorettype <> 'trigger'::regtype
	LOOP
		EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
		EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO dborch_user, dborch_admin', f);
	END LOOP;
	REVOKE ALL ON FUNCTION dborch._catalog_changed() FROM PUBLIC;
	REVOKE ALL ON FUNCTION dborch._wake_workers() FROM dborch_user, dborch_admin;
	REVOKE ALL ON FUNCTION dborch._alert_payload(text, jsonb, text, text, timestamptz, timestamptz)
		FROM dborch_user, dborch_admin;
END
$grants$;

SELECT dborch._wake_workers();
