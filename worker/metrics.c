/*
 * metrics.c - the worker's operational endpoints on
 * CALLSYNC_WORKER_METRICS_ADDR (shared/mhttp.h): /metrics in Prometheus
 * text 0.0.4, /healthz, and /readyz (Redis and PostgreSQL connected, not
 * stopping). Counters are kept per stream (struct wstats) and summed over
 * the shards of each provider here; only the loop touches them.
 */
#include "worker.h"
#include "log.h"

#include <stdio.h>
#include <string.h>

/* Provider request latency buckets, in seconds. */
static const double lat_buckets[WRK_LAT_BUCKETS] = {
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
};

void wrk_observe_request(struct wstream *st, int64_t dur_ms)
{
    double s = (double)(dur_ms > 0 ? dur_ms : 0) / 1000.0;
    size_t b = 0;
    while (b < WRK_LAT_BUCKETS && s > lat_buckets[b])
        b++;
    st->stats.lat_bucket[b]++;
    st->stats.lat_sum_us += (uint64_t)(dur_ms > 0 ? dur_ms : 0) * 1000;
}

void wrk_observe_wait(struct wstream *st, int64_t ms)
{
    st->stats.rl_waits++;
    st->stats.rl_wait_ms += (uint64_t)(ms > 0 ? ms : 0);
}

/* The sum over every shard of st's provider, once per provider: false for
 * a stream whose provider an earlier stream already stands for. */
static bool provider_sum(const struct wrk *w, size_t i, struct wstats *sum)
{
    const char *name = w->streams[i].ops->name;
    for (size_t k = 0; k < i; k++)
        if (strcmp(w->streams[k].ops->name, name) == 0)
            return false;
    memset(sum, 0, sizeof(*sum));
    for (size_t k = i; k < w->nstreams; k++) {
        const struct wstats *x = &w->streams[k].stats;
        if (strcmp(w->streams[k].ops->name, name) != 0)
            continue;
        sum->done += x->done;
        sum->retried += x->retried;
        sum->deferred += x->deferred;
        sum->parked += x->parked;
        sum->dead += x->dead;
        sum->reclaimed += x->reclaimed;
        sum->rl_waits += x->rl_waits;
        sum->rl_wait_ms += x->rl_wait_ms;
        for (size_t b = 0; b <= WRK_LAT_BUCKETS; b++)
            sum->lat_bucket[b] += x->lat_bucket[b];
        sum->lat_sum_us += x->lat_sum_us;
    }
    return true;
}

#define ULL(x) ((unsigned long long)(x))

static int render_provider(struct buf *b, const char *p,
                           const struct wstats *x)
{
    int rc = 0;
    static const char *const outcomes[] = {"done", "retried", "deferred",
                                           "parked", "dead"};
    uint64_t v[] = {x->done, x->retried, x->deferred, x->parked, x->dead};
    for (size_t i = 0; i < CS_ARRAY_LEN(outcomes); i++)
        rc |= buf_addf(b,
                       "callsync_worker_jobs_total{provider=\"%s\","
                       "outcome=\"%s\"} %llu\n",
                       p, outcomes[i], ULL(v[i]));
    return rc;
}

static int render(struct buf *b, void *arg)
{
    struct wrk *w = arg;
    struct wstats x;
    int rc = buf_adds(b, "# HELP callsync_worker_jobs_total Deliveries ended, "
                         "by provider and outcome (deferred: back to the "
                         "delayed set without using an attempt).\n"
                         "# TYPE callsync_worker_jobs_total counter\n");
    for (size_t i = 0; i < w->nstreams; i++)
        if (provider_sum(w, i, &x))
            rc |= render_provider(b, w->streams[i].ops->name, &x);
    rc |= buf_adds(b, "# HELP callsync_worker_jobs_reclaimed_total Jobs of "
                      "other consumers claimed after their visibility "
                      "timeout.\n"
                      "# TYPE callsync_worker_jobs_reclaimed_total counter\n");
    for (size_t i = 0; i < w->nstreams; i++)
        if (provider_sum(w, i, &x))
            rc |= buf_addf(b,
                           "callsync_worker_jobs_reclaimed_total{provider="
                           "\"%s\"} %llu\n",
                           w->streams[i].ops->name, ULL(x.reclaimed));
    rc |= buf_adds(b, "# HELP callsync_worker_rate_limited_waits_total Times "
                      "a job had to wait for its rate limit (limiter refusal "
                      "or the provider's 429).\n"
                      "# TYPE callsync_worker_rate_limited_waits_total "
                      "counter\n");
    for (size_t i = 0; i < w->nstreams; i++)
        if (provider_sum(w, i, &x))
            rc |= buf_addf(b,
                           "callsync_worker_rate_limited_waits_total{provider="
                           "\"%s\"} %llu\n",
                           w->streams[i].ops->name, ULL(x.rl_waits));
    rc |= buf_adds(b, "# HELP callsync_worker_rate_limited_wait_seconds_total "
                      "Waiting time those rate limits imposed.\n"
                      "# TYPE callsync_worker_rate_limited_wait_seconds_total "
                      "counter\n");
    for (size_t i = 0; i < w->nstreams; i++)
        if (provider_sum(w, i, &x))
            rc |= buf_addf(b,
                           "callsync_worker_rate_limited_wait_seconds_total{"
                           "provider=\"%s\"} %.3f\n",
                           w->streams[i].ops->name,
                           (double)x.rl_wait_ms / 1000.0);
    rc |= buf_adds(b, "# HELP callsync_worker_provider_request_duration_"
                      "seconds Provider HTTP requests, from send to the last "
                      "byte (or the failure).\n"
                      "# TYPE callsync_worker_provider_request_duration_"
                      "seconds histogram\n");
    for (size_t i = 0; i < w->nstreams; i++) {
        if (!provider_sum(w, i, &x))
            continue;
        const char *p = w->streams[i].ops->name;
        unsigned long long cum = 0;
        for (size_t k = 0; k < WRK_LAT_BUCKETS; k++) {
            cum += x.lat_bucket[k];
            rc |= buf_addf(b,
                           "callsync_worker_provider_request_duration_seconds"
                           "_bucket{provider=\"%s\",le=\"%g\"} %llu\n",
                           p, lat_buckets[k], cum);
        }
        cum += x.lat_bucket[WRK_LAT_BUCKETS];
        rc |= buf_addf(b,
                       "callsync_worker_provider_request_duration_seconds"
                       "_bucket{provider=\"%s\",le=\"+Inf\"} %llu\n"
                       "callsync_worker_provider_request_duration_seconds"
                       "_sum{provider=\"%s\"} %.6f\n"
                       "callsync_worker_provider_request_duration_seconds"
                       "_count{provider=\"%s\"} %llu\n",
                       p, cum, p, (double)x.lat_sum_us / 1e6, p, cum);
    }
    rc |= buf_addf(b,
                   "# HELP callsync_worker_jobs_in_flight Jobs running now.\n"
                   "# TYPE callsync_worker_jobs_in_flight gauge\n"
                   "callsync_worker_jobs_in_flight %llu\n"
                   "# HELP callsync_worker_delayed_promoted_total Due retries "
                   "this worker moved back into their streams.\n"
                   "# TYPE callsync_worker_delayed_promoted_total counter\n"
                   "callsync_worker_delayed_promoted_total %llu\n",
                   ULL(w->inflight), ULL(w->n_promoted));
    if (w->oauth)
        rc |= oev_metrics_render(w->oauth, b, "callsync_worker");
    return rc ? CS_E2BIG : 0;
}

static bool ready(json_t *body, void *arg)
{
    struct wrk *w = arg;
    bool redis = w->rc && w->rc_ready && w->rb && w->rb_ready;
    bool pg = pga_ready(w->pg);
    json_object_set_new(body, "redis", json_boolean(redis));
    json_object_set_new(body, "postgres", json_boolean(pg));
    json_object_set_new(body, "draining", json_boolean(w->draining));
    json_object_set_new(body, "in_flight",
                        json_integer((json_int_t)w->inflight));
    return redis && pg && !w->draining;
}

int wrk_metrics_start(struct wrk *w)
{
    const char *addr = w->cfg->worker_metrics_addr;
    if (!addr || !*addr)
        return 0;
    struct mhttp_opts o = {
        .addr = addr,
        .metrics = render,
        .ready = ready,
        .arg = w,
    };
    struct cs_err err = {0};
    w->ops = mhttp_new(w->loop, &o, &err);
    if (!w->ops) {
        fprintf(stderr, "callsync-worker: CALLSYNC_WORKER_METRICS_ADDR: %s\n",
                err.msg);
        return 2;
    }
    log_info("metrics_listening", LOG_I("port", mhttp_port(w->ops)));
    return 0;
}

void wrk_metrics_stop(struct wrk *w)
{
    mhttp_free(w->ops);
    w->ops = NULL;
}
