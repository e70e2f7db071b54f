/*
 * job_alerts.c
 *		The deliver_alerts job: POST every due alert (Alertmanager webhook
 *		JSON) to dborch.alert_webhook_url with libcurl, each with a timeout,
 *		and record the outcome.  A failed delivery is retried with backoff
 *		(1 s doubling to 10 s, with jitter) for a day, so nothing is lost
 *		while the receiver is down.  The launcher queues this job when
 *		deliveries are due; it never runs inside a user's transaction.
 */
#include "postgres.h"

#include <curl/curl.h>

#include "common/pg_prng.h"

#include "dborch.h"
#include "job.h"

#define ALERTS_PER_JOB 100

/* Discard the receiver's response body. */
static size_t
discard_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	return size * nmemb;
}

/* POST one payload; NULL on a 2xx answer, else the reason. */
static char *
post_alert(CURL *curl, const char *url, const char *payload)
{
	struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
	CURLcode	rc;
	long		status = 0;
	char	   *failure = NULL;

	curl_easy_reset(curl);
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long) dborch_alert_timeout_ms);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(curl, CURLOPT_POSTFIELDS, payload);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard_body);
	rc = curl_easy_perform(curl);
	if (rc != CURLE_OK)
		failure = pstrdup(curl_easy_strerror(rc));
	else
	{
		curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
		if (status < 200 || status > 299)
			failure = psprintf("the receiver answered HTTP %ld", status);
	}
	curl_slist_free_all(headers);
	return failure;
}

static void
stage_deliver(JobContext *ctx)
{
	CatResult  *due;
	CURL	   *curl;
	int			i;

	if (dborch_alert_webhook_url == NULL || dborch_alert_webhook_url[0] == '\0')
		return;
	due = cat_due_alerts(ALERTS_PER_JOB);
	if (due->nrows == 0)
		return;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	curl = curl_easy_init();
	if (curl == NULL)
		elog(ERROR, "dborch: could not initialize libcurl");
	for (i = 0; i < due->nrows; i++)
	{
		int64		id = strtoi64(cat_value(due, i, "id"), NULL, 10);
		int			attempts = atoi(cat_value(due, i, "attempts"));
		char	   *failure = post_alert(curl, dborch_alert_webhook_url, cat_value(due, i, "payload"));
		int			delay = Min(1000 << Min(attempts, 4), 10000);

		delay = (int) (delay * (0.75 + 0.5 * pg_prng_double(&pg_global_prng_state)));
		cat_alert_attempted(id, failure == NULL, failure, delay);
	}
	curl_easy_cleanup(curl);
}

static void
undo_alerts(JobContext *ctx, const char *reason)
{
	/* nothing to remove: undelivered alerts stay pending */
}

static const JobStage alert_stages[] = {
	{"deliver", stage_deliver},
};

const JobKind job_kind_deliver_alerts = {
	.name = "deliver_alerts",
	.stages = alert_stages,
	.nstages = lengthof(alert_stages),
	.undo = undo_alerts,
};
