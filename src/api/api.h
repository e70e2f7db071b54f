/*
 * api.h
 *		What every SQL-callable function shares: who is calling, the switch
 *		to the catalog owner for catalog statements, ownership checks, and
 *		waiting for a state change.
 */
#ifndef DBORCH_API_H
#define DBORCH_API_H

#include "fmgr.h"

#include "catalog.h"

typedef struct ApiCaller
{
	Oid			roleid;			/* the role calling (current_user) */
	char	   *name;
	bool		is_admin;		/* superuser or member of dborch_admin */
	Oid			save_userid;
	int			save_sec_context;
} ApiCaller;

/*
 * Check the library matches the installed SQL, record the caller, and
 * switch to the catalog owner until api_leave().  An error restores the
 * caller's identity with the transaction's abort.
 */
extern void api_enter(ApiCaller *caller);
extern void api_leave(ApiCaller *caller);

/* A text argument that must not be null (22023 otherwise). */
extern char *api_text_arg(FunctionCallInfo fcinfo, int argno, const char *what);

/*
 * The deployment called name that the caller may act on: the live one, or
 * with include_destroyed the last destroyed one when none is live.
 * 42704 when there is none, 42501 when it belongs to another role.
 */
extern Deployment *api_deployment(ApiCaller *caller, const char *name, bool include_destroyed);
/* The same checks on a deployment looked up already (d may be NULL). */
extern Deployment *api_check_deployment(ApiCaller *caller, const char *name, Deployment *d);

/* The URI of a tenant of a deployment (api_tenant.c). */
extern char *api_tenant_connection_string(Deployment *d, Instance *inst, const char *tenant);

/* 53400 unless the owner's quotas leave room (for one more deployment too). */
extern void api_check_quota(const char *owner, int64 memory_bytes, bool new_deployment);

/* 42501 unless the caller is owner or admin. */
extern void api_check_owner(ApiCaller *caller, const char *owner, const char *what);

/* 55000 when waiting could never see the change (snapshot or same xact). */
extern void api_check_can_wait(int64 deployment_id, const char *what);

/*
 * Sleep until a dborch state change is broadcast or the deadline (ms on
 * dborch_now_ms's clock) passes; false once the deadline has passed.
 * Between api_wait_begin() and api_wait_end().
 */
extern void api_wait_begin(void);
extern bool api_wait_sleep(int64 deadline_ms);
extern void api_wait_end(void);

#endif							/* DBORCH_API_H */
