/*
 * spawn.h
 *		The one place that starts operating-system processes.
 */
#ifndef DBORCH_SPAWN_H
#define DBORCH_SPAWN_H

#include <sys/types.h>

/*
 * Run argv[0] with argv (no shell), wait at most timeout_ms, and return its
 * exit status (0 on success).  stdout and stderr are appended to log_path.
 * On timeout the whole process group is killed and an error is raised.
 */
extern int	spawn_run(const char *const *argv, const char *log_path, int timeout_ms);

/* Called about every 500 ms while spawn_run_progress() waits. */
typedef void (*SpawnProgressFn) (void *arg);

/* spawn_run() that reports progress while it waits. */
extern int	spawn_run_progress(const char *const *argv, const char *log_path, int timeout_ms,
							   SpawnProgressFn progress, void *arg);

/*
 * Start argv[0] in its own session and return its pid without waiting; for
 * servers that must outlive the worker and the control plane.
 */
extern pid_t spawn_start(const char *const *argv, const char *log_path);

/* Wait up to timeout_ms for pid (a child or not) to exit; true if it did. */
extern bool spawn_wait_exit(pid_t pid, int timeout_ms);

#endif							/* DBORCH_SPAWN_H */
