/*
 * routes.c - what each endpoint of callsync-ingest does.
 *
 * Order of checks, so that nothing forged or malformed gets in and nothing
 * is parsed before it is authenticated:
 *
 *   retell, callrail, standard:  signature (keys from config) -> parse and
 *                                normalise -> agent look-up -> enqueue
 *   tools (live calls):          signature -> parse -> agent look-up ->
 *                                one live request, answered when the
 *                                worker replies (tools.c)
 *   calcom, stripe, outbound:    look-up of the connection or agent named
 *                                in the path (its secret) -> signature ->
 *                                parse and normalise -> enqueue
 *
 * A webhook is answered 202 only once Redis has accepted its jobs (the
 * enqueue script's reply); 200 for a duplicate (with the original job ids)
 * or an event that needs no job; 503 with Retry-After when Redis or
 * PostgreSQL cannot answer in time.
 */
#include "ingest.h"
#include "log.h"
#include "sig.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct ing_secrets ing_secrets;

/* Per-request state across the asynchronous steps. */
struct rctx {
    struct ing_conn *c;
    struct ing_request *rq;
    enum ing_route route;
    char *param;               /* connection id, agent id or source */
    struct cs_event ev;
    json_t *outbound;          /* validated outbound request */
    char *idem_key;
    int njobs;
    char *providers[64];       /* provider per job, for metrics */
};

static struct rctx *rctx_new(struct ing_conn *c, struct ing_request *rq)
{
    struct rctx *x = xcalloc(1, sizeof(*x));
    x->c = c;
    x->rq = rq;
    x->route = rq->route;
    return x;
}

static void rctx_free(struct rctx *x)
{
    cs_event_release(&x->ev);
    json_decref(x->outbound);
    free(x->param);
    free(x->idem_key);
    for (int i = 0; i < x->njobs; i++)
        free(x->providers[i]);
    free(x);
}

static const struct cs_norm_opts *norm_opts(struct ing_loop *l)
{
    static __thread struct cs_norm_opts o;
    o.default_country_code = l->cfg->default_country_code;
    return &o;
}

/* ---- Routing ----------------------------------------------------------- */

static bool is_uuid(const char *s)
{
    if (strlen(s) != 36)
        return false;
    for (int i = 0; i < 36; i++) {
        char ch = s[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (ch != '-')
                return false;
        } else if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') ||
                     (ch >= 'A' && ch <= 'F'))) {
            return false;
        }
    }
    return true;
}

static bool is_source_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 32)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') ||
              s[i] == '_' || s[i] == '-'))
            return false;
    return true;
}

/* If path is prefix + one segment (+ suffix), return the segment. */
static char *segment(const char *path, const char *prefix, const char *suffix)
{
    size_t pl = strlen(prefix);
    if (strncmp(path, prefix, pl) != 0)
        return NULL;
    const char *seg = path + pl;
    const char *end = strchr(seg, '/');
    size_t n = end ? (size_t)(end - seg) : strlen(seg);
    if (n == 0)
        return NULL;
    const char *rest = seg + n;
    if (strcmp(rest, suffix) != 0)
        return NULL;
    return xstrndup(seg, n);
}

static bool json_content_type(const char *ct)
{
    if (!ct)
        return false;
    while (*ct == ' ')
        ct++;
    static const char want[] = "application/json";
    if (strncasecmp(ct, want, sizeof(want) - 1) != 0)
        return false;
    char next = ct[sizeof(want) - 1];
    return next == '\0' || next == ';' || next == ' ';
}

int ing_route_early(struct ing_conn *c, struct ing_request *rq)
{
    const char *url = rq->url ? rq->url : "";
    size_t plen = strcspn(url, "?#");
    rq->path = xstrndup(url, plen);
    const char *p = rq->path;
    bool post = true;
    char *seg = NULL;

    if (strcmp(p, "/healthz") == 0) {
        rq->route = R_HEALTHZ;
        post = false;
    } else if (strcmp(p, "/readyz") == 0) {
        rq->route = R_READYZ;
        post = false;
    } else if (strcmp(p, "/metrics") == 0) {
        rq->route = R_METRICS;
        post = false;
    } else if (strcmp(p, "/webhooks/retell") == 0) {
        rq->route = R_RETELL;
    } else if (strcmp(p, "/tools/retell") == 0 ||
               strncmp(p, "/tools/retell/", 14) == 0) {
        rq->route = R_TOOLS;
    } else if (strcmp(p, "/webhooks/callrail") == 0) {
        rq->route = R_CALLRAIL;
    } else if ((seg = segment(p, "/webhooks/calcom/", ""))) {
        rq->route = R_CALCOM;
    } else if ((seg = segment(p, "/webhooks/stripe/", ""))) {
        rq->route = R_STRIPE;
    } else if ((seg = segment(p, "/webhooks/standard/", ""))) {
        rq->route = R_STANDARD;
    } else if ((seg = segment(p, "/api/agents/", "/outbound/call"))) {
        rq->route = R_OUTBOUND;
    } else {
        rq->route = R_OTHER;
        ing_set_early_reason(c, RJ_NOT_FOUND);
        return 404;
    }
    free(seg);
    bool ok_method = post ? rq->method == HTTP_POST
                          : (rq->method == HTTP_GET || rq->method == HTTP_HEAD);
    if (!ok_method) {
        ing_set_early_reason(c, RJ_METHOD_NOT_ALLOWED);
        return 405;
    }
    if (post && !json_content_type(ing_header(rq, "content-type"))) {
        ing_set_early_reason(c, RJ_UNSUPPORTED_MEDIA_TYPE);
        return 415;
    }
    return 0;
}

/* ---- Common answers ---------------------------------------------------- */

void ing_fail_sig(struct ing_conn *c, int rc, const char *what)
{
    enum ing_reason why = RJ_BAD_SIGNATURE;
    const char *msg = "signature does not match";
    switch (rc) {
    case CS_ENOENT:
        why = RJ_MISSING_SIGNATURE;
        msg = "signature header is missing";
        break;
    case CS_EINVAL:
        why = RJ_MALFORMED_SIGNATURE;
        msg = "signature header is malformed";
        break;
    case CS_ESTALE:
        why = RJ_STALE_TIMESTAMP;
        msg = "signature timestamp is outside the accepted window";
        break;
    default:
        break;
    }
    ing_fail(c, 401, why, "%s: %s", what, msg);
}

void ing_fail_norm(struct ing_conn *c, const struct cs_err *err)
{
    enum ing_reason why = err->field[0] ? RJ_INVALID_FIELD : RJ_INVALID_JSON;
    met_reject(why);
    json_t *o = json_pack("{s:s,s:s}", "error", ing_reason_name(why),
                          "message", err->msg);
    if (err->field[0]) {
        json_object_set_new(o, "field", json_string(err->field));
        char *m = xasprintf("%s: %s", err->field, err->msg);
        json_object_set_new(o, "message", json_string(m));
        free(m);
    }
    ing_respond_json(c, 400, o);
}

static void answer_ignored(struct ing_conn *c, enum ing_route r,
                           const char *reason, const char *event)
{
    met_ignored(r);
    ing_respond_json(c, 200,
                     json_pack("{s:s,s:s,s:s?}", "status", "ignored", "reason",
                               reason, "event", event));
}

/* ---- Enqueue ----------------------------------------------------------- */

static json_t *split_ids(const char *ids)
{
    json_t *a = json_array();
    while (ids && *ids) {
        size_t n = strcspn(ids, ",");
        json_array_append_new(a, json_stringn(ids, n));
        ids += n;
        if (*ids == ',')
            ids++;
    }
    return a;
}

static void on_enqueued(int rc, bool duplicate, const char *ids, void *arg)
{
    struct rctx *x = arg;
    if (!ing_conn_release(x->c)) {
        rctx_free(x);
        return;
    }
    if (rc) {
        ing_fail(x->c, 503, RJ_REDIS_UNAVAILABLE,
                 "the queue cannot take jobs now; retry later");
        rctx_free(x);
        return;
    }
    const char *event_id = x->ev.event_id ? x->ev.event_id : x->idem_key;
    json_t *o = json_pack("{s:s,s:s?,s:o}", "status",
                          duplicate ? "duplicate" : "accepted", "event_id",
                          event_id, "job_ids", split_ids(ids));
    if (duplicate) {
        met_duplicate(x->route);
    } else {
        for (int i = 0; i < x->njobs; i++)
            met_jobs(x->providers[i], 1);
    }
    ing_respond_json(x->c, duplicate ? 200 : 202, o);
    rctx_free(x);
}

/* Keys must stay short: long ids from the outside are hashed. */
static char *seen_key(unsigned shard, const char *source, const char *id)
{
    if (strlen(id) <= 128)
        return xasprintf("cs:{%u}:seen:%s:%s", shard, source, id);
    unsigned char h[CS_SHA256_LEN];
    char hex[2 * CS_SHA256_LEN + 1];
    cs_sha256(id, strlen(id), NULL, 0, h);
    cs_hex_encode(h, sizeof(h), hex);
    return xasprintf("cs:{%u}:seen:%s:h:%s", shard, source, hex);
}

/*
 * The parts of a job's JSON that all jobs of one event share, serialised
 * once: the call (the bulk of it) and the event's fields. Each job is then
 * spliced together from them, so a webhook with N connections costs one
 * serialisation of its call, not N.
 */
struct job_parts {
    char *common;              /* {"kind":..,"event_id":..} */
    size_t common_len;
    char *call;                /* the call document */
    size_t call_len;
};

static void job_parts_init(struct job_parts *jp, const struct rctx *x,
                           const struct ing_agent *a, const char *now)
{
    json_t *o = json_pack("{s:s,s:s,s:s?,s:i,s:s,s:s,s:s,s:s}", "kind",
                          "call_sync", "agent_id", a->id, "org_id", a->org_id,
                          "attempt", 0, "first_enqueued_at", now, "source",
                          x->ev.source, "event_type", x->ev.event_type,
                          "event_id", x->ev.event_id);
    jp->common = json_dumps(o, JSON_COMPACT);
    jp->common_len = strlen(jp->common);
    json_decref(o);
    jp->call = json_dumps(x->ev.call, JSON_COMPACT);
    jp->call_len = strlen(jp->call);
}

static void job_parts_release(struct job_parts *jp)
{
    free(jp->common);
    free(jp->call);
}

/* {"job_id":..,"provider":..,"connection_id":..,<common>,"call":<call>}.
 * The id is hex, the type is checked against a fixed list by the schema
 * and the connection id is a UUID, so none of them needs escaping. */
static char *job_payload(const struct job_parts *jp,
                         const struct ing_connection *conn, const char *job_id)
{
    struct buf b;
    buf_init(&b, SIZE_MAX / 2);
    int rc = buf_addf(&b, "{\"job_id\":\"%s\",\"provider\":\"%s\","
                          "\"connection_id\":\"%s\",",
                      job_id, conn->type, conn->id);
    if (!rc)
        rc = buf_add(&b, jp->common + 1, jp->common_len - 2);
    if (!rc)
        rc = buf_adds(&b, ",\"call\":");
    if (!rc)
        rc = buf_add(&b, jp->call, jp->call_len);
    if (!rc)
        rc = buf_adds(&b, "}");
    CS_ASSERT(rc == 0);
    return buf_take(&b, NULL);
}

static bool safe_token(const char *s)
{
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == '-'))
            return false;
    return true;
}

static void enqueue_call(struct rctx *x, const struct ing_agent *a,
                         const char *exclude_conn)
{
    struct ing_loop *l = ing_conn_loop(x->c);
    if (x->route == R_RETELL && strcmp(x->ev.event_type, a->sync_on) != 0) {
        char why[96];
        snprintf(why, sizeof(why), "agent syncs on %s", a->sync_on);
        answer_ignored(x->c, x->route, why, x->ev.event_type);
        rctx_free(x);
        return;
    }
    json_object_set_new(x->ev.call, "agent_id", json_string(a->id));
    json_object_set_new(x->ev.call, "org_id", json_string(a->org_id));
    const char *call_id = json_string_value(json_object_get(x->ev.call,
                                                            "call_id"));
    CS_ASSERT(call_id);

    struct store_job jobs[64];
    size_t n = 0;
    json_t *skipped = json_array();
    char now[32];
    cs_rfc3339_ms(cs_now_ms(), now);
    struct job_parts jp;
    job_parts_init(&jp, x, a, now);
    for (size_t i = 0; i < a->nconns && n < CS_ARRAY_LEN(jobs); i++) {
        const struct ing_connection *conn = &a->conns[i];
        const char *why = NULL;
        if (exclude_conn && strcmp(conn->id, exclude_conn) == 0)
            continue;
        if (!safe_token(conn->type) || !safe_token(conn->id))
            continue; /* cannot happen with the schema's checks */
        if (!cs_sync_conditions_match(conn->conditions, x->ev.call, &why)) {
            json_array_append_new(skipped,
                                  json_pack("{s:s,s:s}", "connection_id",
                                            conn->id, "reason",
                                            why ? why : "conditions"));
            continue;
        }
        cs_job_id(call_id, conn->id, jobs[n].job_id);
        jobs[n].provider = conn->type;
        jobs[n].payload = job_payload(&jp, conn, jobs[n].job_id);
        x->providers[x->njobs++] = xstrdup(conn->type);
        n++;
    }
    job_parts_release(&jp);
    if (n == 0) {
        met_ignored(x->route);
        ing_respond_json(x->c, 200,
                         json_pack("{s:s,s:s,s:s,s:o}", "status", "ignored",
                                   "reason", "no connection takes this event",
                                   "event", x->ev.event_type, "skipped",
                                   skipped));
        rctx_free(x);
        return;
    }
    json_decref(skipped);
    unsigned shard = cs_shard_of(a->id, (unsigned)l->cfg->shards);
    char *key = seen_key(shard, x->ev.source, x->ev.event_id);
    ing_conn_hold(x->c);
    store_enqueue(l->store, shard, key, l->cfg->dedup_ttl_s, jobs, n,
                  on_enqueued, x);
    free(key);
    for (size_t i = 0; i < n; i++)
        free(jobs[i].payload);
}

/* ---- Sources whose signature comes first ------------------------------- */

static void on_agent_for_event(int rc, const struct ing_agent *a, void *arg)
{
    struct rctx *x = arg;
    if (!ing_conn_release(x->c)) {
        rctx_free(x);
        return;
    }
    if (rc == CS_ENOENT) {
        ing_fail(x->c, 404, RJ_UNKNOWN_AGENT, "agent '%s' is not known",
                 x->ev.agent_ref);
        rctx_free(x);
        return;
    }
    if (rc) {
        ing_fail(x->c, 503, RJ_DB_UNAVAILABLE,
                 "connections cannot be looked up now; retry later");
        rctx_free(x);
        return;
    }
    enqueue_call(x, a, NULL);
}

static void after_normalise(struct rctx *x, enum store_key k)
{
    struct ing_loop *l = ing_conn_loop(x->c);
    if (!x->ev.syncable) {
        answer_ignored(x->c, x->route, x->ev.ignore_reason, x->ev.event_type);
        rctx_free(x);
        return;
    }
    if (k == SK_AGENT_ID && !is_uuid(x->ev.agent_ref)) {
        struct cs_err err;
        cs_err_set(&err, CS_EINVAL, "data.agent_id",
                   "must be a callsync agent id (UUID)");
        ing_fail_norm(x->c, &err);
        rctx_free(x);
        return;
    }
    ing_conn_hold(x->c);
    store_lookup(l->store, k, x->ev.agent_ref, on_agent_for_event, x);
}

typedef int norm_fn(const char *body, size_t n, const struct cs_norm_opts *o,
                    struct cs_event *ev, struct cs_err *err);

/*
 * The common middle of every webhook route: refuse a failed signature
 * check (sig_rc from the source's scheme, header naming it), then
 * normalise the body into x->ev. Returns false when the request has been
 * answered and x freed.
 */
static bool verify_and_normalise(struct rctx *x, int sig_rc,
                                 const char *header, norm_fn *norm)
{
    struct ing_request *rq = x->rq;
    if (sig_rc) {
        ing_fail_sig(x->c, sig_rc, header);
        rctx_free(x);
        return false;
    }
    struct cs_err err = {0};
    if (norm(rq->body.data ? rq->body.data : "", rq->body.len,
             norm_opts(ing_conn_loop(x->c)), &x->ev, &err)) {
        ing_fail_norm(x->c, &err);
        rctx_free(x);
        return false;
    }
    return true;
}

static void handle_retell(struct rctx *x)
{
    struct ing_loop *l = ing_conn_loop(x->c);
    struct ing_request *rq = x->rq;
    if (ing_secrets.nretell == 0) {
        ing_fail(x->c, 401, RJ_NOT_CONFIGURED,
                 "no Retell API key is configured to verify signatures");
        rctx_free(x);
        return;
    }
    int rc = cs_sig_retell(ing_header(rq, "x-retell-signature"),
                           rq->body.data, rq->body.len,
                           (const char *const *)ing_secrets.retell,
                           ing_secrets.nretell, cs_now_ms(),
                           (int64_t)l->cfg->sig_tolerance_s * 1000);
    if (verify_and_normalise(x, rc, "x-retell-signature", cs_norm_retell))
        after_normalise(x, SK_RETELL_AGENT);
}

static void handle_callrail(struct rctx *x)
{
    struct ing_request *rq = x->rq;
    if (ing_secrets.ncallrail == 0) {
        ing_fail(x->c, 401, RJ_NOT_CONFIGURED,
                 "no CallRail signing token is configured");
        rctx_free(x);
        return;
    }
    int rc = cs_sig_callrail(ing_header(rq, "signature"), rq->body.data,
                             rq->body.len,
                             (const char *const *)ing_secrets.callrail,
                             ing_secrets.ncallrail);
    if (verify_and_normalise(x, rc, "signature", cs_norm_callrail))
        after_normalise(x, SK_CALLRAIL_COMPANY);
}

static void handle_standard(struct rctx *x)
{
    struct ing_loop *l = ing_conn_loop(x->c);
    struct ing_request *rq = x->rq;
    x->param = segment(rq->path, "/webhooks/standard/", "");
    const char *secrets[16];
    size_t ns = 0;
    for (size_t i = 0; x->param && i < ing_secrets.nstd && ns < 16; i++)
        if (strcmp(ing_secrets.std_sources[i], x->param) == 0)
            secrets[ns++] = ing_secrets.std_secrets[i];
    if (!x->param || !is_source_name(x->param) || ns == 0) {
        ing_fail(x->c, 404, RJ_UNKNOWN_SOURCE,
                 "no Standard Webhooks source '%s' is configured",
                 x->param ? x->param : "");
        rctx_free(x);
        return;
    }
    const char *id = ing_header(rq, "webhook-id");
    int rc = cs_sig_standard(id, ing_header(rq, "webhook-timestamp"),
                             ing_header(rq, "webhook-signature"),
                             rq->body.data, rq->body.len, secrets, ns,
                             cs_now_ms() / 1000, l->cfg->sig_tolerance_s);
    if (rc) {
        ing_fail_sig(x->c, rc, "webhook-signature");
        rctx_free(x);
        return;
    }
    struct cs_err err = {0};
    if (cs_norm_standard(id, rq->body.data ? rq->body.data : "", rq->body.len,
                         norm_opts(l), &x->ev, &err)) {
        ing_fail_norm(x->c, &err);
        rctx_free(x);
        return;
    }
    after_normalise(x, SK_AGENT_ID);
}

/* ---- Sources whose secret is found through the path -------------------- */

static const struct ing_connection *find_conn(const struct ing_agent *a,
                                              const char *id, const char *type)
{
    for (size_t i = 0; i < a->nconns; i++)
        if (strcasecmp(a->conns[i].id, id) == 0 &&
            strcmp(a->conns[i].type, type) == 0)
            return &a->conns[i];
    return NULL;
}

static void on_connection_agent(int rc, const struct ing_agent *a, void *arg)
{
    struct rctx *x = arg;
    struct ing_loop *l = ing_conn_loop(x->c);
    struct ing_request *rq = x->rq;
    if (!ing_conn_release(x->c)) {
        rctx_free(x);
        return;
    }
    if (rc && rc != CS_ENOENT) {
        ing_fail(x->c, 503, RJ_DB_UNAVAILABLE,
                 "connections cannot be looked up now; retry later");
        rctx_free(x);
        return;
    }
    const char *type = x->route == R_CALCOM ? "cal_com" : "stripe";
    const struct ing_connection *conn = rc ? NULL : find_conn(a, x->param,
                                                              type);
    if (!conn) {
        ing_fail(x->c, 404, RJ_UNKNOWN_CONNECTION,
                 "no active %s connection '%s'", type, x->param);
        rctx_free(x);
        return;
    }
    if (!conn->webhook_secret) {
        ing_fail(x->c, 401, RJ_NOT_CONFIGURED,
                 "connection '%s' has no webhook secret", x->param);
        rctx_free(x);
        return;
    }
    bool ok;
    if (x->route == R_CALCOM)
        ok = verify_and_normalise(
            x,
            cs_sig_calcom(ing_header(rq, "x-cal-signature-256"), rq->body.data,
                          rq->body.len, conn->webhook_secret),
            "x-cal-signature-256", cs_norm_calcom);
    else
        ok = verify_and_normalise(
            x,
            cs_sig_stripe(ing_header(rq, "stripe-signature"), rq->body.data,
                          rq->body.len, conn->webhook_secret,
                          cs_now_ms() / 1000, l->cfg->sig_tolerance_s),
            "stripe-signature", cs_norm_stripe);
    if (!ok)
        return;
    if (!x->ev.syncable) {
        answer_ignored(x->c, x->route, x->ev.ignore_reason, x->ev.event_type);
        rctx_free(x);
        return;
    }
    enqueue_call(x, a, conn->id);
}

static void handle_connection_route(struct rctx *x, const char *prefix)
{
    struct ing_loop *l = ing_conn_loop(x->c);
    x->param = segment(x->rq->path, prefix, "");
    if (!x->param || !is_uuid(x->param)) {
        ing_fail(x->c, 404, RJ_UNKNOWN_CONNECTION,
                 "'%s' is not a connection id", x->param ? x->param : "");
        rctx_free(x);
        return;
    }
    ing_conn_hold(x->c);
    store_lookup(l->store, SK_CONNECTION_ID, x->param, on_connection_agent, x);
}

/* ---- Outbound calls (seed 002) ----------------------------------------- */

static void on_outbound_agent(int rc, const struct ing_agent *a, void *arg)
{
    struct rctx *x = arg;
    struct ing_loop *l = ing_conn_loop(x->c);
    struct ing_request *rq = x->rq;
    if (!ing_conn_release(x->c)) {
        rctx_free(x);
        return;
    }
    if (rc == CS_ENOENT) {
        ing_fail(x->c, 404, RJ_UNKNOWN_AGENT, "agent '%s' is not known",
                 x->param);
        rctx_free(x);
        return;
    }
    if (rc) {
        ing_fail(x->c, 503, RJ_DB_UNAVAILABLE,
                 "agents cannot be looked up now; retry later");
        rctx_free(x);
        return;
    }
    if (!a->outbound_secret) {
        ing_fail(x->c, 401, RJ_NOT_CONFIGURED,
                 "agent '%s' has no outbound webhook secret", x->param);
        rctx_free(x);
        return;
    }
    const char *body = rq->body.data ? rq->body.data : "";
    rc = cs_sig_outbound(ing_header(rq, "x-webhook-secret"),
                         ing_header(rq, "x-callsync-signature"), body,
                         rq->body.len, a->outbound_secret, cs_now_ms() / 1000,
                         l->cfg->sig_tolerance_s);
    if (rc) {
        ing_fail_sig(x->c, rc, "x-webhook-secret or x-callsync-signature");
        rctx_free(x);
        return;
    }
    struct cs_err err = {0};
    x->outbound = cs_norm_outbound(body, rq->body.len, norm_opts(l), &err);
    if (!x->outbound) {
        ing_fail_norm(x->c, &err);
        rctx_free(x);
        return;
    }
    if (!a->outbound_from || !a->retell_agent_id) {
        ing_fail(x->c, 422, RJ_NOT_CONFIGURED,
                 "agent '%s' needs an outbound number and a Retell agent id",
                 x->param);
        rctx_free(x);
        return;
    }
    const char *idem = ing_header(rq, "idempotency-key");
    if (idem && (strlen(idem) == 0 || strlen(idem) > 255)) {
        struct cs_err e2;
        cs_err_set(&e2, CS_EINVAL, "Idempotency-Key",
                   "must be 1 to 255 characters");
        ing_fail_norm(x->c, &e2);
        rctx_free(x);
        return;
    }
    unsigned char h[CS_SHA256_LEN];
    char hex[2 * CS_SHA256_LEN + 1];
    struct store_job job;
    int ttl;
    if (idem) {
        /* The same key is the same request, for as long as events are. */
        cs_sha256(a->id, strlen(a->id), idem, strlen(idem), h);
        ttl = l->cfg->dedup_ttl_s;
        cs_hex_encode(h, 16, job.job_id);
    } else {
        /* Identical requests within the window are one request. */
        cs_sha256(a->id, strlen(a->id), body, rq->body.len, h);
        ttl = l->cfg->outbound_dedup_ttl_s > 0 ? l->cfg->outbound_dedup_ttl_s
                                               : 1;
        unsigned char rnd[16];
        if (cs_random(rnd, sizeof(rnd)))
            memcpy(rnd, h, sizeof(rnd));
        cs_hex_encode(rnd, sizeof(rnd), job.job_id);
    }
    cs_hex_encode(h, sizeof(h), hex);
    x->idem_key = xstrdup(hex);
    char now[32];
    cs_rfc3339_ms(cs_now_ms(), now);
    json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:O,s:i,s:s}",
                          "job_id", job.job_id, "kind", "outbound_call",
                          "provider", "retell", "agent_id", a->id, "org_id",
                          a->org_id, "retell_agent_id", a->retell_agent_id,
                          "from_number", a->outbound_from, "request",
                          x->outbound, "attempt", 0, "first_enqueued_at", now);
    job.provider = "retell";
    job.payload = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    x->providers[x->njobs++] = xstrdup("retell");
    unsigned shard = cs_shard_of(a->id, (unsigned)l->cfg->shards);
    char *src = xasprintf("outbound:%s", a->id);
    char *key = seen_key(shard, src, hex);
    ing_conn_hold(x->c);
    store_enqueue(l->store, shard, key, ttl, &job, 1, on_enqueued, x);
    free(key);
    free(src);
    free(job.payload);
}

static void handle_outbound(struct rctx *x)
{
    struct ing_loop *l = ing_conn_loop(x->c);
    x->param = segment(x->rq->path, "/api/agents/", "/outbound/call");
    if (!x->param || !is_uuid(x->param)) {
        ing_fail(x->c, 404, RJ_UNKNOWN_AGENT, "'%s' is not an agent id",
                 x->param ? x->param : "");
        rctx_free(x);
        return;
    }
    ing_conn_hold(x->c);
    store_lookup(l->store, SK_AGENT_ID, x->param, on_outbound_agent, x);
}

/* ---- Operations endpoints ---------------------------------------------- */

static void handle_readyz(struct ing_conn *c)
{
    struct ing_loop *l = ing_conn_loop(c);
    bool r = store_redis_ready(l->store), p = store_pg_ready(l->store);
    json_t *o = json_pack("{s:s,s:s,s:s}", "status",
                          r && p ? "ready" : "not_ready", "redis",
                          r ? "ok" : "unreachable", "postgres",
                          p ? "ok" : "unreachable");
    if (r && p) {
        ing_respond_json(c, 200, o);
        return;
    }
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    ing_respond(c, 503, "application/json", "Retry-After: 5\r\n", s,
                strlen(s));
    free(s);
}

void ing_dispatch(struct ing_conn *c, struct ing_request *rq)
{
    switch (rq->route) {
    case R_HEALTHZ: {
        static const char ok[] = "{\"status\":\"ok\"}";
        ing_respond(c, 200, "application/json", NULL, ok, sizeof(ok) - 1);
        return;
    }
    case R_READYZ:
        handle_readyz(c);
        return;
    case R_METRICS: {
        struct buf b;
        buf_init(&b, 16 * 1024 * 1024);
        met_render(&b);
        ing_respond(c, 200, "text/plain; version=0.0.4", NULL,
                    b.data ? b.data : "", b.len);
        buf_release(&b);
        return;
    }
    case R_RETELL:
        handle_retell(rctx_new(c, rq));
        return;
    case R_CALLRAIL:
        handle_callrail(rctx_new(c, rq));
        return;
    case R_STANDARD:
        handle_standard(rctx_new(c, rq));
        return;
    case R_CALCOM:
        handle_connection_route(rctx_new(c, rq), "/webhooks/calcom/");
        return;
    case R_STRIPE:
        handle_connection_route(rctx_new(c, rq), "/webhooks/stripe/");
        return;
    case R_OUTBOUND:
        handle_outbound(rctx_new(c, rq));
        return;
    case R_TOOLS:
        ing_tools_retell(c, rq);
        return;
    default:
        ing_fail(c, 404, RJ_NOT_FOUND, "no route for '%s'", rq->path);
        return;
    }
}
