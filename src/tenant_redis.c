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

/* Everything but the tenant's own keys and channels, and keyspace-wide or admin commands. */
static const char *const tenant_rules[] = {
	"reset", "on", "+@all", "-@admin", "-@dangerous", "-keys", "-scan", "-randomkey",
	"-flushall", "-flushdb", "-config", "-debug", "-dbsize", "-select", "-swapdb", "-move",
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

/* ACL SETUSER of a tenant from scratch ("reset"), read-only or not. */
static void
set_user(redisContext *c, const char *name, const char *password, bool read_only)
{
	List	   *args = list_make2("ACL", "SETUSER");
	const char *const *rule;

	args = lappend(args, (char *) name);
	for (rule = tenant_rules; *rule; rule++)
		args = lappend(args, (char *) *rule);
	args = lappend(args, psprintf(">%s", password));
	args = lappend(args, psprintf("~%s:*", name));
	args = lappend(args, psprintf("&%s:*", name));
	for (rule = read_only ? read_only_rules : NULL; rule && *rule; rule++)
		args = lappend(args, (char *) *rule);
	freeReplyObject(command_argv(c, args));
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

void
tenant_redis_create(Instance *inst, const char *password, List *tenants)
{
	ListCell   *li;

	foreach(li, acl_instances(inst))
	{
		redisContext *c = engine_redis_connect(lfirst(li), password);
		ListCell   *lc;

		foreach(lc, tenants)
		{
			Tenant	   *t = lfirst(lc);

			set_user(c, t->name, t->password, t->read_only);
		}
		simple(c, "ACL SAVE");
		redisFree(c);
	}
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

/* The user goes everywhere (its connections first), then its keys (on the primary). */
void
tenant_redis_drop(Instance *inst, const char *password, const char *name)
{
	redisContext *c;
	ListCell   *li;

	foreach(li, acl_instances(inst))
	{
		c = engine_redis_connect(lfirst(li), password);
		freeReplyObject(command_argv(c, list_make4("CLIENT", "KILL", "USER", (char *) name)));
		freeReplyObject(command_argv(c, list_make3("ACL", "DELUSER", (char *) name)));
		simple(c, "ACL SAVE");
		redisFree(c);
	}
	c = engine_redis_connect(inst, password);
	scan_keys(c, psprintf("%s:*", name), unlink_batch, NULL);
	redisFree(c);
}

void
tenant_redis_set_read_only(Instance *inst, const char *password, Tenant *t, bool read_only)
{
	ListCell   *li;

	foreach(li, acl_instances(inst))
	{
		redisContext *c = engine_redis_connect(lfirst(li), password);

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
tenant_redis_usage(Instance *inst, const char *password, List *tenants, TenantUsage *usage)
{
	redisContext *c = engine_redis_connect(inst, password);
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
tenant_redis_copy(Instance *source, const char *source_password,
				  Instance *target, const char *target_password, const char *name)
{
	redisContext *s = engine_redis_connect(source, source_password);
	CopyScan	copy = {engine_redis_connect(target, target_password)};

	/* a crashed earlier attempt may have left part of the keys */
	scan_keys(copy.target, psprintf("%s:*", name), unlink_batch, NULL);
	scan_keys(s, psprintf("%s:*", name), copy_batch, &copy);
	redisFree(copy.target);
	redisFree(s);
}

typedef struct FingerprintScan
{
	List	   *keys;
} FingerprintScan;

static void
collect_batch(redisContext *c, redisReply *keys, void *arg)
{
	FingerprintScan *f = arg;

	for (size_t i = 0; i < keys->elements; i++)
		f->keys = lappend(f->keys, pnstrdup(keys->element[i]->str, keys->element[i]->len));
}

static int
compare_strings(const ListCell *a, const ListCell *b)
{
	return strcmp(lfirst(a), lfirst(b));
}

/*
 * Key count and SHA-256 over the sorted keys with their DUMP payloads:
 * equal on both sides when the values are equal (same Redis version).
 */
char *
tenant_redis_fingerprint(Instance *inst, const char *password, const char *name)
{
	redisContext *c = engine_redis_connect(inst, password);
	FingerprintScan f = {NIL};
	EVP_MD_CTX *sha = EVP_MD_CTX_new();
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned int len;
	StringInfoData out;
	ListCell   *lc;

	scan_keys(c, psprintf("%s:*", name), collect_batch, &f);
	list_sort(f.keys, compare_strings);
	EVP_DigestInit_ex(sha, EVP_sha256(), NULL);
	foreach(lc, f.keys)
	{
		const char *key = lfirst(lc);
		redisReply *reply = redisCommand(c, "DUMP %s", key);

		EVP_DigestUpdate(sha, key, strlen(key) + 1);
		if (reply != NULL && reply->type == REDIS_REPLY_STRING)
			EVP_DigestUpdate(sha, reply->str, reply->len);
		if (reply)
			freeReplyObject(reply);
	}
	EVP_DigestFinal_ex(sha, digest, &len);
	EVP_MD_CTX_free(sha);
	redisFree(c);
	initStringInfo(&out);
	appendStringInfo(&out, "%d/", list_length(f.keys));
	for (unsigned int i = 0; i < len; i++)
		appendStringInfo(&out, "%02x", digest[i]);
	return out.data;
}
