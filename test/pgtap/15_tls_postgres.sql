-- TLS for PostgreSQL deployments: the control plane's certificate authority
-- (made at its first start, key 0600) and ca_certificate(); each instance's
-- own server certificate signed by it (key 0600 outside the data directory,
-- subject alternative names, a serial of its own for a replica); connection
-- strings with sslmode=verify-full that psql uses over TLS; a client
-- without TLS, with another CA or with a host name the certificate does not
-- name is refused; the allow option (its refusals, normalization, a client
-- outside it refused and inside it accepted); no key reaches the catalog or
-- a log.
--
-- Autocommit mode and ON_ERROR_STOP off: see 10_postgres.sql.
\set ON_ERROR_STOP 0
\getenv test_dir DBORCH_TEST_DIR
SET client_min_messages = warning;
\ir helpers.psql

SELECT plan(31);

SELECT :'test_dir' || '/managed/tls/ca' AS ca_dir \gset
SELECT :'ca_dir' || '/ca.crt' AS ca_file \gset

------------------------------------------------------------------------------
-- the certificate authority
------------------------------------------------------------------------------
SELECT matches(dborch.ca_certificate(), '^-----BEGIN CERTIFICATE-----\n.*\n-----END CERTIFICATE-----\n$',
               'ca_certificate() returns a PEM certificate');
\set out `cat :'ca_file'`
SELECT is(dborch.ca_certificate(), :'out' || E'\n', 'it is the CA file connection strings name');
\set out `stat -c '%a' :'ca_dir'/ca.key :'ca_dir'/ca.crt | tr '\n' ' '`
SELECT is(:'out'::text, '600 644 ', 'the CA key is 0600, its certificate 0644');
\set out `openssl x509 -in :'ca_file' -noout -text | grep -c -e 'CA:TRUE' -e 'Certificate Sign' -e 'ASN1 OID: prime256v1'`
SELECT is(:'out'::text, '3', 'the CA: an ECDSA P-256 key, CA:TRUE, for signing certificates');

------------------------------------------------------------------------------
-- a deployment over TLS
------------------------------------------------------------------------------
SELECT id AS dep_id FROM dborch.deploy('tap_tls_pg', 'postgres', '{"memory": "32MB"}') \gset
SELECT is((SELECT status FROM dborch.wait('tap_tls_pg', '90s')), 'ready', 'the deployment is ready (its health check verifies the certificate)');
SELECT dborch.connection_string('tap_tls_pg') AS uri \gset
SELECT is(substring(:'uri' FROM '\?(.*)$'), 'sslmode=verify-full&sslrootcert=' || :'ca_file',
          'its connection string asks for verify-full against the CA file');
\set out `psql :'uri' -XAtq -c "SELECT ssl || ' ' || (version IN ('TLSv1.2', 'TLSv1.3')) FROM pg_stat_ssl WHERE pid = pg_backend_pid()" 2>&1`
SELECT is(:'out'::text, 'true true', 'psql with the connection string is on TLS 1.2 or newer');

SELECT i.data_directory AS inst_dir, i.port AS port FROM dborch.instances i
 WHERE i.deployment_id = :dep_id AND i.role = 'primary' AND i.status <> 'destroyed' \gset
\set out `stat -c '%a' :'inst_dir'/tls/server.key; test -e :'inst_dir'/data/server.key && echo in-data || echo not-in-data`
SELECT is(:'out'::text, E'600\nnot-in-data', 'the server key is 0600, outside the data directory');
\set out `openssl verify -CAfile :'ca_file' :'inst_dir'/tls/server.crt 2>&1`
SELECT is(:'out'::text, :'inst_dir' || '/tls/server.crt: OK', 'the server certificate is signed by the CA');
\set out `openssl x509 -in :'inst_dir'/tls/server.crt -noout -ext subjectAltName,extendedKeyUsage 2>&1 | tr -d ' ' | grep -v '^X509v3' | tr '\n' ' '`
SELECT is(:'out'::text, 'TLSWebServerAuthentication IPAddress:127.0.0.1,DNS:localhost ',
          'it names 127.0.0.1 and localhost, for server authentication');
\set out `f=:'inst_dir'/tls/server.crt; openssl x509 -in $f -noout -checkend 7689600 >/dev/null && echo past-89-days; openssl x509 -in $f -noout -checkend 7862400 >/dev/null || echo not-91-days`
SELECT is(:'out'::text, E'past-89-days\nnot-91-days', 'it is valid for dborch.certificate_lifetime (90 days)');

------------------------------------------------------------------------------
-- clients that do not verify, or verify against something else
------------------------------------------------------------------------------
SELECT regexp_replace(:'uri', '\?.*$', '?sslmode=disable') AS uri_plain \gset
\set out `psql :'uri_plain' -XAtq -c 'SELECT 1' 2>&1`
SELECT matches(:'out'::text, 'pg_hba.conf rejects connection .* no encryption', 'a client without TLS is refused');
\set other_dir `mktemp -d`
\set out `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=other -days 1 -keyout :'other_dir'/k.pem -out :'other_dir'/ca.pem 2>&1 >/dev/null; echo $?`
SELECT regexp_replace(:'uri', 'sslrootcert=.*$', 'sslrootcert=' || :'other_dir' || '/ca.pem') AS uri_other_ca \gset
\set out `psql :'uri_other_ca' -XAtq -c 'SELECT 1' 2>&1`
SELECT matches(:'out'::text, 'certificate verify failed', 'a client that trusts another CA is refused');
\set out `psql "$(echo :'uri' | sed 's#@127.0.0.1:#@wrong-name.invalid:#')&hostaddr=127.0.0.1" -XAtq -c 'SELECT 1' 2>&1`
SELECT matches(:'out'::text, 'does not match host name "wrong-name.invalid"', 'a host name the certificate does not name is refused');
\set out `rm -rf :'other_dir'`

------------------------------------------------------------------------------
-- a replica gets a certificate of its own; tenants connect over TLS too
------------------------------------------------------------------------------
SELECT 1 FROM dborch.scale('tap_tls_pg', replicas => 1) \g /dev/null
SELECT id AS scale_job FROM dborch.jobs WHERE deployment_id = :dep_id AND kind = 'scale' ORDER BY id DESC LIMIT 1 \gset
SELECT is(pg_temp.tap_job_end(:scale_job, '120s'), 'succeeded', 'a replica is added');
SELECT data_directory AS r_dir FROM dborch.instances
 WHERE deployment_id = :dep_id AND role = 'replica' AND status <> 'destroyed' \gset
\set out `openssl x509 -in :'inst_dir'/tls/server.crt -noout -serial; openssl x509 -in :'r_dir'/tls/server.crt -noout -serial`
SELECT is(array_length(array(SELECT DISTINCT l FROM regexp_split_to_table(:'out', E'\n') l), 1), 2,
          'the replica has a certificate of its own (another serial)');
SELECT dborch.connection_string('tap_tls_pg', intent => 'read') AS r_uri \gset
\set out `psql :'r_uri' -XAtq -c "SELECT pg_is_in_recovery()::text || ' ' || ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()" 2>&1`
SELECT is(:'out'::text, 'true true', 'a read connection string reaches the replica over verified TLS');
SELECT 1 FROM dborch.create_tenant('tap_tls_pg', 'acme') \g /dev/null
SELECT ok(pg_temp.tap_until($$SELECT status = 'active' FROM dborch.tenants WHERE name = 'acme'
                               AND deployment_id = (SELECT id FROM dborch.deployments WHERE name = 'tap_tls_pg' AND status <> 'destroyed')$$, '60s'),
          'a tenant is active');
SELECT dborch.connection_string('tap_tls_pg', 'acme') AS t_uri \gset
-- (a tenant's session runs as its owner role, which may not read its own pg_stat_ssl row: \conninfo says)
\set out `psql :'t_uri' -XAtq -c 'SELECT session_user' -c '\conninfo' 2>&1`
SELECT matches(:'out'::text, '^acme\n.*SSL connection \(protocol: TLSv1\.[23]', 'the tenant''s connection string logs in over verified TLS');

------------------------------------------------------------------------------
-- allow: the networks owners and tenants may connect from
------------------------------------------------------------------------------
SELECT is(pg_temp.tap_error($$SELECT dborch.deploy('tap_tls_x', 'postgres', '{"allow": ["10.0.0.300/8"]}')$$),
          '22023: invalid value for option "allow": ''10.0.0.300/8''', 'allow: a bad network is refused (22023)');
SELECT matches(pg_temp.tap_error_full($$SELECT dborch.deploy('tap_tls_x', 'postgres', '{"allow": ["10.0.0.1/8"]}')$$),
               '^22023: .*bits set to right of mask', 'allow: a network with host bits is refused, saying why');
SELECT matches(pg_temp.tap_error($$SELECT dborch.deploy('tap_tls_x', 'postgres', '{"allow": "10.0.0.0/8"}')$$),
               '^22023: option "allow" must be a list', 'allow: a string instead of a list is refused');
SELECT matches(pg_temp.tap_error($$SELECT dborch.deploy('tap_tls_x', 'postgres', '{"allow": []}')$$),
               '^22023: option "allow" must name at least one network', 'allow: an empty list is refused');
SELECT matches(pg_temp.tap_error_full($$SELECT dborch.deploy('tap_tls_x', 'redis', '{"allow": ["127.0.0.1/32"]}')$$),
               '^22023: .*Redis has no filter.*\| .*ACL users and a firewall', 'allow on Redis is refused, with a hint');
BEGIN;
SELECT is((SELECT spec -> 'allow' FROM dborch.deploy('tap_tls_x', 'postgres', '{"allow": ["10.1.2.3", "2001:db8::/32"]}')),
          '["10.1.2.3/32", "2001:db8::/32"]'::jsonb, 'allow is normalized: an address alone is a /32');
ROLLBACK;

SELECT 1 FROM dborch.deploy('tap_tls_out', 'postgres', '{"memory": "32MB", "allow": ["10.0.0.0/8"]}') \g /dev/null
SELECT 1 FROM dborch.deploy('tap_tls_in', 'postgres', '{"memory": "32MB", "allow": ["127.0.0.0/8", "::1/128"]}') \g /dev/null
SELECT is((SELECT array_agg(status ORDER BY name) FROM (SELECT (dborch.wait(n, '90s')).* FROM unnest(ARRAY['tap_tls_in', 'tap_tls_out']) n) w),
          ARRAY['ready', 'ready'], 'deployments that allow 10.0.0.0/8 and 127.0.0.0/8 are ready (dborch''s own checks still connect)');
SELECT dborch.connection_string('tap_tls_out') AS out_uri \gset
SELECT dborch.connection_string('tap_tls_in') AS in_uri \gset
\set out `psql :'out_uri' -XAtq -c 'SELECT 1' 2>&1`
SELECT matches(:'out'::text, 'no pg_hba.conf entry for host "127.0.0.1", user "owner"', 'a client outside allow is refused');
\set out `psql :'in_uri' -XAtq -c 'SELECT 1' 2>&1`
SELECT is(:'out'::text, '1', 'a client inside allow connects');
SELECT pg_temp.tap_dborch_uri(:'in_uri', 'tap_tls_in') AS in_admin \gset
\set out `psql :'in_admin' -XAtqc "SELECT string_agg(type || ' ' || array_to_string(user_name, ',') || ' ' || coalesce(address || '/' || netmask, '-'), '; ' ORDER BY line_number) FROM pg_hba_file_rules WHERE type LIKE 'host%'" 2>&1`
SELECT is(:'out'::text, 'hostssl postgres 127.0.0.1/255.255.255.255; hostssl all 127.0.0.0/255.0.0.0; hostssl all ::1/ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff; hostnossl all -',
          'pg_hba.conf: dborch''s login from the listen address, one hostssl line per network, nothing without TLS');

------------------------------------------------------------------------------
-- keys stay in their files
------------------------------------------------------------------------------
SELECT is((SELECT count(*) FROM dborch.events WHERE message LIKE '%PRIVATE KEY%' OR detail::text LIKE '%PRIVATE KEY%'),
          0::bigint, 'no event holds a key');
\set out `grep -l 'PRIVATE KEY' :'test_dir'/server.log :'inst_dir'/postgresql.log 2>/dev/null | wc -l`
SELECT is(:'out'::text, '0', 'neither the control plane''s log nor the instance''s holds a key');

SELECT * FROM finish();

------------------------------------------------------------------------------
-- cleanup, also after a failure above
------------------------------------------------------------------------------
SELECT count(dborch.destroy(name)) AS n FROM dborch.deployments
 WHERE name LIKE 'tap\_tls\_%' AND status NOT IN ('destroyed', 'destroying') \gset
SELECT count(pg_temp.tap_settle(name, '60s')) AS n FROM dborch.deployments
 WHERE name LIKE 'tap\_tls\_%' AND status = 'destroying' \gset
