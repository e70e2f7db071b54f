/*
 * prober.c
 *		The dborch prober: a static background worker that keeps one
 *		persistent connection to every managed instance (libpq's non-blocking
 *		API for PostgreSQL, hiredis' async API for Redis), all sockets in one
 *		WaitEventSet with its latch and postmaster death, each probe with its
 *		own deadline.  It records health and metrics in dborch.probes, and
 *		owns an instance's health transitions: after dborch.failure_threshold
 *		missed probes the instance is down (event, NOTIFY, alert, recovery
 *		job, once); the first good probe after that makes it running again
 *		(the same, as "recovered").
 *
 * Scheduling: an instance is probed every dborch.probe_interval.  After a
 * failure the next attempt comes sooner (100 ms doubling up to the
 * interval), so a dead server is marked down in a few hundred ms, while a
 * server that stops answering is down after failure_threshold deadlines.
 * A lost connection (the server died: the socket reads EOF) counts as a
 * failure at once, without waiting for the next probe.  A probe that is
 * late on an open connection is a miss, but its connection is kept for the
 * late answer until the instance is down (probe_late).
 *
 * Failures are classified as PQping does: an authentication error means the
 * server is up; "starting up" / "shutting down" (57P03, Redis LOADING) mean
 * it is alive but not ready, which neither counts as a miss nor as healthy.
 */
#include "postgres.h"

#include <signal.h>
#include <unistd.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "access/xact.h"
#include "libpq-fe.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/backend_status.h"
#include "utils/guc.h"
#include "utils/fmgrprotos.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "catalog.h"
#include "dborch.h"
#include "engine.h"
#include "procstat.h"

/* One round trip: every PostgreSQL metric dborch records. */
#define PG_PROBE_SQL \
	"SELECT (SELECT pg_catalog.count(*) FROM pg_catalog.pg_stat_activity" \
	"        WHERE backend_type = 'client backend'), " \
	"(SELECT pg_catalog.sum(xact_commit) FROM pg_catalog.pg_stat_database), " \
	"(SELECT pg_catalog.sum(pg_catalog.pg_database_size(oid)) FROM pg_catalog.pg_database" \
	"  WHERE datallowconn), " \
	"pg_catalog.pg_is_in_recovery(), " \
	"CASE WHEN pg_catalog.pg_is_in_recovery() " \
	"  THEN pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_last_wal_receive_lsn(), pg_catalog.pg_last_wal_replay_lsn()) " \
	"  ELSE (SELECT pg_catalog.max(pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), replay_lsn))" \
	"        FROM pg_catalog.pg_stat_replication) END"

#define REDIS_PROBE_COMMAND "INFO clients memory stats keyspace"

/* Shortest wait after a failure; it doubles up to dborch.probe_interval. */
#define RETRY_MIN_MS 100

/* Longest wait before a new instance's first good probe is written. */
#define FIRST_FLUSH_MS 20

typedef enum ProbePhase
{
	PHASE_DISCONNECTED,			/* no connection; next_at is the next attempt */
	PHASE_CONNECTING,			/* connection (and Redis AUTH) under way */
	PHASE_IDLE,					/* connected; next_at is the next probe */
	PHASE_PROBING				/* probe sent, reply awaited */
} ProbePhase;

/* Outcome of one probe, as it goes to dborch.probes. */
typedef struct Sample
{
	bool		up;
	double		latency_ms;
	char	   *error;
	int64		connections;	/* -1 when unknown, for every metric */
	int64		xact_commit;
	int64		db_size_bytes;
	int			in_recovery;	/* -1, 0, 1 */
	int64		replication_lag_bytes;
	int64		used_memory_bytes;
	int64		ops_per_sec;
	int64		keys;
} Sample;

typedef struct Target
{
	/* from the catalog */
	int64		instance_id;
	int64		deployment_id;
	char	   *deployment;
	bool		is_postgres;
	char	   *host;
	int			port;
	char	   *password;		/* dborch's own (engine_dborch_password()) */
	char	   *redis_user;		/* the ACL user it belongs to */
	int			pid;
	bool		catalog_down;	/* instances.status is 'down' */
	bool		seen;			/* found by the latest catalog reload */

	/* connection */
	ProbePhase	phase;
	PGconn	   *pg;
	redisAsyncContext *redis;
	pgsocket	sock;
	uint32		want;			/* WL_SOCKET_* events wanted on sock */
	int			wes_pos;		/* position in the WaitEventSet, -1 if none */
	bool		fd_acquired;
	bool		close_pending;	/* close outside hiredis callbacks */
	bool		script_killed;	/* Redis: a runaway script was killed, for an event */
	bool		closing;		/* we are closing: ignore hiredis callbacks */

	/* timing */
	int64		next_at;
	int64		started_at;
	int64		deadline;
	TimestampTz sent_at;		/* of the probe, for its latency in microseconds */

	/* health */
	int			failures;		/* consecutive missed probes */
	bool		down;			/* as the prober judges it */
	char	   *last_error;
	bool		have_sample;
	bool		ever_up;		/* a good probe since the target was added */
	Sample		sample;
	bool		latest_up;		/* the latest probe succeeded */
	double		latency_avg;	/* moving average of probe latency, -1 before the first */
} Target;

/* A health transition to write at the next flush. */
typedef struct Transition
{
	int64		instance_id;
	bool		down;
	int			failures;
	char	   *error;
} Transition;

static MemoryContext targets_mcxt;
static List *targets = NIL;		/* Target * */
static List *transitions = NIL;	/* Transition *, in targets_mcxt */
static WaitEventSet *wes = NULL;
static bool wes_dirty = true;
static uint64 loaded_generation = 0;
static int64 next_flush_at = 0;
static bool first_up_unflushed = false;	/* for dborch.wait(): see flush() */
static bool fd_budget_warned = false;

static void target_close(Target *t);
static void target_probe(Target *t);
static void probe_failed(Target *t, const char *error);

/* ---------------------------------------------------------------------
 * Socket events
 * ---------------------------------------------------------------------
 */

/* Register the events a target wants; a changed socket rebuilds the set. */
static void
target_want(Target *t, uint32 events)
{
	/* always watch for readability: an EOF is how a dead server shows */
	if (t->sock != PGINVALID_SOCKET)
		events |= WL_SOCKET_READABLE;
	if (t->want == events)
		return;
	t->want = events;
	if (!wes_dirty && t->wes_pos >= 0)
		ModifyWaitEvent(wes, t->wes_pos, events, NULL);
	else
		wes_dirty = true;
}

static void
target_set_socket(Target *t, pgsocket sock)
{
	if (t->sock == sock)
		return;
	t->sock = sock;
	t->wes_pos = -1;
	t->want = 0;
	wes_dirty = true;
}

/* Rebuild the WaitEventSet: latch, postmaster death, every socket. */
static void
rebuild_wait_events(void)
{
	ListCell   *lc;

	if (wes != NULL)
		FreeWaitEventSet(wes);
	wes = CreateWaitEventSet(targets_mcxt, list_length(targets) + 2);
	AddWaitEventToSet(wes, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(wes, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	foreach(lc, targets)
	{
		Target	   *t = lfirst(lc);

		t->wes_pos = -1;
		if (t->sock != PGINVALID_SOCKET && t->want != 0)
			t->wes_pos = AddWaitEventToSet(wes, t->want, t->sock, NULL, t);
	}
	wes_dirty = false;
}

/* ---------------------------------------------------------------------
 * Outcomes
 * ---------------------------------------------------------------------
 */

static void
sample_reset(Sample *s)
{
	memset(s, 0, sizeof(Sample));
	s->connections = s->xact_commit = s->db_size_bytes = -1;
	s->replication_lag_bytes = s->used_memory_bytes = s->ops_per_sec = s->keys = -1;
	s->in_recovery = -1;
	s->latency_ms = -1;
}

static void
queue_transition(Target *t, bool down)
{
	MemoryContext old = MemoryContextSwitchTo(targets_mcxt);
	Transition *tr = palloc0(sizeof(Transition));

	tr->instance_id = t->instance_id;
	tr->down = down;
	tr->failures = t->failures;
	tr->error = t->last_error ? pstrdup(t->last_error) : NULL;
	transitions = lappend(transitions, tr);
	MemoryContextSwitchTo(old);
	next_flush_at = 0;			/* write it now, not at the next period */
}

/* A good probe: record it; the first after a down is a recovery. */
static void
probe_succeeded(Target *t, Sample *s)
{
	int64		now = dborch_now_ms();

	s->up = true;
	s->latency_ms = (GetCurrentTimestamp() - t->sent_at) / 1000.0;
	t->sample = *s;
	t->have_sample = true;
	t->latest_up = true;
	/* weight 1/8 for the new sample, as TCP smooths its round-trip time */
	t->latency_avg = t->latency_avg < 0 ? s->latency_ms
		: t->latency_avg + (s->latency_ms - t->latency_avg) / 8;
	t->failures = 0;
	t->phase = PHASE_IDLE;
	t->next_at = t->started_at + dborch_probe_interval_ms;
	/*
	 * A new instance's first good probe is written (and routed to) within
	 * FIRST_FLUSH_MS, not at the next period; the first probes of many
	 * (after a restart of the prober) share flushes.
	 */
	if (!t->ever_up)
	{
		t->ever_up = true;
		first_up_unflushed = true;
		next_flush_at = Min(next_flush_at, now + FIRST_FLUSH_MS);
	}
	/*
	 * A late answer (probe_late): the next probe waits a whole period, so
	 * the busy server has room and this sample is the one the next flush
	 * writes.
	 */
	if (now - t->started_at >= dborch_probe_timeout_ms)
		t->next_at = now + dborch_probe_interval_ms;
	if (t->down || t->catalog_down)
	{
		t->down = false;
		queue_transition(t, false);
	}
}

/*
 * Record a sample with an error.  The text is kept with the target: the
 * loop's memory is reset every round, and the sample is written later.
 */
static void
record_error_sample(Target *t, bool up, const char *error)
{
	MemoryContext old = MemoryContextSwitchTo(targets_mcxt);
	Sample		s;

	if (t->last_error)
		pfree(t->last_error);
	t->last_error = pstrdup(error);
	MemoryContextSwitchTo(old);
	sample_reset(&s);
	s.up = up;
	s.error = t->last_error;
	t->sample = s;
	t->have_sample = true;
	t->latest_up = false;
}

/*
 * The server answered but is not ready (starting up, shutting down,
 * loading): alive, so no miss; not healthy either.
 */
static void
probe_not_ready(Target *t, const char *error)
{
	record_error_sample(t, false, error);
	target_close(t);
	t->next_at = dborch_now_ms() + RETRY_MIN_MS;
}

/* The server answered but refused dborch's login: up, as PQping would say. */
static void
probe_login_refused(Target *t, const char *error)
{
	record_error_sample(t, true, error);
	t->failures = 0;
	target_close(t);
	t->next_at = dborch_now_ms() + dborch_probe_interval_ms;
}

/* Count a missed probe; after failure_threshold of them the instance is down. */
static void
count_miss(Target *t, const char *error)
{
	record_error_sample(t, false, error);
	t->failures++;
	if (!t->down && t->failures >= dborch_failure_threshold)
	{
		t->down = true;
		if (!t->catalog_down)
			queue_transition(t, true);
	}
}

/* A missed probe that ends the connection; the next attempt after a backoff. */
static void
probe_failed(Target *t, const char *error)
{
	int64		delay;

	count_miss(t, error);
	target_close(t);
	delay = (int64) RETRY_MIN_MS << Min(t->failures - 1, 10);
	t->next_at = dborch_now_ms() + Min(delay, dborch_probe_interval_ms);
}

/*
 * A probe sent on an open connection got no answer by its deadline: a miss,
 * and another one at each further probe_timeout, but the connection stays,
 * for a busy server answers late (the answer is then a good probe, its
 * latency the whole wait) and a new connection would only add to its load.
 * The miss that makes the instance down gives the connection up.
 */
static void
probe_late(Target *t)
{
	const char *error = psprintf("no answer within %d ms", dborch_probe_timeout_ms);

	if (t->failures + 1 >= dborch_failure_threshold)
	{
		probe_failed(t, error);
		return;
	}
	count_miss(t, error);
	t->deadline += dborch_probe_timeout_ms;
}

/* libpq connection errors the way PQping reads them. */
static void
pg_connection_failed(Target *t, const char *message)
{
	if (strstr(message, "password authentication failed") != NULL ||
		strstr(message, "no pg_hba.conf entry") != NULL)
		probe_login_refused(t, message);
	else if (strstr(message, "starting up") != NULL || strstr(message, "shutting down") != NULL ||
			 strstr(message, "not yet accepting connections") != NULL ||
			 strstr(message, "in recovery mode") != NULL)
		probe_not_ready(t, message);
	else
		probe_failed(t, message);
}

/* ---------------------------------------------------------------------
 * PostgreSQL
 * ---------------------------------------------------------------------
 */

static void
pg_connect(Target *t)
{
	const char *keys[] = {"host", "port", "user", "password", "dbname", "application_name",
	"sslmode", "gssencmode", "options", NULL};
	const char *values[] = {t->host, psprintf("%d", t->port), "postgres", t->password,
	"postgres", "dborch prober", "require", "disable", DBORCH_PG_SESSION_OPTIONS, NULL};

	t->pg = PQconnectStartParams(keys, values, 0);
	if (t->pg == NULL || PQstatus(t->pg) == CONNECTION_BAD)
	{
		pg_connection_failed(t, t->pg ? PQerrorMessage(t->pg) : "out of memory");
		return;
	}
	t->phase = PHASE_CONNECTING;
	target_set_socket(t, PQsocket(t->pg));
	target_want(t, WL_SOCKET_WRITEABLE);
}

static void
pg_send_probe(Target *t)
{
	if (!PQsendQuery(t->pg, PG_PROBE_SQL))
	{
		probe_failed(t, PQerrorMessage(t->pg));
		return;
	}
	t->phase = PHASE_PROBING;
	target_want(t, PQflush(t->pg) == 1 ? WL_SOCKET_WRITEABLE : 0);
}

static int64
pg_int(PGresult *res, int col)
{
	return PQgetisnull(res, 0, col) ? -1 : strtoi64(PQgetvalue(res, 0, col), NULL, 10);
}

/* The socket of a PostgreSQL target is ready. */
static void
pg_socket_ready(Target *t, uint32 events)
{
	if (t->phase == PHASE_CONNECTING)
	{
		PostgresPollingStatusType st = PQconnectPoll(t->pg);

		if (st == PGRES_POLLING_FAILED)
			pg_connection_failed(t, PQerrorMessage(t->pg));
		else if (st == PGRES_POLLING_OK)
		{
			PQsetnonblocking(t->pg, 1);
			t->phase = PHASE_IDLE;
			target_want(t, 0);
			if (t->next_at <= dborch_now_ms())
				target_probe(t);
		}
		else
		{
			target_set_socket(t, PQsocket(t->pg));
			target_want(t, st == PGRES_POLLING_READING ? WL_SOCKET_READABLE : WL_SOCKET_WRITEABLE);
		}
		return;
	}

	if ((events & WL_SOCKET_WRITEABLE) && PQflush(t->pg) == 0)
		target_want(t, 0);
	if (!(events & WL_SOCKET_READABLE))
		return;
	if (!PQconsumeInput(t->pg))
	{
		probe_failed(t, PQerrorMessage(t->pg));
		return;
	}
	if (t->phase != PHASE_PROBING)
		return;					/* a notice, or nothing */
	while (!PQisBusy(t->pg))
	{
		PGresult   *res = PQgetResult(t->pg);
		Sample		s;

		if (res == NULL)
			return;
		if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
		{
			char	   *error = pstrdup(PQresultErrorMessage(res));

			PQclear(res);
			while ((res = PQgetResult(t->pg)) != NULL)
				PQclear(res);
			probe_failed(t, error);
			return;
		}
		sample_reset(&s);
		s.connections = pg_int(res, 0);
		s.xact_commit = pg_int(res, 1);
		s.db_size_bytes = pg_int(res, 2);
		s.in_recovery = PQgetisnull(res, 0, 3) ? -1 : (PQgetvalue(res, 0, 3)[0] == 't');
		s.replication_lag_bytes = PQgetisnull(res, 0, 4) ? -1
			: (int64) strtod(PQgetvalue(res, 0, 4), NULL);
		PQclear(res);
		probe_succeeded(t, &s);
	}
}

/* ---------------------------------------------------------------------
 * Redis (hiredis async API, driven by our own WaitEventSet)
 * ---------------------------------------------------------------------
 */

static void
redis_add_read(void *data)
{
	Target	   *t = data;

	target_want(t, t->want | WL_SOCKET_READABLE);
}

static void
redis_del_read(void *data)
{
	/* the socket stays watched for readability: EOF is a failure */
}

static void
redis_add_write(void *data)
{
	Target	   *t = data;

	target_want(t, t->want | WL_SOCKET_WRITEABLE);
}

static void
redis_del_write(void *data)
{
	Target	   *t = data;

	target_want(t, t->want & ~WL_SOCKET_WRITEABLE);
}

static void
redis_cleanup(void *data)
{
	Target	   *t = data;

	target_set_socket(t, PGINVALID_SOCKET);
}

/* hiredis freed the context (EOF or error): the connection is gone. */
static void
redis_on_disconnect(const redisAsyncContext *ac, int status)
{
	Target	   *t = ac->data;

	if (t == NULL || t->closing)
		return;
	t->redis = NULL;
	target_set_socket(t, PGINVALID_SOCKET);
	if (t->fd_acquired)
	{
		ReleaseExternalFD();
		t->fd_acquired = false;
	}
	probe_failed(t, ac->errstr && ac->errstr[0] ? ac->errstr : "connection closed by the server");
}

static void
redis_on_connect(const redisAsyncContext *ac, int status)
{
	Target	   *t = ac->data;

	if (status != REDIS_OK && t != NULL && !t->closing)
	{
		/* hiredis frees the context after this callback */
		t->redis = NULL;
		target_set_socket(t, PGINVALID_SOCKET);
		if (t->fd_acquired)
		{
			ReleaseExternalFD();
			t->fd_acquired = false;
		}
		probe_failed(t, ac->errstr ? ac->errstr : "connection failed");
	}
}

/* Parse "name:value" out of an INFO reply; -1 if absent. */
static int64
info_field(const char *info, const char *name)
{
	const char *p = info;
	size_t		len = strlen(name);

	while ((p = strstr(p, name)) != NULL)
	{
		if ((p == info || p[-1] == '\n') && p[len] == ':')
			return strtoi64(p + len + 1, NULL, 10);
		p += len;
	}
	return -1;
}

/* Sum of keys=N over the keyspace lines (db0:keys=3,expires=0,...). */
static int64
info_keys(const char *info)
{
	const char *p = info;
	int64		keys = 0;

	while ((p = strstr(p, ":keys=")) != NULL)
	{
		keys += strtoi64(p + 6, NULL, 10);
		p += 6;
	}
	return keys;
}

/* The answer to SCRIPT KILL or FUNCTION KILL: noted when one was killed. */
static void
redis_on_kill(redisAsyncContext *ac, void *r, void *privdata)
{
	Target	   *t = privdata;
	redisReply *reply = r;

	if (reply == NULL || t->closing)
		return;
	if (reply->type == REDIS_REPLY_STATUS && strcmp(reply->str, "OK") == 0)
	{
		t->script_killed = true;
		next_flush_at = 0;
	}
}

static void
redis_on_info(redisAsyncContext *ac, void *r, void *privdata)
{
	Target	   *t = privdata;
	redisReply *reply = r;
	Sample		s;

	if (reply == NULL || t->closing)
		return;					/* freed or disconnected: handled there */
	if (reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "BUSY", 4) == 0)
	{
		/*
		 * A script (a tenant's, say) has run past busy-reply-threshold and
		 * the server answers nothing else: kill it, so that one runaway
		 * script does not take the whole deployment down.  Redis still
		 * serves SCRIPT KILL and FUNCTION KILL now; a script that wrote
		 * cannot be killed (UNKILLABLE), and the misses then run their
		 * course.  A miss, on the same connection.
		 */
		(void) redisAsyncCommand(ac, redis_on_kill, t, "SCRIPT KILL");
		(void) redisAsyncCommand(ac, redis_on_kill, t, "FUNCTION KILL");
		count_miss(t, pnstrdup(reply->str, reply->len));
		t->phase = PHASE_IDLE;
		t->next_at = dborch_now_ms() + RETRY_MIN_MS;
		return;
	}
	if (reply->type == REDIS_REPLY_ERROR)
	{
		char	   *error = pnstrdup(reply->str, reply->len);

		t->close_pending = true;
		if (strncmp(error, "LOADING", 7) == 0)
			probe_not_ready(t, error);
		else
			probe_failed(t, error);
		return;
	}
	if (reply->type != REDIS_REPLY_STRING)
	{
		t->close_pending = true;
		probe_failed(t, "unexpected reply to INFO");
		return;
	}
	sample_reset(&s);
	s.connections = info_field(reply->str, "connected_clients");
	s.used_memory_bytes = info_field(reply->str, "used_memory");
	s.ops_per_sec = info_field(reply->str, "instantaneous_ops_per_sec");
	s.keys = info_keys(reply->str);
	probe_succeeded(t, &s);
}

static void
redis_send_probe(Target *t)
{
	t->phase = PHASE_PROBING;
	if (redisAsyncCommand(t->redis, redis_on_info, t, REDIS_PROBE_COMMAND) != REDIS_OK)
		probe_failed(t, "could not send INFO");
}

static void
redis_on_auth(redisAsyncContext *ac, void *r, void *privdata)
{
	Target	   *t = privdata;
	redisReply *reply = r;

	if (reply == NULL || t->closing)
		return;
	if (reply->type == REDIS_REPLY_ERROR)
	{
		char	   *error = pnstrdup(reply->str, reply->len);

		t->close_pending = true;
		if (strncmp(error, "LOADING", 7) == 0)
			probe_not_ready(t, error);
		else if (strncmp(error, "WRONGPASS", 9) == 0)
			probe_login_refused(t, error);
		else
			probe_failed(t, error);
		return;
	}
	t->phase = PHASE_IDLE;
	if (t->next_at <= dborch_now_ms())
		target_probe(t);
}

static void
redis_connect(Target *t)
{
	redisAsyncContext *ac = redisAsyncConnect(t->host, t->port);

	if (ac == NULL || ac->err)
	{
		char	   *error = pstrdup(ac ? ac->errstr : "out of memory");

		if (ac)
			redisAsyncFree(ac);
		probe_failed(t, error);
		return;
	}
	t->redis = ac;
	ac->data = t;
	ac->ev.data = t;
	ac->ev.addRead = redis_add_read;
	ac->ev.delRead = redis_del_read;
	ac->ev.addWrite = redis_add_write;
	ac->ev.delWrite = redis_del_write;
	ac->ev.cleanup = redis_cleanup;
	redisAsyncSetConnectCallback(ac, redis_on_connect);
	redisAsyncSetDisconnectCallback(ac, redis_on_disconnect);
	target_set_socket(t, ac->c.fd);
	t->phase = PHASE_CONNECTING;
	if (redisAsyncCommand(ac, redis_on_auth, t, "AUTH %s %s", t->redis_user,
						  t->password ? t->password : "") != REDIS_OK)
		probe_failed(t, "could not send AUTH");
}

/* ---------------------------------------------------------------------
 * Connections
 * ---------------------------------------------------------------------
 */

/* Close a target's connection (never from inside a hiredis callback). */
static void
target_close(Target *t)
{
	t->close_pending = false;
	t->phase = PHASE_DISCONNECTED;
	if (t->pg != NULL)
	{
		PQfinish(t->pg);
		t->pg = NULL;
	}
	if (t->redis != NULL)
	{
		redisAsyncContext *ac = t->redis;

		if (ac->c.flags & REDIS_IN_CALLBACK)
		{
			/* hiredis must unwind first; closed after the event is handled */
			t->close_pending = true;
			t->phase = PHASE_DISCONNECTED;
			return;
		}
		t->closing = true;
		t->redis = NULL;
		redisAsyncFree(ac);
		t->closing = false;
	}
	target_set_socket(t, PGINVALID_SOCKET);
	if (t->fd_acquired)
	{
		ReleaseExternalFD();
		t->fd_acquired = false;
	}
}

/* Open a connection, within the backend's descriptor budget. */
static void
target_connect(Target *t)
{
	if (!AcquireExternalFD())
	{
		if (!fd_budget_warned)
			ereport(LOG,
					(errmsg("dborch prober: descriptor budget reached, %d instances cannot be probed",
							list_length(targets)),
					 errhint("Raise max_files_per_process (and the open files limit, ulimit -n) and restart the server.")));
		fd_budget_warned = true;
		pg_atomic_write_u32(&dborch_shared->prober_fd_exhausted, 1);
		t->next_at = dborch_now_ms() + dborch_probe_interval_ms;
		return;
	}
	t->fd_acquired = true;
	t->started_at = dborch_now_ms();
	t->deadline = t->started_at + dborch_probe_timeout_ms;
	if (t->is_postgres)
		pg_connect(t);
	else
		redis_connect(t);
}

/* Start a probe on an idle connection. */
static void
target_probe(Target *t)
{
	t->sent_at = GetCurrentTimestamp();
	t->started_at = dborch_now_ms();
	t->deadline = t->started_at + dborch_probe_timeout_ms;
	if (t->is_postgres)
		pg_send_probe(t);
	else
		redis_send_probe(t);
}

static void
target_socket_ready(Target *t, uint32 events)
{
	if (t->is_postgres)
	{
		if (t->pg != NULL)
			pg_socket_ready(t, events);
		return;
	}
	if (t->redis == NULL)
		return;
	if (events & WL_SOCKET_READABLE)
		redisAsyncHandleRead(t->redis);
	if (t->redis != NULL && !t->close_pending && (events & WL_SOCKET_WRITEABLE))
		redisAsyncHandleWrite(t->redis);
}

/* ---------------------------------------------------------------------
 * Catalog: targets in, samples and transitions out
 * ---------------------------------------------------------------------
 */

static Target *
find_target(int64 instance_id)
{
	ListCell   *lc;

	foreach(lc, targets)
		if (((Target *) lfirst(lc))->instance_id == instance_id)
			return lfirst(lc);
	return NULL;
}

static void
target_free(Target *t)
{
	target_close(t);
	pfree(t->deployment);
	pfree(t->host);
	if (t->password)
		pfree(t->password);
	pfree(t->redis_user);
	if (t->last_error)
		pfree(t->last_error);
	pfree(t);
}

/*
 * Load the instances to probe.  Unchanged targets keep their connection;
 * new ones are probed at once; vanished ones are closed.
 */
static void
reload_targets(void)
{
	CatResult  *r;
	ListCell   *lc;
	int			i;

	loaded_generation = pg_atomic_read_u64(&dborch_shared->catalog_generation);
	cat_begin();
	r = cat_probe_targets();
	cat_commit();

	foreach(lc, targets)
		((Target *) lfirst(lc))->seen = false;

	for (i = 0; i < r->nrows; i++)
	{
		int64		id = strtoi64(cat_value(r, i, "id"), NULL, 10);
		const char *host = cat_value(r, i, "host");
		int			port = atoi(cat_value(r, i, "port"));
		const char *password = cat_value(r, i, "password");
		const char *redis_user = cat_value(r, i, "redis_user");
		const char *pid = cat_value(r, i, "pid");
		Target	   *t = find_target(id);

		if (t != NULL && (strcmp(t->host, host) != 0 || t->port != port ||
						  strcmp(t->redis_user, redis_user) != 0 ||
						  (password && (!t->password || strcmp(t->password, password) != 0))))
		{
			/* moved or new credentials: start over */
			targets = list_delete_ptr(targets, t);
			target_free(t);
			t = NULL;
		}
		if (t == NULL)
		{
			MemoryContext old = MemoryContextSwitchTo(targets_mcxt);

			t = palloc0(sizeof(Target));
			t->instance_id = id;
			t->deployment_id = strtoi64(cat_value(r, i, "deployment_id"), NULL, 10);
			t->deployment = pstrdup(cat_value(r, i, "deployment"));
			t->is_postgres = strcmp(cat_value(r, i, "engine"), "postgres") == 0;
			t->host = pstrdup(host);
			t->port = port;
			t->password = password ? pstrdup(password) : NULL;
			t->redis_user = pstrdup(redis_user);
			t->sock = PGINVALID_SOCKET;
			t->wes_pos = -1;
			t->phase = PHASE_DISCONNECTED;
			t->next_at = 0;
			t->latency_avg = -1;
			targets = lappend(targets, t);
			wes_dirty = true;
			MemoryContextSwitchTo(old);
		}
		t->pid = pid ? atoi(pid) : 0;
		t->catalog_down = strcmp(cat_value(r, i, "status"), "down") == 0;
		if (t->catalog_down)
			t->down = true;
		t->seen = true;
	}

	foreach(lc, targets)
	{
		Target	   *t = lfirst(lc);

		if (!t->seen)
		{
			targets = foreach_delete_current(targets, lc);
			target_free(t);
			wes_dirty = true;
		}
	}
	pg_atomic_write_u32(&dborch_shared->prober_targets, list_length(targets));
}

static void
append_number(StringInfo buf, const char *key, int64 value)
{
	if (value >= 0)
		appendStringInfo(buf, ", \"%s\": " INT64_FORMAT, key, value);
}

/*
 * Publish what read routing needs of every target to shared memory: only a
 * target whose latest probe succeeded is up (a refused login is up for
 * PQping, not an instance to send clients to).
 */
static void
publish_routes(void)
{
	ListCell   *lc;
	int			n = 0;

	LWLockAcquire(dborch_shared->routes_lock, LW_EXCLUSIVE);
	foreach(lc, targets)
	{
		Target	   *t = lfirst(lc);
		RouteHealth *r;

		if (n == DBORCH_MAX_ROUTES)
			break;
		r = &dborch_shared->routes[n++];
		r->instance_id = t->instance_id;
		r->up = t->latest_up && !t->down;
		r->connections = t->sample.connections;
		r->latency_ms = t->latency_avg;
	}
	dborch_shared->nroutes = n;
	LWLockRelease(dborch_shared->routes_lock);
}

static void
record_probes(void *samples)
{
	cat_record_probes(samples);
}

static void
write_script_killed(void *arg)
{
	Target	   *t = arg;

	cat_event(DBORCH_ACTOR, t->deployment_id, 0, "script_killed",
			  psprintf("a script ran past busy-reply-threshold on %s:%d and was killed (SCRIPT KILL):"
					   " the server answers again", t->host, t->port),
			  psprintf("{\"instance_id\": " INT64_FORMAT "}", t->instance_id));
}

static void
write_transition(void *arg)
{
	Transition *tr = arg;

	cat_instance_health_changed(tr->instance_id, tr->down, tr->failures, tr->error);
}

/*
 * Write the latest sample of every target (one statement for all), the
 * pending transitions, and the process statistics of local instances.
 */
static void
flush(void)
{
	StringInfoData buf;
	ListCell   *lc;
	MemoryContext mcxt = CurrentMemoryContext;
	List	   *todo = transitions;
	int			connected = 0;
	char	   *now = DatumGetCString(DirectFunctionCall1(timestamptz_out,
														  TimestampTzGetDatum(GetCurrentTimestamp())));

	{
		int		   *pids = palloc0(sizeof(int) * (list_length(targets) + 1));
		int			n = 0;

		foreach(lc, targets)
			if (((Target *) lfirst(lc))->pid > 0)
				pids[n++] = ((Target *) lfirst(lc))->pid;
		procstat_refresh(pids, n);
	}
	initStringInfo(&buf);
	appendStringInfoChar(&buf, '[');
	foreach(lc, targets)
	{
		Target	   *t = lfirst(lc);
		ProcUsage	usage;

		if (t->phase == PHASE_IDLE || t->phase == PHASE_PROBING)
			connected++;
		if (!t->have_sample)
			continue;
		t->have_sample = false;
		if (buf.len > 1)
			appendStringInfoString(&buf, ", ");
		appendStringInfo(&buf, "{\"at\": \"%s\", \"instance_id\": " INT64_FORMAT
						 ", \"deployment_id\": " INT64_FORMAT ", \"up\": %s",
						 now, t->instance_id, t->deployment_id, t->sample.up ? "true" : "false");
		if (t->sample.up && t->sample.latency_ms >= 0)
			appendStringInfo(&buf, ", \"latency_ms\": %.3f", t->sample.latency_ms);
		if (t->sample.error)
		{
			appendStringInfoString(&buf, ", \"error\": ");
			escape_json(&buf, t->sample.error);
		}
		append_number(&buf, "connections", t->sample.connections);
		append_number(&buf, "xact_commit", t->sample.xact_commit);
		append_number(&buf, "db_size_bytes", t->sample.db_size_bytes);
		if (t->sample.in_recovery >= 0)
			appendStringInfo(&buf, ", \"in_recovery\": %s", t->sample.in_recovery ? "true" : "false");
		append_number(&buf, "replication_lag_bytes", t->sample.replication_lag_bytes);
		append_number(&buf, "used_memory_bytes", t->sample.used_memory_bytes);
		append_number(&buf, "ops_per_sec", t->sample.ops_per_sec);
		append_number(&buf, "keys", t->sample.keys);
		if (t->pid > 0 && procstat_usage(t->pid, &usage))
		{
			if (usage.cpu_percent >= 0)
				appendStringInfo(&buf, ", \"cpu_percent\": %.2f", usage.cpu_percent);
			append_number(&buf, "rss_bytes", usage.rss_bytes);
		}
		appendStringInfoChar(&buf, '}');
	}
	appendStringInfoChar(&buf, ']');
	pg_atomic_write_u32(&dborch_shared->prober_connected, connected);
	publish_routes();

	next_flush_at = dborch_now_ms() + dborch_probe_interval_ms;

	/*
	 * The samples, and each transition, in a subtransaction of their own:
	 * a row that a user's open transaction holds (a deployment whose
	 * maintenance window it just set) fails only its own transition, after
	 * lock_timeout, which is kept for the next flush; everything else is
	 * written now.
	 */
	transitions = NIL;
	PG_TRY();
	{
		char	   *error;

		cat_begin();
		if (buf.len > 2 && (error = cat_try(record_probes, buf.data)) != NULL)
			ereport(LOG, (errmsg("dborch prober: the samples of this period are lost: %s", error)));
		foreach(lc, targets)
		{
			Target	   *t = lfirst(lc);

			if (t->script_killed && cat_try(write_script_killed, t) == NULL)
				t->script_killed = false;
		}
		foreach(lc, todo)
		{
			Transition *tr = lfirst(lc);

			if ((error = cat_try(write_transition, tr)) != NULL)
			{
				MemoryContext old = MemoryContextSwitchTo(targets_mcxt);

				ereport(LOG, (errmsg("dborch prober: the health change of instance " INT64_FORMAT
									 " is written later: %s", tr->instance_id, error)));
				transitions = lappend(transitions, tr);
				MemoryContextSwitchTo(old);
			}
		}
		cat_commit();
	}
	PG_CATCH();
	{
		/* the samples of this period are lost; the transitions are kept */
		MemoryContextSwitchTo(mcxt);
		EmitErrorReport();
		FlushErrorState();
		AbortCurrentTransaction();
		MemoryContextSwitchTo(mcxt);
		pgstat_report_activity(STATE_RUNNING, "probing");
		transitions = todo;
		return;
	}
	PG_END_TRY();
	foreach(lc, todo)
	{
		Transition *tr = lfirst(lc);

		if (list_member_ptr(transitions, tr))
			continue;
		if (tr->error)
			pfree(tr->error);
		pfree(tr);
	}
	list_free(todo);
	/* dborch.wait() waits for the first good probe of a new replica */
	if (first_up_unflushed)
	{
		first_up_unflushed = false;
		dborch_broadcast_state_change();
	}
}

/* ---------------------------------------------------------------------
 * Main loop
 * ---------------------------------------------------------------------
 */

/* Start due connections and probes, fail the overdue; next wake-up in ms. */
static long
run_timers(void)
{
	int64		now = dborch_now_ms();
	int64		next = next_flush_at;
	ListCell   *lc;

	foreach(lc, targets)
	{
		Target	   *t = lfirst(lc);

		if (t->close_pending)
			target_close(t);
		if (t->phase == PHASE_CONNECTING && now >= t->deadline)
			probe_failed(t, psprintf("no answer within %d ms", dborch_probe_timeout_ms));
		else if (t->phase == PHASE_PROBING && now >= t->deadline)
			probe_late(t);
		if (t->phase == PHASE_DISCONNECTED && now >= t->next_at)
			target_connect(t);
		else if (t->phase == PHASE_IDLE && now >= t->next_at)
			target_probe(t);

		if (t->phase == PHASE_CONNECTING || t->phase == PHASE_PROBING)
			next = Min(next, t->deadline);
		else
			next = Min(next, t->next_at);
	}
	return (long) Max(next - dborch_now_ms(), 0);
}

/*
 * Wait up to timeout ms (0: only look) for sockets and the latch, and
 * handle what is ready; how many events there were.
 */
static int
handle_events(long timeout)
{
	static WaitEvent *events = NULL;
	static int	max_events = 0;
	int			n;

	if (wes_dirty)
		rebuild_wait_events();
	if (max_events < list_length(targets) + 2)
	{
		max_events = list_length(targets) + 2;
		events = MemoryContextAlloc(targets_mcxt, sizeof(WaitEvent) * max_events);
	}
	n = WaitEventSetWait(wes, timeout, events, max_events, DBORCH_WAIT_EVENT);
	for (int i = 0; i < n; i++)
	{
		if (events[i].events & WL_LATCH_SET)
		{
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
		else if (events[i].user_data != NULL)
			target_socket_ready((Target *) events[i].user_data, events[i].events);
	}
	return n;
}

void
dborch_prober_main(Datum arg)
{
	MemoryContext loop_mcxt;

	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(dborch_database, NULL, 0);
	dborch_background_session();

	SpinLockAcquire(&dborch_shared->mutex);
	dborch_shared->prober_pid = MyProcPid;
	dborch_shared->prober_latch = MyLatch;
	SpinLockRelease(&dborch_shared->mutex);

	targets_mcxt = AllocSetContextCreate(TopMemoryContext, "dborch prober targets",
										 ALLOCSET_DEFAULT_SIZES);
	loop_mcxt = AllocSetContextCreate(TopMemoryContext, "dborch prober loop",
									  ALLOCSET_DEFAULT_SIZES);
	pgstat_report_activity(STATE_RUNNING, "probing");

	/* wait until the extension exists, then take the first target list */
	for (;;)
	{
		bool		ready;

		cat_begin();
		ready = dborch_extension_ready(false);
		cat_commit();
		if (ready)
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_EXIT_ON_PM_DEATH, -1, DBORCH_WAIT_EVENT);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ShutdownRequestPending)
			proc_exit(0);
	}
	ereport(LOG, (errmsg("dborch prober started")));

	while (!ShutdownRequestPending)
	{
		long		timeout;

		MemoryContextReset(loop_mcxt);
		MemoryContextSwitchTo(loop_mcxt);
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		if (pg_atomic_read_u64(&dborch_shared->catalog_generation) != loaded_generation)
			reload_targets();
		if (pg_atomic_exchange_u32(&dborch_shared->probe_now, 0) != 0)
		{
			ListCell   *lc;

			/* a recovery job restarted something: look again now */
			foreach(lc, targets)
			{
				Target	   *t = lfirst(lc);

				if (t->phase == PHASE_DISCONNECTED || t->down)
					t->next_at = 0;
			}
		}

		/*
		 * Answers that arrived while this process was busy (a flush, a slow
		 * turn on a loaded machine) are read before any deadline is judged:
		 * a late loop must not count waiting replies as misses.  (A few
		 * rounds at most: a socket may stay readable.)
		 */
		for (int round = 0; round < 8 && handle_events(0) > 0; round++)
			;
		timeout = run_timers();
		if (dborch_now_ms() >= next_flush_at)
		{
			flush();
			timeout = Min(timeout, dborch_probe_interval_ms);
		}
		(void) handle_events(timeout);
		pg_atomic_write_u64(&dborch_shared->prober_last_loop, (uint64) GetCurrentTimestamp());
	}
	proc_exit(0);
}
