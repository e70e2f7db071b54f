/*
 * dborch_guard.c
 *		A small library every managed PostgreSQL instance preloads
 *		(shared_preload_libraries = 'dborch_guard'): it lets a deployment's
 *		owner role hold CREATEROLE without a way to the operating system.
 *
 * In PostgreSQL 15 a CREATEROLE role may grant membership in any role that
 * is not a superuser, the predefined roles included: pg_execute_server_program
 * (COPY ... TO/FROM PROGRAM), pg_read_server_files and pg_write_server_files
 * (COPY to and from the server's files, pg_read_file() and kin).  Holding
 * one of those is holding the server's operating-system account.  This
 * ProcessUtility hook refuses, to everyone but a superuser, every statement
 * that would make a role a member of a role with those privileges:
 *		GRANT role TO ...
 *		CREATE ROLE ... IN ROLE role
 *		ALTER GROUP role ADD USER ...
 * Everything else passes through unchanged.  dborch itself connects as the
 * bootstrap superuser and is not affected.
 */
#include "postgres.h"

#include "catalog/pg_authid_d.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "tcop/utility.h"
#include "utils/acl.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

static ProcessUtility_hook_type next_hook = NULL;

/* The predefined roles that reach the server's operating-system account. */
static const Oid os_roles[] = {
	ROLE_PG_EXECUTE_SERVER_PROGRAM,
	ROLE_PG_READ_SERVER_FILES,
	ROLE_PG_WRITE_SERVER_FILES,
};

/* Refuse if membership in role would bring one of os_roles' privileges. */
static void
check_grantable(const char *role)
{
	Oid			roleid = get_role_oid(role, true);

	if (!OidIsValid(roleid))
		return;					/* PostgreSQL reports the unknown role itself */
	for (int i = 0; i < lengthof(os_roles); i++)
		if (has_privs_of_role(roleid, os_roles[i]))
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied to grant membership in role \"%s\"", role),
					 errdetail("Membership in \"%s\" gives access to the server's operating-system account.",
							   GetUserNameFromId(os_roles[i], false)),
					 errhint("Only dborch's own superuser may grant it.")));
}

/* check_grantable() for each role of a list of RoleSpec. */
static void
check_role_list(List *roles)
{
	ListCell   *lc;

	foreach(lc, roles)
	{
		RoleSpec   *spec = lfirst(lc);

		if (spec->roletype == ROLESPEC_CSTRING)
			check_grantable(spec->rolename);
	}
}

static void
guard_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
			  ProcessUtilityContext context, ParamListInfo params,
			  QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *stmt = pstmt->utilityStmt;

	if (!superuser())
	{
		if (IsA(stmt, GrantRoleStmt) && ((GrantRoleStmt *) stmt)->is_grant)
		{
			ListCell   *lc;

			foreach(lc, ((GrantRoleStmt *) stmt)->granted_roles)
				check_grantable(((AccessPriv *) lfirst(lc))->priv_name);
		}
		else if (IsA(stmt, CreateRoleStmt))
		{
			ListCell   *lc;

			foreach(lc, ((CreateRoleStmt *) stmt)->options)
			{
				DefElem    *opt = lfirst(lc);

				if (strcmp(opt->defname, "addroleto") == 0)
					check_role_list((List *) opt->arg);
			}
		}
		else if (IsA(stmt, AlterRoleStmt) && ((AlterRoleStmt *) stmt)->action > 0)
		{
			AlterRoleStmt *alter = (AlterRoleStmt *) stmt;
			ListCell   *lc;

			/* ALTER GROUP role ADD USER ...: members join alter->role */
			foreach(lc, alter->options)
				if (strcmp(((DefElem *) lfirst(lc))->defname, "rolemembers") == 0 &&
					alter->role->roletype == ROLESPEC_CSTRING)
					check_grantable(alter->role->rolename);
		}
	}

	if (next_hook)
		next_hook(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
								queryEnv, dest, qc);
}

void
_PG_init(void)
{
	next_hook = ProcessUtility_hook;
	ProcessUtility_hook = guard_utility;
}
