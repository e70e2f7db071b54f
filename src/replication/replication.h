/*
 * replication.h
 *		Replicas of both engines (replication.c).
 */
#ifndef DBORCH_REPLICATION_H
#define DBORCH_REPLICATION_H

#include "catalog.h"

extern void replica_ensure_slot(Instance *primary, Instance *replica);
extern void replica_drop_slot(Instance *primary, Instance *replica);
extern void replica_provision(Instance *primary, Instance *replica);
extern void replica_wait_streaming(Instance *primary, Instance *replica);
extern int64 replica_position(Instance *replica);
extern void replica_promote(Instance *replica);
extern void replica_follow(Instance *primary, Instance *replica);
extern void replica_reconfigure_primary(int64 deployment_id);
extern void replica_rejoin(Instance *primary, Instance *former);

#endif							/* DBORCH_REPLICATION_H */
