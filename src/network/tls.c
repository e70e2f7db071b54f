/*
 * tls.c
 *		The control plane's certificate authority and the instances' server
 *		certificates, made with OpenSSL's library (no openssl command, so no
 *		key ever reaches a command line).
 *
 * The CA: an ECDSA P-256 key and a self-signed certificate valid ten years,
 * in <data root>/tls/ca/ (the key 0600).  Made by whichever process needs
 * it first, in a directory of its own renamed into place, so that processes
 * racing to make it all use the one that won.
 *
 * An instance's certificate: a new ECDSA P-256 key and a certificate the CA
 * signs, for serverAuth, with subject alternative names for the instance's
 * host, localhost and 127.0.0.1, valid for dborch.certificate_lifetime; in
 * <instance>/tls/, outside the data directory (a replica's base backup does
 * not carry its primary's key).
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/memutils.h"

#include "dborch.h"
#include "tls.h"

#define CA_LIFETIME_S (3650L * 86400)
/* a certificate is valid from a few minutes back: clocks of clients differ */
#define BACKDATE_S 300

static void
openssl_error(const char *what)
{
	unsigned long code = ERR_get_error();

	ERR_clear_error();
	ereport(ERROR,
			(errmsg("dborch: %s failed: %s", what,
					code ? ERR_error_string(code, NULL) : "unknown OpenSSL error")));
}

static char *
ca_directory(void)
{
	return psprintf("%s/tls/ca", dborch_data_root());
}

/* PEM text of a key or a certificate. */
static char *
pem_of(EVP_PKEY *key, X509 *cert)
{
	BIO		   *bio = BIO_new(BIO_s_mem());
	char	   *data;
	long		len;
	char	   *pem;

	if (bio == NULL ||
		(key != NULL && !PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL)) ||
		(cert != NULL && !PEM_write_bio_X509(bio, cert)))
		openssl_error("writing PEM");
	len = BIO_get_mem_data(bio, &data);
	pem = pnstrdup(data, len);
	BIO_free(bio);
	return pem;
}

static void
add_extension(X509 *cert, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *ext;

	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	if (ext == NULL || !X509_add_ext(cert, ext, -1))
		openssl_error("adding a certificate extension");
	X509_EXTENSION_free(ext);
}

/* A certificate for key, named cn, valid for lifetime_s, with a random serial. */
static X509 *
new_certificate(EVP_PKEY *key, const char *cn, long lifetime_s)
{
	X509	   *cert = X509_new();
	BIGNUM	   *serial = BN_new();
	X509_NAME  *name;

	if (cert == NULL || serial == NULL ||
		!X509_set_version(cert, 2) ||
		!BN_rand(serial, 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) ||
		!BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(cert)) ||
		!X509_gmtime_adj(X509_getm_notBefore(cert), -BACKDATE_S) ||
		!X509_gmtime_adj(X509_getm_notAfter(cert), lifetime_s) ||
		!X509_set_pubkey(cert, key))
		openssl_error("making a certificate");
	BN_free(serial);
	name = X509_get_subject_name(cert);
	if (!X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, (const unsigned char *) "dborch", -1, -1, 0) ||
		!X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *) cn, -1, -1, 0))
		openssl_error("naming a certificate");
	return cert;
}

static EVP_PKEY *
new_key(void)
{
	EVP_PKEY   *key = EVP_EC_gen("P-256");

	if (key == NULL)
		openssl_error("generating an ECDSA P-256 key");
	return key;
}

const char *
tls_ca_file(void)
{
	char	   *dir = ca_directory();
	char	   *crt = psprintf("%s/ca.crt", dir);
	char	   *tmp;
	EVP_PKEY   *key;
	X509	   *cert;

	if (dborch_path_exists(crt))
		return crt;

	tmp = psprintf("%s/tls/ca.new.%d", dborch_data_root(), MyProcPid);
	dborch_remove_tree(tmp);
	dborch_mkdir(tmp, 0755);
	key = new_key();
	cert = new_certificate(key, "dborch CA", CA_LIFETIME_S);
	if (!X509_set_issuer_name(cert, X509_get_subject_name(cert)))
		openssl_error("naming the CA");
	add_extension(cert, cert, NID_basic_constraints, "critical,CA:TRUE,pathlen:0");
	add_extension(cert, cert, NID_key_usage, "critical,keyCertSign,cRLSign");
	add_extension(cert, cert, NID_subject_key_identifier, "hash");
	if (!X509_sign(cert, key, EVP_sha256()))
		openssl_error("signing the CA certificate");
	dborch_write_file(psprintf("%s/ca.key", tmp), pem_of(key, NULL), 0600);
	dborch_write_file(psprintf("%s/ca.crt", tmp), pem_of(NULL, cert), 0644);
	X509_free(cert);
	EVP_PKEY_free(key);

	/* the first rename wins; a loser's directory goes */
	if (rename(tmp, dir) != 0)
	{
		if (errno != EEXIST && errno != ENOTEMPTY)
			ereport(ERROR, (errcode_for_file_access(),
							errmsg("could not rename \"%s\" to \"%s\": %m", tmp, dir)));
		dborch_remove_tree(tmp);
	}
	else
		ereport(LOG, (errmsg("dborch: made the certificate authority in \"%s\"", dir)));
	return crt;
}

char *
tls_ca_pem(void)
{
	return dborch_read_file(tls_ca_file(), false);
}

static X509 *
read_ca_certificate(void)
{
	BIO		   *bio = BIO_new_file(tls_ca_file(), "r");
	X509	   *cert = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;

	BIO_free(bio);
	if (cert == NULL)
		openssl_error("reading the CA certificate");
	return cert;
}

static EVP_PKEY *
read_ca_key(void)
{
	const char *file;
	BIO		   *bio;
	EVP_PKEY   *key;

	(void) tls_ca_file();
	file = psprintf("%s/ca.key", ca_directory());
	bio = BIO_new_file(file, "r");
	key = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
	BIO_free(bio);
	if (key == NULL)
		openssl_error("reading the CA key");
	return key;
}

char *
tls_server_cert_file(Instance *inst)
{
	return psprintf("%s/tls/server.crt", inst->directory);
}

char *
tls_server_key_file(Instance *inst)
{
	return psprintf("%s/tls/server.key", inst->directory);
}

/* "IP:127.0.0.1" or "DNS:db.example.com" for a host */
static char *
san_of(const char *host)
{
	unsigned char buf[sizeof(struct in6_addr)];

	if (inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1)
		return psprintf("IP:%s", host);
	return psprintf("DNS:%s", host);
}

void
tls_issue_server_certificate(Instance *inst)
{
	X509	   *ca = read_ca_certificate();
	EVP_PKEY   *ca_key = read_ca_key();
	EVP_PKEY   *key = new_key();
	X509	   *cert = new_certificate(key, inst->host, dborch_certificate_lifetime_s);
	char	   *sans = san_of(inst->host);

	if (strcmp(inst->host, "localhost") != 0)
		sans = psprintf("%s,DNS:localhost", sans);
	if (strcmp(inst->host, "127.0.0.1") != 0)
		sans = psprintf("%s,IP:127.0.0.1", sans);
	if (!X509_set_issuer_name(cert, X509_get_subject_name(ca)))
		openssl_error("naming the issuer");
	add_extension(cert, ca, NID_basic_constraints, "critical,CA:FALSE");
	add_extension(cert, ca, NID_key_usage, "critical,digitalSignature,keyEncipherment");
	add_extension(cert, ca, NID_ext_key_usage, "serverAuth");
	add_extension(cert, ca, NID_subject_alt_name, sans);
	add_extension(cert, ca, NID_authority_key_identifier, "keyid");
	if (!X509_sign(cert, ca_key, EVP_sha256()))
		openssl_error("signing a server certificate");

	dborch_mkdir(psprintf("%s/tls", inst->directory), 0700);
	/* the key first: a certificate is never on disk without its key */
	dborch_write_file(tls_server_key_file(inst), pem_of(key, NULL), 0600);
	dborch_write_file(tls_server_cert_file(inst), pem_of(NULL, cert), 0644);
	X509_free(cert);
	X509_free(ca);
	EVP_PKEY_free(key);
	EVP_PKEY_free(ca_key);
}

bool
tls_server_certificate_due(Instance *inst)
{
	BIO		   *bio;
	X509	   *cert;
	time_t		renew_at = time(NULL) + dborch_certificate_lifetime_s / 3;
	bool		due;

	if (!dborch_path_exists(tls_server_key_file(inst)))
		return true;
	bio = BIO_new_file(tls_server_cert_file(inst), "r");
	cert = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
	BIO_free(bio);
	ERR_clear_error();
	if (cert == NULL)
		return true;
	due = X509_cmp_time(X509_get0_notAfter(cert), &renew_at) <= 0;
	X509_free(cert);
	return due;
}

char *
tls_postgres_uri_params(void)
{
	/* connection_string() runs thousands of times a second: made once per process */
	static char *params = NULL;
	const char *path;
	StringInfoData buf;

	if (params != NULL)
		return params;
	path = tls_ca_file();
	initStringInfo(&buf);
	appendStringInfoString(&buf, "sslmode=verify-full&sslrootcert=");
	for (const char *p = path; *p; p++)
	{
		if (isalnum((unsigned char) *p) || strchr("-._~/", *p) != NULL)
			appendStringInfoChar(&buf, *p);
		else
			appendStringInfo(&buf, "%%%02X", (unsigned char) *p);
	}
	params = MemoryContextStrdup(TopMemoryContext, buf.data);
	return params;
}
