/*
 * scaling.c
 *		The catalog's scaling: auto-scaling policies and maintenance windows (see catalog.c for how every
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
 * Scaling
 * ---------------------------------------------------------------------
 */

void
cat_set_maintenance_window(int64 deployment_id, const char *window)
{
	cat_query("UPDATE dborch.deployments SET maintenance_window = $2, updated_at = pg_catalog.now()"
			  " WHERE id = $1::bigint",
			  2, cat_i64(deployment_id), window);
}

void
cat_delete_autoscale(int64 deployment_id)
{
	cat_query("DELETE FROM dborch.autoscale_policies WHERE deployment_id = $1::bigint",
			  1, cat_i64(deployment_id));
}

Datum
cat_set_autoscale(int64 deployment_id, const char *policy, const char *metric, double up,
				  double down, int min_replicas, int max_replicas, const char *cooldown)
{
	cat_query("INSERT INTO dborch.autoscale_policies (deployment_id, policy, metric, scale_up_at,"
			  " scale_down_at, min_replicas, max_replicas, cooldown, deployment)"
			  " SELECT $1::bigint, $2::jsonb, $3, $4::float8, $5::float8, $6::int, $7::int, $8::interval, d.name"
			  " FROM dborch.deployments d WHERE d.id = $1::bigint"
			  " ON CONFLICT (deployment_id) DO UPDATE SET policy = excluded.policy,"
			  "   metric = excluded.metric, scale_up_at = excluded.scale_up_at,"
			  "   scale_down_at = excluded.scale_down_at, min_replicas = excluded.min_replicas,"
			  "   max_replicas = excluded.max_replicas, cooldown = excluded.cooldown",
			  8, cat_i64(deployment_id), policy, metric, psprintf("%g", up), psprintf("%g", down),
			  psprintf("%d", min_replicas), psprintf("%d", max_replicas), cooldown);
	return cat_query_datum("SELECT p FROM dborch.autoscale_policies p WHERE p.deployment_id = $1::bigint",
						   1, cat_i64(deployment_id));
}

/* Does any deployment have an auto-scaling policy? */
bool
cat_has_autoscale(void)
{
	return cat_query("SELECT 1 FROM dborch.autoscale_policies LIMIT 1", 0)->nrows > 0;
}

/*
 * Auto-scaling decisions due now: for each policy of a deployment in
 * service with no scale job pending, outside its cooldown, the metric (the
 * average over its running instances of the latest minute of samples, as a
 * share of its limit: connections of max_connections or maxclients, CPU of
 * one core, memory of the memory option), the replicas, and the replicas it
 * should have (column want; equal to replicas when nothing is to do).
 */
CatResult *
cat_autoscale_decisions(void)
{
	return cat_query("WITH m AS ("
					 "   SELECT p.deployment_id, p.metric, p.scale_up_at, p.scale_down_at, p.min_replicas,"
					 "          p.max_replicas, d.owner, d.memory_bytes,"
					 "          (SELECT pg_catalog.count(*) FROM dborch.instances r"
					 "           WHERE r.deployment_id = d.id AND r.role = 'replica'"
					 "           AND r.status <> 'destroyed')::int AS replicas,"
					 "          (SELECT avg(CASE p.metric"
					 "                     WHEN 'connections' THEN s.connections::float8"
					 "                          / coalesce((d.spec->>'max_connections')::float8,"
					 "                                     CASE d.engine WHEN 'postgres' THEN 100 ELSE 10000 END)"
					 "                     WHEN 'cpu' THEN s.cpu_percent / 100"
					 "                     ELSE coalesce(s.used_memory_bytes, s.rss_bytes)::float8 / d.memory_bytes END)"
					 "           FROM dborch.probes s JOIN dborch.instances i ON i.id = s.instance_id"
					 "           WHERE i.deployment_id = d.id AND i.status = 'running' AND s.up"
					 "           AND s.at > pg_catalog.clock_timestamp() - interval '1 minute') AS value"
					 "   FROM dborch.autoscale_policies p JOIN dborch.deployments d ON d.id = p.deployment_id"
					 "   WHERE d.status IN ('ready', 'degraded')"
					 "   AND (p.last_decision_at IS NULL OR p.last_decision_at + p.cooldown <= pg_catalog.now())"
					 "   AND NOT EXISTS (SELECT 1 FROM dborch.jobs j WHERE j.deployment_id = d.id"
					 "                   AND j.kind = 'scale' AND j.state IN ('queued', 'running')))"
					 " SELECT m.*, CASE"
					 "     WHEN m.replicas < m.min_replicas THEN m.min_replicas"
					 "     WHEN m.replicas > m.max_replicas THEN m.max_replicas"
					 "     WHEN m.value >= m.scale_up_at AND m.replicas < m.max_replicas THEN m.replicas + 1"
					 "     WHEN m.value <= m.scale_down_at AND m.replicas > m.min_replicas THEN m.replicas - 1"
					 "     ELSE m.replicas END AS want"
					 " FROM m WHERE m.value IS NOT NULL",
					 0);
}

/*
 * Record an auto-scaling decision that the owner's memory quota holds back:
 * an event with the figures and the cooldown's start, so that the next try
 * (and the next event) comes only after the cooldown.
 */
void
cat_autoscale_held(int64 deployment_id, int replicas, int want, const char *metric, const char *value,
				   const char *owner, int64 used_bytes, int64 max_bytes)
{
	cat_query("UPDATE dborch.autoscale_policies SET last_decision_at = pg_catalog.now()"
			  " WHERE deployment_id = $1::bigint", 1, cat_i64(deployment_id));
	cat_event(DBORCH_ACTOR, deployment_id, 0, "autoscale",
			  psprintf("%s at %.3f: %d to %d replicas held back by the memory quota of role \"%s\""
					   " (" INT64_FORMAT " of " INT64_FORMAT " MB used)",
					   metric, strtod(value, NULL), replicas, want, owner,
					   used_bytes / (1024 * 1024), max_bytes / (1024 * 1024)),
			  psprintf("{\"metric\": \"%s\", \"value\": %s, \"replicas\": %d, \"want\": %d,"
					   " \"held\": \"quota\", \"used_bytes\": " INT64_FORMAT ", \"max_bytes\": " INT64_FORMAT "}",
					   metric, value, replicas, want, used_bytes, max_bytes));
}

/* Record an auto-scaling decision: the scale job, its event and the cooldown's start. */
void
cat_autoscale(int64 deployment_id, const char *owner, int replicas, int want, const char *metric,
			  const char *value)
{
	int64		job = cat_queue_job("scale", deployment_id, owner, psprintf("{\"replicas\": %d}", want));

	cat_query("UPDATE dborch.autoscale_policies SET last_decision_at = pg_catalog.now()"
			  " WHERE deployment_id = $1::bigint", 1, cat_i64(deployment_id));
	cat_event(DBORCH_ACTOR, deployment_id, job, "autoscale",
			  psprintf("%s at %.3f: %d to %d replicas", metric, strtod(value, NULL), replicas, want),
			  psprintf("{\"metric\": \"%s\", \"value\": %s, \"replicas\": %d, \"want\": %d}",
					   metric, value, replicas, want));
}
