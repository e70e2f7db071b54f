/*
 * api_health.c
 *		dborch._worker_status(): what shared memory knows about the
 *		background workers, for dborch.health().
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/timestamp.h"

#include "dborch.h"

PG_FUNCTION_INFO_V1(dborch_worker_status);

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
