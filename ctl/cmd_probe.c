/*
 * cmd_probe.c - callsyncctl connections test: ask the provider, with the
 * connection's own credentials and settings, whether a sync would get
 * through. The provider module's probe step (prov.h) builds read-only
 * requests and reads the answers; this command sends them with libcurl,
 * blocking, exactly as the worker would (same URLs, headers, base-URL
 * override). Nothing is written at the provider, and the connection row is
 * left as it is: the answer is for the operator.
 */
#include "crypto.h"
#include "ctl.h"
#include "oauth.h"
#include "prov.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Requests one probe may make, and the most of an answer kept. */
#define PROBE_MAX_REQUESTS 8
#define PROBE_MAX_BODY (1 << 20)
#define PROBE_MAX_HEADERS 64

/* The exit code for a provider that has no read-only call. */
#define CTL_UNTESTABLE 4

struct answer {
    char *body;
    size_t len;
    bool too_big;
    struct prov_header headers[PROBE_MAX_HEADERS];
    size_t nheaders;
};

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    struct answer *a = arg;
    size_t add = size * n;
    if (a->len + add > PROBE_MAX_BODY) {
        a->too_big = true;
        return 0;
    }
    a->body = xrealloc(a->body, a->len + add + 1);
    memcpy(a->body + a->len, p, add);
    a->len += add;
    a->body[a->len] = '\0';
    return add;
}

/* Keep "name: value" header lines, names lower-cased (prov.h's rule). */
static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
    struct answer *a = arg;
    size_t len = size * n;
    const char *colon = memchr(p, ':', len);
    if (!colon || a->nheaders == PROBE_MAX_HEADERS)
        return len;
    size_t nl = (size_t)(colon - p);
    const char *v = colon + 1;
    size_t vl = len - nl - 1;
    while (vl && (*v == ' ' || *v == '\t')) {
        v++;
        vl--;
    }
    while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' '))
        vl--;
    char *name = xstrndup(p, nl);
    for (char *c = name; *c; c++)
        if (*c >= 'A' && *c <= 'Z')
            *c = (char)(*c - 'A' + 'a');
    a->headers[a->nheaders].name = name;
    a->headers[a->nheaders].value = xstrndup(v, vl);
    a->nheaders++;
    return len;
}

static void answer_release(struct answer *a)
{
    free(a->body);
    for (size_t i = 0; i < a->nheaders; i++) {
        free(a->headers[i].name);
        free(a->headers[i].value);
    }
    memset(a, 0, sizeof(*a));
}

/* Send rq and fill *a; status 0 and *err for a transport failure. */
static int send_blocking(const struct prov_request *rq, int timeout_ms,
                         struct answer *a, char *err, size_t errlen)
{
    CURL *c = curl_easy_init();
    if (!c) {
        snprintf(err, errlen, "cannot create an HTTP handle");
        return 0;
    }
    struct curl_slist *hdrs = NULL;
    for (size_t i = 0; i < rq->nheaders; i++) {
        char *h = xasprintf("%s: %s", rq->headers[i].name,
                            rq->headers[i].value);
        hdrs = curl_slist_append(hdrs, h);
        memset(h, 0, strlen(h));
        free(h);
    }
    char errbuf[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(c, CURLOPT_URL, rq->url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, rq->method);
    if (rq->body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, rq->body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)rq->body_len);
    } else if (strcmp(rq->method, "GET") == 0) {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS,
                     (long)(rq->timeout_ms > 0 ? rq->timeout_ms : timeout_ms));
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, a);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, a);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    CURLcode cc = curl_easy_perform(c);
    long status = 0;
    if (cc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    else
        snprintf(err, errlen, "%s",
                 a->too_big ? "the answer is larger than 1 MiB"
                 : errbuf[0] ? errbuf
                             : curl_easy_strerror(cc));
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
    return (int)status;
}

/* A sealed column opened, or NULL (NULL column, or no key for it). */
static char *open_col(const struct cs_keyring *kr, const PGresult *r, int col)
{
    if (PQgetisnull(r, 0, col))
        return NULL;
    const char *v = PQgetvalue(r, 0, col);
    if (strncmp(v, "v1:", 3) != 0)
        return xstrdup(v); /* not a secret column (URLs) */
    if (!kr)
        return NULL;
    struct cs_err err = {0};
    size_t n;
    return cs_open(kr, v, &n, &err);
}

static void wipe_free(char *s)
{
    if (s) {
        memset(s, 0, strlen(s));
        free(s);
    }
}

static const char *outcome_name(enum prov_outcome o)
{
    switch (o) {
    case PROV_RETRY: return "transient";
    case PROV_RATE_LIMITED: return "rate_limited";
    case PROV_AUTH: return "unauthorized";
    case PROV_PERMANENT: return "refused";
    default: return "ok";
    }
}

/* Print the outcome (detail is stolen) and return the exit code. */
static int report(const struct ctl *ctl, const char *id, const char *type,
                  bool ok, json_t *detail)
{
    if (ctl->json) {
        json_t *o = json_pack("{s:s,s:s,s:b,s:O}", "id", id, "type", type,
                              "ok", ok, ok ? "result" : "error", detail);
        char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        puts(s);
        free(s);
        json_decref(o);
    } else if (ok) {
        char *s = json_dumps(detail, JSON_COMPACT | JSON_PRESERVE_ORDER);
        printf("%s connection %s: ok %s\n", type, id, s);
        free(s);
    } else {
        const char *msg = json_string_value(json_object_get(detail,
                                                            "message"));
        const char *what = json_string_value(json_object_get(detail,
                                                             "outcome"));
        json_int_t http = json_integer_value(json_object_get(detail,
                                                             "http_status"));
        char status[24] = "";
        if (http)
            snprintf(status, sizeof(status), ", HTTP %lld", (long long)http);
        printf("%s connection %s: FAILED (%s%s): %s\n", type, id,
               what ? what : "refused", status, msg ? msg : "");
    }
    json_decref(detail);
    return ok ? CTL_OK : CTL_FAIL;
}

int ctl_connections_test(struct ctl *ctl, int argc, char **argv)
{
    static const char usage[] =
        "usage: callsyncctl connections test CONNECTION_ID [--json]\n\n"
        "Ask the provider, with the connection's own credentials and\n"
        "settings, whether a sync would get through: read-only requests,\n"
        "sent as the worker sends them, honouring CALLSYNC_PROVIDER_BASE_URLS:\n"
        "  hubspot          the account's details, then one contact\n"
        "  gohighlevel      the configured sub-account (location)\n"
        "  salesforce       one record of the object (SOQL), the API usage\n"
        "  pipedrive        the token's user and company (users/me)\n"
        "  zoho             one record of the module, then the org\n"
        "  google_calendar  the configured calendar (name, time zone)\n"
        "  cal_com          the key's user profile (/v2/me)\n"
        "  calendly         the current user, then the event type (active)\n"
        "  outlook          the calendar, which the token must be able to edit\n"
        "  stripe           the account, then one customer\n"
        "  twilio           the account (or, with an API key, its messages)\n"
        "  sendgrid         the key's scopes, which must include mail.send\n"
        "Nothing is written at the provider and the connection is left as\n"
        "it is.\n"
        "exit codes: 0 the provider accepted, 1 it refused or could not be\n"
        "reached, 2 usage or configuration, 3 no such connection, 4 the\n"
        "provider has no read-only call (the message says why)\n";
    const struct ctl_opt opts[] = {{NULL, NULL, NULL}};
    const char *pos[1];
    int npos;
    PARSE(ctl, argc, argv, opts, 0, pos, 1, &npos, usage);
    if (npos != 1)
        return ctl_fail(CTL_USAGE, "connections test needs a connection id");
    if (!ctl_is_uuid(pos[0]))
        return ctl_fail(CTL_USAGE, "invalid connection id '%s'", pos[0]);
    int rc = ctl_db(ctl);
    if (rc)
        return rc;
    const char *params[] = {pos[0]};
    PGresult *r = ctl_query(
        ctl, "look up connection",
        "SELECT integration_type, config::text, access_token, api_key, "
        "api_secret, webhook_url, instance_url FROM integration_connections "
        "WHERE id = $1",
        1, params);
    if (!r)
        return CTL_FAIL;
    if (PQntuples(r) == 0) {
        PQclear(r);
        return ctl_fail(CTL_NOTFOUND, "connection '%s' not found", pos[0]);
    }
    char *type = xstrdup(PQgetvalue(r, 0, 0));
    const struct prov_ops *ops = prov_find(type);
    if (!ops || !ops->probe) {
        PQclear(r);
        rc = ctl_fail(CTL_UNTESTABLE, "%s connections cannot be tested: %s",
                      type, !ops ? "callsync has no module for it yet"
                            : ops->no_probe ? ops->no_probe
                                            : "it has no read-only call");
        free(type);
        return rc;
    }
    struct cs_err kerr = {0};
    struct cs_keyring *kr = cs_keyring_new(ctl->cfg.encryption_keys, &kerr);
    json_t *config = json_loads(PQgetvalue(r, 0, 1), 0, NULL);
    char *access = open_col(kr, r, 2), *api_key = open_col(kr, r, 3),
         *api_secret = open_col(kr, r, 4), *webhook = open_col(kr, r, 5),
         *instance = open_col(kr, r, 6);
    bool sealed_missing = !kr && (!PQgetisnull(r, 0, 2) ||
                                  !PQgetisnull(r, 0, 3) ||
                                  !PQgetisnull(r, 0, 4));
    PQclear(r);
    cs_keyring_free(kr);
    if (sealed_missing) {
        rc = ctl_fail(CTL_USAGE, "cannot open the connection's secrets: %s "
                      "(CALLSYNC_ENCRYPTION_KEYS)", kerr.msg);
        goto out;
    }
    struct prov_creds creds = {access, api_key, api_secret, webhook,
                               instance};
    char *base = oauth_spec_get(ctl->cfg.provider_base_urls, type);
    json_t *job = json_pack("{s:s,s:s,s:s}", "job_id", "probe", "provider",
                            type, "connection_id", pos[0]);
    json_t *done = json_object();
    struct prov_ctx ctx = {
        .job = job,
        .config = config ? config : json_object(),
        .creds = &creds,
        .done = done,
        .scratch = json_object(),
        .idempotency_key = "probe",
        .base_url = base,
    };
    rc = -1;
    for (int i = 0; i < PROBE_MAX_REQUESTS && rc < 0; i++) {
        struct prov_request rq = {0};
        struct cs_err berr = {0};
        ctx.now_ms = cs_now_ms();
        if (ops->probe->build(&ctx, &rq, &berr) != 0) {
            prov_request_release(&rq);
            rc = report(ctl, pos[0], type, false,
                        json_pack("{s:s,s:s,s:s}", "outcome", "refused",
                                  "code", "config_error", "message",
                                  berr.msg));
            break;
        }
        struct answer a = {0};
        char terr[CURL_ERROR_SIZE + 64] = "";
        int status = send_blocking(&rq, ctl->cfg.worker_request_timeout_ms,
                                   &a, terr, sizeof(terr));
        struct prov_response rsp = {status, a.nheaders, a.headers, a.body,
                                    a.len};
        struct prov_result res = {0};
        res.retry_after_ms = -1;
        ops->probe->parse(&ctx, &rsp, &res);
        if (status == 0 && !res.message[0])
            snprintf(res.message, sizeof(res.message), "%.200s", terr);
        prov_request_release(&rq);
        answer_release(&a);
        if (res.outcome == PROV_NEXT) {
            prov_result_release(&res);
            continue;
        }
        if (res.outcome == PROV_DONE || res.outcome == PROV_SKIP) {
            rc = report(ctl, pos[0], type, true,
                        res.value ? json_incref(res.value) : json_object());
        } else {
            rc = report(ctl, pos[0], type, false,
                        json_pack("{s:s,s:s,s:i,s:s}", "outcome",
                                  outcome_name(res.outcome), "code", res.code,
                                  "http_status", res.http_status, "message",
                                  res.message));
        }
        prov_result_release(&res);
    }
    if (rc < 0)
        rc = report(ctl, pos[0], type, false,
                    json_pack("{s:s,s:s,s:s}", "outcome", "refused", "code",
                              "too_many_requests", "message",
                              "the probe did not finish within its request "
                              "budget"));
    json_decref(ctx.scratch);
    if (!config)
        json_decref((json_t *)ctx.config);
    json_decref(job);
    json_decref(done);
    free(base);
out:
    json_decref(config);
    wipe_free(access);
    wipe_free(api_key);
    wipe_free(api_secret);
    free(webhook);
    free(instance);
    free(type);
    return rc;
}
