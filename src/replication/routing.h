/*
 * routing.h
 *		Where a connection string points: a deployment's instances as
 *		connection_string needs them, cached per backend, and the choice of
 *		one for a write or a read.
 */
#ifndef DBORCH_ROUTING_H
#define DBORCH_ROUTING_H

#include "catalog.h"

typedef struct RouteInstance
{
	int64		id;
	bool		primary;
	char	   *host;
	int			port;
} RouteInstance;

typedef struct Routes
{
	char		name[NAMEDATALEN];	/* the cache's key */
	Deployment	deployment;		/* id, name, engine, owner, status only */
	char	   *password;		/* NULL when it has none */
	int			ninstances;
	RouteInstance *instances;	/* the primary (whatever its status) and running replicas */
} Routes;

/*
 * The live deployment of this name with its routes, or NULL.  The result
 * belongs to the cache: valid until the next call.
 */
extern Routes *routing_lookup(const char *name);

/*
 * The instance a connection goes to (see routing.c for the strategies);
 * NULL when the deployment has no primary.
 */
extern RouteInstance *routing_pick(Routes *routes, bool read, const char *strategy);

#endif							/* DBORCH_ROUTING_H */
