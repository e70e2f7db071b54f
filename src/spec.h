/*
 * spec.h
 *		Validation of deploy() options into a normalized spec.
 */
#ifndef DBORCH_SPEC_H
#define DBORCH_SPEC_H

#include "utils/jsonb.h"

#include "engine.h"

typedef struct DeploySpec
{
	const char *version;
	int64		memory_bytes;
	const char *environment;
	char	   *ttl;			/* normalized interval text, or NULL */
	char	   *json;			/* the whole spec, canonical jsonb text */
} DeploySpec;

/*
 * Check every option (unknown keys, types, ranges) and fill spec with the
 * normalized values and defaults; errors with SQLSTATE 22023.
 */
extern void spec_parse(const EngineOps *engine, Jsonb *options, DeploySpec *spec);

/* Milliseconds of a non-negative interval argument (22023 otherwise). */
extern int64 spec_interval_ms(Interval *interval, const char *what);

#endif							/* DBORCH_SPEC_H */
