/*
 * backup.h
 *		Backups of both engines: where they live, pgBackRest for PostgreSQL,
 *		encrypted RDB snapshots for Redis.
 *
 * Each deployment has <dborch.backup_directory>/<name>-<deployment id>/:
 *		PostgreSQL: pgbackrest.conf (0600, holds the passphrase), repo/,
 *					lock/, log/, spool/, stanza.ready (WAL is archived once
 *					it exists)
 *		Redis:		<label>.rdb.zst.aes files
 * and keeps it after destroy unless asked to drop it.
 */
#ifndef DBORCH_BACKUP_H
#define DBORCH_BACKUP_H

#include "catalog.h"

/* The backup directory of a deployment. */
extern char *backup_directory(const char *deployment_name, int64 deployment_id);

/* The deployment's backup passphrase, made (a secret) on first use. */
extern char *backup_passphrase(int64 deployment_id);

/* Report progress of the running job (job_worker.c). */
extern void job_report_progress(uint64 done, uint64 total);

/* --- PostgreSQL (backup_postgres.c) --- */

/* archive_command of a deployment's instance (pushes WAL once a stanza exists). */
extern char *pgbr_archive_command(const char *deployment_name, int64 deployment_id);

/* Write pgbackrest.conf for the instance and create the stanza if needed. */
extern void pgbr_prepare(Instance *inst, const char *passphrase);
extern void pgbr_follow_primary(Instance *primary);
extern char *pgbr_archive_now(Instance *primary);

/*
 * Up to when a point-in-time restore of a deployment that does not run can
 * reach: the last transaction end in its archived WAL (NULL: unknown).
 * pgbr_seal_archive() archives the last WAL first if the primary runs.
 */
extern char *pgbr_last_archived_commit(const char *deployment_name, int64 deployment_id);
extern char *pgbr_seal_archive(int64 deployment_id);

/* Run pgbackrest backup of type kind ("full", "diff", "incr"). */
extern void pgbr_backup(Instance *inst, const char *kind, const char *log_path);

/* pgbackrest info --output=json of the deployment's stanza. */
extern char *pgbr_info(const char *deployment_name, int64 deployment_id);

/*
 * Restore a backup of the source deployment into datadir: the backup
 * labelled label (to its consistent point), or the point in time
 * target_time (text, as pgBackRest reads it) from the backup labelled
 * label, or from the one pgBackRest picks when label is NULL.  delta reuses files already
 * in datadir.  size_hint (bytes) scales the progress report.
 */
extern void pgbr_restore(const char *source_name, int64 source_id, const char *label,
						 const char *target_time, const char *datadir,
						 int64 size_hint, const char *log_path);

/* Expire backups: keep full_count full ones (0: no count) and/or max_age_days. */
extern bool pgbr_expire_set(const char *deployment_name, int64 deployment_id, const char *label);
extern void pgbr_expire(const char *deployment_name, int64 deployment_id,
						int full_count, int max_age_days);

/* --- Redis (backup_redis.c) --- */

typedef struct RedisSnapshot
{
	int64		size_bytes;		/* the RDB */
	int64		stored_bytes;	/* the compressed, encrypted file */
	int64		keys;			/* keys in the snapshot (db 0), -1 if unknown */
	int64		keys_with_ttl;
	char	   *checksum;		/* SHA-256 of the stored file, hex */
	char	   *snapshot_at;	/* time of the snapshot (LASTSAVE) */
} RedisSnapshot;

/* BGSAVE, then the RDB compressed (zstd) and encrypted (AES-256-GCM) to file. */
extern RedisSnapshot *redis_snapshot(Instance *inst, const char *file, const char *passphrase);

/* Check, decrypt and decompress a stored snapshot into an RDB file. */
extern void redis_unpack(const char *file, const char *passphrase, const char *checksum,
						 const char *rdb_path);

#endif							/* DBORCH_BACKUP_H */
