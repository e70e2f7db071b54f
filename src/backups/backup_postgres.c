/*
 * backup_postgres.c
 *		PostgreSQL backups with pgBackRest: dborch writes each deployment's
 *		pgbackrest.conf (0600; zstd level 3 unless the deployment's
 *		backup_compression says otherwise, aes-256-cbc encryption with
 *		the deployment's passphrase), creates its stanza on the first backup,
 *		and runs backup, info, restore and expire through spawn.c.
 *
 * WAL archiving: the instance's archive_command pushes WAL only once
 * stanza.ready exists (the first backup creates the stanza, then the file),
 * so WAL never piles up before the first backup and every deployment is
 * recoverable to any point since its first backup.
 */
#include "postgres.h"

#include <ctype.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/stringinfo.h"
#include "libpq-fe.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "backup.h"
#include "dborch.h"
#include "engine.h"
#include "spawn.h"

/* Longest a backup or restore may run. */
#define PGBACKREST_TIMEOUT_MS (12 * 3600 * 1000)

/* pgBackRest's archive-timeout: how long a WAL segment may take to archive. */
#define PGBR_ARCHIVE_TIMEOUT_S 60

/*
 * Compression of backups and archived WAL unless the deployment's
 * backup_compression says otherwise: the fastest full backup for its size
 * in bench/backup-options (README, Backups).
 */
#define PGBR_COMPRESSION "zst:3"

char *
backup_directory(const char *deployment_name, int64 deployment_id)
{
	return psprintf("%s/%s-" INT64_FORMAT, dborch_backup_root(), deployment_name, deployment_id);
}

char *
backup_passphrase(int64 deployment_id)
{
	char	   *passphrase = cat_secret(deployment_id, "backup_passphrase");

	if (passphrase == NULL)
	{
		passphrase = dborch_random_password(48);
		cat_set_secret(deployment_id, "backup_passphrase", passphrase);
	}
	return passphrase;
}

/* A word for /bin/sh: single-quoted. */
static char *
shell_quote(const char *text)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '\'');
	for (; *text; text++)
	{
		if (*text == '\'')
			appendStringInfoString(&buf, "'\\''");
		else
			appendStringInfoChar(&buf, *text);
	}
	appendStringInfoChar(&buf, '\'');
	return buf.data;
}

/*
 * The command PostgreSQL runs (through /bin/sh) for each WAL segment.  Only
 * paths appear in it, quoted; the deployment name matches the name rule.
 */
char *
pgbr_archive_command(const char *deployment_name, int64 deployment_id)
{
	char	   *dir = backup_directory(deployment_name, deployment_id);

	return psprintf("test ! -f %s || %s --config=%s --stanza=%s archive-push %%p",
					shell_quote(psprintf("%s/stanza.ready", dir)),
					shell_quote(dborch_pgbackrest_path),
					shell_quote(psprintf("%s/pgbackrest.conf", dir)),
					deployment_name);
}

static char *
config_option(const char *deployment_name, int64 deployment_id)
{
	return psprintf("--config=%s/pgbackrest.conf", backup_directory(deployment_name, deployment_id));
}

/* Run pgbackrest; an error with the tail of its output if it fails. */
static void
run_pgbackrest(const char *const *argv, const char *log_path, SpawnProgressFn progress, void *arg)
{
	int			rc = spawn_run_progress(argv, log_path, PGBACKREST_TIMEOUT_MS, progress, arg);

	if (rc != 0)
		ereport(ERROR,
				(errmsg("pgbackrest %s failed with exit code %d", argv[3], rc),
				 errdetail("%s", dborch_file_tail(log_path, 1000))));
}

/*
 * pgbackrest.conf (0600) naming inst, the deployment's primary: pg1-path
 * must be the data directory of the server whose archive_command runs it.
 */
static void
write_config(Instance *inst, const char *passphrase)
{
	char	   *dir = backup_directory(inst->deployment_name, inst->deployment_id);
	const char *compression = inst->backup_compression ? inst->backup_compression : PGBR_COMPRESSION;
	const char *colon = strchr(compression, ':');
	char	   *compress;
	char	   *conf;

	/* "type:level" (spec.c checked both), or "none" */
	compress = colon ? psprintf("compress-type=%.*s\ncompress-level=%s\n", (int) (colon - compression),
								compression, colon + 1)
		: psprintf("compress-type=%s\n", compression);

	dborch_mkdir(psprintf("%s/repo", dir), 0700);
	dborch_mkdir(psprintf("%s/lock", dir), 0700);
	dborch_mkdir(psprintf("%s/log", dir), 0700);
	dborch_mkdir(psprintf("%s/spool", dir), 0700);
	conf = psprintf("# Written by dborch for deployment %s; dborch overwrites changes here.\n"
					"[global]\n"
					"repo1-path=%s/repo\n"
					"repo1-cipher-type=aes-256-cbc\n"
					"repo1-cipher-pass=%s\n"
					"repo1-retention-full=9999999\n"
					"%s"
					"process-max=2\n"
					"start-fast=y\n"
					"archive-timeout=%d\n"
					"lock-path=%s/lock\n"
					"log-path=%s/log\n"
					"spool-path=%s/spool\n"
					"log-level-console=warn\n"
					"log-level-file=info\n"
					"\n[%s]\n"
					"pg1-path=%s/data\n"
					"pg1-port=%d\n"
					"pg1-socket-path=%s/run\n"
					"pg1-user=postgres\n",
					inst->deployment_name, dir, passphrase, compress, PGBR_ARCHIVE_TIMEOUT_S, dir, dir, dir,
					inst->deployment_name, inst->directory, inst->port, inst->directory);
	dborch_write_file(psprintf("%s/pgbackrest.conf", dir), conf, 0600);
}

/*
 * Make the running primary of a deployment archive everything up to now: a
 * commit (a transaction id, so a commit record with the time of now, which
 * a point-in-time recovery to any earlier moment needs to see to stop
 * there), a WAL switch, and a wait until the archiver has archived that
 * segment, at most archive-timeout.  A point in time a moment ago of a
 * quiet database can then be restored.  Returns a time (UTC) the archived
 * commit is not older than: every moment up to it can be restored.
 */
char *
pgbr_archive_now(Instance *primary)
{
	PGconn	   *conn = engine_postgres_connect(primary);
	PGresult   *res;
	char	   *segment;
	char	   *committed = NULL;
	int64		deadline = dborch_now_ms() + PGBR_ARCHIVE_TIMEOUT_S * 1000;

	/* the transaction commits after the time it reads */
	res = PQexec(conn, "SELECT pg_catalog.txid_current(), pg_catalog.to_char(pg_catalog.clock_timestamp()"
				 " AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'");
	if (PQresultStatus(res) == PGRES_TUPLES_OK)
		committed = pstrdup(PQgetvalue(res, 0, 1));
	PQclear(res);
	res = PQexec(conn, "SELECT pg_catalog.pg_walfile_name(pg_catalog.pg_switch_wal())");
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		char	   *error = pstrdup(PQresultErrorMessage(res));

		PQclear(res);
		PQfinish(conn);
		ereport(ERROR, (errmsg("could not switch the WAL of deployment \"%s\": %s",
							   primary->deployment_name, error)));
	}
	segment = pstrdup(PQgetvalue(res, 0, 0));
	PQclear(res);
	for (;;)
	{
		const char *param = segment;

		res = PQexecParams(conn, "SELECT last_archived_wal >= $1, coalesce(last_failed_wal, '-'),"
						   " coalesce(last_failed_time::text, '-') FROM pg_catalog.pg_stat_archiver",
						   1, NULL, &param, NULL, NULL, 0);
		if (PQresultStatus(res) == PGRES_TUPLES_OK && strcmp(PQgetvalue(res, 0, 0), "t") == 0)
			break;
		if (dborch_now_ms() > deadline)
		{
			char	   *failed = PQresultStatus(res) == PGRES_TUPLES_OK
				? psprintf("the last failure: %s at %s", PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 2))
				: pstrdup(PQresultErrorMessage(res));

			PQclear(res);
			PQfinish(conn);
			ereport(ERROR,
					(errmsg("WAL segment %s of deployment \"%s\" was not archived within %d s",
							segment, primary->deployment_name, PGBR_ARCHIVE_TIMEOUT_S),
					 errdetail("%s", failed)));
		}
		PQclear(res);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 20, DBORCH_WAIT_EVENT);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	PQclear(res);
	PQfinish(conn);
	return committed;
}

/*
 * The WAL segment before segment (same timeline), or NULL at the first.
 * Names are timeline, log and segment number in hex; dborch's instances
 * use 16 MB segments, 256 to a log.
 */
static char *
previous_segment(const char *segment)
{
	unsigned int tli,
				log,
				seg;

	if (strlen(segment) != 24 || sscanf(segment, "%08X%08X%08X", &tli, &log, &seg) != 3 ||
		(log == 0 && seg == 0))
		return NULL;
	if (seg == 0)
	{
		log--;
		seg = 0xFF;
	}
	else
		seg--;
	return psprintf("%08X%08X%08X", tli, log, seg);
}

/* The time of the last COMMIT or ABORT record pg_waldump listed, or NULL. */
static char *
last_transaction_end(const char *listing)
{
	char	   *found = NULL;
	const char *line;

	for (line = listing; line != NULL && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
	{
		const char *desc = strstr(line, "desc: ");
		const char *eol = strchr(line, '\n');
		const char *time;
		size_t		len;

		if (desc == NULL || (eol != NULL && desc > eol))
			continue;
		desc += strlen("desc: ");
		if (strncmp(desc, "COMMIT ", 7) == 0)
			time = desc + 7;
		else if (strncmp(desc, "ABORT ", 6) == 0)
			time = desc + 6;
		else
			continue;
		len = strcspn(time, ";\n");
		if (len > 0 && isdigit((unsigned char) time[0]))
			found = pnstrdup(time, len);
	}
	return found;
}

/*
 * How far a point-in-time restore of a deployment that does not run can
 * reach: just before the newest transaction end in its archived WAL
 * (recovery to a time stops at the first transaction end after it, and
 * fails if the archive has none).  pgbackrest archive-get fetches the
 * newest segments, at most four, and pg_waldump lists their transactions.
 * NULL when they hold none or the archive cannot be read (archive-get
 * reads the system identifier from the data directory: gone once the
 * deployment is destroyed, which is why the destroy job records it).
 */
char *
pgbr_last_archived_commit(const char *deployment_name, int64 deployment_id)
{
	char	   *dir = backup_directory(deployment_name, deployment_id);
	char	   *scratch = psprintf("%s/spool/last-commit", dir);
	char	   *log = psprintf("%s/log/dborch-last-commit.log", dir);
	char	   *segment = cat_newest_archived_wal(pgbr_info(deployment_name, deployment_id));
	char	   *found = NULL;
	int			n;

	dborch_remove_tree(scratch);
	dborch_mkdir(scratch, 0700);
	for (n = 0; segment != NULL && found == NULL && n < 4; n++, segment = previous_segment(segment))
	{
		char	   *file = psprintf("%s/%s", scratch, segment);
		char	   *listing = psprintf("%s.txt", file);
		const char *get[] = {dborch_pgbackrest_path, config_option(deployment_name, deployment_id),
			psprintf("--stanza=%s", deployment_name), "archive-get", segment, file,
		"--log-level-console=off", "--log-level-stderr=error", NULL};
		/* pg_waldump prints times in the TZ of its environment */
		const char *dump[] = {"/usr/bin/env", "TZ=UTC", dborch_bindir_program("", "pg_waldump"),
		"--rmgr=Transaction", file, NULL};

		unlink(log);
		if (spawn_run(get, log, PGBACKREST_TIMEOUT_MS) != 0)
			break;
		(void) spawn_run(dump, listing, PGBACKREST_TIMEOUT_MS);
		found = last_transaction_end(dborch_read_file(listing, true));
	}
	dborch_remove_tree(scratch);
	if (found == NULL)
		return NULL;
	/* pg_waldump printed it in UTC, with the zone's name */
	return pstrdup(timestamptz_to_str(DatumGetTimestampTz(DirectFunctionCall3(timestamptz_in,
																			  CStringGetDatum(found),
																			  ObjectIdGetDatum(InvalidOid),
																			  Int32GetDatum(-1))) - 1));
}

/* pgbr_archive_now() in the shape cat_try() calls */
typedef struct ArchiveNowCall
{
	Instance   *primary;
	char	  **until;
} ArchiveNowCall;

static void
archive_now_call(void *arg)
{
	ArchiveNowCall *call = arg;

	*call->until = pgbr_archive_now(call->primary);
}

/*
 * Before a deployment's instances stop (stop, destroy): archive its last
 * WAL while the primary runs, or read what the archive holds when it does
 * not.  Returns up to when a point-in-time restore can reach, or NULL (not
 * PostgreSQL, no backup repository yet, nothing known).  Never fails: a
 * stop does not wait on a broken archive longer than archive-timeout.
 */
char *
pgbr_seal_archive(int64 deployment_id)
{
	Deployment *d = cat_deployment(deployment_id);
	Instance   *primary = cat_primary_instance(deployment_id);
	char	   *until = NULL;
	char	   *error;

	if (d == NULL || strcmp(d->engine, "postgres") != 0 ||
		!dborch_path_exists(psprintf("%s/stanza.ready", backup_directory(d->name, d->id))))
		return NULL;
	if (primary != NULL && strcmp(primary->status, "running") == 0)
	{
		ArchiveNowCall call = {primary, &until};

		error = cat_try(archive_now_call, &call);
		if (error != NULL)
			ereport(LOG, (errmsg("dborch: the last WAL of \"%s\" was not archived: %s", d->name, error)));
	}
	if (until == NULL)
		until = pgbr_last_archived_commit(d->name, d->id);
	return until;
}

/*
 * A new primary (a failover, a switchover) archives its WAL through the
 * deployment's pgbackrest.conf at once: it must name the new primary, or
 * archive-push fails ("working directory ... is not the same as option
 * pg1-path") and point-in-time recovery has a hole from then on.  Nothing
 * to do before the first backup made the configuration.
 */
void
pgbr_follow_primary(Instance *primary)
{
	char	   *dir = backup_directory(primary->deployment_name, primary->deployment_id);

	if (dborch_path_exists(psprintf("%s/pgbackrest.conf", dir)))
		write_config(primary, backup_passphrase(primary->deployment_id));
}

void
pgbr_prepare(Instance *inst, const char *passphrase)
{
	char	   *dir = backup_directory(inst->deployment_name, inst->deployment_id);
	char	   *marker = psprintf("%s/stanza.ready", dir);

	dborch_mkdir(dir, 0700);
	write_config(inst, passphrase);
	if (!dborch_path_exists(marker))
	{
		char	   *log_path = psprintf("%s/log/dborch-stanza.log", dir);
		const char *create[] = {dborch_pgbackrest_path, config_option(inst->deployment_name, inst->deployment_id),
			psprintf("--stanza=%s", inst->deployment_name), "stanza-create", NULL};
		const char *check[] = {dborch_pgbackrest_path, config_option(inst->deployment_name, inst->deployment_id),
		psprintf("--stanza=%s", inst->deployment_name), "check", NULL};

		run_pgbackrest(create, log_path, NULL, NULL);
		dborch_write_file(marker, "", 0600);
		/* WAL archiving works from here on, or the first backup fails now */
		run_pgbackrest(check, log_path, NULL, NULL);
	}
}

/* Bytes of the files under a directory (pg_wal excluded: not backed up). */
static int64
directory_size(const char *path)
{
	DIR		   *dir = AllocateDir(path);
	struct dirent *de;
	int64		total = 0;

	while (dir != NULL && (de = ReadDir(dir, path)) != NULL)
	{
		char	   *child;
		struct stat st;

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
			strcmp(de->d_name, "pg_wal") == 0)
			continue;
		child = psprintf("%s/%s", path, de->d_name);
		if (lstat(child, &st) != 0)
			continue;
		if (S_ISDIR(st.st_mode))
			total += directory_size(child);
		else if (S_ISREG(st.st_mode))
			total += st.st_size;
		pfree(child);
	}
	if (dir != NULL)
		FreeDir(dir);
	return total;
}

typedef struct LogProgress
{
	const char *log_path;
	int64		total;
} LogProgress;

/*
 * pgBackRest logs every file it copies at level detail with its share of
 * the whole: "backup file /path (8KB, 12.34%) checksum ...".  Report the
 * last share seen.
 */
static void
log_progress(void *arg)
{
	LogProgress *p = arg;
	char	   *tail = dborch_file_tail(p->log_path, 4096);
	char	   *percent = NULL;
	char	   *s;

	for (s = strstr(tail, "%)"); s != NULL; s = strstr(s + 2, "%)"))
		percent = s;
	if (percent != NULL)
	{
		while (percent > tail && (isdigit((unsigned char) percent[-1]) || percent[-1] == '.'))
			percent--;
		job_report_progress((uint64) (p->total * (strtod(percent, NULL) / 100.0)), p->total);
	}
	pfree(tail);
}

void
pgbr_backup(Instance *inst, const char *kind, const char *log_path)
{
	const char *argv[] = {dborch_pgbackrest_path, config_option(inst->deployment_name, inst->deployment_id),
		psprintf("--stanza=%s", inst->deployment_name), "backup", psprintf("--type=%s", kind),
	"--log-level-console=detail", NULL};
	LogProgress progress = {log_path, directory_size(psprintf("%s/data", inst->directory))};

	unlink(log_path);
	job_report_progress(0, progress.total);
	run_pgbackrest(argv, log_path, log_progress, &progress);
	job_report_progress(progress.total, progress.total);
}

char *
pgbr_info(const char *deployment_name, int64 deployment_id)
{
	char	   *out = psprintf("%s/log/dborch-info.json", backup_directory(deployment_name, deployment_id));
	const char *argv[] = {dborch_pgbackrest_path, config_option(deployment_name, deployment_id),
		psprintf("--stanza=%s", deployment_name), "info", "--output=json",
	"--log-level-console=off", "--log-level-stderr=error", NULL};

	unlink(out);
	run_pgbackrest(argv, out, NULL, NULL);
	return dborch_read_file(out, false);
}

void
pgbr_restore(const char *source_name, int64 source_id, const char *label,
			 const char *target_time, const char *datadir,
			 int64 size_hint, const char *log_path)
{
	const char *argv[16];
	int			n = 0;
	LogProgress progress = {log_path, size_hint};

	argv[n++] = dborch_pgbackrest_path;
	argv[n++] = config_option(source_name, source_id);
	argv[n++] = psprintf("--stanza=%s", source_name);
	argv[n++] = "restore";
	argv[n++] = psprintf("--pg1-path=%s", datadir);
	argv[n++] = "--log-level-console=detail";
	argv[n++] = "--target-action=promote";
	if (target_time != NULL)
	{
		argv[n++] = "--type=time";
		argv[n++] = psprintf("--target=%s", target_time);
	}
	else
		argv[n++] = "--type=immediate";
	if (label != NULL)
		argv[n++] = psprintf("--set=%s", label);
	argv[n] = NULL;

	unlink(log_path);
	job_report_progress(0, size_hint);
	run_pgbackrest(argv, log_path, size_hint > 0 ? log_progress : NULL, &progress);
	job_report_progress(size_hint, size_hint);
}

/*
 * Remove one backup set (and what depends on it) from the repository; false
 * if pgBackRest would not (it keeps a repository's only full backup).
 */
bool
pgbr_expire_set(const char *deployment_name, int64 deployment_id, const char *label)
{
	const char *argv[] = {dborch_pgbackrest_path, config_option(deployment_name, deployment_id),
		psprintf("--stanza=%s", deployment_name), "expire", psprintf("--set=%s", label), NULL};

	return spawn_run(argv, psprintf("%s/log/dborch-expire.log",
									backup_directory(deployment_name, deployment_id)),
					 PGBACKREST_TIMEOUT_MS) == 0;
}

void
pgbr_expire(const char *deployment_name, int64 deployment_id, int full_count, int max_age_days)
{
	char	   *log_path = psprintf("%s/log/dborch-expire.log", backup_directory(deployment_name, deployment_id));

	if (full_count > 0)
	{
		const char *argv[] = {dborch_pgbackrest_path, config_option(deployment_name, deployment_id),
			psprintf("--stanza=%s", deployment_name), "expire", "--repo1-retention-full-type=count",
		psprintf("--repo1-retention-full=%d", full_count), NULL};

		run_pgbackrest(argv, log_path, NULL, NULL);
	}
	if (max_age_days > 0)
	{
		const char *argv[] = {dborch_pgbackrest_path, config_option(deployment_name, deployment_id),
			psprintf("--stanza=%s", deployment_name), "expire", "--repo1-retention-full-type=time",
		psprintf("--repo1-retention-full=%d", max_age_days), NULL};

		run_pgbackrest(argv, log_path, NULL, NULL);
	}
}
