/*
 * benchgen.c - inputs and read-outs for the benchmarks in tests/bench/.
 *
 *   callsync-benchgen FIXTURE API_KEY COUNT OUT
 *       N signed Retell webhook requests for ingest.sh, each a distinct
 *       call (so each one really makes jobs), as raw HTTP/1.1 requests
 *       separated by NUL bytes for ingest.lua. Signatures carry the time of
 *       generation; Retell's tolerance is five minutes, so the file must be
 *       used within that.
 *
 *   callsync-benchgen live API_KEY RETELL_AGENT COUNT OUT
 *       N signed live-call requests for live.sh (POST /tools/retell,
 *       check_availability of one of the next 20 weekdays), each from a
 *       distinct call, in the same format.
 *
 *   callsync-benchgen jobs --redis URL --agent ID --org ID --connection ID
 *                          --provider P --count N [--rate R] [--shards N]
 *                          --out FILE FIXTURE
 *       Enqueues N jobs for one connection straight into Redis, in the
 *       format ingest's enqueue script writes (ingest/store.c,
 *       ingest/routes.c): HSETNX cs:{S}:job:<id> state queued, then XADD
 *       cs:{S}:q:<provider> * job_id <id> job <json>, the job document
 *       spliced from the Retell fixture normalised as ingest normalises it.
 *       Each job is a distinct call (call id, caller phone and e-mail), so
 *       providers that find-or-create contacts see distinct people.
 *       --rate 0 (default) sends as fast as Redis takes them (pipelined);
 *       --rate R paces them at R jobs/s from the start. first_enqueued_at
 *       is the wall-clock millisecond the job is sent. FILE gets one line
 *       "<job hash key> <enqueued ms>" per job.
 *
 *   callsync-benchgen report --redis URL --in FILE
 *       Reads state and finished_at of every job listed in FILE and prints
 *       key=value lines: jobs, done, dead, unfinished, first and last
 *       enqueue and finish (ms since the epoch), and the enqueue-to-done
 *       latency percentiles p50, p90, p99 and max in ms. finished_at has
 *       millisecond resolution, so latencies are whole milliseconds.
 *
 *   callsync-benchgen wait --redis URL --provider P [--shard S]
 *                          [--timeout SECONDS]
 *       Returns once every job of the provider's stream has finished (the
 *       stream and the delayed set are empty), or fails after the timeout.
 */
#define _GNU_SOURCE /* memmem */
#include "cs.h"
#include "buf.h"
#include "crypto.h"
#include "norm.h"

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PIPELINE 512

/* ---- Signed webhooks (ingest.sh) ---------------------------------------- */

static int gen_webhooks(char **argv)
{
    json_error_t je;
    json_t *doc = json_load_file(argv[1], 0, &je);
    if (!doc) {
        fprintf(stderr, "benchgen: cannot read '%s': %s\n", argv[1], je.text);
        return 1;
    }
    const char *key = argv[2];
    long count = strtol(argv[3], NULL, 10);
    FILE *out = fopen(argv[4], "wb");
    if (!out || count <= 0) {
        fprintf(stderr, "benchgen: bad count or output '%s'\n", argv[4]);
        json_decref(doc);
        if (out)
            fclose(out);
        return 1;
    }
    json_t *call = json_object_get(doc, "call");
    char run[16];
    snprintf(run, sizeof(run), "%lld", (long long)(cs_now_ms() % 100000000));
    for (long i = 0; i < count; i++) {
        char id[64];
        snprintf(id, sizeof(id), "call_bench_%s_%ld", run, i);
        json_object_set_new(call, "call_id", json_string(id));
        char *body = json_dumps(doc, JSON_COMPACT);
        size_t n = strlen(body);
        char ts[24];
        snprintf(ts, sizeof(ts), "%lld", (long long)cs_now_ms());
        unsigned char mac[CS_SHA256_LEN];
        cs_hmac_sha256(key, strlen(key), body, n, ts, strlen(ts), NULL, 0,
                       mac);
        char hex[65];
        cs_hex_encode(mac, sizeof(mac), hex);
        fprintf(out,
                "POST /webhooks/retell HTTP/1.1\r\nHost: bench\r\n"
                "Content-Type: application/json\r\n"
                "X-Retell-Signature: v=%s,d=%s\r\n"
                "Content-Length: %zu\r\n\r\n%s",
                ts, hex, n, body);
        fputc('\0', out);
        free(body);
    }
    fclose(out);
    json_decref(doc);
    return 0;
}

static int gen_live(char **argv)
{
    const char *key = argv[2], *agent = argv[3];
    long count = strtol(argv[4], NULL, 10);
    FILE *out = fopen(argv[5], "wb");
    if (!out || count <= 0) {
        fprintf(stderr, "benchgen: bad count or output '%s'\n", argv[5]);
        if (out)
            fclose(out);
        return 1;
    }
    char run[16];
    snprintf(run, sizeof(run), "%lld", (long long)(cs_now_ms() % 100000000));
    int64_t day0 = cs_now_ms() / 86400000 + 1;
    for (long i = 0; i < count; i++) {
        /* One of the next 20 days (UTC dates; weekends answer "none"). */
        char date[32];
        cs_rfc3339_s((day0 + i % 20) * 86400000, date);
        date[10] = '\0';
        char *body = xasprintf(
            "{\"name\":\"check_availability\",\"call\":{\"call_id\":"
            "\"call_live_%s_%ld\",\"agent_id\":\"%s\",\"from_number\":"
            "\"+1415555%04ld\",\"call_status\":\"ongoing\"},\"args\":"
            "{\"date\":\"%s\"}}",
            run, i, agent, i % 10000, date);
        size_t n = strlen(body);
        char ts[24];
        snprintf(ts, sizeof(ts), "%lld", (long long)cs_now_ms());
        unsigned char mac[CS_SHA256_LEN];
        cs_hmac_sha256(key, strlen(key), body, n, ts, strlen(ts), NULL, 0,
                       mac);
        char hex[65];
        cs_hex_encode(mac, sizeof(mac), hex);
        fprintf(out,
                "POST /tools/retell HTTP/1.1\r\nHost: bench\r\n"
                "Content-Type: application/json\r\n"
                "X-Retell-Signature: v=%s,d=%s\r\n"
                "Content-Length: %zu\r\n\r\n%s",
                ts, hex, n, body);
        fputc('\0', out);
        free(body);
    }
    fclose(out);
    return 0;
}

/* ---- Shared helpers ------------------------------------------------------ */

/* Connect to redis://[:password@]host:port[/db] (blocking). */
static redisContext *redis_open(const char *url)
{
    char host[256] = "127.0.0.1", pw[256] = "";
    int port = 6379, db = 0;
    const char *p = strncmp(url, "redis://", 8) == 0 ? url + 8 : url;
    const char *at = strrchr(p, '@');
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        const char *s = colon ? colon + 1 : p;
        snprintf(pw, sizeof(pw), "%.*s", (int)(at - s), s);
        p = at + 1;
    }
    if (sscanf(p, "%255[^:/]:%d/%d", host, &port, &db) < 1) {
        fprintf(stderr, "benchgen: bad redis url '%s'\n", url);
        return NULL;
    }
    redisContext *c = redisConnect(host, port);
    if (!c || c->err) {
        fprintf(stderr, "benchgen: cannot connect to redis '%s': %s\n", url,
                c ? c->errstr : "out of memory");
        if (c)
            redisFree(c);
        return NULL;
    }
    redisReply *r = NULL;
    if (pw[0])
        r = redisCommand(c, "AUTH %s", pw);
    freeReplyObject(r);
    r = db ? redisCommand(c, "SELECT %d", db) : NULL;
    freeReplyObject(r);
    return c;
}

static const char *opt(int argc, char **argv, const char *name)
{
    for (int i = 2; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return argv[i + 1];
    return NULL;
}

static void sleep_until_ns(uint64_t t)
{
    struct timespec ts = {(time_t)(t / 1000000000u), (long)(t % 1000000000u)};
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
}

/* ---- Jobs straight into Redis -------------------------------------------- */

/*
 * A normalised call serialised once, with the offsets of the counters that
 * make each call distinct: the digits of the call id (also inside the
 * event id), of the caller's phone and of the e-mail address. Writing a
 * job copies the template and overwrites the digits in place.
 */
struct tmpl {
    char *call;                /* the call document */
    size_t call_len;
    char *event_id;
    struct {
        size_t off, width;
        int which;             /* 0: sequence (8 digits), 1: phone (7) */
    } marks[16];
    size_t nmarks;
};

#define SEQ_MARK "90000000"
#define PHONE_MARK "+14159000000"

static void tmpl_mark(struct tmpl *t, const char *s, size_t len,
                      const char *mark, size_t skip, size_t width, int which)
{
    size_t ml = strlen(mark);
    for (const char *p = s; (p = memmem(p, len - (size_t)(p - s), mark, ml));
         p += ml) {
        CS_ASSERT(t->nmarks < CS_ARRAY_LEN(t->marks));
        t->marks[t->nmarks].off = (size_t)(p - s) + skip;
        t->marks[t->nmarks].width = width;
        t->marks[t->nmarks].which = which;
        t->nmarks++;
    }
}

static int tmpl_init(struct tmpl *t, const char *fixture, const char *run)
{
    json_error_t je;
    json_t *doc = json_load_file(fixture, 0, &je);
    if (!doc) {
        fprintf(stderr, "benchgen: cannot read '%s': %s\n", fixture, je.text);
        return 1;
    }
    json_t *call = json_object_get(doc, "call");
    char id[64], email[64];
    snprintf(id, sizeof(id), "call_bench_%s_%s", run, SEQ_MARK);
    snprintf(email, sizeof(email), "caller%s@example.com", SEQ_MARK);
    json_object_set_new(call, "call_id", json_string(id));
    json_object_set_new(call, "from_number", json_string(PHONE_MARK));
    json_object_set_new(json_object_get(json_object_get(call,
                                                        "call_analysis"),
                                        "custom_analysis_data"),
                        "customer_email", json_string(email));
    char *body = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    struct cs_norm_opts o = {"1"};
    struct cs_event ev = {0};
    struct cs_err err = {0};
    int rc = cs_norm_retell(body, strlen(body), &o, &ev, &err);
    free(body);
    if (rc || !ev.syncable || !ev.call) {
        fprintf(stderr, "benchgen: the fixture does not normalise: %s %s\n",
                err.field, err.msg);
        cs_event_release(&ev);
        return 1;
    }
    memset(t, 0, sizeof(*t));
    t->call = json_dumps(ev.call, JSON_COMPACT);
    t->call_len = strlen(t->call);
    t->event_id = xstrdup(ev.event_id);
    cs_event_release(&ev);
    /* The sequence digits wherever the call id or the e-mail appear, the
     * phone's last seven digits wherever the phone appears. */
    tmpl_mark(t, t->call, t->call_len, id, strlen(id) - 8, 8, 0);
    tmpl_mark(t, t->call, t->call_len, email, 6, 8, 0);
    tmpl_mark(t, t->call, t->call_len, PHONE_MARK, 5, 7, 1);
    if (t->nmarks < 3) {
        fprintf(stderr, "benchgen: the normalised call lost its call id, "
                        "phone or e-mail\n");
        return 1;
    }
    return 0;
}

static void tmpl_release(struct tmpl *t)
{
    free(t->call);
    free(t->event_id);
}

static void put_digits(char *at, size_t width, long v)
{
    for (size_t k = width; k-- > 0; v /= 10)
        at[k] = (char)('0' + v % 10);
}

struct jobs_args {
    const char *agent, *org, *conn, *provider;
    unsigned shard;
    const char *run;
};

/* Queue the two commands of job i (not sent until replies are read). */
static void append_job(redisContext *c, const struct jobs_args *a,
                       struct tmpl *t, char *call, long i, int64_t now_ms,
                       FILE *out)
{
    memcpy(call, t->call, t->call_len + 1);
    for (size_t k = 0; k < t->nmarks; k++)
        put_digits(call + t->marks[k].off, t->marks[k].width,
                   t->marks[k].which ? i % 10000000 : i);
    char call_id[64], event_id[96], seq[16];
    snprintf(seq, sizeof(seq), "%08ld", i);
    snprintf(call_id, sizeof(call_id), "call_bench_%s_%s", a->run, seq);
    snprintf(event_id, sizeof(event_id), "%s", t->event_id);
    char *mark = strstr(event_id, SEQ_MARK);
    CS_ASSERT(mark);
    memcpy(mark, seq, 8);
    char job_id[33];
    cs_job_id(call_id, a->conn, job_id);
    char now[32];
    cs_rfc3339_ms(now_ms, now);
    /* ingest/routes.c: job_payload(job_parts_init(...)). */
    json_t *common = json_pack(
        "{s:s,s:s,s:s,s:i,s:s,s:s,s:s,s:s}", "kind", "call_sync", "agent_id",
        a->agent, "org_id", a->org, "attempt", 0, "first_enqueued_at", now,
        "source", "retell", "event_type", "call_analyzed", "event_id",
        event_id);
    char *cs = json_dumps(common, JSON_COMPACT);
    json_decref(common);
    struct buf b;
    buf_init(&b, SIZE_MAX / 2);
    int rc = buf_addf(&b,
                      "{\"job_id\":\"%s\",\"provider\":\"%s\","
                      "\"connection_id\":\"%s\",",
                      job_id, a->provider, a->conn);
    if (!rc)
        rc = buf_add(&b, cs + 1, strlen(cs) - 2);
    if (!rc)
        rc = buf_adds(&b, ",\"call\":");
    if (!rc)
        rc = buf_add(&b, call, t->call_len);
    if (!rc)
        rc = buf_adds(&b, "}");
    CS_ASSERT(rc == 0);
    free(cs);
    char hkey[96], stream[96];
    snprintf(hkey, sizeof(hkey), "cs:{%u}:job:%s", a->shard, job_id);
    snprintf(stream, sizeof(stream), "cs:{%u}:q:%s", a->shard, a->provider);
    redisAppendCommand(c, "HSETNX %s state queued", hkey);
    redisAppendCommand(c, "XADD %s * job_id %s job %b", stream, job_id,
                       b.data, b.len);
    fprintf(out, "%s %lld\n", hkey, (long long)now_ms);
    buf_release(&b);
}

/* Read the replies of n queued jobs; the number of failures. */
static long read_replies(redisContext *c, long n)
{
    long bad = 0;
    for (long k = 0; k < 2 * n; k++) {
        redisReply *r = NULL;
        if (redisGetReply(c, (void **)&r) != REDIS_OK) {
            fprintf(stderr, "benchgen: redis: %s\n", c->errstr);
            return n;
        }
        /* HSETNX must create the hash (1), XADD must give an id. */
        if (k % 2 == 0 ? r->type != REDIS_REPLY_INTEGER || r->integer != 1
                       : r->type != REDIS_REPLY_STRING)
            bad++;
        freeReplyObject(r);
    }
    return bad;
}

static int gen_jobs(int argc, char **argv)
{
    const char *url = opt(argc, argv, "--redis");
    struct jobs_args a = {
        .agent = opt(argc, argv, "--agent"),
        .org = opt(argc, argv, "--org"),
        .conn = opt(argc, argv, "--connection"),
        .provider = opt(argc, argv, "--provider"),
    };
    const char *count_s = opt(argc, argv, "--count");
    const char *rate_s = opt(argc, argv, "--rate");
    const char *shards_s = opt(argc, argv, "--shards");
    const char *out_path = opt(argc, argv, "--out");
    const char *fixture = argv[argc - 1];
    long count = count_s ? strtol(count_s, NULL, 10) : 0;
    double rate = rate_s ? strtod(rate_s, NULL) : 0;
    long shards = shards_s ? strtol(shards_s, NULL, 10) : 1;
    if (!url || !a.agent || !a.org || !a.conn || !a.provider || !out_path ||
        count <= 0 || count > 99999999 || rate < 0 || shards < 1 ||
        argc % 2 != 1) {
        fprintf(stderr, "usage: callsync-benchgen jobs --redis URL --agent ID "
                        "--org ID --connection ID --provider P --count N "
                        "[--rate R] [--shards N] --out FILE FIXTURE\n");
        return 2;
    }
    a.shard = cs_shard_of(a.agent, (unsigned)shards);
    char run[16];
    snprintf(run, sizeof(run), "%lld", (long long)(cs_now_ms() % 1000000000));
    a.run = run;
    struct tmpl t;
    if (tmpl_init(&t, fixture, run))
        return 1;
    redisContext *c = redis_open(url);
    FILE *out = fopen(out_path, "w");
    if (!c || !out) {
        fprintf(stderr, "benchgen: cannot open '%s' or redis\n", out_path);
        tmpl_release(&t);
        if (c)
            redisFree(c);
        if (out)
            fclose(out);
        return 1;
    }
    char *call = xmalloc(t.call_len + 1);
    long bad = 0, sent = 0;
    uint64_t t0 = cs_mono_ns();
    while (sent < count) {
        long due = count;
        if (rate > 0) {
            /* Every job due by now, at most a pipeline's worth. */
            double el = (double)(cs_mono_ns() - t0) / 1e9;
            due = (long)(el * rate) + 1;
            if (due > count)
                due = count;
            if (due <= sent) {
                sleep_until_ns(t0 + (uint64_t)((double)sent / rate * 1e9));
                continue;
            }
        }
        if (due - sent > PIPELINE)
            due = sent + PIPELINE;
        int64_t now = cs_now_ms();
        for (long i = sent; i < due; i++)
            append_job(c, &a, &t, call, i, now, out);
        bad += read_replies(c, due - sent);
        sent = due;
    }
    double secs = (double)(cs_mono_ns() - t0) / 1e9;
    fprintf(stderr, "benchgen: %ld jobs enqueued in %.2f s (%.0f/s)%s\n",
            sent, secs, (double)sent / secs, bad ? ", with failures" : "");
    free(call);
    fclose(out);
    redisFree(c);
    tmpl_release(&t);
    if (bad) {
        fprintf(stderr, "benchgen: %ld jobs were not enqueued as new\n", bad);
        return 1;
    }
    return 0;
}

/* ---- Read-out ------------------------------------------------------------- */

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int64_t pct(const int64_t *v, size_t n, double p)
{
    if (n == 0)
        return -1;
    size_t k = (size_t)(p / 100.0 * (double)n);
    if (k >= n)
        k = n - 1;
    return v[k];
}

static int report(int argc, char **argv)
{
    const char *url = opt(argc, argv, "--redis");
    const char *in_path = opt(argc, argv, "--in");
    if (!url || !in_path) {
        fprintf(stderr,
                "usage: callsync-benchgen report --redis URL --in FILE\n");
        return 2;
    }
    FILE *in = fopen(in_path, "r");
    redisContext *c = in ? redis_open(url) : NULL;
    if (!c) {
        fprintf(stderr, "benchgen: cannot read '%s' or open redis\n",
                in_path);
        if (in)
            fclose(in);
        return 1;
    }
    size_t cap = 1024, n = 0, nlat = 0;
    char(*keys)[96] = xmalloc(cap * sizeof(*keys));
    int64_t *enq = xmalloc(cap * sizeof(*enq));
    char line[256];
    while (fgets(line, sizeof(line), in)) {
        long long ms;
        if (n == cap) {
            cap *= 2;
            keys = xrealloc(keys, cap * sizeof(*keys));
            enq = xrealloc(enq, cap * sizeof(*enq));
        }
        if (sscanf(line, "%95s %lld", keys[n], &ms) == 2)
            enq[n++] = ms;
    }
    fclose(in);
    int64_t *lat = xmalloc((n ? n : 1) * sizeof(*lat));
    long done = 0, dead = 0, other = 0;
    int64_t enq_first = INT64_MAX, enq_last = 0, fin_first = INT64_MAX,
            fin_last = 0;
    for (size_t i = 0; i < n; i += PIPELINE) {
        size_t m = n - i < PIPELINE ? n - i : PIPELINE;
        for (size_t k = 0; k < m; k++)
            redisAppendCommand(c, "HMGET %s state finished_at", keys[i + k]);
        for (size_t k = 0; k < m; k++) {
            redisReply *r = NULL;
            if (redisGetReply(c, (void **)&r) != REDIS_OK) {
                fprintf(stderr, "benchgen: redis: %s\n", c->errstr);
                return 1;
            }
            int64_t e = enq[i + k], fin = 0;
            const char *state = r->type == REDIS_REPLY_ARRAY &&
                                        r->elements == 2
                                    ? r->element[0]->str
                                    : NULL;
            const char *fa = state ? r->element[1]->str : NULL;
            enq_first = e < enq_first ? e : enq_first;
            enq_last = e > enq_last ? e : enq_last;
            if (state && strcmp(state, "done") == 0 && fa &&
                cs_parse_rfc3339(fa, &fin)) {
                done++;
                lat[nlat++] = fin - e;
                fin_first = fin < fin_first ? fin : fin_first;
                fin_last = fin > fin_last ? fin : fin_last;
            } else if (state && strcmp(state, "dead") == 0) {
                dead++;
            } else {
                other++;
            }
            freeReplyObject(r);
        }
    }
    qsort(lat, nlat, sizeof(*lat), cmp_i64);
    printf("jobs=%zu\ndone=%ld\ndead=%ld\nunfinished=%ld\n", n, done, dead,
           other);
    printf("enq_first_ms=%lld\nenq_last_ms=%lld\n", (long long)enq_first,
           (long long)enq_last);
    printf("fin_first_ms=%lld\nfin_last_ms=%lld\n",
           (long long)(nlat ? fin_first : 0), (long long)fin_last);
    printf("p50_ms=%lld\np90_ms=%lld\np99_ms=%lld\nmax_ms=%lld\n",
           (long long)pct(lat, nlat, 50), (long long)pct(lat, nlat, 90),
           (long long)pct(lat, nlat, 99),
           (long long)(nlat ? lat[nlat - 1] : -1));
    free(keys);
    free(enq);
    free(lat);
    redisFree(c);
    return 0;
}

/* ---- Waiting for the worker ---------------------------------------------- */

/* Until the provider's stream and the shard's delayed set are empty: every
 * job finished (the worker's end scripts XDEL a job's entry and, for a
 * retry, ZADD it to the delayed set in one step). Polls every 10 ms on one
 * connection. 0 when drained, 1 on timeout or a Redis error. */
static int wait_drained(int argc, char **argv)
{
    const char *url = opt(argc, argv, "--redis");
    const char *provider = opt(argc, argv, "--provider");
    const char *shard_s = opt(argc, argv, "--shard");
    const char *timeout_s = opt(argc, argv, "--timeout");
    if (!url || !provider) {
        fprintf(stderr, "usage: callsync-benchgen wait --redis URL --provider "
                        "P [--shard S] [--timeout SECONDS]\n");
        return 2;
    }
    long shard = shard_s ? strtol(shard_s, NULL, 10) : 0;
    double limit = timeout_s ? strtod(timeout_s, NULL) : 300;
    redisContext *c = redis_open(url);
    if (!c)
        return 1;
    char stream[96], delayed[64];
    snprintf(stream, sizeof(stream), "cs:{%ld}:q:%s", shard, provider);
    snprintf(delayed, sizeof(delayed), "cs:{%ld}:delayed", shard);
    uint64_t end = cs_mono_ns() + (uint64_t)(limit * 1e9);
    long long q = -1, d = -1;
    int rc = 1;
    while (cs_mono_ns() < end) {
        redisReply *a = redisCommand(c, "XLEN %s", stream);
        redisReply *b = a ? redisCommand(c, "ZCARD %s", delayed) : NULL;
        bool ok = a && b && a->type == REDIS_REPLY_INTEGER &&
                  b->type == REDIS_REPLY_INTEGER;
        q = ok ? a->integer : -1;
        d = ok ? b->integer : -1;
        freeReplyObject(a);
        freeReplyObject(b);
        if (!ok) {
            fprintf(stderr, "benchgen: redis: %s\n",
                    c->err ? c->errstr : "unexpected reply");
            break;
        }
        if (q == 0 && d == 0) {
            rc = 0;
            break;
        }
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (rc)
        fprintf(stderr, "benchgen: not drained: %lld jobs in '%s', %lld "
                        "delayed\n", q, stream, d);
    redisFree(c);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "jobs") == 0)
        return gen_jobs(argc, argv);
    if (argc == 6 && strcmp(argv[1], "live") == 0)
        return gen_live(argv);
    if (argc >= 2 && strcmp(argv[1], "report") == 0)
        return report(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "wait") == 0)
        return wait_drained(argc, argv);
    if (argc != 5) {
        fprintf(stderr,
                "usage: callsync-benchgen FIXTURE API_KEY COUNT OUT\n"
                "       callsync-benchgen live API_KEY RETELL_AGENT COUNT "
                "OUT\n"
                "       callsync-benchgen jobs --redis URL --agent ID --org ID "
                "--connection ID --provider P --count N [--rate R] "
                "[--shards N] --out FILE FIXTURE\n"
                "       callsync-benchgen report --redis URL --in FILE\n"
                "       callsync-benchgen wait --redis URL --provider P "
                "[--shard S] [--timeout SECONDS]\n");
        return 2;
    }
    return gen_webhooks(argv);
}
