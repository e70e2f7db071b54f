/*
 * procstat.h
 *		CPU and resident memory of local instance processes, from /proc.
 */
#ifndef DBORCH_PROCSTAT_H
#define DBORCH_PROCSTAT_H

typedef struct ProcUsage
{
	double		cpu_percent;	/* of one core since the previous refresh; -1 at first */
	int64		rss_bytes;
} ProcUsage;

/*
 * Read /proc once for these server pids and their children; call before a
 * round of procstat_usage().
 */
/* Read a small /proc/<pid>/<file> (NUL-terminated); false if the process is gone. */
extern bool procstat_read(int pid, const char *file, char *buf, size_t size);

extern void procstat_refresh(const int *pids, int npids);

/*
 * Usage of a server process and its children (a postmaster and its
 * backends: children count their private memory only, so shared buffers
 * count once, through the postmaster).  false if pid is not running.
 */
extern bool procstat_usage(int pid, ProcUsage *usage);

#endif							/* DBORCH_PROCSTAT_H */
