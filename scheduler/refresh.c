/*
 * refresh.c - OAuth tokens renewed before they expire, by the leader
 * only (tick.c calls in on every tick it leads):
 *
 *   due       every CALLSYNC_SCHEDULER_REFRESH_INTERVAL_MS, up to 200
 *             connections whose token expires within
 *             CALLSYNC_OAUTH_REFRESH_MARGIN_S, soonest first, refreshed
 *             REFRESH_CONCURRENCY at a time (a full page: the next round
 *             follows on the next tick)
 *   pending   every PENDING_SCAN_MS, and at once with every new lease,
 *             the write-ahead records of refreshers that died between
 *             the token answer and PostgreSQL (SCAN cs:oauth:pending:*),
 *             each applied under its connection's lock (pending_only)
 *
 * Every refresh is oauth_flow.h's, driven by oauth_ev.h: the connection's
 * Redis lock makes workers (after a 401), callsyncctl and this process
 * share one token request, and a connection whose last refresh failed
 * transiently is skipped until its backoff ends.
 *
 * Losing the lease stops new refreshes at once; refreshes already running
 * are left to finish. They are safe without the lease: the connection's
 * lock orders them against every other refresher, and each write is one
 * UPDATE conditional on the exact tokens it replaces. The lease's fencing
 * token is deliberately not a condition of that UPDATE: a deposed leader
 * that got rotated tokens holds the only valid refresh token, and
 * refusing its write would lose the grant (see docs/design.md).
 */
#include "sched.h"
#include "httpc.h"
#include "log.h"
#include "oauth_ev.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REFRESH_PAGE 200
#define REFRESH_CONCURRENCY 16
#define PENDING_SCAN_MS 60000
#define PENDING_SCAN_COUNT "200"

struct sch_refresh_item {
    struct sch *s;
    char id[40];
    bool pending_only;
    struct sch_refresh_item *next;
};

/* ---- Queue --------------------------------------------------------------- */

static bool queued(const struct sch *s, const char *id)
{
    for (const struct sch_refresh_item *i = s->rq_head; i; i = i->next)
        if (strcmp(i->id, id) == 0)
            return true;
    return false;
}

static void enqueue(struct sch *s, const char *id, bool pending_only)
{
    if (queued(s, id) || oev_running(s->oauth, id))
        return;
    struct sch_refresh_item *i = xcalloc(1, sizeof(*i));
    i->s = s;
    snprintf(i->id, sizeof(i->id), "%s", id);
    i->pending_only = pending_only;
    if (s->rq_tail)
        s->rq_tail->next = i;
    else
        s->rq_head = i;
    s->rq_tail = i;
}

static void drop_queue(struct sch *s)
{
    struct sch_refresh_item *i = s->rq_head, *next;
    for (; i; i = next) {
        next = i->next;
        free(i);
    }
    s->rq_head = s->rq_tail = NULL;
}

static void pump(struct sch *s);

static void on_refreshed(int rc, const struct oflow_result *r, void *arg)
{
    struct sch_refresh_item *i = arg;
    struct sch *s = i->s;
    s->refreshing--;
    if (rc == 0) {
        if (strcmp(r->error, "backoff") != 0)
            s->refresh_progress = true;
        if (r->status == OFLOW_REFRESHED || r->applied_pending)
            log_info("oauth_refreshed_ahead", LOG_S("connection", i->id),
                     LOG_S("provider", r->provider),
                     LOG_S("outcome", oev_outcome_name(r->status)),
                     LOG_I("applied_pending", r->applied_pending),
                     LOG_I("expires_at_ms", r->expires_at_ms));
        else if (r->status == OFLOW_INVALID ||
                 r->status == OFLOW_PERMANENT)
            log_warn("oauth_refresh_ahead_failed",
                     LOG_S("connection", i->id),
                     LOG_S("outcome", oev_outcome_name(r->status)),
                     LOG_S("error", r->error), LOG_S("message", r->message));
    }
    free(i);
    if (rc == 0)
        pump(s);
}

/* Start queued refreshes up to the concurrency bound, while leading. */
static void pump(struct sch *s)
{
    if (s->stopping || !sch_is_leader(s)) {
        drop_queue(s);
        return;
    }
    while (s->refreshing < REFRESH_CONCURRENCY && s->rq_head) {
        struct sch_refresh_item *i = s->rq_head;
        s->rq_head = i->next;
        if (!s->rq_head)
            s->rq_tail = NULL;
        i->next = NULL;
        struct oflow_opts o = {
            .force = false,
            .min_valid_ms = (int64_t)s->cfg->oauth_refresh_margin_s * 1000,
            .stale_expires_ms = -1,
            .pending_only = i->pending_only,
        };
        if (i->pending_only)
            o.min_valid_ms = 0;
        s->refreshing++;
        oev_refresh(s->oauth, i->id, &o, on_refreshed, i);
    }
}

/* ---- Due tokens ---------------------------------------------------------- */

static void on_due(int rc, const PGresult *res, void *arg)
{
    struct sch *s = arg;
    s->refresh_selecting = false;
    if (rc) {
        if (rc != CS_ECANCELED) {
            s->m.errors_postgres++;
            log_warn("oauth_due_query_failed",
                     LOG_S("err", res ? PQresultErrorMessage(res)
                                      : "PostgreSQL unavailable"));
        }
        return;
    }
    int n = PQntuples(res);
    s->m.oauth_due += (uint64_t)n;
    s->refresh_more = n >= REFRESH_PAGE;
    for (int k = 0; k < n; k++)
        enqueue(s, PQgetvalue(res, k, 0), false);
    if (n > 0)
        log_info("oauth_tokens_due", LOG_I("count", n),
                 LOG_I("margin_s", s->cfg->oauth_refresh_margin_s));
    pump(s);
}

static void select_due(struct sch *s)
{
    char margin[16], page[16];
    snprintf(margin, sizeof(margin), "%d", s->cfg->oauth_refresh_margin_s);
    snprintf(page, sizeof(page), "%d", REFRESH_PAGE);
    const char *p[] = {margin, s->oauth_types, page};
    s->refresh_selecting = true;
    s->refresh_progress = false;
    /* OAuth connections need a refresh token; Salesforce's JWT bearer
     * flow needs none, and gets its first token here too. */
    pga_query(s->pg,
              "SELECT id::text FROM integration_connections "
              "WHERE is_active AND connection_status IN ('connected', 'error') "
              "AND integration_type = ANY($2::text[]) "
              "AND ((auth_type = 'oauth' AND refresh_token IS NOT NULL) "
              "  OR auth_type = 'jwt') "
              "AND (token_expires_at < now() + $1::int * interval '1 second' "
              "  OR (token_expires_at IS NULL AND auth_type = 'jwt')) "
              "ORDER BY token_expires_at NULLS FIRST LIMIT $3::int",
              3, p, on_due, s);
}

/* ---- Leftover write-ahead records ---------------------------------------- */

static void scan_pending(struct sch *s);

/* "cs:oauth:pending:{<id>}" -> id, or false. */
static bool pending_id(const char *key, char out[40])
{
    static const char prefix[] = OFLOW_PENDING_PREFIX "{";
    size_t pl = sizeof(prefix) - 1;
    size_t n = strlen(key);
    if (n != pl + 36 + 1 || strncmp(key, prefix, pl) != 0 ||
        key[n - 1] != '}')
        return false;
    snprintf(out, 40, "%.36s", key + pl);
    return true;
}

static void on_scanned(redisAsyncContext *ac, void *r, void *priv)
{
    CS_UNUSED(ac);
    struct sch *s = priv;
    redisReply *reply = r;
    s->pending_scanning = false;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_ARRAY) {
        if (reply)
            s->m.errors_redis++;
        return;
    }
    snprintf(s->pending_cursor, sizeof(s->pending_cursor), "%s",
             reply->element[0]->str);
    const redisReply *keys = reply->element[1];
    for (size_t k = 0; k < keys->elements; k++) {
        char id[40];
        const char *key = keys->element[k]->str;
        if (key && pending_id(key, id)) {
            log_info("oauth_pending_found", LOG_S("connection", id));
            enqueue(s, id, true);
        }
    }
    pump(s);
    if (strcmp(s->pending_cursor, "0") != 0 && !s->stopping &&
        sch_is_leader(s))
        scan_pending(s);
}

static void scan_pending(struct sch *s)
{
    if (!s->rc)
        return;
    s->pending_scanning = true;
    if (redisAsyncCommand(s->rc, on_scanned, s,
                          "SCAN %s MATCH " OFLOW_PENDING_PREFIX "* COUNT %s",
                          s->pending_cursor, PENDING_SCAN_COUNT) != REDIS_OK) {
        s->pending_scanning = false;
        s->m.errors_redis++;
    }
}

/* ---- Entry points -------------------------------------------------------- */

/* Refreshes use the scheduler's one Redis connection (NULL while down). */
static redisAsyncContext *sch_redis(void *arg)
{
    const struct sch *s = arg;
    return s->rc;
}

void sch_refresh_tick(struct sch *s, int64_t now)
{
    if (!s->oauth)
        return;
    bool new_lease = s->fence != s->refresh_fence;
    if (!s->pending_scanning &&
        (new_lease || now - s->last_pending_scan >= PENDING_SCAN_MS)) {
        s->refresh_fence = s->fence;
        s->last_pending_scan = now;
        snprintf(s->pending_cursor, sizeof(s->pending_cursor), "0");
        scan_pending(s);
    }
    /* A round ends when its refreshes have; the next one starts after the
     * interval, or on this tick when the last page was full and the
     * round got somewhere (not only backoff answers). */
    bool idle = !s->refresh_selecting && s->refreshing == 0 && !s->rq_head;
    bool due = now - s->last_refresh >= s->cfg->scheduler_refresh_interval_ms ||
               (s->refresh_more && s->refresh_progress);
    if (idle && due) {
        s->last_refresh = now;
        s->refresh_more = false;
        select_due(s);
    }
}

int sch_refresh_start(struct sch *s, struct cs_err *err)
{
    const struct cfg *cfg = s->cfg;
    if (!cfg->encryption_keys[0]) {
        log_warn("oauth_refresh_disabled",
                 LOG_S("reason", "CALLSYNC_ENCRYPTION_KEYS is not set: "
                                 "stored tokens cannot be opened"));
        return 0;
    }
    s->kr = cs_keyring_new(cfg->encryption_keys, err);
    if (!s->kr)
        return CS_EINVAL;
    struct httpc_opts ho = {
        .connect_timeout_ms = 5000,
        .timeout_ms = cfg->oauth_timeout_ms,
        .max_host_conns = REFRESH_CONCURRENCY,
        .max_body = 64 * 1024,
    };
    s->oauth_http = httpc_new(s->loop, &ho);
    struct oev_io io = {
        .loop = s->loop,
        .redis = sch_redis,
        .redis_arg = s,
        .pg = s->pg,
        .http = s->oauth_http,
    };
    struct oflow_env env = {
        .kr = s->kr,
        .clients = cfg->oauth_clients,
        .base_urls = cfg->oauth_base_urls,
        .jwt_key_pem = cfg->salesforce_jwt_key[0] ? cfg->salesforce_jwt_key
                                                  : NULL,
        .timeout_ms = cfg->oauth_timeout_ms,
    };
    s->oauth = oev_new(&io, &env);
    /* The integration types whose tokens oauth.h refreshes, as a
     * PostgreSQL array literal for the due query. */
    struct buf b;
    buf_init(&b, 4096);
    int rc = buf_adds(&b, "{");
    bool first = true;
    for (size_t i = 0; i < rq_nproviders; i++) {
        if (oauth_provider_for_type(rq_providers[i]) < 0)
            continue;
        rc |= buf_addf(&b, "%s%s", first ? "" : ",", rq_providers[i]);
        first = false;
    }
    rc |= buf_adds(&b, "}");
    CS_ASSERT(rc == 0);
    s->oauth_types = buf_take(&b, NULL);
    return 0;
}

bool sch_refresh_busy(const struct sch *s)
{
    return s->oauth && oev_inflight(s->oauth) > 0;
}

void sch_refresh_stop(struct sch *s)
{
    drop_queue(s);
    oev_free(s->oauth);
    s->oauth = NULL;
    httpc_free(s->oauth_http);
    s->oauth_http = NULL;
    cs_keyring_free(s->kr);
    s->kr = NULL;
    free(s->oauth_types);
    s->oauth_types = NULL;
}
