/*
 * catalog.h
 *		The only interface to dborch's tables.  Every statement is
 *		parameterized; no SQL is ever built from user text.
 */
#ifndef DBORCH_CATALOG_H
#define DBORCH_CATALOG_H

#include "postgres.h"

#include "nodes/pg_list.h"

/* Result of a catalog query, copied out of SPI into the caller's context. */
typedef struct CatResult
{
	int			nrows;
	int			ncols;
	char	  **colnames;
	char	  **values;			/* nrows * ncols, NULL for SQL NULL */
} CatResult;

typedef struct Deployment
{
	int64		id;
	char	   *name;
	char	   *engine;
	char	   *owner;
	char	   *environment;
	char	   *spec;			/* jsonb as text */
	char	   *version;
	int64		memory_bytes;
	char	   *status;
	char	   *last_error;
	char	   *maintenance_window;	/* NULL when none */
} Deployment;

typedef struct Instance
{
	int64		id;
	int64		deployment_id;
	char	   *deployment_name;
	char	   *engine;
	char	   *version;
	char	   *role;
	char	   *host;
	int			port;
	char	   *directory;		/* the instance's own directory */
	int			pid;
	char	   *status;
	int64		memory_bytes;
	int			max_connections;	/* of the deployment's spec; 0: the engine's default */
	bool		synchronous;	/* a primary whose commits wait for a replica: the spec
								 * asks for it and a replica starts or runs */
	char	   *backup_compression; /* of the deployment's spec ("lz4:1"); NULL: the default */
	char	   *allow;			/* the spec's networks, space-separated CIDRs; NULL: none given */
} Instance;

typedef struct Job
{
	int64		id;
	char	   *kind;
	int64		deployment_id;	/* 0 when none */
	char	   *owner;
	char	   *args;			/* jsonb as text */
	char	   *state;
	char	   *stage;			/* NULL before the first stage */
	int			attempts;
	int			max_attempts;
	bool		cancel_requested;
	char	   *error;
} Job;

typedef struct Backup
{
	int64		id;
	int64		deployment_id;
	char	   *deployment;
	char	   *engine;
	char	   *owner;
	char	   *kind;
	char	   *requested_kind;
	char	   *status;
	char	   *label;			/* pgBackRest label, or the Redis file */
	char	   *file;
	char	   *checksum;
	int64		size_bytes;
	int64		keys;			/* -1 when unknown */
	int64		keys_with_ttl;
	bool		verify_requested;
	char	   *finished_at;
} Backup;

typedef struct ClaimedJob
{
	int64		id;
	int			attempt;
} ClaimedJob;

/* generic access */
extern CatResult *cat_query(const char *sql, int nargs, ...);
extern const char *cat_value(CatResult *res, int row, const char *column);
extern Datum cat_query_datum(const char *sql, int nargs, ...);
extern char *cat_i64(int64 value);
extern int64 cat_json_int64(const char *json, const char *key);
extern bool cat_json_bool(const char *json, const char *key);
extern char *cat_json_text(const char *json, const char *key);
extern void cat_begin(void);
extern void cat_commit(void);

/* locks and identity */
extern void cat_xact_lock(int32 space, const char *key);
extern bool cat_try_session_lock(int32 space, int64 id);
extern bool cat_try_xact_lock(int32 space, int64 id);
extern bool cat_try_xact_lock_key(int32 space, const char *key);
extern void cat_session_unlock(int32 space, int64 id);
extern char *cat_try(void (*fn) (void *arg), void *arg);
extern Oid	cat_owner_oid(void);

/* deployments */
extern Deployment *cat_live_deployment(const char *name);
extern Deployment *cat_live_deployment_routes(const char *name, CatResult **routes);
extern Deployment *cat_latest_deployment(const char *name);
extern Deployment *cat_deployment(int64 id);
extern Datum cat_deployment_row(int64 id);
extern int64 cat_insert_deployment(const char *name, const char *engine, const char *owner,
								   const char *environment, const char *spec,
								   int64 memory_bytes, const char *ttl);
extern void cat_owner_usage(const char *owner, int64 *deployments, int64 *memory_bytes);
extern void cat_owner_limits(const char *owner, int64 *max_deployments, int64 *max_memory_bytes);
extern bool cat_lock_owner_quota(const char *owner, bool wait, int64 *deployments,
								 int64 *memory_bytes, int64 *max_deployments,
								 int64 *max_memory_bytes);
extern bool cat_set_deployment_status(int64 id, const char *status, const char *only_if_in,
									  const char *error);
extern void cat_set_deployment_node(int64 id, const char *node);
extern Datum cat_deployment_details(int64 id, const char *window_from, const char *window_to);
extern List *cat_expired_deployments(void);

/* jobs */
extern int64 cat_queue_job(const char *kind, int64 deployment_id, const char *owner,
						   const char *args);
extern Job *cat_job(int64 id);
extern Datum cat_job_row(int64 id);
extern int64 cat_unfinished_job(int64 deployment_id, const char *kind);
extern int64 cat_job_reading_backups(int64 deployment_id);
extern int64 cat_reshaping_job(int64 deployment_id);
extern int64 cat_unprobed_replica(int64 deployment_id);
extern int64 cat_unfinished_kind(const char *kind);
extern void cat_cancel_unfinished_jobs(int64 deployment_id);
extern bool cat_cancel_job(int64 id, const char *reason);
extern bool cat_job_reached_stage(int64 job_id, const char *stage);
extern List *cat_claim_jobs(int limit);
extern void cat_unclaim_job(int64 id);
extern bool cat_job_mine(int64 id, int attempt, int pid);
extern bool cat_job_enter_stage(int64 id, const char *stage);
extern void cat_job_finish(int64 id, const char *state, const char *error);
extern void cat_job_retry(int64 id, const char *error, int delay_ms);
extern List *cat_running_jobs(void);
extern bool cat_requeue_orphan(int64 id, int attempt);
extern int64 cat_next_due_ms(void);

/* events */
extern void cat_event(const char *actor, int64 deployment_id, int64 job_id,
					  const char *kind, const char *message, const char *detail);
extern int64 cat_event_id(const char *actor, int64 deployment_id, int64 job_id,
						  const char *kind, const char *message, const char *detail);
extern void cat_event_notify(const char *actor, int64 deployment_id, int64 job_id,
							 const char *kind, const char *message, const char *detail);

/* instances */
extern Instance *cat_primary_instance(int64 deployment_id);
extern List *cat_live_instances(int64 deployment_id);
extern List *cat_running_instances(void);
extern Instance *cat_create_instance(int64 deployment_id, const char *role, const char *host,
									 int low_port, int high_port);
extern void cat_set_instance_role(int64 id, const char *role);
extern void cat_refresh_deployment_status(int64 deployment_id);
extern int64 cat_queue_job_after(const char *kind, int64 deployment_id, const char *owner,
								 const char *args, int delay_ms, bool whole_second);
extern void cat_set_deployment_memory(int64 id, int64 memory_bytes);
extern Instance *cat_move_instance_port(Instance *inst, int low_port, int high_port);
extern void cat_set_instance_status(int64 id, const char *status, int pid);
extern bool cat_port_taken(int port);

/*
 * The logins of a deployment's instances, two secrets of dborch.secrets:
 *	SECRET_OWNER	the deployment owner's: role "owner" (PostgreSQL: owns the
 *					database, CREATEROLE and CREATEDB, reads and writes all
 *					data, no superuser) or ACL user "owner" (Redis: every data
 *					command, nothing that changes the server).  connection_string()
 *					hands it out.
 *	SECRET_DBORCH	dborch's own: the bootstrap superuser "postgres" (also
 *					reached by peer authentication on the instance's private
 *					socket) or ACL user "dborch".  Row-level security keeps it
 *					from every user and admin; it never leaves the catalog.
 * A deployment made by dborch 0.1 has no SECRET_DBORCH until its upgrade job
 * ran: until then dborch logs in as 0.1 did (postgres, or Redis' default
 * user, with SECRET_OWNER).
 */
#define SECRET_OWNER		"password"
#define SECRET_DBORCH		"dborch"
#define OWNER_LOGIN			"owner"
#define REDIS_DBORCH_USER	"dborch"

/* secrets */
extern void cat_set_secret(int64 deployment_id, const char *name, const char *value);
extern char *cat_secret(int64 deployment_id, const char *name);
extern void cat_delete_secrets(int64 deployment_id, bool keep_backup_passphrase);

/* warm pool */
extern int64 cat_pool_reserve(const char *version, const char *root);
extern bool cat_pool_claim(int64 instance_id, const char *version, char **directory,
						   char **password);
extern bool cat_pool_claimed_by(int64 instance_id, char **directory);
extern void cat_pool_set_ready(int64 id);
extern void cat_pool_delete(int64 id);
extern void cat_pool_delete_claimed(int64 instance_id);
extern bool cat_pool_entry(int64 id, char **directory, char **password);
extern bool cat_pool_needs_entry(int size);
extern CatResult *cat_pool_surplus(int size);

/* health */
extern CatResult *cat_probe_targets(void);
extern void cat_record_probes(const char *samples);
extern void cat_instance_health_changed(int64 instance_id, bool down, int failures,
										const char *error);
extern void cat_set_instance_pid(int64 id, int pid);
extern Instance *cat_instance(int64 id);
extern void cat_expire_probes(void);

/* alerts */
extern void cat_add_alert(int64 deployment_id, int64 instance_id, const char *status,
						  const char *alertname, const char *severity, const char *extra_labels,
						  const char *summary, const char *description);
extern void cat_add_event_alert(int64 deployment_id, int64 instance_id, const char *alertname,
								const char *severity, const char *extra_labels, const char *summary,
								const char *description);
extern void cat_failover_alert(int64 deployment_id, int64 failed_id, int64 new_primary_id);
extern CatResult *cat_due_alerts(int limit);
extern void cat_alert_attempted(int64 id, bool sent, const char *error, int retry_ms);
extern int64 cat_next_alert_due_ms(void);

/* backups */
extern Backup *cat_backup(int64 id);
extern Backup *cat_latest_backup(int64 deployment_id);
extern Datum cat_backup_row(int64 id);
extern int64 cat_queue_backup(Deployment *d, const char *kind, bool verify);
extern void cat_backup_set_status(int64 id, const char *status, const char *kind, const char *error);
extern bool cat_has_full_backup(int64 deployment_id);
extern void cat_backup_record_pgbackrest(int64 id, const char *info);
extern void cat_backup_record_redis(int64 id, const char *file, int64 size, int64 stored, int64 keys,
									int64 keys_with_ttl, const char *checksum,
									const char *snapshot_epoch);
extern List *cat_unrecorded_labels(int64 deployment_id, const char *info);
extern void cat_backups_sync_pgbackrest(int64 deployment_id, const char *info);
extern bool cat_backup_retention(int64 deployment_id, int *full_count, int *max_age_days);
extern void cat_set_backup_retention(int64 deployment_id, const char *full_count, const char *max_age);
extern CatResult *cat_expire_redis_backups(int64 deployment_id, int full_count, int max_age_days);
extern void cat_expire_all_backups(int64 deployment_id);
extern void cat_backup_verified(int64 id, const char *error);
extern bool cat_recoverable_window(int64 deployment_id, char **from, char **to);
extern void cat_set_recoverable_until(int64 deployment_id, const char *time);
extern char *cat_newest_archived_wal(const char *info);
extern int64 cat_backup_size(int64 deployment_id, const char *label);
extern char *cat_pitr_base_backup(int64 deployment_id, const char *target_time);
extern bool cat_time_between(const char *time, const char *from, const char *to);
extern Datum cat_schedule_backups(Deployment *d, const char *schedule, const char *kind, bool verify);
extern int	cat_unschedule_backups(int64 deployment_id, const char *kind);
extern CatResult *cat_failed_schedule_runs(void);

/* tenants (Tenant is in tenant.h) */
struct Tenant;
extern struct Tenant *cat_live_tenant(int64 deployment_id, const char *name);
extern struct Tenant *cat_tenant(int64 id);
extern List *cat_tenants_in(int64 deployment_id, const char *status);
extern List *cat_tenants_with_login(int64 deployment_id);
extern Datum cat_tenant_row(int64 id);
extern int64 cat_insert_tenant(Deployment *d, const char *name, const char *quota, bool adopt_data);
extern void cat_queue_tenants_job(Deployment *d);
extern int	cat_tenants_reapply(int64 deployment_id);
extern void cat_tenant_set_status(int64 id, const char *status, const char *error);
extern void cat_tenant_dropped(int64 id);
extern void cat_tenants_created(int64 deployment_id, int64 job_id, List *tenants);
extern void cat_drop_tenants_of(int64 deployment_id);
extern List *cat_tenant_usage_deployments(void);
extern void cat_tenant_record_usage(int64 id, const char *usage);
extern void cat_tenant_quota_changed(int64 id, bool over, const char *reason);
extern void cat_tenant_switch(int64 id, int64 target_id);

/* scaling */
extern void cat_set_maintenance_window(int64 deployment_id, const char *window);
extern void cat_delete_autoscale(int64 deployment_id);
extern Datum cat_set_autoscale(int64 deployment_id, const char *policy, const char *metric, double up,
							   double down, int min_replicas, int max_replicas, const char *cooldown);
extern bool cat_has_autoscale(void);
extern CatResult *cat_autoscale_decisions(void);
extern void cat_autoscale(int64 deployment_id, const char *owner, int replicas, int want,
						  const char *metric, const char *value);
extern void cat_autoscale_held(int64 deployment_id, int replicas, int want, const char *metric,
							   const char *value, const char *owner, int64 used_bytes, int64 max_bytes);

#endif							/* DBORCH_CATALOG_H */
