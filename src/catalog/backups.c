/*
 * backups.c
 *		The catalog's backups, their schedules (pg_cron) and retention (see catalog.c for how every
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
 * Backups
 * ---------------------------------------------------------------------
 */

#define BACKUP_COLUMNS \
	"b.id, b.deployment_id, b.deployment, b.engine, b.owner, b.kind, b.requested_kind," \
	" b.status, b.label, b.file, b.checksum, b.size_bytes, b.keys, b.keys_with_ttl," \
	" b.verify_requested, b.finished_at"

static Backup *
backup_from(CatResult *r)
{
	Backup	   *b;

	if (r->nrows == 0)
		return NULL;
	b = palloc0(sizeof(Backup));
	b->id = cat_int64(r, 0, "id");
	b->deployment_id = cat_int64(r, 0, "deployment_id");
	b->deployment = cat_str(r, 0, "deployment");
	b->engine = cat_str(r, 0, "engine");
	b->owner = cat_str(r, 0, "owner");
	b->kind = cat_str(r, 0, "kind");
	b->requested_kind = cat_str(r, 0, "requested_kind");
	b->status = cat_str(r, 0, "status");
	b->label = cat_str(r, 0, "label");
	b->file = cat_str(r, 0, "file");
	b->checksum = cat_str(r, 0, "checksum");
	b->size_bytes = cat_int64(r, 0, "size_bytes");
	b->keys = cat_value(r, 0, "keys") ? cat_int64(r, 0, "keys") : -1;
	b->keys_with_ttl = cat_value(r, 0, "keys_with_ttl") ? cat_int64(r, 0, "keys_with_ttl") : -1;
	b->verify_requested = strcmp(cat_value(r, 0, "verify_requested"), "t") == 0;
	b->finished_at = cat_str(r, 0, "finished_at");
	return b;
}

Backup *
cat_backup(int64 id)
{
	return backup_from(cat_query("SELECT " BACKUP_COLUMNS " FROM dborch.backups b"
								 " WHERE b.id = $1::bigint", 1, cat_i64(id)));
}

/* The newest succeeded backup of a deployment, or NULL. */
Backup *
cat_latest_backup(int64 deployment_id)
{
	return backup_from(cat_query("SELECT " BACKUP_COLUMNS " FROM dborch.backups b"
								 " WHERE b.deployment_id = $1::bigint AND b.status = 'succeeded'"
								 " ORDER BY b.finished_at DESC, b.id DESC LIMIT 1",
								 1, cat_i64(deployment_id)));
}

Datum
cat_backup_row(int64 id)
{
	return cat_query_datum("SELECT b FROM dborch.backups b WHERE b.id = $1::bigint", 1, cat_i64(id));
}

/* A queued backup row and its job; returns the backup's id. */
int64
cat_queue_backup(Deployment *d, const char *kind, bool verify)
{
	CatResult  *r;
	int64		backup_id;
	int64		job_id;

	r = cat_query("INSERT INTO dborch.backups (deployment_id, deployment, engine, owner, kind,"
				  " requested_kind, verify_requested, compressed)"
				  " VALUES ($1::bigint, $2, $3, $4::name, $5, $5, $6::bool,"
				  "  $7::jsonb->>'backup_compression' IS DISTINCT FROM 'none') RETURNING id",
				  7, cat_i64(d->id), d->name, d->engine, d->owner, kind, verify ? "true" : "false", d->spec);
	backup_id = cat_int64(r, 0, "id");
	job_id = cat_queue_job("backup", d->id, d->owner,
						   psprintf("{\"backup_id\": " INT64_FORMAT "}", backup_id));
	cat_query("UPDATE dborch.backups SET job_id = $2::bigint WHERE id = $1::bigint",
			  2, cat_i64(backup_id), cat_i64(job_id));
	return backup_id;
}

/* Status (and error, for failed) of a backup; kind when not NULL. */
void
cat_backup_set_status(int64 id, const char *status, const char *kind, const char *error)
{
	cat_query("UPDATE dborch.backups SET status = $2, kind = coalesce($3, kind), error = $4,"
			  " started_at = CASE WHEN $2 = 'running' THEN coalesce(started_at, pg_catalog.clock_timestamp())"
			  "                   ELSE started_at END,"
			  " finished_at = CASE WHEN $2 = 'failed' THEN pg_catalog.clock_timestamp() ELSE finished_at END"
			  " WHERE id = $1::bigint",
			  4, cat_i64(id), status, kind, error);
}

/* Does the deployment have a full backup that diff and incr can build on? */
bool
cat_has_full_backup(int64 deployment_id)
{
	CatResult  *r = cat_query("SELECT 1 FROM dborch.backups WHERE deployment_id = $1::bigint"
							  " AND kind = 'full' AND status = 'succeeded' LIMIT 1",
							  1, cat_i64(deployment_id));

	return r->nrows > 0;
}

/*
 * Record what pgbackrest info says of the newest backup of the stanza:
 * label, type, prior, start/stop time, sizes, LSN and WAL range.
 */
void
cat_backup_record_pgbackrest(int64 id, const char *info)
{
	cat_query("WITH e AS (SELECT x FROM pg_catalog.jsonb_array_elements($2::jsonb -> 0 -> 'backup') x"
			  "           ORDER BY (x -> 'timestamp' ->> 'stop')::bigint DESC LIMIT 1)"
			  " UPDATE dborch.backups SET status = 'succeeded', label = x ->> 'label',"
			  "   kind = x ->> 'type', prior_label = x ->> 'prior',"
			  "   started_at = pg_catalog.to_timestamp((x -> 'timestamp' ->> 'start')::float8),"
			  "   finished_at = pg_catalog.to_timestamp((x -> 'timestamp' ->> 'stop')::float8),"
			  "   size_bytes = (x -> 'info' ->> 'size')::bigint,"
			  "   delta_bytes = (x -> 'info' ->> 'delta')::bigint,"
			  "   stored_bytes = (x -> 'info' -> 'repository' ->> 'size')::bigint,"
			  "   stored_delta_bytes = (x -> 'info' -> 'repository' ->> 'delta')::bigint,"
			  "   start_lsn = (x -> 'lsn' ->> 'start')::pg_lsn, stop_lsn = (x -> 'lsn' ->> 'stop')::pg_lsn,"
			  "   wal_start = x -> 'archive' ->> 'start', wal_stop = x -> 'archive' ->> 'stop',"
			  "   error = NULL"
			  " FROM e WHERE id = $1::bigint",
			  2, cat_i64(id), info);
}

/* Record a Redis snapshot's file, sizes, key counts and checksum. */
void
cat_backup_record_redis(int64 id, const char *file, int64 size, int64 stored, int64 keys,
						int64 keys_with_ttl, const char *checksum, const char *snapshot_epoch)
{
	cat_query("UPDATE dborch.backups SET status = 'succeeded',"
			  " label = pg_catalog.regexp_replace($2, '^.*/', ''), file = $2,"
			  " size_bytes = $3::bigint, delta_bytes = $3::bigint, stored_bytes = $4::bigint,"
			  " stored_delta_bytes = $4::bigint,"
			  " keys = nullif($5::bigint, -1), keys_with_ttl = nullif($6::bigint, -1), checksum = $7,"
			  " snapshot_at = pg_catalog.to_timestamp($8::float8),"
			  " finished_at = pg_catalog.clock_timestamp(), error = NULL"
			  " WHERE id = $1::bigint",
			  8, cat_i64(id), file, cat_i64(size), cat_i64(stored), cat_i64(keys),
			  cat_i64(keys_with_ttl), checksum, snapshot_epoch);
}

/* Backups pgBackRest no longer lists (expired by it) become expired here too. */
void
cat_backups_sync_pgbackrest(int64 deployment_id, const char *info)
{
	cat_query("UPDATE dborch.backups SET status = 'expired', expired_at = pg_catalog.clock_timestamp()"
			  " WHERE deployment_id = $1::bigint AND status = 'succeeded'"
			  " AND label NOT IN (SELECT x ->> 'label'"
			  "                   FROM pg_catalog.jsonb_array_elements($2::jsonb -> 0 -> 'backup') x)",
			  2, cat_i64(deployment_id), info);
}

/*
 * Labels of pgbackrest info (JSON) that no succeeded backup row of the
 * deployment has: sets pgBackRest finished that dborch never recorded.
 */
List *
cat_unrecorded_labels(int64 deployment_id, const char *info)
{
	CatResult  *r = cat_query("SELECT x ->> 'label' AS label"
							  " FROM pg_catalog.jsonb_array_elements($2::jsonb -> 0 -> 'backup') x"
							  " WHERE NOT EXISTS (SELECT 1 FROM dborch.backups b WHERE b.deployment_id = $1::bigint"
							  "                   AND b.status = 'succeeded' AND b.label = x ->> 'label')"
							  " ORDER BY (x -> 'timestamp' ->> 'stop')::bigint DESC",
							  2, cat_i64(deployment_id), info);
	List	   *labels = NIL;

	for (int i = 0; i < r->nrows; i++)
		labels = lappend(labels, cat_str(r, i, "label"));
	return labels;
}

/* A deployment's retention: full backups to keep and maximum age in days (0: none). */
bool
cat_backup_retention(int64 deployment_id, int *full_count, int *max_age_days)
{
	CatResult  *r = cat_query("SELECT coalesce(full_count, 0) AS n,"
							  " coalesce(pg_catalog.ceil(extract(epoch FROM max_age) / 86400), 0)::int AS days"
							  " FROM dborch.backup_retention WHERE deployment_id = $1::bigint",
							  1, cat_i64(deployment_id));

	if (r->nrows == 0)
		return false;
	*full_count = (int) cat_int64(r, 0, "n");
	*max_age_days = (int) cat_int64(r, 0, "days");
	return true;
}

void
cat_set_backup_retention(int64 deployment_id, const char *full_count, const char *max_age)
{
	cat_query("INSERT INTO dborch.backup_retention (deployment_id, full_count, max_age)"
			  " VALUES ($1::bigint, $2::int, $3::interval)"
			  " ON CONFLICT (deployment_id) DO UPDATE SET full_count = excluded.full_count,"
			  "   max_age = excluded.max_age, updated_at = pg_catalog.now()",
			  3, cat_i64(deployment_id), full_count, max_age);
}

/*
 * Redis snapshots beyond the retention: older than the newest full_count,
 * or older than max_age days.  Marked expired; their files are returned
 * (column file) for removal.
 */
CatResult *
cat_expire_redis_backups(int64 deployment_id, int full_count, int max_age_days)
{
	return cat_query("WITH ranked AS ("
					 "   SELECT id, finished_at, row_number() OVER (ORDER BY finished_at DESC, id DESC) AS n"
					 "   FROM dborch.backups WHERE deployment_id = $1::bigint AND status = 'succeeded')"
					 " UPDATE dborch.backups b SET status = 'expired',"
					 "   expired_at = pg_catalog.clock_timestamp()"
					 " FROM ranked r WHERE b.id = r.id"
					 " AND (($2::int > 0 AND r.n > $2::int)"
					 "   OR ($3::int > 0 AND r.finished_at < pg_catalog.now() - pg_catalog.make_interval(days => $3::int)))"
					 " RETURNING b.file",
					 3, cat_i64(deployment_id), psprintf("%d", full_count), psprintf("%d", max_age_days));
}

/* Every backup of a deployment becomes expired (its files were dropped). */
void
cat_expire_all_backups(int64 deployment_id)
{
	cat_query("UPDATE dborch.backups SET status = 'expired', expired_at = pg_catalog.clock_timestamp(),"
			  " error = coalesce(error, 'dropped with the deployment')"
			  " WHERE deployment_id = $1::bigint AND status IN ('succeeded', 'queued', 'running')",
			  1, cat_i64(deployment_id));
}

/* Record the outcome of the latest verification: its time, or its failure. */
void
cat_backup_verified(int64 id, const char *error)
{
	cat_query("UPDATE dborch.backups SET"
			  " verified_at = CASE WHEN $2 IS NULL THEN pg_catalog.clock_timestamp() END,"
			  " verify_error = $2"
			  " WHERE id = $1::bigint",
			  2, cat_i64(id), error);
}

/*
 * The window a point-in-time restore can reach: from the end of the first
 * backup still kept to now while the primary runs (a restore archives its
 * WAL first), else to the last transaction end of the archived WAL that a
 * stop or destroy recorded (NULL *to: not known before the restore job
 * reads the archive).  false when there is no backup.
 */
bool
cat_recoverable_window(int64 deployment_id, char **from, char **to)
{
	CatResult  *r = cat_query("SELECT pg_catalog.min(b.finished_at) AS from_time,"
							  " CASE WHEN EXISTS (SELECT 1 FROM dborch.instances i WHERE i.deployment_id = $1::bigint"
							  "                   AND i.role = 'primary' AND i.status = 'running') THEN pg_catalog.now()"
							  "      ELSE (SELECT d.recoverable_until FROM dborch.deployments d"
							  "            WHERE d.id = $1::bigint AND d.status IN ('stopped', 'destroyed')) END AS to_time"
							  " FROM dborch.backups b WHERE b.deployment_id = $1::bigint AND b.status = 'succeeded'",
							  1, cat_i64(deployment_id));

	if (cat_value(r, 0, "from_time") == NULL)
		return false;
	*from = cat_str(r, 0, "from_time");
	*to = cat_str(r, 0, "to_time");
	return true;
}

/* Record up to when a point-in-time restore of a stopped or destroyed deployment reaches. */
void
cat_set_recoverable_until(int64 deployment_id, const char *time)
{
	cat_query("UPDATE dborch.deployments SET recoverable_until = $2::timestamptz WHERE id = $1::bigint",
			  2, cat_i64(deployment_id), time);
}

/* The newest WAL segment of pgbackrest info (JSON), over its archives; NULL if none. */
char *
cat_newest_archived_wal(const char *info)
{
	CatResult  *r = cat_query("SELECT pg_catalog.max(a ->> 'max') AS segment"
							  " FROM pg_catalog.jsonb_array_elements($1::jsonb -> 0 -> 'archive') a",
							  1, info);

	return cat_str(r, 0, "segment");
}

/* Bytes of a deployment's backup with that pgBackRest label; 0 if unknown. */
int64
cat_backup_size(int64 deployment_id, const char *label)
{
	CatResult  *r = cat_query("SELECT coalesce(size_bytes, 0) AS size FROM dborch.backups"
							  " WHERE deployment_id = $1::bigint AND label = $2",
							  2, cat_i64(deployment_id), label);

	return (r->nrows && label) ? cat_int64(r, 0, "size") : 0;
}

/*
 * The label of the backup a point-in-time restore to target_time starts
 * from: the newest finished before it, but after an in-place restore that
 * came before the target only one taken since, or the backup that restore
 * put back (the others are on a timeline that forked away).  NULL: leave
 * the choice to pgBackRest.
 */
char *
cat_pitr_base_backup(int64 deployment_id, const char *target_time)
{
	CatResult  *r = cat_query("WITH r AS (SELECT j.finished_at, (j.args ->> 'backup_id')::bigint AS backup_id"
							  "   FROM dborch.jobs j WHERE j.deployment_id = $1::bigint"
							  "   AND j.kind = 'restore_in_place' AND j.state = 'succeeded'"
							  "   AND j.finished_at <= $2::timestamptz ORDER BY j.finished_at DESC LIMIT 1)"
							  " SELECT b.label FROM dborch.backups b LEFT JOIN r ON true"
							  " WHERE b.deployment_id = $1::bigint AND b.status = 'succeeded'"
							  " AND b.finished_at <= $2::timestamptz"
							  " AND (r.finished_at IS NULL OR b.started_at >= r.finished_at OR b.id = r.backup_id)"
							  " ORDER BY b.finished_at DESC LIMIT 1",
							  2, cat_i64(deployment_id), target_time);

	return r->nrows ? cat_str(r, 0, "label") : NULL;
}

/* Is time (text) inside [from, to]? */
bool
cat_time_between(const char *time, const char *from, const char *to)
{
	CatResult  *r = cat_query("SELECT $1::timestamptz BETWEEN $2::timestamptz AND $3::timestamptz AS ok",
							  3, time, from, to);

	return strcmp(cat_value(r, 0, "ok"), "t") == 0;
}

/* ---------------------------------------------------------------------
 * Backup schedules (pg_cron)
 * ---------------------------------------------------------------------
 */

/*
 * A pg_cron job calling dborch.backup(), and its row.  The command is
 * built with format(%L): the name matches the name rule anyway.
 */
Datum
cat_schedule_backups(Deployment *d, const char *schedule, const char *kind, bool verify)
{
	CatResult  *r;

	r = cat_query("WITH s AS (SELECT pg_catalog.nextval(pg_catalog.pg_get_serial_sequence("
				  "    'dborch.backup_schedules', 'id')) AS id)"
				  " INSERT INTO dborch.backup_schedules (id, deployment_id, deployment, owner, kind,"
				  "   schedule, verify, cron_job_id) OVERRIDING SYSTEM VALUE"
				  " SELECT s.id, $1::bigint, $2, $3::name, $4, $5, $6::bool,"
				  "   cron.schedule('dborch_backup_' || s.id, $5,"
				  "     pg_catalog.format('SELECT dborch.backup(%L, %L, verify => %s)', $2, $4,"
				  "       CASE WHEN $6::bool THEN 'true' ELSE 'false' END))"
				  " FROM s RETURNING id",
				  6, cat_i64(d->id), d->name, d->owner, kind, schedule, verify ? "true" : "false");
	return cat_query_datum("SELECT s FROM dborch.backup_schedules s WHERE s.id = $1::bigint",
						   1, cat_value(r, 0, "id"));
}

/*
 * The pg_cron runs of backup schedules that failed since the launcher last
 * looked (cron.job_run_details), each once: the schedules' last_run_id
 * moves past every finished run.  Rows: schedule_id, deployment_id, kind,
 * schedule, runid, start_time, message.
 */
CatResult *
cat_failed_schedule_runs(void)
{
	return cat_query("WITH runs AS ("
					 "   SELECT s.id AS schedule_id, s.deployment_id, s.kind, s.schedule, r.runid,"
					 "          r.status, r.start_time, r.return_message AS message"
					 "   FROM dborch.backup_schedules s"
					 "   JOIN cron.job_run_details r ON r.jobid = s.cron_job_id"
					 "   WHERE r.runid > s.last_run_id AND r.status IN ('succeeded', 'failed')),"
					 " seen AS ("
					 "   UPDATE dborch.backup_schedules s SET last_run_id = m.runid"
					 "   FROM (SELECT schedule_id, pg_catalog.max(runid) AS runid FROM runs"
					 "         GROUP BY schedule_id) m"
					 "   WHERE s.id = m.schedule_id)"
					 " SELECT schedule_id, deployment_id, kind, schedule, runid, start_time, message"
					 " FROM runs WHERE status = 'failed' ORDER BY runid",
					 0);
}

/* Remove a deployment's schedules (of one kind, or all); how many. */
int
cat_unschedule_backups(int64 deployment_id, const char *kind)
{
	CatResult  *r = cat_query("WITH gone AS (DELETE FROM dborch.backup_schedules"
							  "   WHERE deployment_id = $1::bigint AND ($2 IS NULL OR kind = $2)"
							  "   RETURNING cron_job_id)"
							  " SELECT cron.unschedule(cron_job_id) FROM gone"
							  " WHERE cron_job_id IN (SELECT jobid FROM cron.job)",
							  2, cat_i64(deployment_id), kind);

	return r->nrows;
}
