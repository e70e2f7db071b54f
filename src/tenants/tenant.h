/*
 * tenant.h
 *		Tenants in PostgreSQL (tenant_postgres.c) and Redis (tenant_redis.c).
 *
 * PostgreSQL: schema <name> owned by the NOLOGIN role "<name>$owner"; the
 * login role <name> is its member and becomes it at login (ALTER ROLE ...
 * SET role), with search_path <name> and CONNECTION LIMIT from the quota.
 * Owning nothing itself, the login role can be made read-only for real:
 * the membership goes, SELECT, DELETE and TRUNCATE are granted (so data can
 * be deleted back under the quota), its sessions are ended.  '$' cannot be
 * in a tenant name, so "<name>$owner" never collides with one.
 *
 * Redis: ACL user <name> on keys and channels "<name>:*", without admin,
 * dangerous and keyspace-wide commands; read-only means -@write except DEL
 * and UNLINK.  Users are kept in the instance's aclfile.
 */
#ifndef DBORCH_TENANT_H
#define DBORCH_TENANT_H

#include "catalog.h"

typedef struct Tenant
{
	int64		id;
	int64		deployment_id;
	char	   *deployment;
	char	   *name;
	char	   *owner;
	char	   *engine;
	char	   *status;
	bool		read_only;
	bool		adopt_data;		/* carried by a restore: takes over what the data holds */
	char	   *quota;			/* jsonb as text */
	char	   *password;
	/* quota, -1 when not limited */
	int64		max_connections;
	int64		storage_bytes;
	int64		max_keys;
	int64		memory_bytes;
} Tenant;

/* Usage of one tenant, -1 when not measured. */
typedef struct TenantUsage
{
	int64		connections;
	int64		storage_bytes;
	int64		keys;
	int64		memory_bytes;
} TenantUsage;

/* tenant_postgres.c */
extern List *tenant_pg_create(Instance *inst, List *tenants);
extern bool tenant_pg_name_taken(Instance *inst, const char *name);
extern void tenant_pg_drop(Instance *inst, const char *name);
extern List *tenant_pg_lock_out(Instance *inst);
extern void tenant_pg_set_read_only(Instance *inst, const char *name, bool read_only);
extern void tenant_pg_usage(Instance *inst, List *tenants, TenantUsage *usage);
extern void tenant_pg_copy(Instance *source, Instance *target, const char *name, const char *dir);
extern void tenant_pg_fingerprints(Instance *a, Instance *b, const char *name, char **on_a, char **on_b);

/* tenant_redis.c */
extern List *tenant_redis_create(Instance *inst, List *tenants);
extern void tenant_redis_drop(Instance *inst, const char *name);
extern void tenant_redis_set_read_only(Instance *inst, Tenant *t, bool read_only);
extern void tenant_redis_usage(Instance *inst, List *tenants, TenantUsage *usage);
extern void tenant_redis_copy(Instance *source, Instance *target, const char *name);
extern char *tenant_redis_fingerprint(Instance *inst, const char *name);
extern char *tenant_redis_acl_rules(Tenant *t);
extern bool tenant_redis_name_taken(Instance *inst, const char *name);

#endif							/* DBORCH_TENANT_H */
