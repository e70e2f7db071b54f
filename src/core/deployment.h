/*
 * deployment.h
 *		Requests on deployments shared by the SQL API and the launcher.
 */
#ifndef DBORCH_DEPLOYMENT_H
#define DBORCH_DEPLOYMENT_H

#include "catalog.h"

/*
 * Queue the destroy of a deployment: cancel its other jobs, remove its
 * backup schedules, mark it destroying, queue a destroy job (which drops
 * its backups too with drop_backups) and an event.  Of a deployment already
 * destroyed, with drop_backups, only its kept backups are dropped (by the
 * same job; the status stays destroyed).  Returns the destroy job's id (an
 * existing one if already destroying), or 0 if there is nothing to do.
 */
extern int64 deployment_request_destroy(Deployment *d, const char *actor, const char *reason,
										bool drop_backups);

#endif							/* DBORCH_DEPLOYMENT_H */
