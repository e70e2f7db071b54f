-- Helpers shared by the pg_regress suites validation, idempotency and rls
-- (included with \i; pg_regress runs from the top of the build tree).
DROP SCHEMA IF EXISTS dborch_test CASCADE;
CREATE SCHEMA dborch_test;
GRANT USAGE ON SCHEMA dborch_test TO PUBLIC;

-- What the catalog holds: row counts (all rows, whatever RLS says) and the
-- positions of the identity sequences, which move even when the inserting
-- (sub)transaction rolls back.
CREATE FUNCTION dborch_test.catalog_state() RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $f$
DECLARE
	t text;
	n bigint;
	result jsonb := '{}';
BEGIN
	FOREACH t IN ARRAY ARRAY['deployments', 'instances', 'jobs', 'events', 'secrets', 'quotas']
	LOOP
		EXECUTE format('SELECT count(*) FROM dborch.%I', t) INTO n;
		result := result || jsonb_build_object(t, n);
	END LOOP;
	FOREACH t IN ARRAY ARRAY['deployments', 'instances', 'jobs', 'events']
	LOOP
		result := result || jsonb_build_object(t || '_seq', coalesce(
			pg_sequence_last_value(pg_get_serial_sequence('dborch.' || t, 'id')::regclass), 0));
	END LOOP;
	RETURN result;
END
$f$;

-- Row counts of the catalog tables, as one line.
CREATE FUNCTION dborch_test.catalog_rows() RETURNS text
LANGUAGE sql AS $f$
	SELECT string_agg(format('%s %s', key, value), ', ' ORDER BY key COLLATE "C")
	FROM jsonb_each(dborch_test.catalog_state())
	WHERE key NOT LIKE '%\_seq'
$f$;

-- Run sql; return 'SQLSTATE: message' of its error, or 'no error'.  Ids of
-- jobs are masked.  If the call left a trace in the catalog (a row, or an
-- identity value drawn by an insert that was rolled back), say so.
CREATE FUNCTION dborch_test.expect_error(sql text) RETURNS text
LANGUAGE plpgsql AS $f$
DECLARE
	before jsonb := dborch_test.catalog_state();
	result text;
	changed text;
BEGIN
	BEGIN
		EXECUTE sql;
		result := 'no error';
	EXCEPTION WHEN OTHERS THEN
		result := SQLSTATE || ': ' || regexp_replace(SQLERRM, 'job [1-9][0-9]*', 'job N', 'g');
	END;
	SELECT string_agg(format('%s %s', a.key, b.value::bigint - a.value::bigint), ', '
					  ORDER BY a.key COLLATE "C")
	  INTO changed
	  FROM jsonb_each(before) a JOIN jsonb_each(dborch_test.catalog_state()) b USING (key)
	 WHERE a.value <> b.value;
	IF changed IS NOT NULL THEN
		result := result || ' [catalog changed: ' || changed || ']';
	END IF;
	RETURN result;
END
$f$;

-- Like expect_error, with the DETAIL and HINT, one line each.
CREATE FUNCTION dborch_test.error_report(sql text) RETURNS SETOF text
LANGUAGE plpgsql AS $f$
DECLARE
	state text;
	msg text;
	detail text;
	hint text;
BEGIN
	BEGIN
		EXECUTE sql;
		RETURN NEXT 'no error';
		RETURN;
	EXCEPTION WHEN OTHERS THEN
		GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
			detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
	END;
	RETURN NEXT 'ERROR ' || state || ': ' || regexp_replace(msg, 'job [1-9][0-9]*', 'job N', 'g');
	IF detail <> '' THEN
		RETURN NEXT 'DETAIL: ' || regexp_replace(detail, 'job [1-9][0-9]*', 'job N', 'g');
	END IF;
	IF hint <> '' THEN
		RETURN NEXT 'HINT: ' || hint;
	END IF;
END
$f$;
