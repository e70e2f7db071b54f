/*
 * api_health.c
 *		What shared memory knows about the background workers:
 *		dborch._worker_status() for dborch.health(), dborch._job_progress()
 *		for dborch.progress.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "dborch.h"

PG_FUNCTION_INFO_V1(dborch_worker_status);
PG_FUNCTION_INFO_V1(dborch_job_progress);

Datum
dborch_worker_status(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		values[7];
	bool		nulls[7] = {false};
	pid_t		launcher,
				prober;
	uint64		last_loop;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "dborch: return type must be a row type");

	SpinLockAcquire(&dborch_shared->mutex);
	launcher = dborch_shared->launcher_pid;
	prober = dborch_shared->prober_pid;
	SpinLockRelease(&dborch_shared->mutex);
	last_loop = pg_atomic_read_u64(&dborch_shared->prober_last_loop);

	values[0] = Int32GetDatum(launcher);
	nulls[0] = launcher == 0;
	values[1] = Int32GetDatum(prober);
	nulls[1] = prober == 0;
	values[2] = Int32GetDatum(pg_atomic_read_u32(&dborch_shared->job_workers));
	values[3] = Int32GetDatum(pg_atomic_read_u32(&dborch_shared->prober_targets));
	values[4] = Int32GetDatum(pg_atomic_read_u32(&dborch_shared->prober_connected));
	values[5] = BoolGetDatum(pg_atomic_read_u32(&dborch_shared->prober_fd_exhausted) != 0);
	values[6] = TimestampTzGetDatum((TimestampTz) last_loop);
	nulls[6] = last_loop == 0;
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}

/* dborch._job_progress(): bytes done and total of the jobs the workers run. */
Datum
dborch_job_progress(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	for (i = 0; i < DBORCH_MAX_JOB_WORKERS; i++)
	{
		JobSlot    *slot = &dborch_shared->job_slots[i];
		Datum		values[3];
		bool		nulls[3] = {false};
		int64		job_id;

		SpinLockAcquire(&dborch_shared->mutex);
		job_id = slot->in_use ? slot->job_id : 0;
		SpinLockRelease(&dborch_shared->mutex);
		if (job_id == 0)
			continue;
		values[0] = Int64GetDatum(job_id);
		values[1] = Int64GetDatum((int64) pg_atomic_read_u64(&slot->bytes_done));
		values[2] = Int64GetDatum((int64) pg_atomic_read_u64(&slot->bytes_total));
		nulls[1] = nulls[2] = pg_atomic_read_u64(&slot->bytes_total) == 0;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
