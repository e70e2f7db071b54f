-- The README's catalog reference is true to the catalog: its table of
-- tables lists every table of schema dborch, each with its columns in order.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS dborch CASCADE;
\getenv abs_srcdir PG_ABS_SRCDIR
\set readme :abs_srcdir '/README.md'
CREATE TEMP TABLE readme AS SELECT pg_read_file(:'readme') AS text;
-- the rows of the table under "## Catalog": | `table` | `col`, `col`, ... | prose |
CREATE TEMP TABLE documented AS
SELECT (regexp_match(line, '^\| `([a-z_]+)` \|'))[1] AS table_name,
       (SELECT string_agg(m[1], ', ' ORDER BY n)
          FROM regexp_matches(split_part(line, '|', 3), '`([a-z_]+)`', 'g') WITH ORDINALITY AS x(m, n)) AS columns
  FROM readme,
       regexp_split_to_table(substring(text FROM '## Catalog \(schema `dborch`\)(.*?)\n## '), '\n') AS line
 WHERE line ~ '^\| `[a-z_]+` \|';
CREATE TEMP TABLE actual AS
SELECT c.relname::text AS table_name, string_agg(a.attname, ', ' ORDER BY a.attnum) AS columns
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'dborch'
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
 WHERE c.relkind IN ('r', 'p')
 GROUP BY c.relname;
SELECT count(*) > 10 AS readme_lists_tables FROM documented;
-- tables missing from the README, documented tables that do not exist, and
-- tables whose documented columns differ: all three empty
SELECT a.table_name, 'not in the README' AS problem FROM actual a
 WHERE NOT EXISTS (SELECT 1 FROM documented d WHERE d.table_name = a.table_name)
UNION ALL
SELECT d.table_name, 'no such table' FROM documented d
 WHERE NOT EXISTS (SELECT 1 FROM actual a WHERE a.table_name = d.table_name)
UNION ALL
SELECT a.table_name, 'README: ' || d.columns || ' / catalog: ' || a.columns
  FROM actual a JOIN documented d USING (table_name)
 WHERE a.columns IS DISTINCT FROM d.columns
 ORDER BY 1;
