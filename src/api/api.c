/*
 * api.c
 *		Shared by the SQL-callable functions: the caller's identity, the
 *		switch to the catalog owner, ownership checks and state waits.
 *
 * The SQL functions run as their caller (SECURITY INVOKER) with a pinned
 * search_path.  Users hold only SELECT (under row-level security) on the
 * catalog, so for catalog statements the functions switch to the catalog
 * owner, after checking ownership themselves.
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "storage/condition_variable.h"
#include "utils/acl.h"
#include "utils/builtins.h"

#include "api.h"
#include "dborch.h"

void
api_enter(ApiCaller *caller)
{
	/*
	 * Once the installed version matched the library, it stays so for this
	 * backend's life (its library does not change); checked once, as
	 * connection_string is called thousands of times a second.
	 */
	static bool ready = false;

	if (!ready)
		ready = dborch_extension_ready(true);
	caller->roleid = GetUserId();
	caller->name = GetUserNameFromId(caller->roleid, false);
	caller->is_admin = superuser_arg(caller->roleid) ||
		has_privs_of_role(caller->roleid, get_role_oid("dborch_admin", false));
	GetUserIdAndSecContext(&caller->save_userid, &caller->save_sec_context);
	SetUserIdAndSecContext(cat_owner_oid(),
						   caller->save_sec_context | SECURITY_LOCAL_USERID_CHANGE);
}

void
api_leave(ApiCaller *caller)
{
	SetUserIdAndSecContext(caller->save_userid, caller->save_sec_context);
}

char *
api_text_arg(FunctionCallInfo fcinfo, int argno, const char *what)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be null", what)));
	return text_to_cstring(PG_GETARG_TEXT_PP(argno));
}

void
api_check_owner(ApiCaller *caller, const char *owner, const char *what)
{
	if (!caller->is_admin && strcmp(owner, caller->name) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for %s", what),
				 errdetail("Only its owner and members of dborch_admin may use it.")));
}

Deployment *
api_deployment(ApiCaller *caller, const char *name, bool include_destroyed)
{
	dborch_validate_name("deployment", name);
	return api_check_deployment(caller, name,
								include_destroyed ? cat_latest_deployment(name) : cat_live_deployment(name));
}

Deployment *
api_check_deployment(ApiCaller *caller, const char *name, Deployment *d)
{
	if (d == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("deployment \"%s\" does not exist", name)));
	api_check_owner(caller, d->owner, psprintf("deployment \"%s\"", name));
	return d;
}

void
api_check_can_wait(int64 deployment_id, const char *what)
{
	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot wait for %s in a REPEATABLE READ or SERIALIZABLE transaction", what),
				 errdetail("Its snapshot would never show the change."),
				 errhint("Wait in a READ COMMITTED transaction.")));
	if (deployment_id != 0 && dborch_queued_in_this_xact(deployment_id))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot wait for %s in the transaction that queued its work", what),
				 errdetail("The work starts only when this transaction commits."),
				 errhint("Commit first, then wait.")));
}

void
api_wait_begin(void)
{
	ConditionVariablePrepareToSleep(&dborch_shared->state_cv);
}

bool
api_wait_sleep(int64 deadline_ms)
{
	int64		remaining = deadline_ms - dborch_now_ms();

	if (remaining <= 0)
		return false;
	/* a missed broadcast (a worker that crashed) costs at most a second */
	(void) ConditionVariableTimedSleep(&dborch_shared->state_cv, Min(remaining, 1000),
									   DBORCH_WAIT_EVENT);
	return true;
}

void
api_wait_end(void)
{
	ConditionVariableCancelSleep();
}

/*
 * 53400 unless the owner's quotas leave room for memory_bytes more memory
 * and, with new_deployment, one more deployment.
 */
void
api_check_quota(const char *owner, int64 memory_bytes, bool new_deployment)
{
	int64		count,
				memory,
				max_count,
				max_memory;

	cat_lock_owner_quota(owner, true, &count, &memory, &max_count, &max_memory);
	if (new_deployment && count + 1 > max_count)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg_plural("quota exceeded: role \"%s\" may have at most " INT64_FORMAT " deployment",
							   "quota exceeded: role \"%s\" may have at most " INT64_FORMAT " deployments",
							   (unsigned long) max_count, owner, max_count),
				 errhint("Destroy a deployment, or ask a dborch_admin member to raise max_deployments in dborch.quotas.")));
	if (memory + memory_bytes > max_memory)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("quota exceeded: role \"%s\" may use at most " INT64_FORMAT " MB of memory",
						owner, max_memory / (1024 * 1024)),
				 errdetail("Its deployments use " INT64_FORMAT " MB; this asks for " INT64_FORMAT " MB more.",
						   memory / (1024 * 1024), memory_bytes / (1024 * 1024)),
				 errhint("Ask for less memory, or ask a dborch_admin member to raise max_memory_bytes in dborch.quotas.")));
}
