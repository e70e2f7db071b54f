/*
 * routing.c
 *		The routes of connection_string: which instances a deployment has,
 *		cached in each backend, and which one a connection goes to.
 *
 * Applications and connection pools call connection_string for every
 * connection, thousands of times a second.  What it reads of the catalog
 * (the live deployment of a name, its password, its primary and running
 * replicas) is cached per backend, keyed by name, and the whole cache is
 * dropped when the catalog generation in shared memory moves.  That
 * counter is bumped by the statement trigger dborch._catalog_changed() on
 * instances, deployments' status and secrets, after the changing
 * transaction's commit is visible (dborch.c); the generation is read
 * before the catalog is, so a cache entry is never newer than its stamp.
 *
 * The health reads are routed by is what the prober published at its
 * latest flush (publish_routes() in prober.c), under routes_lock.
 */
#include "postgres.h"

#include <float.h>

#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "dborch.h"
#include "routing.h"

static HTAB *cache = NULL;
static MemoryContext cache_context = NULL;
static uint64 cache_generation = 0;

/* An empty cache, stamped with the generation read before any lookup. */
static void
cache_reset(uint64 generation)
{
	HASHCTL		ctl;

	if (cache_context == NULL)
		cache_context = AllocSetContextCreate(CacheMemoryContext, "dborch routes",
											  ALLOCSET_SMALL_SIZES);
	else
		MemoryContextReset(cache_context);
	ctl.keysize = NAMEDATALEN;
	ctl.entrysize = sizeof(Routes);
	ctl.hcxt = cache_context;
	cache = hash_create("dborch routes", 16, &ctl, HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	cache_generation = generation;
}

/* The catalog's answer, copied into memory of context. */
static bool
routes_load(const char *name, Routes *routes, MemoryContext context)
{
	CatResult  *r;
	Deployment *d = cat_live_deployment_routes(name, &r);
	MemoryContext old;
	const char *password;

	if (d == NULL)
		return false;
	old = MemoryContextSwitchTo(context);
	routes->deployment.id = d->id;
	routes->deployment.name = pstrdup(d->name);
	routes->deployment.engine = pstrdup(d->engine);
	routes->deployment.owner = pstrdup(d->owner);
	routes->deployment.status = pstrdup(d->status);
	password = cat_value(r, 0, "password");
	routes->password = password ? pstrdup(password) : NULL;
	routes->instances = palloc0(sizeof(RouteInstance) * r->nrows);
	routes->ninstances = 0;
	for (int row = 0; row < r->nrows; row++)
	{
		RouteInstance *inst = &routes->instances[routes->ninstances];
		const char *id = cat_value(r, row, "instance_id");

		if (id == NULL)
			continue;			/* a deployment without instances yet */
		inst->id = strtoi64(id, NULL, 10);
		inst->primary = strcmp(cat_value(r, row, "role"), "primary") == 0;
		inst->host = pstrdup(cat_value(r, row, "host"));
		inst->port = atoi(cat_value(r, row, "port"));
		routes->ninstances++;
	}
	MemoryContextSwitchTo(old);
	return true;
}

Routes *
routing_lookup(const char *name)
{
	uint64		generation = pg_atomic_read_u64(&dborch_shared->catalog_generation);
	Routes		loaded;
	Routes	   *routes;

	if (strlen(name) >= NAMEDATALEN)
		return NULL;			/* no such name: names are shorter */

	/*
	 * A transaction that changed the catalog itself reads past the cache,
	 * and caches nothing: what it sees may never commit.
	 */
	if (dborch_catalog_changed_in_xact())
	{
		routes = palloc0(sizeof(Routes));
		return routes_load(name, routes, CurrentMemoryContext) ? routes : NULL;
	}
	if (cache == NULL || generation != cache_generation)
		cache_reset(generation);
	routes = hash_search(cache, name, HASH_FIND, NULL);
	if (routes != NULL)
		return routes;
	/* loaded in full before it enters the cache, in case of an error */
	memset(&loaded, 0, sizeof(loaded));
	if (!routes_load(name, &loaded, cache_context))
		return NULL;			/* not cached: deploy() moves no generation */
	strlcpy(loaded.name, name, NAMEDATALEN);
	routes = hash_search(cache, name, HASH_ENTER, NULL);
	*routes = loaded;
	return routes;
}

/*
 * Writes go to the primary (the lowest id if, for a moment, there are
 * two).  Reads go to a running replica whose latest probe succeeded, by
 * strategy, and to the primary when there is none: round_robin takes the
 * next of a counter in shared memory (one per deployment id modulo 64),
 * not a table update; least_connections the fewest connections at the
 * latest probe; response_time the lowest moving average of probe latency.
 */
RouteInstance *
routing_pick(Routes *routes, bool read, const char *strategy)
{
	RouteInstance *primary = NULL;
	RouteInstance **healthy = palloc(sizeof(RouteInstance *) * (routes->ninstances + 1));
	double	   *figure = palloc(sizeof(double) * (routes->ninstances + 1));
	bool		by_connections = strcmp(strategy, "least_connections") == 0;
	int			n = 0;
	int			pick = 0;

	for (int i = 0; i < routes->ninstances; i++)
		if (routes->instances[i].primary && (primary == NULL || routes->instances[i].id < primary->id))
			primary = &routes->instances[i];
	if (!read)
		return primary;

	LWLockAcquire(dborch_shared->routes_lock, LW_SHARED);
	for (int i = 0; i < routes->ninstances; i++)
	{
		RouteInstance *inst = &routes->instances[i];

		if (inst->primary)
			continue;
		for (int j = 0; j < dborch_shared->nroutes; j++)
		{
			RouteHealth *h = &dborch_shared->routes[j];
			double		value;

			if (h->instance_id != inst->id)
				continue;
			if (h->up)
			{
				value = by_connections ? (double) h->connections : h->latency_ms;
				healthy[n] = inst;
				figure[n++] = value < 0 ? DBL_MAX : value;	/* unknown: last */
			}
			break;
		}
	}
	LWLockRelease(dborch_shared->routes_lock);

	if (n == 0)
		return primary;
	if (strcmp(strategy, "round_robin") == 0)
		pick = (int) (pg_atomic_fetch_add_u64(&dborch_shared->round_robin[routes->deployment.id % DBORCH_ROUND_ROBIN_SLOTS], 1)
					  % n);
	else
		for (int i = 1; i < n; i++)
			if (figure[i] < figure[pick])
				pick = i;
	return healthy[pick];
}
