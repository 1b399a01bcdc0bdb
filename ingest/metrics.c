/*
 * metrics.c - Prometheus counters of callsync-ingest. Every loop updates
 * the same relaxed atomics; /metrics renders them as text format 0.0.4.
 */
#include "ingest.h"

#include <stdio.h>
#include <string.h>

#define MAX_STATUS 600

static const char *const route_names[R__COUNT] = {
    [R_RETELL] = "retell",     [R_CALLRAIL] = "callrail",
    [R_CALCOM] = "calcom",     [R_STRIPE] = "stripe",
    [R_STANDARD] = "standard", [R_OUTBOUND] = "outbound",
    [R_TOOLS] = "tools",
    [R_HEALTHZ] = "healthz",   [R_READYZ] = "readyz",
    [R_METRICS] = "metrics",   [R_OTHER] = "other",
};

static const char *const reason_names[RJ__COUNT] = {
    [RJ_MALFORMED_HTTP] = "malformed_http",
    [RJ_HEADER_TOO_LARGE] = "header_too_large",
    [RJ_BODY_TOO_LARGE] = "body_too_large",
    [RJ_UNSUPPORTED_MEDIA_TYPE] = "unsupported_media_type",
    [RJ_TIMEOUT] = "request_timeout",
    [RJ_MISSING_SIGNATURE] = "missing_signature",
    [RJ_MALFORMED_SIGNATURE] = "malformed_signature",
    [RJ_STALE_TIMESTAMP] = "stale_timestamp",
    [RJ_BAD_SIGNATURE] = "bad_signature",
    [RJ_INVALID_JSON] = "invalid_json",
    [RJ_INVALID_FIELD] = "invalid_field",
    [RJ_UNKNOWN_AGENT] = "unknown_agent",
    [RJ_UNKNOWN_CONNECTION] = "unknown_connection",
    [RJ_UNKNOWN_SOURCE] = "unknown_source",
    [RJ_NOT_FOUND] = "not_found",
    [RJ_METHOD_NOT_ALLOWED] = "method_not_allowed",
    [RJ_NOT_CONFIGURED] = "not_configured",
    [RJ_REDIS_UNAVAILABLE] = "queue_unavailable",
    [RJ_DB_UNAVAILABLE] = "database_unavailable",
    [RJ_OVERLOADED] = "overloaded",
};

/* Providers that jobs are enqueued for (integration types + retell). */
static const char *const providers[] = {
    "google_calendar", "calendly", "cal_com",  "hubspot", "salesforce",
    "gohighlevel",     "housecall_pro", "zapier", "stripe", "pipedrive",
    "zoho",            "monday",   "custom_rest", "outlook", "twilio",
    "sendgrid",        "segment",  "retell",  "other",
};
#define NPROV (sizeof(providers) / sizeof(providers[0]))

/* Latency buckets in seconds. */
static const double buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01,
                                 0.025,  0.05,  0.1,    0.25,  0.5,
                                 1,      2.5,   5};
#define NBUCKETS (sizeof(buckets) / sizeof(buckets[0]))

static _Atomic uint64_t requests[R__COUNT][MAX_STATUS];
static _Atomic uint64_t rejections[RJ__COUNT];
static _Atomic uint64_t jobs[NPROV];
static _Atomic uint64_t duplicates[R__COUNT];
static _Atomic uint64_t ignored[R__COUNT];
static _Atomic uint64_t lat_bucket[R__COUNT][NBUCKETS + 1];
static _Atomic uint64_t lat_sum_ns[R__COUNT];
static _Atomic uint64_t cache_hits, cache_misses;
static _Atomic int64_t open_conns;

/* How live-call tool requests ended (tools.c, live.c). */
static const char *const live_outcomes[] = {
    "answered",    /* the worker's result reached the caller */
    "failed",      /* the worker answered with an error (spoken) */
    "deadline",    /* CALLSYNC_LIVE_DEADLINE_MS passed: the fallback */
    "no_calendar", /* the agent has no calendar connection */
    "queue_unavailable", /* Redis did not take the request */
    "late_reply",  /* a reply came after its deadline and was dropped */
    "other",
};
#define NLIVE (sizeof(live_outcomes) / sizeof(live_outcomes[0]))
static _Atomic uint64_t live_counts[NLIVE];

#define INC(x, n) atomic_fetch_add_explicit(&(x), (n), memory_order_relaxed)
#define GET(x) atomic_load_explicit(&(x), memory_order_relaxed)

const char *ing_route_name(enum ing_route r)
{
    return r < R__COUNT ? route_names[r] : "other";
}

const char *ing_reason_name(enum ing_reason r)
{
    return r < RJ__COUNT ? reason_names[r] : "unknown";
}

void met_request(enum ing_route r, int status, uint64_t dur_ns)
{
    if (r >= R__COUNT)
        r = R_OTHER;
    if (status < 0 || status >= MAX_STATUS)
        status = 0;
    INC(requests[r][status], 1);
    double s = (double)dur_ns / 1e9;
    size_t b = 0;
    while (b < NBUCKETS && s > buckets[b])
        b++;
    INC(lat_bucket[r][b], 1);
    INC(lat_sum_ns[r], dur_ns);
}

void met_reject(enum ing_reason why)
{
    if (why < RJ__COUNT)
        INC(rejections[why], 1);
}

void met_jobs(const char *provider, unsigned n)
{
    size_t i = 0;
    while (i < NPROV - 1 && strcmp(providers[i], provider) != 0)
        i++;
    INC(jobs[i], n);
}

void met_duplicate(enum ing_route r)
{
    INC(duplicates[r < R__COUNT ? r : R_OTHER], 1);
}

void met_ignored(enum ing_route r)
{
    INC(ignored[r < R__COUNT ? r : R_OTHER], 1);
}

void met_cache(bool hit)
{
    if (hit)
        INC(cache_hits, 1);
    else
        INC(cache_misses, 1);
}

void met_conns(int delta)
{
    INC(open_conns, delta);
}

void met_live(const char *outcome)
{
    size_t i = 0;
    while (i < NLIVE - 1 && strcmp(live_outcomes[i], outcome) != 0)
        i++;
    INC(live_counts[i], 1);
}

#define ADD(...) (void)!buf_addf(b, __VA_ARGS__)

void met_render(struct buf *b)
{
    ADD("# HELP callsync_ingest_requests_total Requests answered, by route "
        "and status.\n# TYPE callsync_ingest_requests_total counter\n");
    for (int r = 0; r < R__COUNT; r++)
        for (int s = 0; s < MAX_STATUS; s++) {
            uint64_t v = GET(requests[r][s]);
            if (v)
                ADD("callsync_ingest_requests_total{route=\"%s\","
                    "status=\"%d\"} %llu\n",
                    route_names[r], s, (unsigned long long)v);
        }
    ADD("# HELP callsync_ingest_rejections_total Requests refused, by "
        "reason.\n# TYPE callsync_ingest_rejections_total counter\n");
    for (int i = 0; i < RJ__COUNT; i++)
        ADD("callsync_ingest_rejections_total{reason=\"%s\"} %llu\n",
            reason_names[i], (unsigned long long)GET(rejections[i]));
    ADD("# HELP callsync_ingest_jobs_enqueued_total Jobs written to Redis, "
        "by provider.\n# TYPE callsync_ingest_jobs_enqueued_total counter\n");
    for (size_t i = 0; i < NPROV; i++)
        ADD("callsync_ingest_jobs_enqueued_total{provider=\"%s\"} %llu\n",
            providers[i], (unsigned long long)GET(jobs[i]));
    ADD("# HELP callsync_ingest_duplicates_total Webhooks already seen "
        "(answered with the original job ids).\n"
        "# TYPE callsync_ingest_duplicates_total counter\n");
    ADD("# HELP callsync_ingest_ignored_total Valid webhooks that needed no "
        "job.\n# TYPE callsync_ingest_ignored_total counter\n");
    for (int r = 0; r < R__COUNT; r++) {
        if (r > R_OUTBOUND)
            break;
        ADD("callsync_ingest_duplicates_total{route=\"%s\"} %llu\n",
            route_names[r], (unsigned long long)GET(duplicates[r]));
        ADD("callsync_ingest_ignored_total{route=\"%s\"} %llu\n",
            route_names[r], (unsigned long long)GET(ignored[r]));
    }
    ADD("# HELP callsync_ingest_request_duration_seconds Time from the first "
        "byte of a request to its answer.\n"
        "# TYPE callsync_ingest_request_duration_seconds histogram\n");
    for (int r = 0; r < R__COUNT; r++) {
        uint64_t cum = 0;
        for (size_t i = 0; i <= NBUCKETS; i++) {
            cum += GET(lat_bucket[r][i]);
            if (i < NBUCKETS)
                ADD("callsync_ingest_request_duration_seconds_bucket{route="
                    "\"%s\",le=\"%g\"} %llu\n",
                    route_names[r], buckets[i], (unsigned long long)cum);
            else
                ADD("callsync_ingest_request_duration_seconds_bucket{route="
                    "\"%s\",le=\"+Inf\"} %llu\n",
                    route_names[r], (unsigned long long)cum);
        }
        ADD("callsync_ingest_request_duration_seconds_sum{route=\"%s\"} "
            "%.6f\n",
            route_names[r], (double)GET(lat_sum_ns[r]) / 1e9);
        ADD("callsync_ingest_request_duration_seconds_count{route=\"%s\"} "
            "%llu\n",
            route_names[r], (unsigned long long)cum);
    }
    ADD("# TYPE callsync_ingest_cache_lookups_total counter\n"
        "callsync_ingest_cache_lookups_total{result=\"hit\"} %llu\n"
        "callsync_ingest_cache_lookups_total{result=\"miss\"} %llu\n",
        (unsigned long long)GET(cache_hits),
        (unsigned long long)GET(cache_misses));
    ADD("# HELP callsync_ingest_live_requests_total Live-call tool requests "
        "(/tools/retell), by how they ended.\n"
        "# TYPE callsync_ingest_live_requests_total counter\n");
    for (size_t i = 0; i < NLIVE; i++)
        ADD("callsync_ingest_live_requests_total{outcome=\"%s\"} %llu\n",
            live_outcomes[i], (unsigned long long)GET(live_counts[i]));
    ADD("# TYPE callsync_ingest_open_connections gauge\n"
        "callsync_ingest_open_connections %lld\n",
        (long long)GET(open_conns));
}
