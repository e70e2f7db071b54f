/*
 * spawn.c
 *		The one place that starts operating-system processes.
 *
 * Programs are started from an argv array with execve: no shell ever sees an
 * argument.  The child gets its own session (setsid), so neither a signal to
 * the worker's process group nor a crash restart of the control plane
 * reaches it; default signal dispositions and an empty signal mask; stdin
 * from /dev/null; stdout and stderr appended to a log file; no inherited
 * descriptor above 2; and a fixed, minimal environment.  A helper that
 * spawn_run() waits for also dies with the worker (PR_SET_PDEATHSIG), so a
 * killed worker leaves no initdb behind; a server from spawn_start() does
 * not, it must outlive the worker.
 *
 * PR_SET_PDEATHSIG stops the child only, not what it started in turn
 * (pgBackRest's local processes, which keep its lock): while a child of
 * spawn_run() runs, its process group and program are in <log>.pgid, and
 * the next spawn_run() with the same log (a resumed job) kills what is left
 * of that group first.
 *
 * Waiting uses a pidfd in the worker's WaitLatch, so a wait ends the moment
 * the process exits, honours interrupts and postmaster death, and has a
 * deadline.
 */
#include "postgres.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"

#include "dborch.h"
#include "procstat.h"
#include "spawn.h"

/* Child of spawn_run() being waited for: killed if this process exits. */
static pid_t running_child = 0;
static bool exit_callback_registered = false;

static char *const child_environment[] = {
	"PATH=/usr/local/bin:/usr/bin:/bin",
	"LANG=C",
	"LC_ALL=C",
	NULL
};

/* Kill the process group of a spawn_run() child when the worker exits. */
static void
kill_running_child(int code, Datum arg)
{
	if (running_child > 0)
	{
		kill(-running_child, SIGKILL);
		kill(running_child, SIGKILL);
		(void) waitpid(running_child, NULL, 0);
		running_child = 0;
	}
}

/* The process group of pid (from /proc/<pid>/stat), or -1 if it is gone. */
static pid_t
process_group(pid_t pid)
{
	char		stat[512];
	char	   *p;
	int			ppid,
				pgrp;

	/* after "pid (comm)": state ppid pgrp */
	if (!procstat_read(pid, "stat", stat, sizeof(stat)) || (p = strrchr(stat, ')')) == NULL ||
		sscanf(p + 1, " %*c %d %d", &ppid, &pgrp) != 2)
		return -1;
	return pgrp;
}

/* The processes of group pgid that run program; kill them if kill_them. */
static int
group_members(pid_t pgid, const char *program, bool kill_them)
{
	DIR		   *dir = opendir("/proc");
	struct dirent *de;
	int			found = 0;

	while (dir != NULL && (de = readdir(dir)) != NULL)
	{
		pid_t		pid = atoi(de->d_name);
		char		cmdline[MAXPGPATH];

		if (pid <= 0 || process_group(pid) != pgid ||
			!procstat_read(pid, "cmdline", cmdline, sizeof(cmdline)) ||
			strcmp(cmdline, program) != 0)	/* argv[0] */
			continue;
		found++;
		if (kill_them)
			kill(pid, SIGKILL);
	}
	if (dir != NULL)
		closedir(dir);
	return found;
}

/* Kill what a killed worker's child left behind (see the header). */
static void
kill_leftover_group(const char *log_path)
{
	char	   *pgid_file = psprintf("%s.pgid", log_path);
	char	   *recorded = dborch_read_file(pgid_file, true);
	char	   *program = recorded ? strchr(recorded, '\n') : NULL;
	pid_t		pgid = recorded ? atoi(recorded) : 0;
	int64		deadline = dborch_now_ms() + 5000;

	if (program == NULL || pgid <= 0)
		return;
	program++;
	if (group_members(pgid, program, true) > 0)
	{
		ereport(LOG, (errmsg("dborch: killed what was left of \"%s\" (process group %d)",
							 program, (int) pgid)));
		while (group_members(pgid, program, false) > 0 && dborch_now_ms() < deadline)
			pg_usleep(20000);
	}
	unlink(pgid_file);
}

/* Open a descriptor that becomes readable when pid exits; -1 if unsupported. */
static int
open_pidfd(pid_t pid)
{
#ifdef SYS_pidfd_open
	return (int) syscall(SYS_pidfd_open, pid, 0);
#else
	errno = ENOSYS;
	return -1;
#endif
}

/*
 * fork + execve with the child set up as described in the file header.
 * Between fork and exec the child only makes async-signal-safe calls.
 */
static pid_t
fork_exec(const char *const *argv, const char *log_path, bool die_with_parent)
{
	pid_t		parent = getpid();
	pid_t		pid;

	fflush(NULL);
	pid = fork();
	if (pid < 0)
		ereport(ERROR, (errmsg("could not fork to run \"%s\": %m", argv[0])));
	if (pid == 0)
	{
		struct sigaction sa;
		sigset_t	none;
		int			sig;
		int			fd;

		setsid();

		/*
		 * A helper (initdb, pg_ctl) dies with the worker that waits for it,
		 * even by SIGKILL: a resumed job must never race a leftover one.
		 */
		if (die_with_parent &&
			(prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent))
			_exit(125);
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = SIG_DFL;
		for (sig = 1; sig < NSIG; sig++)
			(void) sigaction(sig, &sa, NULL);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);

		fd = open("/dev/null", O_RDONLY);
		if (fd >= 0)
			dup2(fd, STDIN_FILENO);
		fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
		if (fd >= 0)
		{
			dup2(fd, STDOUT_FILENO);
			dup2(fd, STDERR_FILENO);
		}
		close_range(3, ~0U, 0);

		execve(argv[0], (char *const *) argv, child_environment);
		{
			static const char msg[] = "dborch: execve failed\n";

			if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0)
				_exit(126);
		}
		_exit(127);
	}
	return pid;
}

#define PROGRESS_EVERY_MS 500

/*
 * Wait until pidfd is readable or the deadline passes; true if it exited.
 * With progress, call it about every PROGRESS_EVERY_MS meanwhile.
 */
static bool
wait_pidfd(int pidfd, pid_t pid, int64 deadline_ms, SpawnProgressFn progress, void *arg)
{
	for (;;)
	{
		int64		remaining = deadline_ms - dborch_now_ms();
		int			rc;

		if (progress != NULL)
			progress(arg);
		if (pidfd < 0)
		{
			/* no pidfd support: check every 5 ms (a zombie counts as exited) */
			if (!dborch_process_alive(pid, NULL))
				return true;
		}
		if (remaining <= 0)
			return false;
		if (progress != NULL)
			remaining = Min(remaining, PROGRESS_EVERY_MS);
		if (pidfd >= 0)
			rc = WaitLatchOrSocket(MyLatch,
								   WL_LATCH_SET | WL_SOCKET_READABLE | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
								   pidfd, remaining, DBORCH_WAIT_EVENT);
		else
			rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						   Min(remaining, 5), DBORCH_WAIT_EVENT);
		if (rc & WL_LATCH_SET)
		{
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
		if (rc & WL_SOCKET_READABLE)
			return true;
	}
}

int
spawn_run(const char *const *argv, const char *log_path, int timeout_ms)
{
	return spawn_run_progress(argv, log_path, timeout_ms, NULL, NULL);
}

int
spawn_run_progress(const char *const *argv, const char *log_path, int timeout_ms,
				   SpawnProgressFn progress, void *arg)
{
	pid_t		pid;
	int			pidfd;
	int			status = 0;
	bool		exited;

	if (!exit_callback_registered)
	{
		before_shmem_exit(kill_running_child, (Datum) 0);
		exit_callback_registered = true;
	}

	kill_leftover_group(log_path);
	pid = fork_exec(argv, log_path, true);
	running_child = pid;
	dborch_write_file(psprintf("%s.pgid", log_path), psprintf("%d\n%s", (int) pid, argv[0]), 0600);
	pidfd = open_pidfd(pid);

	PG_TRY();
	{
		exited = wait_pidfd(pidfd, pid, dborch_now_ms() + timeout_ms, progress, arg);
	}
	PG_CATCH();
	{
		if (pidfd >= 0)
			close(pidfd);
		kill_running_child(0, (Datum) 0);
		PG_RE_THROW();
	}
	PG_END_TRY();

	if (pidfd >= 0)
		close(pidfd);
	if (!exited)
	{
		kill_running_child(0, (Datum) 0);
		ereport(ERROR,
				(errcode(ERRCODE_QUERY_CANCELED),
				 errmsg("\"%s\" did not finish within %d ms", argv[0], timeout_ms),
				 errdetail("Its output is in \"%s\".", log_path)));
	}
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	running_child = 0;
	unlink(psprintf("%s.pgid", log_path));

	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

pid_t
spawn_start(const char *const *argv, const char *log_path)
{
	return fork_exec(argv, log_path, false);
}

bool
spawn_wait_exit(pid_t pid, int timeout_ms)
{
	int			pidfd;
	bool		exited;

	if (pid <= 0)
		return true;
	pidfd = open_pidfd(pid);
	if (pidfd < 0 && errno == ESRCH)
		return true;

	PG_TRY();
	{
		exited = wait_pidfd(pidfd, pid, dborch_now_ms() + timeout_ms, NULL, NULL);
	}
	PG_FINALLY();
	{
		if (pidfd >= 0)
			close(pidfd);
	}
	PG_END_TRY();

	/* reap it if it happens to be our own child (a Redis started by this job) */
	if (exited)
		(void) waitpid(pid, NULL, WNOHANG);
	return exited;
}
