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
						  'destroying', 'destroyed', 'failed')),
	node		text,
	created_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	updated_at	timestamptz NOT NULL DEFAULT pg_catalog.now(),
	ready_at	timestamptz,
	destroyed_at timestamptz,
	expires_at	timestamptz,
	last_error	text
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
	kind		text NOT NULL CHECK (kind IN ('deploy', 'destroy', 'warm_pool')),
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

------------------------------------------------------------------------------
-- Privileges and row-level security
--
-- Users only read the catalog; every change goes through the functions below,
-- which check ownership themselves.  dborch_user members see their own rows,
-- dborch_admin members see everything.
------------------------------------------------------------------------------

REVOKE ALL ON ALL TABLES IN SCHEMA dborch FROM PUBLIC;
GRANT SELECT ON dborch.deployments, dborch.instances, dborch.jobs, dborch.events,
	dborch.secrets, dborch.quotas TO dborch_user, dborch_admin;
GRANT INSERT, UPDATE, DELETE ON dborch.quotas TO dborch_admin;

ALTER TABLE dborch.deployments ENABLE ROW LEVEL SECURITY;
ALTER TABLE dborch.instances ENABLE ROW LEVEL SECURITY;
ALTER TABLE dborch.jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE dborch.events ENABLE ROW LEVEL SECURITY;
ALTER TABLE dborch.secrets ENABLE ROW LEVEL SECURITY;
ALTER TABLE dborch.quotas ENABLE ROW LEVEL SECURITY;

CREATE POLICY own_rows ON dborch.deployments FOR SELECT TO dborch_user
	USING (owner = current_user);
CREATE POLICY all_rows ON dborch.deployments FOR SELECT TO dborch_admin
	USING (true);
-- Instances follow the visibility of their deployment.
CREATE POLICY visible_deployment ON dborch.instances FOR SELECT TO dborch_user, dborch_admin
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

CREATE FUNCTION dborch.destroy(name text)
RETURNS dborch.deployments
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'dborch_destroy';
COMMENT ON FUNCTION dborch.destroy(text) IS
	'queue the removal of a deployment''s processes and data; its row and events stay';

CREATE FUNCTION dborch.deployment(name text)
RETURNS jsonb
LANGUAGE C STABLE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'dborch_deployment';
COMMENT ON FUNCTION dborch.deployment(text) IS
	'details of a deployment: spec, status, instances, endpoints, last job';

CREATE FUNCTION dborch.connection_string(name text, tenant text DEFAULT NULL,
										 intent text DEFAULT 'write')
RETURNS text
LANGUAGE C STABLE
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'dborch_connection_string';
COMMENT ON FUNCTION dborch.connection_string(text, text, text) IS
	'URI to connect to a deployment, with its credentials';

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

-- Nothing is callable by PUBLIC; dborch_user and dborch_admin get the API.
DO $grants$
DECLARE
	f regprocedure;
BEGIN
	FOR f IN SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
			 WHERE p.pronamespace = 'dborch'::regnamespace
	LOOP
		EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
		EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO dborch_user, dborch_admin', f);
	END LOOP;
END
$grants$;
