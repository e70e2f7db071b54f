/*
 * tls.h
 *		The control plane's certificate authority and the instances' server
 *		certificates.
 */
#ifndef DBORCH_TLS_H
#define DBORCH_TLS_H

#include "catalog.h"

/*
 * The CA certificate file (PEM), made with its key at the first call:
 * <data root>/tls/ca/ca.crt (0644) and ca.key (0600).  Processes that race
 * to make it end up with the same one.
 */
extern const char *tls_ca_file(void);

/* The CA certificate's PEM text. */
extern char *tls_ca_pem(void);

/*
 * A new key and a certificate signed by the CA for the instance, in
 * <instance>/tls/server.key (0600) and server.crt, each written to a
 * temporary file and renamed into place: subject alternative names for the
 * instance's host, localhost and 127.0.0.1; valid for
 * dborch.certificate_lifetime.
 */
extern void tls_issue_server_certificate(Instance *inst);

/*
 * Does the instance need a new certificate: none, unreadable, or less than
 * a third of dborch.certificate_lifetime left?
 */
extern bool tls_server_certificate_due(Instance *inst);

/* Where an instance's certificate and key are. */
extern char *tls_server_cert_file(Instance *inst);
extern char *tls_server_key_file(Instance *inst);

/*
 * What a PostgreSQL URI needs to verify the server:
 * "sslmode=verify-full&sslrootcert=<CA file, percent-encoded>".
 */
extern char *tls_postgres_uri_params(void);

#endif							/* DBORCH_TLS_H */
