/*
 * util.c
 *		Small helpers: generated passwords, files and directories, process and
 *		port checks, and the name rule of deployments and tenants.
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "common/base64.h"
#include "common/file_utils.h"
#include "mb/pg_wchar.h"
#include "port.h"
#include "storage/fd.h"

#include "dborch.h"

/*
 * A password of letters and digits from pg_strong_random.  Safe in URIs,
 * configuration files and conninfo strings without quoting.
 */
char *
dborch_random_password(int length)
{
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
	char	   *result = palloc(length + 1);
	int			n = 0;

	while (n < length)
	{
		unsigned char buf[64];
		int			i;

		if (!pg_strong_random(buf, sizeof(buf)))
			ereport(ERROR, (errmsg("could not generate random bytes")));
		/* 248 = 4 * 62: reject the bytes that would bias the modulo */
		for (i = 0; i < (int) sizeof(buf) && n < length; i++)
			if (buf[i] < 248)
				result[n++] = alphabet[buf[i] % 62];
	}
	result[length] = '\0';
	return result;
}

static char *
base64(const unsigned char *data, int len)
{
	int			size = pg_b64_enc_len(len);
	char	   *out = palloc(size + 1);
	int			n = pg_b64_encode((const char *) data, len, out, size);

	if (n < 0)
		elog(ERROR, "dborch: base64 encoding failed");
	out[n] = '\0';
	return out;
}

/*
 * A SCRAM-SHA-256 secret for password, as PostgreSQL stores one (RFC 5802,
 * 7677): SCRAM-SHA-256$4096:<salt>$<StoredKey>:<ServerKey>.  OpenSSL's
 * PBKDF2 is several times faster than libpq's PQencryptPasswordConn, which
 * counts when a thousand tenants are created at once.  The password must
 * be printable ASCII, which SASLprep leaves as it is: dborch's generated
 * passwords are.
 */
char *
dborch_scram_secret(const char *password)
{
	const int	iterations = 4096;	/* PostgreSQL 15's */
	unsigned char salt[16];
	unsigned char salted[32];
	unsigned char client_key[32];
	unsigned char stored_key[32];
	unsigned char server_key[32];
	unsigned int len;

	for (const char *p = password; *p; p++)
		if (*p < 0x21 || *p > 0x7e)
			elog(ERROR, "dborch: a SCRAM secret is only made of a printable ASCII password");
	if (!pg_strong_random(salt, sizeof(salt)) ||
		PKCS5_PBKDF2_HMAC(password, strlen(password), salt, sizeof(salt), iterations,
						  EVP_sha256(), sizeof(salted), salted) != 1 ||
		HMAC(EVP_sha256(), salted, sizeof(salted), (const unsigned char *) "Client Key", 10,
			 client_key, &len) == NULL ||
		EVP_Digest(client_key, sizeof(client_key), stored_key, &len, EVP_sha256(), NULL) != 1 ||
		HMAC(EVP_sha256(), salted, sizeof(salted), (const unsigned char *) "Server Key", 10,
			 server_key, &len) == NULL)
		ereport(ERROR, (errmsg("could not compute a SCRAM secret")));
	return psprintf("SCRAM-SHA-256$%d:%s$%s:%s", iterations, base64(salt, sizeof(salt)),
					base64(stored_key, sizeof(stored_key)), base64(server_key, sizeof(server_key)));
}

/*
 * Write a whole file atomically: a temporary file in the same directory,
 * fsync, rename.  mode applies from creation, so a secret is never readable
 * by others, not even briefly.
 */
void
dborch_write_file(const char *path, const char *contents, mode_t mode)
{
	char	   *tmp = psprintf("%s.tmp", path);
	size_t		len = strlen(contents);
	int			fd;

	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | PG_BINARY, mode);
	if (fd < 0)
		ereport(ERROR, (errcode_for_file_access(),
						errmsg("could not create file \"%s\": %m", tmp)));
	if (fchmod(fd, mode) != 0 ||
		write(fd, contents, len) != (ssize_t) len ||
		pg_fsync(fd) != 0)
	{
		int			save_errno = errno;

		close(fd);
		unlink(tmp);
		errno = save_errno ? save_errno : ENOSPC;
		ereport(ERROR, (errcode_for_file_access(),
						errmsg("could not write file \"%s\": %m", tmp)));
	}
	close(fd);
	if (rename(tmp, path) != 0)
		ereport(ERROR, (errcode_for_file_access(),
						errmsg("could not rename \"%s\" to \"%s\": %m", tmp, path)));
	pfree(tmp);
}

/* Read a whole file; NULL if it does not exist and missing_ok. */
char *
dborch_read_file(const char *path, bool missing_ok)
{
	int			fd = open(path, O_RDONLY | PG_BINARY, 0);
	struct stat st;
	char	   *buf;
	ssize_t		got;

	if (fd < 0)
	{
		if (errno == ENOENT && missing_ok)
			return NULL;
		ereport(ERROR, (errcode_for_file_access(),
						errmsg("could not open file \"%s\": %m", path)));
	}
	if (fstat(fd, &st) != 0)
	{
		close(fd);
		ereport(ERROR, (errcode_for_file_access(),
						errmsg("could not stat file \"%s\": %m", path)));
	}
	buf = palloc(st.st_size + 1);
	got = read(fd, buf, st.st_size);
	close(fd);
	if (got < 0)
		ereport(ERROR, (errcode_for_file_access(),
						errmsg("could not read file \"%s\": %m", path)));
	buf[got] = '\0';
	return buf;
}

/* mkdir -p, with mode on every directory it creates and on the last one. */
void
dborch_mkdir(const char *path, mode_t mode)
{
	char	   *copy = pstrdup(path);

	if (pg_mkdir_p(copy, mode) != 0 && errno != EEXIST)
		ereport(ERROR, (errcode_for_file_access(),
						errmsg("could not create directory \"%s\": %m", path)));
	if (chmod(path, mode) != 0)
		ereport(ERROR, (errcode_for_file_access(),
						errmsg("could not set permissions of directory \"%s\": %m", path)));
	pfree(copy);
}

/* rm -rf; an absent path is fine, anything left behind is an error. */
void
dborch_remove_tree(const char *path)
{
	if (!dborch_path_exists(path))
		return;
	if (!rmtree(path, true) && dborch_path_exists(path))
		ereport(ERROR, (errcode_for_file_access(),
						errmsg("could not remove directory \"%s\"", path)));
}

bool
dborch_path_exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}

/*
 * Is pid a live (not zombie) process whose command name is expected_comm?
 * An orphan is reaped late by PID 1, so kill(pid, 0) alone is not enough.
 */
bool
dborch_process_alive(pid_t pid, const char *expected_comm)
{
	char		path[64];
	char		buf[512];
	int			fd;
	ssize_t		n;
	char	   *open_paren,
			   *close_paren;

	if (pid <= 0)
		return false;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
	fd = open(path, O_RDONLY, 0);
	if (fd < 0)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';

	/* format: pid (comm) state ... ; comm may itself contain parentheses */
	open_paren = strchr(buf, '(');
	close_paren = strrchr(buf, ')');
	if (open_paren == NULL || close_paren == NULL || close_paren[1] != ' ')
		return false;
	if (close_paren[2] == 'Z' || close_paren[2] == 'X')
		return false;
	if (expected_comm != NULL)
	{
		*close_paren = '\0';
		if (strcmp(open_paren + 1, expected_comm) != 0)
			return false;
	}
	return true;
}

/* Is something already bound to address:port? */
bool
dborch_port_in_use(const char *address, int port)
{
	struct sockaddr_storage ss;
	socklen_t	len;
	int			fd;
	int			one = 1;
	bool		in_use;

	memset(&ss, 0, sizeof(ss));
	if (strchr(address, ':') != NULL)
	{
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *) &ss;

		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		if (inet_pton(AF_INET6, address, &sin6->sin6_addr) != 1)
			return true;
		len = sizeof(*sin6);
	}
	else
	{
		struct sockaddr_in *sin = (struct sockaddr_in *) &ss;

		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		if (inet_pton(AF_INET, address, &sin->sin_addr) != 1)
			return true;
		len = sizeof(*sin);
	}

	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return true;
	/* the servers set SO_REUSEADDR too, so TIME_WAIT leftovers do not count */
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	in_use = bind(fd, (struct sockaddr *) &ss, len) != 0;
	close(fd);
	return in_use;
}

/* The last max_bytes of a file, from a line start, for error details. */
char *
dborch_file_tail(const char *path, int max_bytes)
{
	char	   *all = dborch_read_file(path, true);
	size_t		len;
	char	   *start;

	if (all == NULL)
		return pstrdup("");
	len = strlen(all);
	if (len <= (size_t) max_bytes)
		return all;
	start = all + len - max_bytes;
	if (strchr(start, '\n') != NULL && strchr(start, '\n')[1] != '\0')
		start = strchr(start, '\n') + 1;
	return pstrdup(start);
}

/*
 * Names of deployments and tenants become directory, role and schema names
 * and Redis key prefixes: only ^[a-z][a-z0-9_]{0,39}$ is accepted.
 */
void
dborch_validate_name(const char *what, const char *name)
{
	int			len;
	int			i;
	bool		ok;

	if (name == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s name must not be null", what)));
	len = strlen(name);
	ok = len >= 1 && len <= 40 && name[0] >= 'a' && name[0] <= 'z';
	for (i = 1; ok && i < len; i++)
		ok = (name[i] >= 'a' && name[i] <= 'z') ||
			(name[i] >= '0' && name[i] <= '9') || name[i] == '_';
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid %s name \"%s\"", what, dborch_clip(name, 60)),
				 errdetail("A %s name is 1 to 40 characters: a lower-case letter, then lower-case letters, digits or underscores.", what)));
}

/* At most max_bytes of text, never splitting a multibyte character. */
char *
dborch_clip(const char *text, int max_bytes)
{
	return pnstrdup(text, pg_mbcliplen(text, strlen(text), max_bytes));
}

/* "1 replica", "2 replicas": a count with the word it counts. */
char *
dborch_count(int64 n, const char *one, const char *many)
{
	return psprintf(INT64_FORMAT " %s", n, n == 1 ? one : many);
}

/* Milliseconds on a monotonic clock. */
int64
dborch_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
