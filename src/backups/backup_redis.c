/*
 * backup_redis.c
 *		Redis backups: BGSAVE (waiting on its completion through inotify on
 *		the data directory, not with fixed delays), then the RDB streamed
 *		through zstd (libzstd) and AES-256-GCM (OpenSSL) into one file, with
 *		its SHA-256 recorded.  Unpacking checks the SHA-256 and the GCM tag, so
 *		a single flipped byte is found.
 *
 * File format: "DBORCHR1" | salt (16) | IV (12) | ciphertext | GCM tag (16).
 * The key is PBKDF2-HMAC-SHA256(passphrase, salt, 10000 iterations); the
 * passphrase is the deployment's random 48-character backup secret.
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <zstd.h>

#include "miscadmin.h"
#include "storage/fd.h"
#include "storage/latch.h"
#include "utils/builtins.h"

#include "backup.h"
#include "dborch.h"
#include "engine.h"

#define MAGIC			"DBORCHR1"
#define MAGIC_LEN		8
#define SALT_LEN		16
#define IV_LEN			12
#define TAG_LEN			16
#define KDF_ITERATIONS	10000
#define CHUNK			(1024 * 1024)
#define BGSAVE_TIMEOUT_MS (3600 * 1000)

/* ---------------------------------------------------------------------
 * Talking to the instance
 * ---------------------------------------------------------------------
 */

/* A command whose reply is a string (INFO) or status; NULL on error replies. */
static char *
redis_text(redisContext *c, const char *command, char **error)
{
	redisReply *reply = redisCommand(c, command);
	char	   *text = NULL;

	if (reply == NULL)
		ereport(ERROR, (errmsg("redis command %s failed: %s", command, c->errstr)));
	if (reply->type == REDIS_REPLY_ERROR)
		*error = pnstrdup(reply->str, reply->len);
	else if (reply->type == REDIS_REPLY_STRING || reply->type == REDIS_REPLY_STATUS)
		text = pnstrdup(reply->str, reply->len);
	else if (reply->type == REDIS_REPLY_INTEGER)
		text = psprintf("%lld", reply->integer);
	freeReplyObject(reply);
	return text;
}

static int64
info_int(const char *info, const char *name)
{
	const char *p = strstr(info, name);

	return p && p[strlen(name)] == ':' ? strtoi64(p + strlen(name) + 1, NULL, 10) : -1;
}

/*
 * BGSAVE and wait until it has finished (rdb_saves moved on and no save is
 * in progress).  Redis renames the new dump.rdb into place when done:
 * inotify wakes us then; a one-second timer covers a missed event.
 */
static void
bgsave_and_wait(redisContext *c, Instance *inst)
{
	char	   *error = NULL;
	char	   *info = redis_text(c, "INFO persistence", &error);
	int64		saves_before = info ? info_int(info, "rdb_saves") : -1;
	char	   *datadir = psprintf("%s/data", inst->directory);
	int64		deadline = dborch_now_ms() + BGSAVE_TIMEOUT_MS;
	int			fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	bool		started = false;
	bool		renamed = false;

	if (fd >= 0)
		inotify_add_watch(fd, datadir, IN_MOVED_TO | IN_CLOSE_WRITE);
	PG_TRY();
	{
		for (;;)
		{
			char		events[4096];

			if (!started)
			{
				error = NULL;
				(void) redis_text(c, "BGSAVE SCHEDULE", &error);
				/* another RDB save is running: wait for it, then ask again */
				started = (error == NULL);
				if (!started && strstr(error, "already in progress") == NULL)
					ereport(ERROR, (errmsg("BGSAVE of deployment \"%s\" failed: %s",
										   inst->deployment_name, error)));
			}
			error = NULL;
			info = redis_text(c, "INFO persistence", &error);
			if (info == NULL)
				ereport(ERROR, (errmsg("INFO failed: %s", error)));
			if (started && info_int(info, "rdb_bgsave_in_progress") == 0 &&
				info_int(info, "rdb_saves") > saves_before)
			{
				if (strstr(info, "rdb_last_bgsave_status:ok") == NULL)
					ereport(ERROR, (errmsg("BGSAVE of deployment \"%s\" failed", inst->deployment_name),
									errdetail("%s", dborch_file_tail(psprintf("%s/redis.log", inst->directory), 800))));
				break;
			}
			if (dborch_now_ms() > deadline)
				ereport(ERROR, (errmsg("BGSAVE of deployment \"%s\" did not finish", inst->deployment_name)));
			/*
			 * The new dump.rdb is in place before Redis has reaped the saving
			 * child and says so in INFO: after that event, look every 10 ms.
			 */
			if (fd >= 0 && !renamed)
				(void) WaitLatchOrSocket(MyLatch, WL_LATCH_SET | WL_SOCKET_READABLE | WL_TIMEOUT |
										 WL_EXIT_ON_PM_DEATH, fd, 1000, DBORCH_WAIT_EVENT);
			else
				(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
								 10, DBORCH_WAIT_EVENT);
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
			if (fd >= 0)
				while (read(fd, events, sizeof(events)) > 0)
					renamed = started;
		}
	}
	PG_FINALLY();
	{
		if (fd >= 0)
			close(fd);
	}
	PG_END_TRY();
}

/* ---------------------------------------------------------------------
 * Keys of the snapshot, from the RDB header
 * ---------------------------------------------------------------------
 */

/* An RDB length; false if the buffer ends first.  *special: an encoded string. */
static bool
rdb_length(const unsigned char *b, size_t n, size_t *pos, uint64 *len, bool *special)
{
	unsigned char first;

	if (*pos >= n)
		return false;
	first = b[(*pos)++];
	*special = false;
	switch (first >> 6)
	{
		case 0:
			*len = first & 0x3F;
			return true;
		case 1:
			if (*pos >= n)
				return false;
			*len = ((uint64) (first & 0x3F) << 8) | b[(*pos)++];
			return true;
		case 2:
			{
				int			bytes = (first == 0x80) ? 4 : (first == 0x81) ? 8 : 0;

				if (bytes == 0 || *pos + bytes > n)
					return false;
				*len = 0;
				while (bytes-- > 0)
					*len = (*len << 8) | b[(*pos)++];
				return true;
			}
		default:
			*special = true;
			*len = first & 0x3F;
			return true;
	}
}

/* Skip an RDB string (plain, integer-encoded or LZF-compressed). */
static bool
rdb_skip_string(const unsigned char *b, size_t n, size_t *pos)
{
	uint64		len;
	bool		special;

	if (!rdb_length(b, n, pos, &len, &special))
		return false;
	if (special)
	{
		uint64		clen,
					ulen;

		switch (len)
		{
			case 0:
				*pos += 1;
				return *pos <= n;
			case 1:
				*pos += 2;
				return *pos <= n;
			case 2:
				*pos += 4;
				return *pos <= n;
			case 3:
				if (!rdb_length(b, n, pos, &clen, &special) ||
					!rdb_length(b, n, pos, &ulen, &special))
					return false;
				*pos += clen;
				return *pos <= n;
			default:
				return false;
		}
	}
	*pos += len;
	return *pos <= n;
}

/*
 * Keys (and keys with a TTL) of database 0 as the RDB records them in its
 * RESIZEDB entry, the exact count at the fork.  -1 when the header holds
 * something else first (module data, functions) or the file is not an RDB.
 */
static void
rdb_key_counts(const char *path, int64 *keys, int64 *ttl)
{
	unsigned char buf[65536];
	int			fd = open(path, O_RDONLY, 0);
	ssize_t		got = fd >= 0 ? read(fd, buf, sizeof(buf)) : -1;
	size_t		n = got > 0 ? (size_t) got : 0;
	size_t		pos = 9;		/* "REDIS0010" */

	*keys = *ttl = -1;
	if (fd >= 0)
		close(fd);
	if (n < 9 || memcmp(buf, "REDIS", 5) != 0)
		return;
	while (pos < n)
	{
		unsigned char op = buf[pos++];
		uint64		a,
					b;
		bool		special;

		if (op == 0xFA)			/* AUX: two strings */
		{
			if (!rdb_skip_string(buf, n, &pos) || !rdb_skip_string(buf, n, &pos))
				return;
		}
		else if (op == 0xFE)	/* SELECTDB */
		{
			if (!rdb_length(buf, n, &pos, &a, &special) || a != 0)
				return;
		}
		else if (op == 0xFB)	/* RESIZEDB: db size, expires size */
		{
			if (rdb_length(buf, n, &pos, &a, &special) && rdb_length(buf, n, &pos, &b, &special))
			{
				*keys = (int64) a;
				*ttl = (int64) b;
			}
			return;
		}
		else if (op == 0xFF)	/* EOF: no keys at all */
		{
			*keys = *ttl = 0;
			return;
		}
		else
			return;
	}
}

/* ---------------------------------------------------------------------
 * Compression and encryption
 * ---------------------------------------------------------------------
 */

static void
derive_key(const char *passphrase, const unsigned char *salt, unsigned char *key)
{
	if (PKCS5_PBKDF2_HMAC(passphrase, strlen(passphrase), salt, SALT_LEN, KDF_ITERATIONS,
						  EVP_sha256(), 32, key) != 1)
		ereport(ERROR, (errmsg("could not derive the backup key")));
}

static char *
hex(const unsigned char *bytes, int len)
{
	char	   *out = palloc(len * 2 + 1);
	int			i;

	for (i = 0; i < len; i++)
		snprintf(out + 2 * i, 3, "%02x", bytes[i]);
	return out;
}

static void
write_all(int fd, const void *data, size_t len, EVP_MD_CTX *sha, const char *path)
{
	if (len == 0)
		return;
	if (write(fd, data, len) != (ssize_t) len)
		ereport(ERROR, (errcode_for_file_access(), errmsg("could not write \"%s\": %m", path)));
	if (sha != NULL)
		EVP_DigestUpdate(sha, data, len);
}

RedisSnapshot *
redis_snapshot(Instance *inst, const char *file, const char *passphrase)
{
	RedisSnapshot *snap = palloc0(sizeof(RedisSnapshot));
	redisContext *c = engine_redis_connect(inst);
	char	   *rdb = psprintf("%s/data/dump.rdb", inst->directory);
	char	   *tmp = psprintf("%s.tmp", file);
	unsigned char salt[SALT_LEN],
				iv[IV_LEN],
				key[32],
				tag[TAG_LEN],
				digest[EVP_MAX_MD_SIZE];
	unsigned int digest_len;
	EVP_CIPHER_CTX *cipher = NULL;
	EVP_MD_CTX *sha = NULL;
	ZSTD_CCtx  *zstd = NULL;
	char	   *in = palloc(CHUNK);
	size_t		zcap = ZSTD_CStreamOutSize();
	char	   *zbuf = palloc(zcap);
	unsigned char *ebuf = palloc(zcap + 32);
	int			src = -1,
				dst = -1;
	struct stat st;
	char	   *error = NULL;
	int64		done = 0;
	/* zstd level 1 unless the spec's backup_compression ("zst:N") says */
	int			level = inst->backup_compression ? atoi(inst->backup_compression + 4) : 1;

	PG_TRY();
	{
		bgsave_and_wait(c, inst);
		snap->snapshot_at = redis_text(c, "LASTSAVE", &error);
		rdb_key_counts(rdb, &snap->keys, &snap->keys_with_ttl);

		/* the renamed-into-place file stays ours even if another save replaces it */
		src = open(rdb, O_RDONLY, 0);
		if (src < 0 || fstat(src, &st) != 0)
			ereport(ERROR, (errcode_for_file_access(), errmsg("could not open \"%s\": %m", rdb)));
		snap->size_bytes = st.st_size;
		dst = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (dst < 0)
			ereport(ERROR, (errcode_for_file_access(), errmsg("could not create \"%s\": %m", tmp)));

		if (RAND_bytes(salt, SALT_LEN) != 1 || RAND_bytes(iv, IV_LEN) != 1)
			ereport(ERROR, (errmsg("could not generate random bytes")));
		derive_key(passphrase, salt, key);
		sha = EVP_MD_CTX_new();
		cipher = EVP_CIPHER_CTX_new();
		zstd = ZSTD_createCCtx();
		if (sha == NULL || cipher == NULL || zstd == NULL ||
			EVP_DigestInit_ex(sha, EVP_sha256(), NULL) != 1 ||
			EVP_EncryptInit_ex(cipher, EVP_aes_256_gcm(), NULL, key, iv) != 1)
			ereport(ERROR, (errmsg("could not set up compression and encryption")));
		ZSTD_CCtx_setParameter(zstd, ZSTD_c_compressionLevel, level);
		ZSTD_CCtx_setParameter(zstd, ZSTD_c_nbWorkers, 2);

		write_all(dst, MAGIC, MAGIC_LEN, sha, tmp);
		write_all(dst, salt, SALT_LEN, sha, tmp);
		write_all(dst, iv, IV_LEN, sha, tmp);
		job_report_progress(0, st.st_size);
		for (;;)
		{
			ssize_t		got = read(src, in, CHUNK);
			ZSTD_inBuffer zin = {in, got > 0 ? got : 0, 0};
			ZSTD_EndDirective mode = got > 0 ? ZSTD_e_continue : ZSTD_e_end;
			size_t		remaining;

			if (got < 0)
				ereport(ERROR, (errcode_for_file_access(), errmsg("could not read \"%s\": %m", rdb)));
			do
			{
				ZSTD_outBuffer zout = {zbuf, zcap, 0};
				int			elen = 0;

				remaining = ZSTD_compressStream2(zstd, &zout, &zin, mode);
				if (ZSTD_isError(remaining))
					ereport(ERROR, (errmsg("zstd: %s", ZSTD_getErrorName(remaining))));
				if (zout.pos > 0 &&
					EVP_EncryptUpdate(cipher, ebuf, &elen, (unsigned char *) zbuf, zout.pos) != 1)
					ereport(ERROR, (errmsg("could not encrypt the backup")));
				write_all(dst, ebuf, elen, sha, tmp);
			} while (mode == ZSTD_e_end ? remaining != 0 : zin.pos < zin.size);
			done += got > 0 ? got : 0;
			job_report_progress(done, st.st_size);
			CHECK_FOR_INTERRUPTS();
			if (got == 0)
				break;
		}
		{
			int			elen = 0;

			if (EVP_EncryptFinal_ex(cipher, ebuf, &elen) != 1 ||
				EVP_CIPHER_CTX_ctrl(cipher, EVP_CTRL_GCM_GET_TAG, TAG_LEN, tag) != 1)
				ereport(ERROR, (errmsg("could not finish encrypting the backup")));
			write_all(dst, ebuf, elen, sha, tmp);
			write_all(dst, tag, TAG_LEN, sha, tmp);
		}
		EVP_DigestFinal_ex(sha, digest, &digest_len);
		snap->checksum = hex(digest, digest_len);
		if (pg_fsync(dst) != 0 || fstat(dst, &st) != 0)
			ereport(ERROR, (errcode_for_file_access(), errmsg("could not write \"%s\": %m", tmp)));
		snap->stored_bytes = st.st_size;
		close(dst);
		dst = -1;
		if (rename(tmp, file) != 0)
			ereport(ERROR, (errcode_for_file_access(), errmsg("could not rename \"%s\": %m", tmp)));
	}
	PG_FINALLY();
	{
		if (src >= 0)
			close(src);
		if (dst >= 0)
		{
			close(dst);
			unlink(tmp);
		}
		EVP_CIPHER_CTX_free(cipher);
		EVP_MD_CTX_free(sha);
		ZSTD_freeCCtx(zstd);
		redisFree(c);
		OPENSSL_cleanse(key, sizeof(key));
	}
	PG_END_TRY();
	return snap;
}

/* SHA-256 of a whole file, hex. */
static char *
file_sha256(const char *path)
{
	int			fd = open(path, O_RDONLY, 0);
	EVP_MD_CTX *sha = EVP_MD_CTX_new();
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned int len;
	char	   *buf = palloc(CHUNK);
	ssize_t		got;

	if (fd < 0)
		ereport(ERROR, (errcode_for_file_access(), errmsg("could not open \"%s\": %m", path)));
	EVP_DigestInit_ex(sha, EVP_sha256(), NULL);
	while ((got = read(fd, buf, CHUNK)) > 0)
		EVP_DigestUpdate(sha, buf, got);
	close(fd);
	EVP_DigestFinal_ex(sha, digest, &len);
	EVP_MD_CTX_free(sha);
	pfree(buf);
	return hex(digest, len);
}

void
redis_unpack(const char *file, const char *passphrase, const char *checksum, const char *rdb_path)
{
	char	   *tmp = psprintf("%s.tmp", rdb_path);
	char		header[MAGIC_LEN + SALT_LEN + IV_LEN];
	unsigned char key[32],
				tag[TAG_LEN];
	EVP_CIPHER_CTX *cipher = NULL;
	ZSTD_DCtx  *zstd = NULL;
	unsigned char *in = palloc(CHUNK);
	unsigned char *plain = palloc(CHUNK + 32);
	size_t		zcap = ZSTD_DStreamOutSize();
	char	   *zbuf = palloc(zcap);
	int			src = -1,
				dst = -1;
	struct stat st;
	int64		left,
				total;

	if (checksum != NULL && strcmp(file_sha256(file), checksum) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("backup file \"%s\" does not match its recorded SHA-256", file),
				 errdetail("The file was changed or damaged after the backup.")));
	PG_TRY();
	{
		src = open(file, O_RDONLY, 0);
		if (src < 0 || fstat(src, &st) != 0 ||
			read(src, header, sizeof(header)) != sizeof(header) ||
			memcmp(header, MAGIC, MAGIC_LEN) != 0 ||
			st.st_size < (off_t) (sizeof(header) + TAG_LEN))
			ereport(ERROR, (errcode(ERRCODE_DATA_CORRUPTED),
							errmsg("\"%s\" is not a dborch Redis backup", file)));
		if (pread(src, tag, TAG_LEN, st.st_size - TAG_LEN) != TAG_LEN)
			ereport(ERROR, (errcode_for_file_access(), errmsg("could not read \"%s\": %m", file)));
		derive_key(passphrase, (unsigned char *) header + MAGIC_LEN, key);
		cipher = EVP_CIPHER_CTX_new();
		zstd = ZSTD_createDCtx();
		if (cipher == NULL || zstd == NULL ||
			EVP_DecryptInit_ex(cipher, EVP_aes_256_gcm(), NULL, key,
							   (unsigned char *) header + MAGIC_LEN + SALT_LEN) != 1)
			ereport(ERROR, (errmsg("could not set up decryption")));
		dst = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (dst < 0)
			ereport(ERROR, (errcode_for_file_access(), errmsg("could not create \"%s\": %m", tmp)));

		total = left = st.st_size - sizeof(header) - TAG_LEN;
		job_report_progress(0, total);
		while (left > 0)
		{
			ssize_t		got = read(src, in, Min(left, CHUNK));
			int			plen = 0;
			ZSTD_inBuffer zin;

			if (got <= 0)
				ereport(ERROR, (errcode_for_file_access(), errmsg("could not read \"%s\": %m", file)));
			left -= got;
			if (EVP_DecryptUpdate(cipher, plain, &plen, in, got) != 1)
				ereport(ERROR, (errmsg("could not decrypt \"%s\"", file)));
			zin.src = plain;
			zin.size = plen;
			zin.pos = 0;
			while (zin.pos < zin.size)
			{
				ZSTD_outBuffer zout = {zbuf, zcap, 0};
				size_t		rc = ZSTD_decompressStream(zstd, &zout, &zin);

				if (ZSTD_isError(rc))
					ereport(ERROR, (errcode(ERRCODE_DATA_CORRUPTED),
									errmsg("backup file \"%s\" is damaged: %s", file, ZSTD_getErrorName(rc))));
				write_all(dst, zbuf, zout.pos, NULL, tmp);
			}
			job_report_progress(total - left, total);
			CHECK_FOR_INTERRUPTS();
		}
		{
			int			plen = 0;

			if (EVP_CIPHER_CTX_ctrl(cipher, EVP_CTRL_GCM_SET_TAG, TAG_LEN, tag) != 1 ||
				EVP_DecryptFinal_ex(cipher, plain, &plen) != 1)
				ereport(ERROR,
						(errcode(ERRCODE_DATA_CORRUPTED),
						 errmsg("backup file \"%s\" failed authentication", file),
						 errdetail("The file was changed or damaged, or the passphrase is wrong.")));
		}
		if (pg_fsync(dst) != 0)
			ereport(ERROR, (errcode_for_file_access(), errmsg("could not write \"%s\": %m", tmp)));
		close(dst);
		dst = -1;
		if (rename(tmp, rdb_path) != 0)
			ereport(ERROR, (errcode_for_file_access(), errmsg("could not rename \"%s\": %m", tmp)));
	}
	PG_FINALLY();
	{
		if (src >= 0)
			close(src);
		if (dst >= 0)
		{
			close(dst);
			unlink(tmp);
		}
		EVP_CIPHER_CTX_free(cipher);
		ZSTD_freeDCtx(zstd);
		OPENSSL_cleanse(key, sizeof(key));
	}
	PG_END_TRY();
}
