/*
 * spec.c
 *		Validation of deploy() options into a normalized spec, so the same
 *		request written two ways ("128MB", "128 mb") is the same spec and
 *		deploy() stays idempotent.
 *
 * Options: version (engine's supported versions), memory (a size with a
 * unit: kB, MB, GB, TB), environment (development, staging, production),
 * ttl (a positive interval), max_connections, replicas, synchronous,
 * backup_compression (pgBackRest's compress-type and level, "lz4:1"), allow
 * (the networks a PostgreSQL deployment takes clients from).
 * Anything else is refused.
 */
#include "postgres.h"

#include <ctype.h>

#include "common/jsonapi.h"
#include "datatype/timestamp.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "miscadmin.h"
#include "utils/datetime.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/json.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "spec.h"

#define DEFAULT_MEMORY		(INT64CONST(128) * 1024 * 1024)
#define MAX_MEMORY			(INT64CONST(1024) * 1024 * 1024 * 1024)
#define VALID_OPTIONS		"allow, backup_compression, environment, max_connections, memory, replicas, synchronous, ttl, version"
#define MAX_ALLOW			32
#define MIN_CONNECTIONS		10
#define MAX_CONNECTIONS		10000

/* kind: "option" (of a deployment), "argument" (of a function) or "quota" (of a tenant) */
static void
value_error(const char *kind, const char *name, const char *value, const char *detail,
			const char *hint)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid value for %s \"%s\": %s", kind, name, value),
			 detail ? errdetail("%s", detail) : 0,
			 hint ? errhint("%s", hint) : 0));
}

static void
option_error(const char *option, const char *value, const char *detail, const char *hint)
{
	value_error("option", option, value, detail, hint);
}

/* The text of a string or number option; other JSON types are refused. */
static char *
option_text(const char *option, JsonbValue *v, bool numbers_ok)
{
	if (v->type == jbvString)
		return pnstrdup(v->val.string.val, v->val.string.len);
	if (v->type == jbvNumeric && numbers_ok)
		return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("option \"%s\" must be a %s", option, numbers_ok ? "number or a string" : "string")));
	return NULL;				/* keep compiler quiet */
}

/* A whole number from low to high, given as a number or a string. */
static int
option_int(const char *option, JsonbValue *v, int low, int high)
{
	char	   *text = option_text(option, v, true);
	char	   *end;
	long		n = strtol(text, &end, 10);

	if (*text == '\0' || *end != '\0' || n < low || n > high)
		option_error(option, quote_literal_cstr(text), NULL,
					 psprintf("Use a whole number from %d to %d.", low, high));
	return (int) n;
}

/*
 * "128MB", "1 GB", "512kB" (unit case-insensitive) to bytes; errors name
 * the option, argument or quota (kind "option", "argument" or "quota").
 */
int64
spec_parse_size(const char *kind, const char *name, const char *text)
{
	static const struct
	{
		const char *unit;
		int64		bytes;
	}			units[] = {
		{"kB", INT64CONST(1024)},
		{"MB", INT64CONST(1024) * 1024},
		{"GB", INT64CONST(1024) * 1024 * 1024},
		{"TB", INT64CONST(1024) * 1024 * 1024 * 1024},
	};
	const char *p = text;
	const char *unit;
	char	   *end;
	uint64		n;
	int			i;

	while (isspace((unsigned char) *p))
		p++;
	if (!isdigit((unsigned char) *p))
		value_error(kind, name, quote_literal_cstr(text), "A size is a whole number with a unit.",
					 "Write it like \"128MB\" or \"1GB\".");
	errno = 0;
	n = strtoull(p, &end, 10);
	if (errno == ERANGE)
		value_error(kind, name, quote_literal_cstr(text), "The number is too large.", NULL);
	while (isspace((unsigned char) *end))
		end++;
	unit = end;
	while (*end && !isspace((unsigned char) *end))
		end++;
	while (isspace((unsigned char) *end))
		end++;
	if (*end != '\0')
		value_error(kind, name, quote_literal_cstr(text), "Unexpected text after the unit.", NULL);
	for (i = 0; i < lengthof(units); i++)
	{
		size_t		len = strlen(units[i].unit);

		if (pg_strncasecmp(unit, units[i].unit, len) == 0 &&
			(unit[len] == '\0' || isspace((unsigned char) unit[len])))
		{
			if (n > (uint64) (PG_INT64_MAX / units[i].bytes))
				value_error(kind, name, quote_literal_cstr(text), "The size is too large.", NULL);
			return (int64) n * units[i].bytes;
		}
	}
	value_error(kind, name, quote_literal_cstr(text), "A size needs a unit: kB, MB, GB or TB.",
				 "Write it like \"128MB\" or \"1GB\".");
	return 0;					/* keep compiler quiet */
}

/*
 * The memory a deployment of engine runs with, from text ("256MB"): between
 * the engine's minimum and MAX_MEMORY (so that a memory times the instances
 * of a deployment never overflows), in whole kilobytes; deploy()'s option
 * and scale()'s argument alike (kind "option" or "argument").
 */
int64
spec_memory_bytes(const EngineOps *engine, const char *kind, const char *text)
{
	int64		bytes = spec_parse_size(kind, "memory", text);

	if (bytes < engine->min_memory || bytes > MAX_MEMORY)
		value_error(kind, "memory", quote_literal_cstr(text),
					psprintf("A %s deployment needs between %s and %s.", engine->name,
							 spec_format_size(engine->min_memory), spec_format_size(MAX_MEMORY)),
					NULL);
	/* whole kilobytes, so the normalized text is exact */
	return bytes - bytes % 1024;
}

/* Bytes as the largest whole unit: 134217728 is "128MB". */
char *
spec_format_size(int64 bytes)
{
	static const char *const units[] = {"TB", "GB", "MB"};
	int64		size = INT64CONST(1024) * 1024 * 1024 * 1024;
	int			i;

	for (i = 0; i < lengthof(units); i++, size /= 1024)
		if (bytes % size == 0)
			return psprintf(INT64_FORMAT "%s", bytes / size, units[i]);
	return psprintf(INT64_FORMAT "kB", bytes / 1024);
}

/* A positive interval of at most 100 years, in one canonical form. */
static char *
parse_ttl(const char *text)
{
	char		workbuf[256];
	char	   *field[MAXDATEFIELDS];
	int			ftype[MAXDATEFIELDS];
	int			nf;
	int			dtype;
	struct pg_itm_in itm_in;
	Interval	interval;
	struct pg_itm itm;
	int64		total;
	char		buf[MAXDATELEN + 1];
	int			dterr;

	dterr = ParseDateTime(text, workbuf, sizeof(workbuf), field, ftype, MAXDATEFIELDS, &nf);
	if (dterr == 0)
		dterr = DecodeInterval(field, ftype, nf, INTERVAL_FULL_RANGE, &dtype, &itm_in);
	if (dterr == DTERR_BAD_FORMAT)
		dterr = DecodeISO8601Interval(unconstify(char *, text), &dtype, &itm_in);
	if (dterr != 0 || dtype != DTK_DELTA || itmin2interval(&itm_in, &interval) != 0)
		option_error("ttl", quote_literal_cstr(text), "A time to live is an interval.",
					 "Write it like \"2 hours\" or \"7 days\".");
	/*
	 * One canonical form whatever the spelling ("1 day", "24 hours") and
	 * the session's IntervalStyle: whole days of 24 hours (a month is 30
	 * days) and the rest as hh:mm:ss, written in the postgres style.
	 */
	if (interval.month < -1200 || interval.month > 1200 || interval.day < -36500 ||
		interval.day > 36500 || interval.time < -INT64CONST(36500) * USECS_PER_DAY ||
		interval.time > INT64CONST(36500) * USECS_PER_DAY)
		option_error("ttl", quote_literal_cstr(text), "A time to live is at most 100 years.", NULL);
	total = ((int64) interval.month * DAYS_PER_MONTH + interval.day) * USECS_PER_DAY + interval.time;
	if (total <= 0)
		option_error("ttl", quote_literal_cstr(text), "A time to live must be positive.", NULL);
	if (total > INT64CONST(36500) * USECS_PER_DAY)
		option_error("ttl", quote_literal_cstr(text), "A time to live is at most 100 years.", NULL);
	interval.month = 0;
	interval.day = (int32) (total / USECS_PER_DAY);
	interval.time = total % USECS_PER_DAY;
	interval2itm(interval, &itm);
	EncodeInterval(&itm, INTSTYLE_POSTGRES, buf);
	return pstrdup(buf);
}

static bool
in_list(const char *value, const char *const *list)
{
	for (; *list; list++)
		if (strcmp(value, *list) == 0)
			return true;
	return false;
}

static void
append_member(StringInfo buf, const char *key, const char *value)
{
	if (buf->len > 1)
		appendStringInfoString(buf, ", ");
	escape_json(buf, key);
	appendStringInfoString(buf, ": ");
	escape_json(buf, value);
}

/*
 * backup_compression: "type" or "type:level", normalized to "type:level"
 * ("none" alone).  PostgreSQL takes pgBackRest's types and level ranges;
 * a Redis snapshot is always zstd, so Redis takes zst with a level.
 */
static const char *
parse_backup_compression(const EngineOps *engine, const char *text)
{
	static const struct
	{
		const char *type;
		int			min_level;
		int			max_level;
		int			default_level;
	}			types[] = {
		{"lz4", 1, 12, 1}, {"zst", 1, 19, 3}, {"gz", 0, 9, 6}, {"bz2", 1, 9, 9}, {"none", 0, 0, 0},
	};
	const char *colon = strchr(text, ':');
	char	   *type = colon ? pnstrdup(text, colon - text) : pstrdup(text);
	bool		postgres = strcmp(engine->name, "postgres") == 0;

	for (int i = 0; i < lengthof(types); i++)
	{
		long		level = types[i].default_level;
		char	   *end;

		if (strcmp(type, types[i].type) != 0)
			continue;
		if (!postgres && strcmp(type, "zst") != 0)
			break;
		if (colon != NULL)
		{
			errno = 0;
			level = strtol(colon + 1, &end, 10);
			if (types[i].max_level == 0 || colon[1] == '\0' || *end != '\0' || errno != 0 ||
				level < types[i].min_level || level > types[i].max_level)
				option_error("backup_compression", quote_literal_cstr(text),
							 types[i].max_level == 0 ? "\"none\" has no level." :
							 psprintf("The level of %s is a whole number from %d to %d.",
									  type, types[i].min_level, types[i].max_level), NULL);
		}
		if (types[i].max_level == 0)
			return "none";
		return psprintf("%s:%ld", type, level);
	}
	option_error("backup_compression", quote_literal_cstr(text), NULL,
				 postgres ? "Use lz4, zst, gz, bz2 or none, with a level after a colon if you like: \"zst:6\"."
				 : "A Redis snapshot is compressed with zstd: use zst, with a level after a colon if you like: \"zst:6\".");
	return NULL;				/* not reached */
}

/* One CIDR in its normalized form ("10.0.0.0/8"); 22023 if it is none. */
static char *
parse_cidr(const char *text)
{
	MemoryContext mcxt = CurrentMemoryContext;
	char	   *cidr = NULL;

	PG_TRY();
	{
		cidr = DatumGetCString(DirectFunctionCall1(cidr_out, DirectFunctionCall1(cidr_in, CStringGetDatum(text))));
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(mcxt);
		edata = CopyErrorData();
		FlushErrorState();
		option_error("allow", quote_literal_cstr(text),
					 edata->detail ? psprintf("%s: %s", edata->message, edata->detail) : edata->message,
					 "Give networks like \"10.0.0.0/8\", \"192.168.1.7/32\" or \"2001:db8::/32\".");
	}
	PG_END_TRY();
	return cidr;
}

/*
 * allow: a JSON array of 1 to MAX_ALLOW CIDRs (IPv4 or IPv6), PostgreSQL
 * only; the normalized array as JSON text.
 */
static char *
parse_allow(const EngineOps *engine, JsonbValue *v)
{
	StringInfoData buf;
	JsonbIterator *it;
	JsonbValue	elem;
	JsonbIteratorToken tok;
	int			n = 0;

	if (strcmp(engine->name, "postgres") != 0)
		option_error("allow", "(a list)", "Redis has no filter of client addresses.",
					 "Restrict a Redis deployment with its ACL users and a firewall (README, TLS).");
	if (v->type != jbvBinary || !JsonContainerIsArray(v->val.binary.data))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"allow\" must be a list of networks"),
				 errhint("Write it like [\"10.0.0.0/8\", \"::1/128\"].")));
	initStringInfo(&buf);
	appendStringInfoChar(&buf, '[');
	it = JsonbIteratorInit(v->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &elem, true)) != WJB_DONE)
	{
		if (tok != WJB_ELEM)
			continue;
		if (elem.type != jbvString)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("option \"allow\" must be a list of networks given as strings")));
		if (++n > MAX_ALLOW)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("option \"allow\" takes at most %d networks", MAX_ALLOW)));
		if (n > 1)
			appendStringInfoString(&buf, ", ");
		escape_json(&buf, parse_cidr(pnstrdup(elem.val.string.val, elem.val.string.len)));
	}
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"allow\" must name at least one network")));
	appendStringInfoChar(&buf, ']');
	return buf.data;
}

void
spec_parse(const EngineOps *engine, Jsonb *options, DeploySpec *spec)
{
	static const char *const environments[] = {"development", "staging", "production", NULL};
	StringInfoData buf;

	spec->version = engine->versions[0];
	spec->memory_bytes = DEFAULT_MEMORY;
	spec->environment = "development";
	spec->ttl = NULL;
	spec->max_connections = 0;
	spec->replicas = 0;
	spec->synchronous = false;
	spec->backup_compression = NULL;
	spec->allow = NULL;

	if (options != NULL)
	{
		JsonbIterator *it;
		JsonbValue	v;
		JsonbIteratorToken tok;

		if (JB_ROOT_IS_SCALAR(options) || !JB_ROOT_IS_OBJECT(options))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("options must be a JSON object"),
					 errhint("Valid options: " VALID_OPTIONS ".")));

		it = JsonbIteratorInit(&options->root);
		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			char	   *key;

			if (tok != WJB_KEY)
				continue;
			key = pnstrdup(v.val.string.val, v.val.string.len);
			(void) JsonbIteratorNext(&it, &v, true);

			if (strcmp(key, "version") == 0)
			{
				char	   *version = option_text(key, &v, true);

				if (!in_list(version, engine->versions))
					option_error(key, quote_literal_cstr(version),
								 psprintf("The %s engine supports version %s.",
										  engine->name, engine->versions[0]), NULL);
				spec->version = version;
			}
			else if (strcmp(key, "memory") == 0)
			{
				spec->memory_bytes = spec_memory_bytes(engine, "option", option_text(key, &v, false));
			}
			else if (strcmp(key, "environment") == 0)
			{
				char	   *environment = option_text(key, &v, false);

				if (!in_list(environment, environments))
					option_error(key, quote_literal_cstr(environment), NULL,
								 "Use development, staging or production.");
				spec->environment = environment;
			}
			else if (strcmp(key, "ttl") == 0)
				spec->ttl = parse_ttl(option_text(key, &v, false));
			else if (strcmp(key, "max_connections") == 0)
				spec->max_connections = option_int(key, &v, MIN_CONNECTIONS, MAX_CONNECTIONS);
			else if (strcmp(key, "replicas") == 0)
				spec->replicas = option_int(key, &v, 0, DBORCH_MAX_REPLICAS);
			else if (strcmp(key, "synchronous") == 0)
			{
				if (v.type != jbvBool)
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("option \"synchronous\" must be true or false")));
				if (v.val.boolean && strcmp(engine->name, "postgres") != 0)
					option_error(key, "true", "Redis replication is asynchronous.", NULL);
				spec->synchronous = v.val.boolean;
			}
			else if (strcmp(key, "allow") == 0)
				spec->allow = parse_allow(engine, &v);
			else if (strcmp(key, "backup_compression") == 0)
				spec->backup_compression = parse_backup_compression(engine, option_text(key, &v, false));
			else
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("unknown option \"%s\"", key),
						 errhint("Valid options: " VALID_OPTIONS ".")));
		}
	}


	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	append_member(&buf, "version", spec->version);
	append_member(&buf, "memory", spec_format_size(spec->memory_bytes));
	append_member(&buf, "environment", spec->environment);
	if (spec->ttl)
		append_member(&buf, "ttl", spec->ttl);
	if (spec->max_connections > 0)
		appendStringInfo(&buf, ", \"max_connections\": %d", spec->max_connections);
	if (spec->replicas > 0)
		appendStringInfo(&buf, ", \"replicas\": %d", spec->replicas);
	if (spec->synchronous)
		appendStringInfoString(&buf, ", \"synchronous\": true");
	if (spec->backup_compression)
		append_member(&buf, "backup_compression", spec->backup_compression);
	if (spec->allow)
		appendStringInfo(&buf, ", \"allow\": %s", spec->allow);
	appendStringInfoChar(&buf, '}');

	/* the text jsonb itself prints, so specs compare as strings */
	spec->json = DatumGetCString(DirectFunctionCall1(jsonb_out,
													 DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data))));
}

int64
spec_interval_ms(Interval *interval, const char *what)
{
	int64		ms = ((int64) interval->month * DAYS_PER_MONTH + interval->day) * 86400000 +
		interval->time / 1000;

	if (interval->month < 0 || interval->day < 0 || interval->time < 0 || ms < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be negative", what)));
	return ms;
}
