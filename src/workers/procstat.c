/*
 * procstat.c
 *		CPU and resident memory of local instance processes, from /proc:
 *		one pass over /proc/<pid>/stat per refresh, /proc/<pid>/statm only
 *		for the children of the servers asked about.
 */
#include "postgres.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "dborch.h"
#include "procstat.h"

typedef struct ServerTotals
{
	int			pid;			/* hash key */
	bool		running;
	uint64		ticks;			/* utime + stime of the server and its children */
	int64		rss_bytes;
} ServerTotals;

typedef struct CpuHistory
{
	int			pid;			/* hash key */
	uint64		ticks;
	int64		at_ms;
} CpuHistory;

static HTAB *totals = NULL;
static HTAB *history = NULL;

static HTAB *
make_hash(const char *name, Size entrysize)
{
	HASHCTL		ctl;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(int);
	ctl.entrysize = entrysize;
	ctl.hcxt = TopMemoryContext;
	return hash_create(name, 256, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

/* Read a small /proc file; false if the process is gone. */
bool
procstat_read(int pid, const char *file, char *buf, size_t size)
{
	char		path[64];
	int			fd;
	ssize_t		n;

	snprintf(path, sizeof(path), "/proc/%d/%s", pid, file);
	fd = open(path, O_RDONLY, 0);
	if (fd < 0)
		return false;
	n = read(fd, buf, size - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	return true;
}

/* ppid, utime + stime and rss (pages) from /proc/<pid>/stat. */
static bool
read_stat(int pid, int *ppid, uint64 *ticks, int64 *rss_pages)
{
	char		buf[1024];
	char	   *p;
	int			field;
	unsigned long utime = 0,
				stime = 0;
	long		rss = 0;

	if (!procstat_read(pid, "stat", buf, sizeof(buf)))
		return false;
	p = strrchr(buf, ')');
	if (p == NULL || p[1] != ' ' || p[2] == 'Z')
		return false;
	p += 2;
	/* field 3 (state) starts here; we want 4 (ppid), 14, 15 (utime, stime), 24 (rss) */
	for (field = 3; *p && field <= 24; field++)
	{
		char	   *next = strchr(p, ' ');

		if (field == 4)
			*ppid = atoi(p);
		else if (field == 14)
			utime = strtoul(p, NULL, 10);
		else if (field == 15)
			stime = strtoul(p, NULL, 10);
		else if (field == 24)
			rss = strtol(p, NULL, 10);
		if (next == NULL)
			break;
		p = next + 1;
	}
	*ticks = utime + stime;
	*rss_pages = rss;
	return true;
}

/* Private resident pages (resident - shared) from /proc/<pid>/statm. */
static int64
private_pages(int pid)
{
	char		buf[256];
	long		size,
				resident,
				shared;

	if (!procstat_read(pid, "statm", buf, sizeof(buf)) ||
		sscanf(buf, "%ld %ld %ld", &size, &resident, &shared) != 3)
		return 0;
	return Max(resident - shared, 0);
}

void
procstat_refresh(const int *pids, int npids)
{
	long		page_size = sysconf(_SC_PAGESIZE);
	DIR		   *dir;
	struct dirent *de;
	int			i;

	if (totals != NULL)
		hash_destroy(totals);
	totals = make_hash("dborch server totals", sizeof(ServerTotals));
	if (history == NULL)
		history = make_hash("dborch cpu history", sizeof(CpuHistory));
	for (i = 0; i < npids; i++)
	{
		bool		found;
		ServerTotals *t = hash_search(totals, &pids[i], HASH_ENTER, &found);

		if (!found)
		{
			t->running = false;
			t->ticks = 0;
			t->rss_bytes = 0;
		}
	}
	/* forget the CPU history of servers no longer asked about */
	{
		HASH_SEQ_STATUS seq;
		CpuHistory *h;

		hash_seq_init(&seq, history);
		while ((h = hash_seq_search(&seq)) != NULL)
			if (hash_search(totals, &h->pid, HASH_FIND, NULL) == NULL)
				hash_search(history, &h->pid, HASH_REMOVE, NULL);
	}
	if (npids == 0 || (dir = opendir("/proc")) == NULL)
		return;

	while ((de = readdir(dir)) != NULL)
	{
		int			pid = atoi(de->d_name);
		int			ppid = 0;
		uint64		ticks;
		int64		rss;
		ServerTotals *t;

		if (pid <= 0 || !read_stat(pid, &ppid, &ticks, &rss))
			continue;
		if ((t = hash_search(totals, &pid, HASH_FIND, NULL)) != NULL)
		{
			t->running = true;
			t->ticks += ticks;
			t->rss_bytes += rss * page_size;
		}
		else if ((t = hash_search(totals, &ppid, HASH_FIND, NULL)) != NULL)
		{
			t->ticks += ticks;
			t->rss_bytes += private_pages(pid) * page_size;
		}
	}
	closedir(dir);
}

bool
procstat_usage(int pid, ProcUsage *usage)
{
	ServerTotals *t;
	CpuHistory *h;
	bool		found;
	int64		now = dborch_now_ms();

	if (totals == NULL || (t = hash_search(totals, &pid, HASH_FIND, NULL)) == NULL || !t->running)
		return false;
	usage->rss_bytes = t->rss_bytes;
	usage->cpu_percent = -1;
	h = hash_search(history, &pid, HASH_ENTER, &found);
	if (found && now > h->at_ms && t->ticks >= h->ticks)
		usage->cpu_percent = 100.0 * ((double) (t->ticks - h->ticks) / sysconf(_SC_CLK_TCK)) /
			((now - h->at_ms) / 1000.0);
	h->ticks = t->ticks;
	h->at_ms = now;
	return true;
}
