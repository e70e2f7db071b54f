/*
 * spec.h
 *		Validation of deploy() options into a normalized spec.
 */
#ifndef DBORCH_SPEC_H
#define DBORCH_SPEC_H

#include "datatype/timestamp.h"
#include "utils/jsonb.h"

#include "engine.h"

typedef struct DeploySpec
{
	const char *version;
	int64		memory_bytes;
	const char *environment;
	char	   *ttl;			/* normalized interval text, or NULL */
	int			max_connections;	/* 0: the engine's default (100, Redis 10000) */
	int			replicas;		/* made by a scale job once the deployment is ready */
	bool		synchronous;	/* PostgreSQL: a commit waits for one replica */
	const char *backup_compression; /* "type:level" or "none"; NULL: dborch's default */
	char	   *allow;			/* JSON array of CIDRs; NULL: the listen address only */
	char	   *json;			/* the whole spec, canonical jsonb text */
} DeploySpec;

#define DBORCH_MAX_REPLICAS 10

/*
 * Check every option (unknown keys, types, ranges) and fill spec with the
 * normalized values and defaults; errors with SQLSTATE 22023.
 */
extern void spec_parse(const EngineOps *engine, Jsonb *options, DeploySpec *spec);

/* A size with a unit ("50MB") in bytes, and back; errors name the option, argument or quota. */
extern int64 spec_parse_size(const char *kind, const char *name, const char *text);
extern char *spec_format_size(int64 bytes);

/* Memory for a deployment of engine: bounded, whole kilobytes (22023 otherwise). */
extern int64 spec_memory_bytes(const EngineOps *engine, const char *kind, const char *text);

/* Milliseconds of a non-negative interval argument (22023 otherwise). */
extern int64 spec_interval_ms(Interval *interval, const char *what);

#endif							/* DBORCH_SPEC_H */
