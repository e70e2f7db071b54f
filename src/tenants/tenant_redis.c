/*
 * tenant_redis.c
 *		Tenants of Redis deployments: ACL users on "<name>:*" (see tenant.h),
 *		saved to the instance's aclfile; usage from one SCAN of the keyspace
 *		per round; moves with DUMP/RESTORE in pipelined batches.
 */
#include "postgres.h"

#include <hiredis/hiredis.h>
#include <openssl/evp.h>

#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "utils/hsearch.h"

#include "dborch.h"
#include "engine.h"
#include "tenant.h"

#define BATCH 1000

/*
 * Everything on the tenant's own keys and channels; nothing keyspace-wide,
 * administrative, or server-wide that other tenants share: the channel
 * list (PUBSUB), function libraries (FUNCTION, FCALL), the script cache
 * (SCRIPT FLUSH, SCRIPT KILL), key tracking (CLIENT TRACKING: in BCAST mode
 * Redis 7.0 reports every key that changes), other databases (SELECT, MOVE,
 * COPY ... DB).
 */
static const char *const tenant_rules[] = {
	"reset", "on", "+@all", "-@admin", "-@dangerous", "-keys", "-scan", "-randomkey",
	"-flushall", "-flushdb", "-config", "-debug", "-dbsize", "-select", "-swapdb", "-move",
	"-pubsub", "-function", "-fcall", "-fcall_ro", "-script|flush", "-script|kill",
	/* broadcast tracking tells of every key that changes, other tenants' too */
	"-client|tracking",
	/* COPY ... DB n writes into another database, beyond the key prefix */
	"-copy",
	NULL
};

/* Over its quota: no writes, but DEL and UNLINK, to get back under it. */
static const char *const read_only_rules[] = {"-@write", "+del", "+unlink", NULL};

static redisReply *
command_argv(redisContext *c, List *args)
{
	int			n = list_length(args);
	const char **argv = palloc(sizeof(char *) * n);
	size_t	   *lens = palloc(sizeof(size_t) * n);
	ListCell   *lc;
	int			i = 0;
	redisReply *reply;

	foreach(lc, args)
	{
		argv[i] = lfirst(lc);
		lens[i] = strlen(argv[i]);
		i++;
	}
	reply = redisCommandArgv(c, n, argv, lens);
	if (reply == NULL || reply->type == REDIS_REPLY_ERROR)
		ereport(ERROR, (errmsg("redis %s failed: %s", argv[0],
							   reply ? reply->str : c->errstr)));
	return reply;
}

static void
simple(redisContext *c, const char *command)
{
	redisReply *reply = redisCommand(c, command);

	if (reply == NULL || reply->type == REDIS_REPLY_ERROR)
		ereport(ERROR, (errmsg("redis %s failed: %s", command, reply ? reply->str : c->errstr)));
	freeReplyObject(reply);
}

/* The reply of a command sent before: an error is an error. */
static void
expect_reply(redisContext *c, const char *what)
{
	redisReply *reply;

	if (redisGetReply(c, (void **) &reply) != REDIS_OK || reply->type == REDIS_REPLY_ERROR)
		ereport(ERROR, (errmsg("redis %s failed: %s", what, reply ? reply->str : c->errstr)));
	freeReplyObject(reply);
}

/* Write out what was appended to a blocking connection, without reading. */
static void
send_pending(redisContext *c)
{
	int			done = 0;

	while (!done)
		if (redisBufferWrite(c, &done) != REDIS_OK)
			ereport(ERROR, (errmsg("redis write failed: %s", c->errstr)));
}

/*
 * The ACL rules of a tenant from scratch ("reset"), read-only or not, with
 * its password as given: ">password" for ACL SETUSER, "#hash" for the
 * aclfile.
 */
static List *
tenant_acl_rules(const char *name, const char *password_rule, bool read_only)
{
	List	   *rules = NIL;
	const char *const *rule;

	for (rule = tenant_rules; *rule; rule++)
		rules = lappend(rules, (char *) *rule);
	rules = lappend(rules, (char *) password_rule);
	rules = lappend(rules, psprintf("~%s:*", name));
	rules = lappend(rules, psprintf("&%s:*", name));
	for (rule = read_only ? read_only_rules : NULL; rule && *rule; rule++)
		rules = lappend(rules, (char *) *rule);
	return rules;
}

/* A tenant's rules as a line of the aclfile has them (after "user <name> "). */
char *
tenant_redis_acl_rules(Tenant *t)
{
	StringInfoData line;
	ListCell   *lc;

	initStringInfo(&line);
	foreach(lc, tenant_acl_rules(t->name, engine_redis_password_hash(t->password), t->read_only))
		appendStringInfo(&line, "%s%s", line.len ? " " : "", (char *) lfirst(lc));
	return line.data;
}

/* Send (without waiting) ACL SETUSER of a tenant from scratch, read-only or not. */
static void
append_set_user(redisContext *c, const char *name, const char *password, bool read_only)
{
	List	   *args = list_make3("ACL", "SETUSER", (char *) name);
	const char **argv;
	size_t	   *lens;
	ListCell   *lc;
	int			i = 0;

	args = list_concat(args, tenant_acl_rules(name, psprintf(">%s", password), read_only));
	argv = palloc(sizeof(char *) * list_length(args));
	lens = palloc(sizeof(size_t) * list_length(args));
	foreach(lc, args)
	{
		argv[i] = lfirst(lc);
		lens[i++] = strlen(lfirst(lc));
	}
	if (redisAppendCommandArgv(c, i, argv, lens) != REDIS_OK)
		ereport(ERROR, (errmsg("redis ACL SETUSER failed: %s", c->errstr)));
}

static void
set_user(redisContext *c, const char *name, const char *password, bool read_only)
{
	append_set_user(c, name, password, read_only);
	expect_reply(c, "ACL SETUSER");
}

/*
 * The instances that need a tenant's ACL user: the primary and its running
 * replicas (ACLs do not replicate; reads may go to a replica).
 */
static List *
acl_instances(Instance *primary)
{
	List	   *list = list_make1(primary);
	ListCell   *lc;

	foreach(lc, cat_live_instances(primary->deployment_id))
	{
		Instance   *inst = lfirst(lc);

		if (inst->id != primary->id && strcmp(inst->status, "running") == 0)
			list = lappend(list, inst);
	}
	return list;
}

static void scan_keys(redisContext *c, const char *pattern,
					  void (*fn) (redisContext *, redisReply *, void *), void *arg);

/* Names of new tenants, and those found with keys already. */
typedef struct PrefixScan
{
	HTAB	   *names;
	List	   *taken;
} PrefixScan;

static void
prefix_batch(redisContext *c, redisReply *keys, void *arg)
{
	PrefixScan *scan = arg;

	for (size_t i = 0; i < keys->elements; i++)
	{
		const char *key = keys->element[i]->str;
		const char *colon = strchr(key, ':');
		char		name[NAMEDATALEN] = {0};
		bool		found;

		if (colon == NULL || colon - key >= NAMEDATALEN)
			continue;
		memcpy(name, key, colon - key);
		hash_search(scan->names, name, HASH_REMOVE, &found);
		if (found)
			scan->taken = lappend(scan->taken, pstrdup(name));
	}
}

/*
 * The new tenants among tenants (not carried by a restore) whose prefix
 * "<name>:" the instance holds keys of already (the owner's): one SCAN of
 * the keyspace for the whole batch.  Such a tenant is never made: it would
 * take over those keys.
 */
static List *
taken_prefixes(Instance *inst, List *tenants)
{
	PrefixScan	scan = {NULL, NIL};
	HASHCTL		ctl;
	ListCell   *lc;
	List	   *refused = NIL;
	redisContext *c;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = NAMEDATALEN;
	ctl.entrysize = NAMEDATALEN;
	ctl.hcxt = CurrentMemoryContext;
	scan.names = hash_create("dborch new tenants", list_length(tenants) + 1, &ctl,
							 HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	foreach(lc, tenants)
		if (!((Tenant *) lfirst(lc))->adopt_data)
			(void) hash_search(scan.names, ((Tenant *) lfirst(lc))->name, HASH_ENTER, NULL);
	if (hash_get_num_entries(scan.names) == 0)
		return NIL;
	c = engine_redis_connect(inst);
	scan_keys(c, "*", prefix_batch, &scan);
	redisFree(c);
	foreach(lc, tenants)
	{
		ListCell   *ln;

		foreach(ln, scan.taken)
			if (strcmp(lfirst(ln), ((Tenant *) lfirst(lc))->name) == 0)
				refused = lappend(refused, lfirst(lc));
	}
	return refused;
}

/*
 * ACL users of tenants on every instance; returns the tenants left out
 * because keys of their prefix exist already (taken_prefixes()).
 */
List *
tenant_redis_create(Instance *inst, List *tenants)
{
	List	   *conns = NIL;
	List	   *refused = taken_prefixes(inst, tenants);
	List	   *todo = NIL;
	ListCell   *li;
	ListCell   *lc;

	foreach(lc, tenants)
		if (!list_member_ptr(refused, lfirst(lc)))
			todo = lappend(todo, lfirst(lc));
	if (todo == NIL)
		return refused;
	tenants = todo;

	/*
	 * Pipelined, and every instance at once: all ACL SETUSERs go out before
	 * the first reply is read, then ACL SAVE (which takes seconds for ten
	 * thousand users) runs on all instances side by side.
	 */
	foreach(li, acl_instances(inst))
		conns = lappend(conns, engine_redis_connect(lfirst(li)));
	foreach(li, conns)
	{
		foreach(lc, tenants)
		{
			Tenant	   *t = lfirst(lc);

			append_set_user(lfirst(li), t->name, t->password, t->read_only);
		}
		redisAppendCommand(lfirst(li), "ACL SAVE");
		send_pending(lfirst(li));
	}
	foreach(li, conns)
	{
		foreach(lc, tenants)
			expect_reply(lfirst(li), "ACL SETUSER");
		expect_reply(lfirst(li), "ACL SAVE");
		redisFree(lfirst(li));
	}
	return refused;
}

/* SCAN the keys matching pattern; calls fn on each batch. */
static void
scan_keys(redisContext *c, const char *pattern, void (*fn) (redisContext *, redisReply *, void *),
		  void *arg)
{
	char	   *cursor = pstrdup("0");

	do
	{
		redisReply *reply = redisCommand(c, "SCAN %s MATCH %s COUNT %d", cursor, pattern, BATCH);

		if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2)
			ereport(ERROR, (errmsg("redis SCAN failed: %s", reply && reply->str ? reply->str : c->errstr)));
		cursor = pstrdup(reply->element[0]->str);
		if (reply->element[1]->elements > 0)
			fn(c, reply->element[1], arg);
		freeReplyObject(reply);
		CHECK_FOR_INTERRUPTS();
	} while (strcmp(cursor, "0") != 0);
}

static void
unlink_batch(redisContext *c, redisReply *keys, void *arg)
{
	const char **argv = palloc(sizeof(char *) * (keys->elements + 1));
	size_t	   *lens = palloc(sizeof(size_t) * (keys->elements + 1));
	redisReply *reply;

	argv[0] = "UNLINK";
	lens[0] = 6;
	for (size_t i = 0; i < keys->elements; i++)
	{
		argv[i + 1] = keys->element[i]->str;
		lens[i + 1] = keys->element[i]->len;
	}
	reply = redisCommandArgv(c, keys->elements + 1, argv, lens);
	if (reply == NULL || reply->type == REDIS_REPLY_ERROR)
		ereport(ERROR, (errmsg("redis UNLINK failed")));
	freeReplyObject(reply);
}

/* Does the instance hold an ACL user called name, or a key "<name>:..."? */
bool
tenant_redis_name_taken(Instance *inst, const char *name)
{
	redisContext *c = engine_redis_connect(inst);
	const char *getuser[] = {"ACL", "GETUSER", name};
	redisReply *reply = redisCommandArgv(c, lengthof(getuser), getuser, NULL);
	bool		taken = reply != NULL && reply->type != REDIS_REPLY_NIL;
	char	   *cursor = pstrdup("0");

	if (reply)
		freeReplyObject(reply);
	while (!taken)
	{
		reply = redisCommand(c, "SCAN %s MATCH %s COUNT %d", cursor, psprintf("%s:*", name), BATCH);
		if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2)
		{
			if (reply)
				freeReplyObject(reply);
			redisFree(c);
			ereport(ERROR, (errmsg("redis SCAN failed on %s:%d", inst->host, inst->port)));
		}
		taken = reply->element[1]->elements > 0;
		cursor = pstrdup(reply->element[0]->str);
		freeReplyObject(reply);
		if (strcmp(cursor, "0") == 0)
			break;
		CHECK_FOR_INTERRUPTS();
	}
	redisFree(c);
	return taken;
}

/* The user goes everywhere (its connections first), then its keys (on the primary). */
void
tenant_redis_drop(Instance *inst, const char *name)
{
	redisContext *c;
	ListCell   *li;

	foreach(li, acl_instances(inst))
	{
		const char *kill[] = {"CLIENT", "KILL", "USER", name};
		redisReply *reply;

		c = engine_redis_connect(lfirst(li));
		/* a user already gone (a drop that ran before, an instance that missed it) is fine */
		reply = redisCommandArgv(c, lengthof(kill), kill, NULL);
		if (reply == NULL || (reply->type == REDIS_REPLY_ERROR && strstr(reply->str, "No such user") == NULL))
			ereport(ERROR, (errmsg("redis CLIENT KILL USER failed: %s", reply ? reply->str : c->errstr)));
		freeReplyObject(reply);
		freeReplyObject(command_argv(c, list_make3("ACL", "DELUSER", (char *) name)));
		simple(c, "ACL SAVE");
		redisFree(c);
	}
	c = engine_redis_connect(inst);
	scan_keys(c, psprintf("%s:*", name), unlink_batch, NULL);
	redisFree(c);
}

void
tenant_redis_set_read_only(Instance *inst, Tenant *t, bool read_only)
{
	ListCell   *li;

	foreach(li, acl_instances(inst))
	{
		redisContext *c = engine_redis_connect(lfirst(li));

		set_user(c, t->name, t->password, read_only);
		simple(c, "ACL SAVE");
		redisFree(c);
	}
}

typedef struct UsageScan
{
	HTAB	   *index;			/* tenant name -> position in usage */
	TenantUsage *usage;
} UsageScan;

typedef struct UsageIndexEntry
{
	char		name[NAMEDATALEN];	/* hash key */
	int			position;
} UsageIndexEntry;

/* Count a batch of keys by tenant (the part before the first ':') and their memory. */
static void
usage_batch(redisContext *c, redisReply *keys, void *arg)
{
	UsageScan  *scan = arg;

	for (size_t i = 0; i < keys->elements; i++)
		redisAppendCommand(c, "MEMORY USAGE %b", keys->element[i]->str, keys->element[i]->len);
	for (size_t i = 0; i < keys->elements; i++)
	{
		redisReply *reply;
		const char *key = keys->element[i]->str;
		const char *colon = strchr(key, ':');
		char		name[NAMEDATALEN] = {0};
		UsageIndexEntry *entry = NULL;

		if (redisGetReply(c, (void **) &reply) != REDIS_OK)
			ereport(ERROR, (errmsg("redis MEMORY USAGE failed: %s", c->errstr)));
		if (colon != NULL && colon - key < NAMEDATALEN)
		{
			memcpy(name, key, colon - key);
			entry = hash_search(scan->index, name, HASH_FIND, NULL);
		}
		if (entry != NULL)
		{
			scan->usage[entry->position].keys++;
			if (reply->type == REDIS_REPLY_INTEGER)
				scan->usage[entry->position].memory_bytes += reply->integer;
		}
		freeReplyObject(reply);
	}
}

/*
 * Keys and memory (MEMORY USAGE of each key) of each tenant, from one SCAN
 * of the whole keyspace with pipelined MEMORY USAGE: about a second per
 * million keys.
 */
void
tenant_redis_usage(Instance *inst, List *tenants, TenantUsage *usage)
{
	redisContext *c = engine_redis_connect(inst);
	UsageScan	scan;
	HASHCTL		ctl;
	ListCell   *lc;
	int			i = 0;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = NAMEDATALEN;
	ctl.entrysize = sizeof(UsageIndexEntry);
	ctl.hcxt = CurrentMemoryContext;
	scan.index = hash_create("dborch tenant usage", list_length(tenants) + 1, &ctl,
							 HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	scan.usage = usage;
	foreach(lc, tenants)
	{
		UsageIndexEntry *entry = hash_search(scan.index, ((Tenant *) lfirst(lc))->name,
											 HASH_ENTER, NULL);

		entry->position = i;
		usage[i].keys = usage[i].memory_bytes = 0;
		usage[i].connections = usage[i].storage_bytes = -1;
		i++;
	}
	scan_keys(c, "*", usage_batch, &scan);
	redisFree(c);
}

typedef struct CopyScan
{
	redisContext *target;
} CopyScan;

/* DUMP and PTTL a batch on the source, RESTORE ... REPLACE it on the target. */
static void
copy_batch(redisContext *c, redisReply *keys, void *arg)
{
	CopyScan   *copy = arg;
	redisReply **dumps = palloc0(sizeof(redisReply *) * keys->elements);
	redisReply **ttls = palloc0(sizeof(redisReply *) * keys->elements);
	size_t		sent = 0;

	for (size_t i = 0; i < keys->elements; i++)
	{
		redisAppendCommand(c, "DUMP %b", keys->element[i]->str, keys->element[i]->len);
		redisAppendCommand(c, "PTTL %b", keys->element[i]->str, keys->element[i]->len);
	}
	for (size_t i = 0; i < keys->elements; i++)
		if (redisGetReply(c, (void **) &dumps[i]) != REDIS_OK ||
			redisGetReply(c, (void **) &ttls[i]) != REDIS_OK)
			ereport(ERROR, (errmsg("redis DUMP failed: %s", c->errstr)));
	for (size_t i = 0; i < keys->elements; i++)
	{
		long long	ttl = ttls[i]->type == REDIS_REPLY_INTEGER ? ttls[i]->integer : -1;

		/* gone meanwhile (nil dump, or PTTL -2): nothing to copy */
		if (dumps[i]->type != REDIS_REPLY_STRING || ttl == -2)
			continue;
		redisAppendCommand(copy->target, "RESTORE %b %lld %b REPLACE",
						   keys->element[i]->str, keys->element[i]->len, ttl > 0 ? ttl : 0LL,
						   dumps[i]->str, dumps[i]->len);
		sent++;
	}
	for (size_t i = 0; i < sent; i++)
	{
		redisReply *reply;

		if (redisGetReply(copy->target, (void **) &reply) != REDIS_OK ||
			reply->type == REDIS_REPLY_ERROR)
			ereport(ERROR, (errmsg("redis RESTORE failed: %s",
								   reply ? reply->str : copy->target->errstr)));
		freeReplyObject(reply);
	}
	for (size_t i = 0; i < keys->elements; i++)
	{
		freeReplyObject(dumps[i]);
		freeReplyObject(ttls[i]);
	}
}

void
tenant_redis_copy(Instance *source, Instance *target, const char *name)
{
	redisContext *s = engine_redis_connect(source);
	CopyScan	copy = {engine_redis_connect(target)};

	/* a crashed earlier attempt may have left part of the keys */
	scan_keys(copy.target, psprintf("%s:*", name), unlink_batch, NULL);
	scan_keys(s, psprintf("%s:*", name), copy_batch, &copy);
	redisFree(copy.target);
	redisFree(s);
}

/* A key as Redis has it: binary-safe. */
typedef struct RedisKey
{
	char	   *str;
	size_t		len;
} RedisKey;

static void
collect_batch(redisContext *c, redisReply *keys, void *arg)
{
	List	  **list = arg;

	for (size_t i = 0; i < keys->elements; i++)
	{
		RedisKey   *k = palloc(sizeof(RedisKey));

		k->len = keys->element[i]->len;
		k->str = palloc(k->len + 1);
		memcpy(k->str, keys->element[i]->str, k->len + 1);
		*list = lappend(*list, k);
	}
}

static int
compare_bytes(const char *a, size_t alen, const char *b, size_t blen)
{
	int			c = memcmp(a, b, Min(alen, blen));

	return c != 0 ? c : (alen > blen) - (alen < blen);
}

static int
compare_keys(const ListCell *a, const ListCell *b)
{
	RedisKey   *x = lfirst(a);
	RedisKey   *y = lfirst(b);

	return compare_bytes(x->str, x->len, y->str, y->len);
}

/* Elements of a reply by their bytes (a hash's pairs by field: fields are unique). */
static int
compare_elements(const void *a, const void *b)
{
	const redisReply *x = *(redisReply *const *) a;
	const redisReply *y = *(redisReply *const *) b;

	return compare_bytes(x->str, x->len, y->str, y->len);
}

/* Each element, its length first, into the digest. */
static void
digest_elements(EVP_MD_CTX *sha, redisReply **elements, size_t n)
{
	for (size_t i = 0; i < n; i++)
	{
		uint64		len = elements[i]->len;

		EVP_DigestUpdate(sha, &len, sizeof(len));
		if (elements[i]->str)
			EVP_DigestUpdate(sha, elements[i]->str, elements[i]->len);
	}
}

/*
 * The value of a key as it reads, not as it is stored: sets and hashes in
 * sorted order, because their encoding (and so DUMP) follows each
 * process's hash order.  Streams and module types go by DUMP.
 */
static const char *
value_command(const char *type)
{
	if (strcmp(type, "string") == 0)
		return "GET %b";
	if (strcmp(type, "list") == 0)
		return "LRANGE %b 0 -1";
	if (strcmp(type, "set") == 0)
		return "SMEMBERS %b";
	if (strcmp(type, "zset") == 0)
		return "ZRANGE %b 0 -1 WITHSCORES";
	if (strcmp(type, "hash") == 0)
		return "HGETALL %b";
	return "DUMP %b";
}

/* Pipelined: TYPE of each key of a batch, then its value; into the digest in order. */
static void
fingerprint_batch(redisContext *c, EVP_MD_CTX *sha, RedisKey **keys, int n)
{
	redisReply **types = palloc(sizeof(redisReply *) * n);

	for (int i = 0; i < n; i++)
		redisAppendCommand(c, "TYPE %b", keys[i]->str, keys[i]->len);
	for (int i = 0; i < n; i++)
		if (redisGetReply(c, (void **) &types[i]) != REDIS_OK || types[i]->type != REDIS_REPLY_STATUS)
			ereport(ERROR, (errmsg("redis TYPE failed: %s", c->errstr)));
	for (int i = 0; i < n; i++)
		redisAppendCommand(c, value_command(types[i]->str), keys[i]->str, keys[i]->len);
	for (int i = 0; i < n; i++)
	{
		redisReply *value;
		uint64		len = keys[i]->len;

		if (redisGetReply(c, (void **) &value) != REDIS_OK || value->type == REDIS_REPLY_ERROR)
			ereport(ERROR, (errmsg("redis read of a key failed: %s", value ? value->str : c->errstr)));
		EVP_DigestUpdate(sha, &len, sizeof(len));
		EVP_DigestUpdate(sha, keys[i]->str, keys[i]->len);
		EVP_DigestUpdate(sha, types[i]->str, strlen(types[i]->str) + 1);
		if (value->type == REDIS_REPLY_ARRAY)
		{
			if (strcmp(types[i]->str, "set") == 0)
				qsort(value->element, value->elements, sizeof(redisReply *), compare_elements);
			else if (strcmp(types[i]->str, "hash") == 0)
				qsort(value->element, value->elements / 2, 2 * sizeof(redisReply *), compare_elements);
			digest_elements(sha, value->element, value->elements);
		}
		else
			digest_elements(sha, &value, 1);
		freeReplyObject(value);
		freeReplyObject(types[i]);
	}
}

/*
 * Key count and SHA-256 over the sorted keys, each with its type and its
 * value as read (so equal data gives equal fingerprints on two servers).
 */
char *
tenant_redis_fingerprint(Instance *inst, const char *name)
{
	redisContext *c = engine_redis_connect(inst);
	List	   *keys = NIL;
	RedisKey  **batch = palloc(sizeof(RedisKey *) * BATCH);
	int			n = 0;
	EVP_MD_CTX *sha = EVP_MD_CTX_new();
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned int len;
	StringInfoData out;
	ListCell   *lc;

	scan_keys(c, psprintf("%s:*", name), collect_batch, &keys);
	list_sort(keys, compare_keys);
	EVP_DigestInit_ex(sha, EVP_sha256(), NULL);
	foreach(lc, keys)
	{
		batch[n++] = lfirst(lc);
		if (n == BATCH || lnext(keys, lc) == NULL)
		{
			fingerprint_batch(c, sha, batch, n);
			n = 0;
			CHECK_FOR_INTERRUPTS();
		}
	}
	EVP_DigestFinal_ex(sha, digest, &len);
	EVP_MD_CTX_free(sha);
	redisFree(c);
	initStringInfo(&out);
	appendStringInfo(&out, "%d/", list_length(keys));
	for (unsigned int i = 0; i < len; i++)
		appendStringInfo(&out, "%02x", digest[i]);
	return out.data;
}
