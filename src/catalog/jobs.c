/*
 * jobs.c
 *		The catalog's jobs, events and alerts (see catalog.c for how every
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
 * Jobs
 * ---------------------------------------------------------------------
 */

int64
cat_queue_job(const char *kind, int64 deployment_id, const char *owner, const char *args)
{
	CatResult  *r;

	r = cat_query("INSERT INTO dborch.jobs (kind, deployment_id, owner, args, max_attempts)"
				  " VALUES ($1, $2::bigint, $3::name, coalesce($4::jsonb, '{}'), $5::int)"
				  " RETURNING id",
				  5, kind, deployment_id ? cat_i64(deployment_id) : NULL, owner, args,
				  psprintf("%d", dborch_job_max_attempts));
	return cat_int64(r, 0, "id");
}

/*
 * A job due after delay_ms (a failover waits for dborch.failover_timeout).
 * With whole_second, at the nearest whole second: a change deferred to a
 * maintenance window is due at the window's start, not a few microseconds
 * off it.
 */
int64
cat_queue_job_after(const char *kind, int64 deployment_id, const char *owner, const char *args,
					int delay_ms, bool whole_second)
{
	int64		id = cat_queue_job(kind, deployment_id, owner, args);

	if (delay_ms <= 0)
		return id;
	if (whole_second)
		cat_query("UPDATE dborch.jobs SET not_before = pg_catalog.date_trunc('second', pg_catalog.clock_timestamp()"
				  " + pg_catalog.make_interval(secs => $2::float8 / 1000 + 0.5)) WHERE id = $1::bigint",
				  2, cat_i64(id), psprintf("%d", delay_ms));
	else
		cat_query("UPDATE dborch.jobs SET not_before = pg_catalog.clock_timestamp()"
				  " + pg_catalog.make_interval(secs => $2::float8 / 1000) WHERE id = $1::bigint",
				  2, cat_i64(id), psprintf("%d", delay_ms));
	return id;
}

Job *
cat_job(int64 id)
{
	CatResult  *r = cat_query("SELECT id, kind, deployment_id, owner, args::text AS args, state,"
							  " stage, attempts, max_attempts, cancel_requested, error"
							  " FROM dborch.jobs WHERE id = $1::bigint",
							  1, cat_i64(id));
	Job		   *j;

	if (r->nrows == 0)
		return NULL;
	j = palloc0(sizeof(Job));
	j->id = cat_int64(r, 0, "id");
	j->kind = cat_str(r, 0, "kind");
	j->deployment_id = cat_int64(r, 0, "deployment_id");
	j->owner = cat_str(r, 0, "owner");
	j->args = cat_str(r, 0, "args");
	j->state = cat_str(r, 0, "state");
	j->stage = cat_str(r, 0, "stage");
	j->attempts = (int) cat_int64(r, 0, "attempts");
	j->max_attempts = (int) cat_int64(r, 0, "max_attempts");
	j->cancel_requested = strcmp(cat_value(r, 0, "cancel_requested"), "t") == 0;
	j->error = cat_str(r, 0, "error");
	return j;
}

Datum
cat_job_row(int64 id)
{
	return cat_query_datum("SELECT j FROM dborch.jobs j WHERE j.id = $1::bigint",
						   1, cat_i64(id));
}

/* The id of a queued or running job of this kind for a deployment, or 0. */
int64
cat_unfinished_job(int64 deployment_id, const char *kind)
{
	CatResult  *r = cat_query("SELECT id FROM dborch.jobs WHERE deployment_id = $1::bigint"
							  " AND kind = $2 AND state IN ('queued', 'running')"
							  " ORDER BY id DESC LIMIT 1",
							  2, cat_i64(deployment_id), kind);

	return r->nrows ? cat_int64(r, 0, "id") : 0;
}

/*
 * The id of a queued or running job that reads a deployment's backups (a
 * restore from them, into any deployment, or a verification), or 0.
 */
int64
cat_job_reading_backups(int64 deployment_id)
{
	CatResult  *r = cat_query("SELECT id FROM dborch.jobs WHERE state IN ('queued', 'running')"
							  " AND ((kind IN ('restore', 'restore_in_place')"
							  "       AND (args->>'source_id')::bigint = $1::bigint)"
							  "      OR (kind = 'verify' AND deployment_id = $1::bigint))"
							  " ORDER BY id LIMIT 1",
							  1, cat_i64(deployment_id));

	return r->nrows ? cat_int64(r, 0, "id") : 0;
}

/*
 * The id of a scale or failover job of a deployment that runs or is due (or
 * waits to be retried), or 0: what dborch.wait() waits for besides the
 * status.  A change deferred to a maintenance window does not count.
 */
int64
cat_reshaping_job(int64 deployment_id)
{
	CatResult  *r = cat_query("SELECT id FROM dborch.jobs WHERE deployment_id = $1::bigint"
							  " AND kind IN ('scale', 'failover') AND (state = 'running'"
							  "  OR (state = 'queued' AND (not_before <= pg_catalog.clock_timestamp() OR attempts > 0)))"
							  " ORDER BY id LIMIT 1",
							  1, cat_i64(deployment_id));

	return r->nrows ? cat_int64(r, 0, "id") : 0;
}

/*
 * The id of a running replica of a deployment that the prober has not yet
 * seen up, or 0: dborch.wait() waits for it too, so that reads are routed
 * to a replica as soon as wait() returns.
 */
int64
cat_unprobed_replica(int64 deployment_id)
{
	CatResult  *r = cat_query("SELECT i.id FROM dborch.instances i"
							  " WHERE i.deployment_id = $1::bigint AND i.role = 'replica'"
							  "   AND i.status = 'running' AND NOT EXISTS"
							  "   (SELECT 1 FROM dborch.probes p WHERE p.instance_id = i.id AND p.up)"
							  " ORDER BY i.id LIMIT 1",
							  1, cat_i64(deployment_id));

	return r->nrows ? cat_int64(r, 0, "id") : 0;
}

/* The id of a queued or running job of this kind without a deployment, or 0. */
int64
cat_unfinished_kind(const char *kind)
{
	CatResult  *r = cat_query("SELECT id FROM dborch.jobs WHERE kind = $1"
							  " AND state IN ('queued', 'running') LIMIT 1",
							  1, kind);

	return r->nrows ? cat_int64(r, 0, "id") : 0;
}

/* Cancel a deployment's queued jobs and ask its running ones to stop. */
void
cat_cancel_unfinished_jobs(int64 deployment_id)
{
	cat_query("UPDATE dborch.jobs SET"
			  " state = CASE WHEN state = 'queued' THEN 'cancelled' ELSE state END,"
			  " finished_at = CASE WHEN state = 'queued' THEN pg_catalog.clock_timestamp() END,"
			  " cancel_requested = true, updated_at = pg_catalog.clock_timestamp()"
			  " WHERE deployment_id = $1::bigint AND state IN ('queued', 'running')",
			  1, cat_i64(deployment_id));
}

/* Has any attempt of the job entered stage (its stage events say so)? */
bool
cat_job_reached_stage(int64 job_id, const char *stage)
{
	return cat_query("SELECT 1 FROM dborch.events WHERE job_id = $1::bigint AND kind = 'stage'"
					 " AND detail ->> 'stage' = $2 LIMIT 1",
					 2, cat_i64(job_id), stage)->nrows > 0;
}

/*
 * Ask a job to stop: a queued one is made due now, and its worker runs the
 * job kind's undo instead of its stages (a cancelled move gives the tenant
 * back, a cancelled restore its deployment); a running one stops at its
 * next stage and undoes its work.
 */
bool
cat_cancel_job(int64 id, const char *reason)
{
	CatResult  *r = cat_query("UPDATE dborch.jobs SET cancel_requested = true, error = $2,"
							  " not_before = CASE WHEN state = 'queued'"
							  "   THEN LEAST(not_before, pg_catalog.clock_timestamp())"
							  "   ELSE not_before END,"
							  " updated_at = pg_catalog.clock_timestamp()"
							  " WHERE id = $1::bigint AND state IN ('queued', 'running')"
							  " AND NOT cancel_requested RETURNING id",
							  2, cat_i64(id), reason);

	return r->nrows > 0;
}

/*
 * Claim up to limit due jobs for the launcher: the oldest unfinished job of
 * each deployment only, so a deployment's jobs run one at a time, in order.
 * A job not yet tried and due later (a change deferred to a maintenance
 * window, a failover waiting for its timeout) holds no one up; one waiting
 * for its retry does.  Returns a list of ClaimedJob.
 */
List *
cat_claim_jobs(int limit)
{
	CatResult  *r;
	List	   *claimed = NIL;
	int			i;

	r = cat_query("WITH c AS ("
				  "  SELECT j.id FROM dborch.jobs j"
				  "  WHERE j.state = 'queued' AND j.not_before <= pg_catalog.clock_timestamp()"
				  "  AND NOT EXISTS (SELECT 1 FROM dborch.jobs e"
				  "                  WHERE e.deployment_id = j.deployment_id AND e.id < j.id"
				  "                  AND (e.state = 'running' OR (e.state = 'queued'"
				  "                       AND (e.attempts > 0 OR e.not_before <= pg_catalog.clock_timestamp()))))"
				  "  ORDER BY j.not_before, j.id LIMIT $1::int"
				  "  FOR UPDATE SKIP LOCKED)"
				  " UPDATE dborch.jobs j SET state = 'running', attempts = j.attempts + 1,"
				  "   worker_pid = NULL, updated_at = pg_catalog.clock_timestamp()"
				  " FROM c WHERE j.id = c.id"
				  " RETURNING j.id, j.attempts",
				  1, psprintf("%d", limit));
	for (i = 0; i < r->nrows; i++)
	{
		ClaimedJob *c = palloc(sizeof(ClaimedJob));

		c->id = cat_int64(r, i, "id");
		c->attempt = (int) cat_int64(r, i, "attempts");
		claimed = lappend(claimed, c);
	}
	return claimed;
}

/* Give back a claimed job that could not be started (no worker slot). */
void
cat_unclaim_job(int64 id)
{
	cat_query("UPDATE dborch.jobs SET state = 'queued', attempts = attempts - 1,"
			  " updated_at = pg_catalog.clock_timestamp()"
			  " WHERE id = $1::bigint AND state = 'running'",
			  1, cat_i64(id));
}

/*
 * A job worker's check that the job is still its own (running, same
 * attempt), recording its pid.  The worker holds the job's advisory lock.
 */
bool
cat_job_mine(int64 id, int attempt, int pid)
{
	CatResult  *r = cat_query("UPDATE dborch.jobs SET worker_pid = $3::int,"
							  " started_at = coalesce(started_at, pg_catalog.clock_timestamp()),"
							  " updated_at = pg_catalog.clock_timestamp()"
							  " WHERE id = $1::bigint AND state = 'running' AND attempts = $2::int"
							  " RETURNING id",
							  3, cat_i64(id), psprintf("%d", attempt), psprintf("%d", pid));

	return r->nrows > 0;
}

/* Record the stage a job enters; false if the job was asked to stop. */
bool
cat_job_enter_stage(int64 id, const char *stage)
{
	CatResult  *r = cat_query("UPDATE dborch.jobs SET stage = $2,"
							  " updated_at = pg_catalog.clock_timestamp()"
							  " WHERE id = $1::bigint RETURNING cancel_requested",
							  2, cat_i64(id), stage);

	return strcmp(cat_value(r, 0, "cancel_requested"), "f") == 0;
}

void
cat_job_finish(int64 id, const char *state, const char *error)
{
	cat_query("UPDATE dborch.jobs SET state = $2, error = $3, worker_pid = NULL,"
			  " finished_at = pg_catalog.clock_timestamp(),"
			  " updated_at = pg_catalog.clock_timestamp()"
			  " WHERE id = $1::bigint",
			  3, cat_i64(id), state, error);
}

/*
 * Put a failed attempt back in the queue, due after delay_ms.  The next
 * attempt starts again at the first stage: stages are idempotent, and a
 * failure may have undone an earlier stage's work (an instance that died).
 */
void
cat_job_retry(int64 id, const char *error, int delay_ms)
{
	cat_query("UPDATE dborch.jobs SET state = 'queued', error = $2, worker_pid = NULL, stage = NULL,"
			  " not_before = pg_catalog.clock_timestamp()"
			  "              + pg_catalog.make_interval(secs => $3::float8 / 1000),"
			  " updated_at = pg_catalog.clock_timestamp()"
			  " WHERE id = $1::bigint",
			  3, cat_i64(id), error, psprintf("%d", delay_ms));
}

/* Ids of jobs in state running (int64 *). */
List *
cat_running_jobs(void)
{
	CatResult  *r = cat_query("SELECT id FROM dborch.jobs WHERE state = 'running' ORDER BY id", 0);

	return ids_from(r);
}

/*
 * A running job whose worker is gone: queue it again to resume at its
 * recorded stage.  With attempt >= 0, only if it is still that attempt.
 * Returns whether the job was requeued.
 */
bool
cat_requeue_orphan(int64 id, int attempt)
{
	CatResult  *r = cat_query("UPDATE dborch.jobs SET state = 'queued', worker_pid = NULL,"
							  " error = coalesce(error, 'its worker exited unexpectedly'),"
							  " not_before = pg_catalog.clock_timestamp(),"
							  " updated_at = pg_catalog.clock_timestamp()"
							  " WHERE id = $1::bigint AND state = 'running'"
							  " AND ($2::int < 0 OR attempts = $2::int)"
							  " RETURNING id",
							  2, cat_i64(id), psprintf("%d", attempt));

	return r->nrows > 0;
}

/*
 * Milliseconds until the launcher has something to do: the next queued job
 * that may run (not behind another job of its deployment) or TTL expiry.
 * -1 when nothing is scheduled.
 */
int64
cat_next_due_ms(void)
{
	CatResult  *r = cat_query("SELECT pg_catalog.ceil(1000 * extract(epoch FROM"
							  "   LEAST("
							  "     (SELECT pg_catalog.min(j.not_before) FROM dborch.jobs j"
							  "      WHERE j.state = 'queued'"
							  "      AND NOT EXISTS (SELECT 1 FROM dborch.jobs e"
							  "                      WHERE e.deployment_id = j.deployment_id AND e.id < j.id"
							  "                      AND e.state IN ('queued', 'running'))),"
							  "     (SELECT pg_catalog.min(expires_at) FROM dborch.deployments"
							  "      WHERE expires_at IS NOT NULL"
							  "      AND status NOT IN ('destroying', 'destroyed')))"
							  "   - pg_catalog.clock_timestamp()))::bigint AS ms",
							  0);
	const char *v = cat_value(r, 0, "ms");

	if (v == NULL)
		return -1;
	return Max(strtoi64(v, NULL, 10), 0);
}

/* ---------------------------------------------------------------------
 * Events
 * ---------------------------------------------------------------------
 */

/*
 * Append an event.  Owner and deployment name are taken from the deployment
 * row.  Callers never pass a secret in message or detail.
 */
void
cat_event(const char *actor, int64 deployment_id, int64 job_id,
		  const char *kind, const char *message, const char *detail)
{
	(void) cat_event_id(actor, deployment_id, job_id, kind, message, detail);
}

/* cat_event(), returning the new event's id. */
int64
cat_event_id(const char *actor, int64 deployment_id, int64 job_id,
			 const char *kind, const char *message, const char *detail)
{
	CatResult  *r = cat_query("INSERT INTO dborch.events"
							  " (actor, owner, deployment, deployment_id, job_id, kind, message, detail)"
							  " SELECT $1, d.owner, d.name, k.id, $3::bigint, $4, $5, coalesce($6::jsonb, '{}')"
							  " FROM (SELECT $2::bigint AS id) k"
							  " LEFT JOIN dborch.deployments d ON d.id = k.id"
							  " RETURNING id",
							  6, actor, deployment_id ? cat_i64(deployment_id) : NULL,
							  job_id ? cat_i64(job_id) : NULL, kind, message, detail);

	return cat_int64(r, 0, "id");
}

/*
 * An event, announced on channel dborch_events at commit.  Any role may
 * LISTEN on any channel, so the payload is the event's id only
 * ({"event_id": N}); its row, under row-level security, tells its owner
 * and the admins what happened, and nobody else anything.
 */
void
cat_event_notify(const char *actor, int64 deployment_id, int64 job_id,
				 const char *kind, const char *message, const char *detail)
{
	int64		id = cat_event_id(actor, deployment_id, job_id, kind, message, detail);

	cat_query("SELECT pg_catalog.pg_notify('dborch_events',"
			  " pg_catalog.jsonb_build_object('event_id', $1::bigint)::text)",
			  1, cat_i64(id));
}

/* ---------------------------------------------------------------------
 * Alerts
 * ---------------------------------------------------------------------
 */

/* Alerts due for delivery (id, payload, attempts), oldest first. */
CatResult *
cat_due_alerts(int limit)
{
	return cat_query("SELECT id, payload::text AS payload, attempts FROM dborch.alerts"
					 " WHERE delivery = 'pending' AND next_attempt_at <= pg_catalog.clock_timestamp()"
					 " ORDER BY id LIMIT $1::int",
					 1, psprintf("%d", limit));
}

/*
 * Record one delivery attempt: sent, or pending again after retry_ms, or
 * failed for good once the alert is a day old.
 */
void
cat_alert_attempted(int64 id, bool sent, const char *error, int retry_ms)
{
	cat_query("UPDATE dborch.alerts SET attempts = attempts + 1,"
			  " last_error = CASE WHEN $2::bool THEN last_error ELSE $3 END,"
			  " delivery = CASE WHEN $2::bool THEN 'sent'"
			  "   WHEN created_at < pg_catalog.clock_timestamp() - interval '1 day' THEN 'failed'"
			  "   ELSE 'pending' END,"
			  " sent_at = CASE WHEN $2::bool THEN pg_catalog.clock_timestamp() END,"
			  " next_attempt_at = pg_catalog.clock_timestamp()"
			  "   + pg_catalog.make_interval(secs => $4::float8 / 1000)"
			  " WHERE id = $1::bigint",
			  4, cat_i64(id), sent ? "true" : "false", error, psprintf("%d", retry_ms));
}

/* Milliseconds until the next alert delivery is due, -1 if none. */
int64
cat_next_alert_due_ms(void)
{
	CatResult  *r = cat_query("SELECT pg_catalog.ceil(1000 * extract(epoch FROM"
							  "   pg_catalog.min(next_attempt_at) - pg_catalog.clock_timestamp()))::bigint AS ms"
							  " FROM dborch.alerts WHERE delivery = 'pending'",
							  0);
	const char *v = cat_value(r, 0, "ms");

	return v ? Max(strtoi64(v, NULL, 10), 0) : -1;
}
