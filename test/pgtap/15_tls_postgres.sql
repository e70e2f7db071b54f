-- TLS for PostgreSQL deployments: the control plane's certificate authority
-- (made at its first start, key 0600) and ca_certificate(); each instance's
-- own server certificate signed by it (key 0600 outside the data directory,
-- subject alternative names, a serial of its own for a replica); connection
-- strings with sslmode=verify-full that psql uses over TLS; a client
-- without TLS, with another CA or with a host name the certificate does not
-- name is refused; no key reaches the catalog or a log.
--
-- Autocommit mode and ON_ERROR_STOP off: see 10_postgres.sql.
\set ON_ERROR_STOP 0
\getenv test_dir DBORCH_TEST_DIR
SET client_min_messages = warning;
\ir helpers.psql

SELECT plan(21);

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
 WHERE name = 'tap_tls_pg' AND status NOT IN ('destroyed', 'destroying') \gset
SELECT count(pg_temp.tap_settle(name, '60s')) AS n FROM dborch.deployments
 WHERE name = 'tap_tls_pg' AND status = 'destroying' \gset
