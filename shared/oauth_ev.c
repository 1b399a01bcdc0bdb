/*
 * oauth_ev.c - the refresh state machine (oauth_flow.c) driven by libev
 * callbacks; see oauth_ev.h.
 *
 * A run is one flow of one connection with the callers waiting for it.
 * While a step's I/O is out (a Redis reply, a query, the token request)
 * the run is referenced by that callback; when the oev is freed with I/O
 * out, the run is orphaned and released by that callback, which is sure
 * to come: hiredis, pga and httpc all call back (with a NULL reply,
 * CS_ECANCELED or "canceled") when they are freed.
 */
#include "oauth_ev.h"
#include "httpc.h"
#include "log.h"
#include "pga.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BACKOFF_BASE_MS 1000
#define BACKOFF_CAP_MS (5 * 60 * 1000)
#define RETRY_AFTER_MAX_MS (60 * 60 * 1000)
/* A backoff entry is forgotten this long after it ran out. */
#define BACKOFF_FORGET_MS (60 * 60 * 1000)

struct waiter {
    oev_cb *cb;
    void *arg;
    struct waiter *next;
};

struct run {
    struct oev *o;             /* NULL once orphaned */
    struct oflow *f;
    char id[40];
    struct waiter *waiters, *last;
    ev_timer sleep;
    bool io;                   /* a Redis, SQL or HTTP callback is due */
    struct run *prev, *next;
};

struct backoff {
    char id[40];
    int fails;
    int64_t until;             /* monotonic ms */
    char error[64];
    struct backoff *next;
};

/* An answer given without a run (backoff, or a flow that ended at once),
 * delivered on the next loop iteration. */
struct answer {
    struct oev *o;
    ev_timer t;
    oev_cb *cb;
    void *arg;
    struct oflow_result res;
    struct answer *prev, *next;
};

struct oev {
    struct oev_io io;
    struct oflow_env env;
    struct run *runs;
    size_t nruns;
    struct backoff *backoffs;
    struct answer *answers;
    struct oev_stats stats;
};

static void drive(struct run *r);

/* ---- Runs ---------------------------------------------------------------- */

static struct run *find_run(const struct oev *o, const char *id)
{
    for (struct run *r = o->runs; r; r = r->next)
        if (strcmp(r->id, id) == 0)
            return r;
    return NULL;
}

static void add_waiter(struct run *r, oev_cb *cb, void *arg)
{
    struct waiter *w = xcalloc(1, sizeof(*w));
    w->cb = cb;
    w->arg = arg;
    if (r->last)
        r->last->next = w;
    else
        r->waiters = w;
    r->last = w;
}

static void unlink_run(struct oev *o, struct run *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        o->runs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
    o->nruns--;
}

/* Call every waiter (rc, res) and free the list. */
static void notify(struct waiter *w, int rc, const struct oflow_result *res)
{
    while (w) {
        struct waiter *next = w->next;
        w->cb(rc, res, w->arg);
        free(w);
        w = next;
    }
}

static void run_free(struct run *r)
{
    oflow_free(r->f);
    free(r);
}

/* ---- Backoff ------------------------------------------------------------- */

static struct backoff *find_backoff(struct oev *o, const char *id,
                                    struct backoff ***link)
{
    struct backoff **p = &o->backoffs;
    int64_t now = cs_mono_ms();
    while (*p) {
        struct backoff *b = *p;
        if (strcmp(b->id, id) == 0) {
            if (link)
                *link = p;
            return b;
        }
        if (now - b->until > BACKOFF_FORGET_MS) {
            *p = b->next;
            free(b);
            continue;
        }
        p = &b->next;
    }
    return NULL;
}

static void clear_backoff(struct oev *o, const char *id)
{
    struct backoff **link = NULL;
    struct backoff *b = find_backoff(o, id, &link);
    if (b) {
        *link = b->next;
        free(b);
    }
}

/* 1 s doubling per failure up to 5 min, the upper half jittered, or the
 * provider's Retry-After when it gives one. */
static int64_t backoff_ms(int fails, int64_t retry_after_ms)
{
    if (retry_after_ms > 0)
        return retry_after_ms < RETRY_AFTER_MAX_MS ? retry_after_ms
                                                   : RETRY_AFTER_MAX_MS;
    int64_t d = BACKOFF_BASE_MS;
    for (int i = 1; i < fails && d < BACKOFF_CAP_MS; i++)
        d *= 2;
    if (d > BACKOFF_CAP_MS)
        d = BACKOFF_CAP_MS;
    uint64_t rnd = 0;
    (void)!cs_random(&rnd, sizeof(rnd));
    return d / 2 + (int64_t)(rnd % (uint64_t)(d / 2 + 1));
}

static void note_transient(struct oev *o, const struct oflow_result *res)
{
    struct backoff *b = find_backoff(o, res->connection_id, NULL);
    if (!b) {
        b = xcalloc(1, sizeof(*b));
        snprintf(b->id, sizeof(b->id), "%s", res->connection_id);
        b->next = o->backoffs;
        o->backoffs = b;
    }
    b->fails++;
    int64_t d = backoff_ms(b->fails, res->retry_after_ms);
    b->until = cs_mono_ms() + d;
    snprintf(b->error, sizeof(b->error), "%s", res->error);
    log_warn("oauth_refresh_backoff", LOG_S("connection", res->connection_id),
             LOG_S("error", res->error), LOG_I("failures", b->fails),
             LOG_I("delay_ms", d));
}

/* ---- Deferred answers ---------------------------------------------------- */

static void on_answer(EV_P_ ev_timer *t, int revents)
{
    CS_UNUSED(revents);
    struct answer *a = t->data;
    ev_timer_stop(EV_A_ t);
    struct oev *o = a->o;
    if (a->prev)
        a->prev->next = a->next;
    else
        o->answers = a->next;
    if (a->next)
        a->next->prev = a->prev;
    a->cb(0, &a->res, a->arg);
    free(a);
}

static void answer_later(struct oev *o, const struct oflow_result *res,
                         oev_cb *cb, void *arg)
{
    struct answer *a = xcalloc(1, sizeof(*a));
    a->o = o;
    a->cb = cb;
    a->arg = arg;
    a->res = *res;
    ev_timer_init(&a->t, on_answer, 0.0, 0.0);
    a->t.data = a;
    ev_timer_start(o->io.loop, &a->t);
    a->next = o->answers;
    if (o->answers)
        o->answers->prev = a;
    o->answers = a;
}

/* ---- Driving a flow ------------------------------------------------------ */

static void finished(struct run *r)
{
    struct oev *o = r->o;
    struct oflow_result res = *oflow_result(r->f);
    o->stats.outcome[res.status]++;
    o->stats.token_requests += (uint64_t)res.token_requests;
    if (res.applied_pending)
        o->stats.pending_applied++;
    if (res.status == OFLOW_TRANSIENT)
        note_transient(o, &res);
    else
        clear_backoff(o, r->id);
    unlink_run(o, r);
    struct waiter *w = r->waiters;
    r->waiters = r->last = NULL;
    run_free(r);
    /* The waiters may start refreshes of their own (of this connection
     * too): the run is gone by now. */
    notify(w, 0, &res);
}

/* An I/O callback arrived: false when the run was orphaned (and is now
 * freed). */
static bool io_back(struct run *r)
{
    r->io = false;
    if (r->o)
        return true;
    run_free(r);
    return false;
}

static void on_redis(redisAsyncContext *ac, void *reply, void *priv)
{
    CS_UNUSED(ac);
    struct run *r = priv;
    if (!io_back(r))
        return;
    oflow_redis_done(r->f, reply);
    drive(r);
}

static void on_sql(int rc, const PGresult *res, void *arg)
{
    struct run *r = arg;
    if (!io_back(r))
        return;
    if (rc == 0) {
        oflow_sql_done(r->f, res, NULL);
    } else {
        const char *why = res                  ? PQresultErrorMessage(res)
                          : rc == CS_ETIMEDOUT ? "query timed out"
                          : rc == CS_ECANCELED ? "canceled"
                                               : "PostgreSQL unavailable";
        oflow_sql_done(r->f, NULL, why);
    }
    drive(r);
}

static void on_http(const struct prov_response *rsp, const char *err,
                    int64_t dur_ms, void *arg)
{
    CS_UNUSED(dur_ms);
    struct run *r = arg;
    if (!io_back(r))
        return;
    struct oauth_response o = {0};
    o.status = rsp->status;
    o.body = rsp->body;
    o.body_len = rsp->body_len;
    o.transport_err = rsp->status == 0 ? (err ? err : "no answer") : NULL;
    for (size_t i = 0; i < rsp->nheaders; i++)
        if (strcmp(rsp->headers[i].name, "retry-after") == 0)
            o.retry_after = rsp->headers[i].value;
    oflow_http_done(r->f, &o);
    drive(r);
}

static void on_wake(EV_P_ ev_timer *t, int revents)
{
    CS_UNUSED(revents);
    struct run *r = t->data;
    ev_timer_stop(EV_A_ t);
    oflow_wake(r->f);
    drive(r);
}

static void send_http(struct run *r)
{
    const struct oauth_request *orq = oflow_http(r->f);
    /* httpc copies what it keeps: the request can borrow the flow's. */
    struct prov_request rq;
    memset(&rq, 0, sizeof(rq));
    rq.method = orq->method;
    rq.url = orq->url;
    for (size_t i = 0; i < orq->nheaders && i < PROV_MAX_HEADERS; i++) {
        rq.headers[i].name = orq->headers[i].name;
        rq.headers[i].value = orq->headers[i].value;
        rq.nheaders++;
    }
    rq.body = orq->body;
    rq.body_len = orq->body_len;
    rq.timeout_ms = oflow_http_timeout_ms(r->f);
    r->io = true;
    httpc_send(r->o->io.http, &rq, on_http, r);
}

/* Perform steps until one waits for I/O or the flow is done. */
static void drive(struct run *r)
{
    struct oev *o = r->o;
    for (;;) {
        switch (oflow_step(r->f)) {
        case OFLOW_STEP_REDIS: {
            int argc = 0;
            const char **argv = NULL;
            const size_t *len = NULL;
            oflow_redis_argv(r->f, &argc, &argv, &len);
            redisAsyncContext *ac = o->io.redis(o->io.redis_arg);
            if (ac && redisAsyncCommandArgv(ac, on_redis, r, argc, argv,
                                            len) == REDIS_OK) {
                r->io = true;
                return;
            }
            oflow_redis_done(r->f, NULL);
            break;
        }
        case OFLOW_STEP_SQL: {
            const char *sql = NULL;
            int n = 0;
            const char *const *params = NULL;
            oflow_sql(r->f, &sql, &n, &params);
            r->io = true;
            pga_query(o->io.pg, sql, n, params, on_sql, r);
            return;
        }
        case OFLOW_STEP_HTTP:
            send_http(r);
            return;
        case OFLOW_STEP_SLEEP:
            ev_timer_set(&r->sleep, (double)oflow_sleep_ms(r->f) / 1000.0,
                         0.0);
            ev_timer_start(o->io.loop, &r->sleep);
            return;
        case OFLOW_STEP_DONE:
            finished(r);
            return;
        }
    }
}

/* ---- API ----------------------------------------------------------------- */

struct oev *oev_new(const struct oev_io *io, const struct oflow_env *env)
{
    struct oev *o = xcalloc(1, sizeof(*o));
    o->io = *io;
    o->env = *env;
    return o;
}

void oev_free(struct oev *o)
{
    if (!o)
        return;
    struct run *r;
    while ((r = o->runs)) {
        unlink_run(o, r);
        ev_timer_stop(o->io.loop, &r->sleep);
        struct waiter *w = r->waiters;
        r->waiters = r->last = NULL;
        if (r->io)
            r->o = NULL; /* its callback frees it */
        else
            run_free(r);
        notify(w, CS_ECANCELED, NULL);
    }
    struct answer *a;
    while ((a = o->answers)) {
        o->answers = a->next;
        ev_timer_stop(o->io.loop, &a->t);
        a->cb(CS_ECANCELED, NULL, a->arg);
        free(a);
    }
    struct backoff *b = o->backoffs, *bn;
    for (; b; b = bn) {
        bn = b->next;
        free(b);
    }
    free(o);
}

void oev_refresh(struct oev *o, const char *conn_id,
                 const struct oflow_opts *opts, oev_cb *cb, void *arg)
{
    const char *id = conn_id ? conn_id : "";
    struct run *r = find_run(o, id);
    if (r) {
        o->stats.joined++;
        add_waiter(r, cb, arg);
        return;
    }
    struct backoff *b = opts->force ? NULL : find_backoff(o, id, NULL);
    int64_t left = b ? b->until - cs_mono_ms() : 0;
    if (left > 0) {
        struct oflow_result res;
        memset(&res, 0, sizeof(res));
        res.status = OFLOW_TRANSIENT;
        res.retry_after_ms = left;
        snprintf(res.connection_id, sizeof(res.connection_id), "%.36s", id);
        snprintf(res.error, sizeof(res.error), "backoff");
        snprintf(res.message, sizeof(res.message),
                 "the last %d refresh(es) failed (%s); next try in %lld ms",
                 b->fails, b->error, (long long)left);
        o->stats.backoff_skips++;
        answer_later(o, &res, cb, arg);
        return;
    }
    r = xcalloc(1, sizeof(*r));
    r->o = o;
    snprintf(r->id, sizeof(r->id), "%.36s", id);
    r->f = oflow_new(&o->env, id, opts);
    ev_init(&r->sleep, on_wake);
    r->sleep.data = r;
    if (oflow_step(r->f) == OFLOW_STEP_DONE) {
        /* Refused before any I/O (a malformed id). */
        answer_later(o, oflow_result(r->f), cb, arg);
        o->stats.outcome[oflow_result(r->f)->status]++;
        run_free(r);
        return;
    }
    add_waiter(r, cb, arg);
    r->next = o->runs;
    if (o->runs)
        o->runs->prev = r;
    o->runs = r;
    o->nruns++;
    drive(r); /* the first step is a query: no callback runs yet */
}

bool oev_running(const struct oev *o, const char *conn_id)
{
    return find_run(o, conn_id) != NULL;
}

size_t oev_inflight(const struct oev *o)
{
    return o->nruns;
}

size_t oev_backing_off(const struct oev *o)
{
    size_t n = 0;
    int64_t now = cs_mono_ms();
    for (const struct backoff *b = o->backoffs; b; b = b->next)
        if (b->until > now)
            n++;
    return n;
}

const struct oev_stats *oev_stats(const struct oev *o)
{
    return &o->stats;
}

const char *oev_outcome_name(enum oflow_status s)
{
    switch (s) {
    case OFLOW_REFRESHED: return "refreshed";
    case OFLOW_FRESH: return "fresh";
    case OFLOW_PERMANENT: return "refused";
    case OFLOW_TRANSIENT: return "transient";
    case OFLOW_INVALID: return "invalid";
    }
    return "unknown";
}

int oev_metrics_render(const struct oev *o, struct buf *b, const char *p)
{
    const struct oev_stats *s = &o->stats;
    int rc = buf_addf(b,
                      "# HELP %s_oauth_refreshes_total OAuth token refreshes "
                      "run by this process, by outcome.\n"
                      "# TYPE %s_oauth_refreshes_total counter\n",
                      p, p);
    for (int i = 0; i <= OFLOW_INVALID; i++)
        rc |= buf_addf(b, "%s_oauth_refreshes_total{outcome=\"%s\"} %llu\n",
                       p, oev_outcome_name((enum oflow_status)i),
                       (unsigned long long)s->outcome[i]);
    rc |= buf_addf(
        b,
        "# HELP %s_oauth_refresh_waiters_total Callers that waited for a "
        "refresh of the same connection already running here.\n"
        "# TYPE %s_oauth_refresh_waiters_total counter\n"
        "%s_oauth_refresh_waiters_total %llu\n"
        "# HELP %s_oauth_token_requests_total Requests sent to OAuth token "
        "endpoints.\n"
        "# TYPE %s_oauth_token_requests_total counter\n"
        "%s_oauth_token_requests_total %llu\n"
        "# HELP %s_oauth_pending_applied_total Tokens of interrupted "
        "refreshes (write-ahead records) applied to PostgreSQL.\n"
        "# TYPE %s_oauth_pending_applied_total counter\n"
        "%s_oauth_pending_applied_total %llu\n"
        "# HELP %s_oauth_backoff_skips_total Refreshes not tried because the "
        "connection's last one failed transiently a short time ago.\n"
        "# TYPE %s_oauth_backoff_skips_total counter\n"
        "%s_oauth_backoff_skips_total %llu\n"
        "# HELP %s_oauth_backoff_connections Connections waiting out a "
        "backoff after a transient refresh failure.\n"
        "# TYPE %s_oauth_backoff_connections gauge\n"
        "%s_oauth_backoff_connections %zu\n"
        "# HELP %s_oauth_refreshes_running Refreshes in progress.\n"
        "# TYPE %s_oauth_refreshes_running gauge\n"
        "%s_oauth_refreshes_running %zu\n",
        p, p, p, (unsigned long long)s->joined, p, p, p,
        (unsigned long long)s->token_requests, p, p, p,
        (unsigned long long)s->pending_applied, p, p, p,
        (unsigned long long)s->backoff_skips, p, p, p, oev_backing_off(o), p,
        p, p, oev_inflight(o));
    return rc ? CS_E2BIG : 0;
}
