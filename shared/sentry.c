/*
 * sentry.c - error reports to Sentry; see sentry.h.
 *
 * The log hook runs on the logging thread: it builds the envelope there
 * (the log line is only borrowed) and queues it under a mutex, or drops
 * it when the queue is full or its event name has used its burst for the
 * minute. The sender thread takes envelopes one by one and posts them
 * with libcurl; a 429 or rate-limit header makes it wait before the next.
 */
#include "sentry.h"
#include "cfg.h"
#include "crypto.h"
#include "log.h"
#include "redact.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define SENTRY_CLIENT "callsync/1.0"
#define BURST_SLOTS 64
#define BURST_WINDOW_MS 60000

/* ---- DSN and documents (pure) ----------------------------------------- */

int sentry_dsn_parse(const char *dsn, struct sentry_dsn *out,
                     struct cs_err *err)
{
    if (!dsn || !*dsn)
        return cs_err_set(err, CS_EINVAL, "dsn", "empty DSN");
    const char *p = strstr(dsn, "://");
    if (!p || (strncmp(dsn, "https", 5) != 0 && strncmp(dsn, "http", 4) != 0)
        || (size_t)(p - dsn) > 5)
        return cs_err_set(err, CS_EINVAL, "dsn",
                          "expected http:// or https:// at the start");
    size_t scheme_len = (size_t)(p - dsn);
    p += 3;
    const char *at = strchr(p, '@');
    const char *slash = strchr(p, '/');
    if (!at || (slash && at > slash) || at == p)
        return cs_err_set(err, CS_EINVAL, "dsn",
                          "expected <public key>@ before the host");
    size_t keylen = strcspn(p, ":@");
    if (keylen == 0 || keylen >= sizeof(out->public_key))
        return cs_err_set(err, CS_EINVAL, "dsn", "bad public key");
    const char *host = at + 1;
    const char *last = strrchr(host, '/');
    if (!last || last == host || !last[1])
        return cs_err_set(err, CS_EINVAL, "dsn",
                          "expected /<project id> after the host");
    const char *proj = last + 1;
    size_t pl = strlen(proj);
    while (pl && proj[pl - 1] == '/')
        pl--;
    if (pl == 0 || pl >= sizeof(out->project_id) ||
        strspn(proj, "0123456789abcdefghijklmnopqrstuvwxyz-_") < pl)
        return cs_err_set(err, CS_EINVAL, "dsn", "bad project id");
    if (strlen(dsn) >= sizeof(out->dsn))
        return cs_err_set(err, CS_EINVAL, "dsn", "DSN too long");
    memset(out, 0, sizeof(*out));
    memcpy(out->public_key, p, keylen);
    memcpy(out->project_id, proj, pl);
    /* Host, port and any path prefix, up to the project id. */
    int n = snprintf(out->envelope_url, sizeof(out->envelope_url),
                     "%.*s://%.*s/api/%.*s/envelope/", (int)scheme_len, dsn,
                     (int)(last - host), host, (int)pl, proj);
    if (n < 0 || (size_t)n >= sizeof(out->envelope_url))
        return cs_err_set(err, CS_EINVAL, "dsn", "DSN too long");
    snprintf(out->dsn, sizeof(out->dsn), "%s", dsn);
    return 0;
}

char *sentry_auth_header(const struct sentry_dsn *d)
{
    return xasprintf("Sentry sentry_version=7, sentry_client=" SENTRY_CLIENT
                     ", sentry_key=%s",
                     d->public_key);
}

static const char *level_name(int level)
{
    switch (level) {
    case LOG_DEBUG: return "debug";
    case LOG_INFO: return "info";
    case LOG_WARN: return "warning";
    case LOG_ERROR: return "error";
    default: return "fatal";
    }
}

json_t *sentry_event(const struct sentry_opts *o, const char *event_id,
                     int level, const char *event, const json_t *fields,
                     int64_t now_ms)
{
    char ts[32], host[128] = "unknown";
    cs_rfc3339_ms(now_ms, ts);
    gethostname(host, sizeof(host) - 1);
    const char *svc = o->service ? o->service : "callsync";
    json_t *extra = json_object();
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)fields, k, v) {
        if (strcmp(k, "ts") && strcmp(k, "level") && strcmp(k, "svc") &&
            strcmp(k, "event"))
            json_object_set(extra, k, v);
    }
    redact_json(NULL, extra);
    char *logger = xasprintf("callsync.%s", svc);
    json_t *e = json_pack(
        "{s:s,s:s,s:s,s:s,s:s,s:s,s:{s:s},s:{s:s,s:s},s:o,s:[s,s,s],"
        "s:{s:s,s:s}}",
        "event_id", event_id, "timestamp", ts, "platform", "c", "level",
        level_name(level), "logger", logger, "server_name", host, "logentry",
        "formatted", event, "tags", "service", svc, "event", event, "extra",
        extra, "fingerprint", "callsync", svc, event, "sdk", "name",
        "callsync.c", "version", "1.0");
    free(logger);
    if (o->environment && *o->environment)
        json_object_set_new(e, "environment", json_string(o->environment));
    if (o->release && *o->release)
        json_object_set_new(e, "release", json_string(o->release));
    return e;
}

char *sentry_envelope(const struct sentry_dsn *d, const char *event_id,
                      const json_t *event, int64_t now_ms, size_t *len)
{
    char ts[32];
    cs_rfc3339_ms(now_ms, ts);
    char *body = json_dumps(event, JSON_COMPACT);
    size_t bl = strlen(body);
    json_t *h = json_pack("{s:s,s:s,s:s}", "event_id", event_id, "dsn",
                          d->dsn, "sent_at", ts);
    char *hs = json_dumps(h, JSON_COMPACT);
    json_decref(h);
    char *env = xasprintf("%s\n{\"type\":\"event\",\"length\":%zu,"
                          "\"content_type\":\"application/json\"}\n%s\n",
                          hs, bl, body);
    free(hs);
    free(body);
    *len = strlen(env);
    return env;
}

int64_t sentry_backoff_ms(int status, const char *retry_after,
                          const char *rate_limits)
{
    int64_t wait = 0;
    /* "60:error;transaction:org, 2700:default:project": the categories an
     * entry covers come after its seconds; empty means all of them. */
    const char *p = rate_limits;
    while (p && *p) {
        size_t n = strcspn(p, ",");
        char item[256];
        snprintf(item, sizeof(item), "%.*s", (int)(n < 255 ? n : 255), p);
        char *colon = strchr(item, ':');
        long long secs = strtoll(item, NULL, 10);
        const char *cats = colon ? colon + 1 : "";
        size_t cl = strcspn(cats, ":");
        bool ours = cl == 0;
        for (const char *c = cats; c < cats + cl;) {
            size_t wl = strcspn(c, ";:");
            if ((wl == 5 && strncmp(c, "error", 5) == 0) ||
                (wl == 7 && strncmp(c, "default", 7) == 0))
                ours = true;
            c += wl + (c[wl] == ';');
            if (wl == 0)
                break;
        }
        if (ours && secs * 1000 > wait)
            wait = secs * 1000;
        p += n;
        if (*p == ',')
            p++;
        while (*p == ' ')
            p++;
    }
    if (retry_after && *retry_after) {
        long long s = strtoll(retry_after, NULL, 10);
        if (s * 1000 > wait)
            wait = s * 1000;
    }
    if (status == 429 && wait == 0)
        wait = 60000;
    return wait;
}

/* ---- The reporter ----------------------------------------------------- */

struct item {
    char *body;
    size_t len;
};

static struct {
    bool on;
    struct sentry_opts opts;
    char *environment, *release, *service;
    struct sentry_dsn dsn;
    char *auth;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct item q[SENTRY_QUEUE_MAX];
    size_t head, len;
    bool stopping;
    int64_t flush_until_ms;  /* while stopping: send until then */
    struct {
        uint32_t hash;
        int64_t window_ms;
        int count;
    } burst[BURST_SLOTS];
    struct sentry_stats stats;
} R = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static uint32_t fnv1a(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

/* Under R.mu: whether this event name still has burst left. */
static bool burst_ok(const char *event, int64_t now)
{
    uint32_t h = fnv1a(event);
    size_t slot = h % BURST_SLOTS;
    if (R.burst[slot].hash != h || now - R.burst[slot].window_ms >=
                                       BURST_WINDOW_MS) {
        R.burst[slot].hash = h;
        R.burst[slot].window_ms = now;
        R.burst[slot].count = 0;
    }
    return R.burst[slot].count++ < SENTRY_BURST;
}

static void on_log(int level, const char *event, const json_t *line,
                   void *arg)
{
    CS_UNUSED(arg);
    int64_t now = cs_now_ms();
    pthread_mutex_lock(&R.mu);
    bool take = !R.stopping && R.len < SENTRY_QUEUE_MAX;
    if (!take)
        R.stats.dropped++;
    else if (!burst_ok(event, now)) {
        R.stats.suppressed++;
        take = false;
    }
    pthread_mutex_unlock(&R.mu);
    if (!take)
        return;
    unsigned char raw[16];
    char id[33];
    if (cs_random(raw, sizeof(raw)) != 0)
        return;
    cs_hex_encode(raw, sizeof(raw), id);
    json_t *e = sentry_event(&R.opts, id, level, event, line, now);
    size_t len;
    char *env = sentry_envelope(&R.dsn, id, e, now, &len);
    json_decref(e);
    pthread_mutex_lock(&R.mu);
    if (R.len < SENTRY_QUEUE_MAX && !R.stopping) {
        R.q[(R.head + R.len) % SENTRY_QUEUE_MAX] = (struct item){env, len};
        R.len++;
        env = NULL;
        pthread_cond_signal(&R.cv);
    } else {
        R.stats.dropped++;
    }
    pthread_mutex_unlock(&R.mu);
    free(env);
}

struct answer {
    char retry_after[32];
    char rate_limits[256];
};

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
    struct answer *a = arg;
    size_t len = size * n;
    static const struct {
        const char *name;
        size_t off, cap;
    } want[] = {
        {"retry-after:", offsetof(struct answer, retry_after), 32},
        {"x-sentry-rate-limits:", offsetof(struct answer, rate_limits), 256},
    };
    for (size_t i = 0; i < CS_ARRAY_LEN(want); i++) {
        size_t nl = strlen(want[i].name);
        if (len > nl && strncasecmp(p, want[i].name, nl) == 0) {
            const char *v = p + nl;
            size_t vl = len - nl;
            while (vl && *v == ' ') {
                v++;
                vl--;
            }
            while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n'))
                vl--;
            snprintf((char *)a + want[i].off, want[i].cap, "%.*s", (int)vl,
                     v);
        }
    }
    return len;
}

static size_t discard(char *p, size_t size, size_t n, void *arg)
{
    CS_UNUSED(p);
    CS_UNUSED(arg);
    return size * n;
}

/* Post one envelope; how long Sentry asks us to wait afterwards. */
static int64_t post(CURL *c, const struct item *it)
{
    struct curl_slist *h = NULL;
    char *auth = xasprintf("X-Sentry-Auth: %s", R.auth);
    h = curl_slist_append(h, auth);
    h = curl_slist_append(h, "Content-Type: application/x-sentry-envelope");
    struct answer a = {"", ""};
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, R.dsn.envelope_url);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, it->body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)it->len);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS,
                     (long)(R.opts.timeout_ms > 0 ? R.opts.timeout_ms
                                                  : 5000));
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &a);
    CURLcode cc = curl_easy_perform(c);
    long status = 0;
    if (cc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    free(auth);
    pthread_mutex_lock(&R.mu);
    if (status >= 200 && status < 300)
        R.stats.sent++;
    else
        R.stats.failed++;
    pthread_mutex_unlock(&R.mu);
    int64_t wait = sentry_backoff_ms((int)status, a.retry_after,
                                     a.rate_limits);
    if (cc != CURLE_OK && wait == 0)
        wait = 1000; /* unreachable: do not spin */
    return wait;
}

static void *sender(void *arg)
{
    CS_UNUSED(arg);
    CURL *c = curl_easy_init();
    int64_t paused_until = 0;
    pthread_mutex_lock(&R.mu);
    for (;;) {
        int64_t now = cs_now_ms();
        if (R.stopping && (R.len == 0 || now >= R.flush_until_ms))
            break;
        if (R.len == 0 || now < paused_until) {
            int64_t until = R.len == 0 ? now + 1000 : paused_until;
            if (R.stopping && until > R.flush_until_ms)
                until = R.flush_until_ms;
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            int64_t add = until - now;
            ts.tv_sec += add / 1000;
            ts.tv_nsec += (long)(add % 1000) * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&R.cv, &R.mu, &ts);
            continue;
        }
        struct item it = R.q[R.head];
        R.head = (R.head + 1) % SENTRY_QUEUE_MAX;
        R.len--;
        pthread_mutex_unlock(&R.mu);
        int64_t wait = c ? post(c, &it) : 0;
        free(it.body);
        pthread_mutex_lock(&R.mu);
        if (wait > 0)
            paused_until = cs_now_ms() + wait;
    }
    /* What could not be sent in time is dropped and counted. */
    while (R.len) {
        free(R.q[R.head].body);
        R.head = (R.head + 1) % SENTRY_QUEUE_MAX;
        R.len--;
        R.stats.dropped++;
    }
    pthread_mutex_unlock(&R.mu);
    if (c)
        curl_easy_cleanup(c);
    return NULL;
}

int sentry_start(const struct sentry_opts *o, struct cs_err *err)
{
    if (!o->dsn || !*o->dsn || R.on)
        return 0;
    struct sentry_dsn d;
    int rc = sentry_dsn_parse(o->dsn, &d, err);
    if (rc)
        return rc;
    R.dsn = d;
    R.auth = sentry_auth_header(&d);
    R.environment = o->environment ? xstrdup(o->environment) : NULL;
    R.release = o->release ? xstrdup(o->release) : NULL;
    R.service = xstrdup(o->service ? o->service : log_service());
    R.opts = (struct sentry_opts){NULL, R.environment, R.release, R.service,
                                  o->timeout_ms};
    R.stopping = false;
    R.head = R.len = 0;
    memset(&R.stats, 0, sizeof(R.stats));
    if (pthread_create(&R.thread, NULL, sender, NULL) != 0) {
        free(R.auth);
        return cs_err_set(err, CS_EIO, "dsn", "cannot start the sender");
    }
    R.on = true;
    log_set_hook(LOG_ERROR, on_log, NULL);
    return 0;
}

int sentry_start_cfg(const struct cfg *cfg, const char *service,
                     struct cs_err *err)
{
    struct sentry_opts o = {cfg->sentry_dsn, cfg->sentry_environment,
                            cfg->sentry_release, service, 0};
    int rc = sentry_start(&o, err);
    if (rc == 0 && cfg->sentry_dsn && *cfg->sentry_dsn)
        log_info("sentry_reporting", LOG_S("service", service));
    return rc;
}

void sentry_stop(int flush_ms)
{
    if (!R.on)
        return;
    log_set_hook(LOG_OFF, NULL, NULL);
    pthread_mutex_lock(&R.mu);
    R.stopping = true;
    R.flush_until_ms = cs_now_ms() + (flush_ms > 0 ? flush_ms : 0);
    pthread_cond_signal(&R.cv);
    pthread_mutex_unlock(&R.mu);
    pthread_join(R.thread, NULL);
    free(R.auth);
    free(R.environment);
    free(R.release);
    free(R.service);
    R.auth = R.environment = R.release = R.service = NULL;
    R.on = false;
}

void sentry_get_stats(struct sentry_stats *out)
{
    pthread_mutex_lock(&R.mu);
    *out = R.stats;
    pthread_mutex_unlock(&R.mu);
}
