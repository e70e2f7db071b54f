/*
 * health.c
 *		The catalog's the prober's targets, samples and transitions (see catalog.c for how every
 *		statement runs).
 */
#include "postgres.h"

#include <stdarg.h>

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "catalog.h"
#include "catalog_internal.h"
#include "dborch.h"
#include "spec.h"
#include "tenant.h"

/* ---------------------------------------------------------------------
 * Health: the prober's targets, samples and transitions
 * ---------------------------------------------------------------------
 */

/* Instances the prober watches: running or down, of deployments in service. */
CatResult *
cat_probe_targets(void)
{
	return cat_query("SELECT i.id, i.deployment_id, d.name AS deployment, d.engine, i.host,"
					 " i.port, i.pid, i.status, coalesce(a.value, s.value) AS password,"
					 " CASE WHEN a.value IS NULL THEN 'default' ELSE '" REDIS_DBORCH_USER "' END"
					 "   AS redis_user"
					 " FROM dborch.instances i"
					 " JOIN dborch.deployments d ON d.id = i.deployment_id"
					 " LEFT JOIN dborch.secrets s ON s.deployment_id = d.id AND s.name = '" SECRET_OWNER "'"
					 " LEFT JOIN dborch.secrets a ON a.deployment_id = d.id AND a.name = '" SECRET_DBORCH "'"
					 " WHERE i.status IN ('running', 'down')"
					 " AND d.status IN ('ready', 'degraded', 'down')"
					 " ORDER BY i.id",
					 0);
}

/* Store a batch of samples (a JSON array of dborch.probes rows). */
void
cat_record_probes(const char *samples)
{
	cat_query("INSERT INTO dborch.probes (at, instance_id, deployment_id, up, latency_ms, error,"
			  "   connections, xact_commit, db_size_bytes, in_recovery, replication_lag_bytes,"
			  "   used_memory_bytes, ops_per_sec, keys, cpu_percent, rss_bytes)"
			  " SELECT at, instance_id, deployment_id, up, latency_ms, error, connections,"
			  "   xact_commit, db_size_bytes, in_recovery, replication_lag_bytes,"
			  "   used_memory_bytes, ops_per_sec, keys, cpu_percent, rss_bytes"
			  " FROM pg_catalog.jsonb_to_recordset($1::jsonb) AS x(at timestamptz,"
			  "   instance_id bigint, deployment_id bigint, up boolean, latency_ms float8,"
			  "   error text, connections bigint, xact_commit bigint, db_size_bytes bigint,"
			  "   in_recovery boolean, replication_lag_bytes bigint, used_memory_bytes bigint,"
			  "   ops_per_sec bigint, keys bigint, cpu_percent float8, rss_bytes bigint)",
			  1, samples);
	cat_query("UPDATE dborch.instances i SET last_probe_at = x.at"
			  " FROM pg_catalog.jsonb_to_recordset($1::jsonb) AS x(at timestamptz, instance_id bigint)"
			  " WHERE i.id = x.instance_id",
			  1, samples);
}

/*
 * Queue an alert (Alertmanager webhook JSON, built by dborch._alert_payload)
 * about a deployment: labels alertname, deployment, engine, environment,
 * severity and extra_labels (a JSON object).  A resolved alert carries the
 * start of the firing one with the same labels.
 */
void
cat_add_alert(int64 deployment_id, int64 instance_id, const char *status, const char *alertname,
			  const char *severity, const char *extra_labels, const char *summary,
			  const char *description)
{
	cat_query("WITH l AS ("
			  "   SELECT d.id, d.owner, pg_catalog.jsonb_build_object('alertname', $4, 'deployment', d.name,"
			  "            'engine', d.engine, 'environment', d.environment, 'severity', $5)"
			  "          || $6::jsonb AS labels"
			  "   FROM dborch.deployments d WHERE d.id = $1::bigint),"
			  " s AS ("
			  "   SELECT l.*, CASE WHEN $3 = 'resolved' THEN coalesce((SELECT a.starts_at FROM dborch.alerts a"
			  "                 WHERE a.payload -> 'commonLabels' = l.labels AND a.status = 'firing'"
			  "                 ORDER BY a.id DESC LIMIT 1), pg_catalog.clock_timestamp())"
			  "               ELSE pg_catalog.clock_timestamp() END AS starts_at,"
			  "          CASE WHEN $3 = 'resolved' THEN pg_catalog.clock_timestamp() END AS ends_at"
			  "   FROM l)"
			  " INSERT INTO dborch.alerts (deployment_id, instance_id, owner, status, starts_at, ends_at, payload)"
			  " SELECT s.id, $2::bigint, s.owner, $3, s.starts_at, s.ends_at,"
			  "   dborch._alert_payload($3, s.labels, $7, $8, s.starts_at, s.ends_at)"
			  " FROM s",
			  8, cat_i64(deployment_id), instance_id ? cat_i64(instance_id) : NULL, status, alertname,
			  severity, extra_labels ? extra_labels : "{}", summary, description ? description : "");
	dborch_wake_launcher_at_commit();
}

/*
 * An alert about something that happened (a failover, a failed scheduled
 * backup): firing, and ending by itself after five minutes; nothing is left
 * to resolve.
 */
void
cat_add_event_alert(int64 deployment_id, int64 instance_id, const char *alertname,
					const char *severity, const char *extra_labels, const char *summary,
					const char *description)
{
	cat_add_alert(deployment_id, instance_id, "firing", alertname, severity, extra_labels, summary,
				  description);
	cat_query("UPDATE dborch.alerts SET ends_at = starts_at + interval '5 minutes',"
			  " payload = pg_catalog.jsonb_set(payload, '{alerts,0,endsAt}',"
			  "   pg_catalog.to_jsonb(pg_catalog.to_char((starts_at + interval '5 minutes') AT TIME ZONE 'UTC',"
			  "                       'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')))"
			  " WHERE id = (SELECT max(id) FROM dborch.alerts WHERE deployment_id = $1::bigint)",
			  1, cat_i64(deployment_id));
}

/* A failover: an event alert naming the instance given up and the one promoted. */
void
cat_failover_alert(int64 deployment_id, int64 failed_id, int64 new_primary_id)
{
	CatResult  *r = cat_query("SELECT f.host || ':' || f.port AS failed, n.host || ':' || n.port AS promoted"
							  " FROM dborch.instances f, dborch.instances n"
							  " WHERE f.id = $1::bigint AND n.id = $2::bigint",
							  2, cat_i64(failed_id), cat_i64(new_primary_id));

	cat_add_event_alert(deployment_id, failed_id, "DborchFailover", "warning",
						psprintf("{\"instance\": \"%s\"}", cat_value(r, 0, "failed")),
						psprintf("failover: %s promoted, %s was down", cat_value(r, 0, "promoted"),
								 cat_value(r, 0, "failed")),
						NULL);
}

/*
 * An instance went down (or came back): its status, its deployment's
 * status (ready when all instances run, down when none, else degraded), an
 * event, a NOTIFY on dborch_events, an alert, and for a down instance a
 * recovery job.  Nothing happens if the instance is no longer in the state
 * the prober saw (destroyed or stopped in between).
 */
void
cat_instance_health_changed(int64 instance_id, bool down, int failures, const char *error)
{
	CatResult  *r;
	const char *dep;
	const char *kind = down ? "instance_down" : "recovered";
	char	   *detail;

	r = cat_query("UPDATE dborch.instances SET status = $2, updated_at = pg_catalog.now()"
				  " WHERE id = $1::bigint AND status = $3"
				  " RETURNING deployment_id, host || ':' || port AS endpoint,"
				  "   (SELECT name FROM dborch.deployments d WHERE d.id = deployment_id) AS deployment",
				  3, cat_i64(instance_id), down ? "down" : "running", down ? "running" : "down");
	if (r->nrows == 0)
		return;
	dep = cat_value(r, 0, "deployment_id");

	cat_refresh_deployment_status(strtoi64(dep, NULL, 10));

	detail = psprintf("{\"instance_id\": " INT64_FORMAT ", \"endpoint\": \"%s\", \"failures\": %d}",
					  instance_id, cat_value(r, 0, "endpoint"), failures);
	/* for listeners (its id) and the webhook */
	cat_event_notify(DBORCH_ACTOR, strtoi64(dep, NULL, 10), 0, kind,
					 down ? psprintf("instance %s is down after %d missed probes: %s",
									 cat_value(r, 0, "endpoint"), failures, error ? error : "no answer")
					 : psprintf("instance %s answers again", cat_value(r, 0, "endpoint")),
					 detail);
	cat_add_alert(strtoi64(dep, NULL, 10), instance_id, down ? "firing" : "resolved",
				  "DborchInstanceDown", "critical",
				  psprintf("{\"instance\": \"%s\"}", cat_value(r, 0, "endpoint")),
				  psprintf("instance %s of deployment %s is down", cat_value(r, 0, "endpoint"),
						   cat_value(r, 0, "deployment")),
				  down ? error : "it answers again");
	dborch_wake_launcher_at_commit();

	/*
	 * A primary with a running replica fails over if it is still down after
	 * dborch.failover_timeout (a shorter blip changes nothing); anything
	 * else is restarted in place.  One such job per instance: two instances
	 * down at once get one each.
	 */
	if (down && cat_query("SELECT 1 FROM dborch.jobs WHERE kind IN ('recover', 'failover')"
						  " AND state IN ('queued', 'running')"
						  " AND (args ->> 'instance_id')::bigint = $1::bigint",
						  1, cat_i64(instance_id))->nrows == 0)
	{
		CatResult  *o = cat_query("SELECT d.owner, i.role, (SELECT pg_catalog.count(*) FROM dborch.instances r"
								  "   WHERE r.deployment_id = d.id AND r.role = 'replica'"
								  "   AND r.status = 'running') AS replicas"
								  " FROM dborch.deployments d JOIN dborch.instances i ON i.deployment_id = d.id"
								  " WHERE i.id = $1::bigint",
								  1, cat_i64(instance_id));
		char	   *args = psprintf("{\"instance_id\": " INT64_FORMAT "}", instance_id);

		if (strcmp(cat_value(o, 0, "role"), "primary") == 0 && cat_int64(o, 0, "replicas") > 0)
			cat_queue_job_after("failover", strtoi64(dep, NULL, 10), cat_value(o, 0, "owner"), args,
								dborch_failover_timeout_ms, false);
		else
			cat_queue_job("recover", strtoi64(dep, NULL, 10), cat_value(o, 0, "owner"), args);
	}
}

/* The pid of an instance, its status unchanged (a recovery restarted it). */
void
cat_set_instance_pid(int64 id, int pid)
{
	cat_query("UPDATE dborch.instances SET pid = $2::int, updated_at = pg_catalog.now()"
			  " WHERE id = $1::bigint",
			  2, cat_i64(id), psprintf("%d", pid));
}

/* Delete probe samples older than dborch.metrics_retention. */
void
cat_expire_probes(void)
{
	cat_query("DELETE FROM dborch.probes"
			  " WHERE at < pg_catalog.now() - pg_catalog.make_interval(secs => $1::float8)",
			  1, psprintf("%d", dborch_metrics_retention_s));
}
