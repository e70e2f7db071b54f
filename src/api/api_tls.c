/*
 * api_tls.c
 *		dborch.ca_certificate(): the certificate authority's PEM, for
 *		clients that verify the instances' certificates.
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"

#include "api.h"
#include "tls.h"

PG_FUNCTION_INFO_V1(dborch_ca_certificate);

Datum
dborch_ca_certificate(PG_FUNCTION_ARGS)
{
	ApiCaller	caller;
	char	   *pem;

	api_enter(&caller);
	pem = tls_ca_pem();
	api_leave(&caller);
	PG_RETURN_TEXT_P(cstring_to_text(pem));
}
