/*
 * cmd_dead.c - dead letters: list, show, replay and purge.
 *
 * A dead letter is an entry of the stream cs:{S}:dead, written by the
 * worker's dead script (worker/scripts.c) with the fields job_id, job (the
 * job document with every attempt's error), reason, message, errors, at,
 * provider, connection_id and http_status; the job's hash cs:{S}:job:<id>
 * then says state "dead". Every command reads the streams of all shards
 * (or --shard) in id order with XRANGE, a page at a time, so memory stays
 * small however many letters there are.
 *
 * replay and purge first take a snapshot of the ids that match, then act
 * on that list only; each letter (replay: each job) is moved or removed by
 * one Lua script, so an interrupted run can simply be run again: what was
 * done is gone from the dead stream and cannot match twice.
 */
#include "ctl.h"
#include "prov.h"
#include "redact.h"

#include <ctype.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PAGE 500
#define DEFAULT_RATE 10.0 /* replays/s for a provider without a module */
#define MAX_RATE 1000000.0

/* ---- Dead letters ------------------------------------------------------- */

struct dl {
    unsigned shard;
    const char *id;            /* stream entry id */
    const char *job_id, *provider, *connection_id, *reason, *message, *at,
        *errors_raw, *job_raw; /* borrowed from the reply */
    int http_status;
    int64_t at_ms;             /* from the entry id */
    json_t *job;               /* parsed on demand */
    json_t *errors;            /* parsed on demand */
};

static const char *nz(const char *s)
{
    return s ? s : "";
}

static void dl_from_entry(struct dl *d, unsigned shard, const redisReply *e)
{
    memset(d, 0, sizeof(*d));
    d->shard = shard;
    d->id = e->element[0]->str;
    const redisReply *f = e->element[1];
    d->job_id = nz(ctl_rfield(f, "job_id"));
    d->provider = nz(ctl_rfield(f, "provider"));
    d->connection_id = nz(ctl_rfield(f, "connection_id"));
    d->reason = nz(ctl_rfield(f, "reason"));
    d->message = nz(ctl_rfield(f, "message"));
    d->at = nz(ctl_rfield(f, "at"));
    d->errors_raw = ctl_rfield(f, "errors");
    d->job_raw = ctl_rfield(f, "job");
    const char *hs = ctl_rfield(f, "http_status");
    d->http_status = hs ? atoi(hs) : 0;
    d->at_ms = strtoll(d->id, NULL, 10);
}

static json_t *dl_job(struct dl *d)
{
    if (!d->job && d->job_raw)
        d->job = json_loads(d->job_raw, 0, NULL);
    if (!d->job)
        d->job = json_object();
    return d->job;
}

static json_t *dl_errors(struct dl *d)
{
    if (!d->errors && d->errors_raw)
        d->errors = json_loads(d->errors_raw, 0, NULL);
    if (!json_is_array(d->errors)) {
        json_decref(d->errors);
        json_t *e = json_object_get(dl_job(d), "errors");
        d->errors = json_is_array(e) ? json_incref(e) : json_array();
    }
    return d->errors;
}

static const char *job_field(struct dl *d, const char *k)
{
    return json_string_value(json_object_get(dl_job(d), k));
}

static const char *call_id(struct dl *d)
{
    return json_string_value(
        json_object_get(json_object_get(dl_job(d), "call"), "call_id"));
}

static void dl_clear(struct dl *d)
{
    json_decref(d->job);
    json_decref(d->errors);
    d->job = d->errors = NULL;
}

/* Called for every letter in order; returns true to stop. */
typedef bool dl_fn(struct dl *d, void *arg);

/* Page through one shard's dead stream. CTL_OK or CTL_FAIL (printed). */
static int dl_scan(struct ctl *ctl, unsigned shard, dl_fn *fn, void *arg)
{
    char key[32], start[64] = "-";
    snprintf(key, sizeof(key), "cs:{%u}:dead", shard);
    for (;;) {
        redisReply *r = ctl_rcmd(ctl, "XRANGE %s %s + COUNT %d", key, start,
                                 PAGE);
        if (!r)
            return CTL_FAIL;
        if (r->type != REDIS_REPLY_ARRAY) {
            ctl_fail(CTL_FAIL, "Redis: XRANGE %s: %s", key,
                     r->type == REDIS_REPLY_ERROR ? r->str
                                                  : "unexpected reply");
            freeReplyObject(r);
            return CTL_FAIL;
        }
        bool stop = false;
        size_t n = r->elements;
        for (size_t i = 0; i < n && !stop; i++) {
            const redisReply *e = r->element[i];
            if (e->type != REDIS_REPLY_ARRAY || e->elements < 2 ||
                e->element[1]->type != REDIS_REPLY_ARRAY)
                continue;
            struct dl d;
            dl_from_entry(&d, shard, e);
            stop = fn(&d, arg);
            dl_clear(&d);
        }
        if (n > 0)
            snprintf(start, sizeof(start), "(%s", r->element[n - 1]->element[0]->str);
        freeReplyObject(r);
        if (stop || n < PAGE)
            return CTL_OK;
    }
}

/* ---- Filters ------------------------------------------------------------ */

struct dl_filter {
    const char *id;            /* an entry id or a job id */
    const char *provider, *connection, *agent, *code, *status, *since,
        *until, *grep, *shard;
    int status_lo, status_hi;  /* 0: any */
    int64_t since_ms, until_ms;
    int shard_n;               /* -1: every shard */
};

#define FILTER_OPTS(f)                                                       \
    {"provider", &(f).provider, NULL}, {"connection", &(f).connection, NULL}, \
        {"agent", &(f).agent, NULL}, {"code", &(f).code, NULL},              \
        {"status", &(f).status, NULL}, {"since", &(f).since, NULL},          \
        {"until", &(f).until, NULL}, {"grep", &(f).grep, NULL},              \
        {"shard", &(f).shard, NULL}

#define FILTER_HELP                                                          \
    "filters (all given must match):\n"                                      \
    "  --provider NAME      the provider (hubspot, zapier, ...)\n"           \
    "  --connection ID      the connection id\n"                             \
    "  --agent ID           the agent id of the job\n"                       \
    "  --code CODE          the reason, or the code of any attempt's error\n" \
    "                       (VALIDATION_ERROR, attempts_exhausted, poison,\n" \
    "                       mapping_error, ...); case-insensitive\n"         \
    "  --status N|Nxx       the HTTP status of the last error (400, 4xx)\n"  \
    "  --since WHEN         dead-lettered at or after WHEN: RFC 3339\n"      \
    "                       (2026-02-15T14:30:00Z) or a duration back from\n" \
    "                       now (90m, 2h, 7d)\n"                             \
    "  --until WHEN         dead-lettered before WHEN\n"                     \
    "  --grep TEXT          TEXT in the message or any attempt's message\n"  \
    "                       (case-insensitive)\n"                            \
    "  --shard N            only shard N (default: every shard of\n"         \
    "                       CALLSYNC_SHARDS)\n"

static bool filter_given(const struct dl_filter *f)
{
    return f->provider || f->connection || f->agent || f->code || f->status ||
           f->since || f->until || f->grep;
}

static bool is_entry_id(const char *s)
{
    size_t a = strspn(s, "0123456789");
    if (a == 0 || s[a] != '-')
        return false;
    size_t b = strspn(s + a + 1, "0123456789");
    return b > 0 && s[a + 1 + b] == '\0';
}

static bool is_token(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '-')
            return false;
    return true;
}

static int filter_prepare(struct dl_filter *f, const struct ctl *ctl)
{
    int64_t now = cs_now_ms();
    f->shard_n = -1;
    if (f->id && !is_entry_id(f->id) && !is_token(f->id, 128))
        return ctl_fail(CTL_USAGE, "invalid id '%s': expected a dead letter "
                        "id (1732000000000-0) or a job id", f->id);
    if (f->provider && !is_token(f->provider, 64))
        return ctl_fail(CTL_USAGE, "invalid --provider '%s'", f->provider);
    if (f->connection && !ctl_is_uuid(f->connection))
        return ctl_fail(CTL_USAGE, "invalid --connection '%s': expected a "
                        "connection id (UUID)", f->connection);
    if (f->agent && !ctl_is_uuid(f->agent))
        return ctl_fail(CTL_USAGE, "invalid --agent '%s': expected an agent "
                        "id (UUID)", f->agent);
    if (f->code && !*f->code)
        return ctl_fail(CTL_USAGE, "empty --code");
    if (f->grep && !*f->grep)
        return ctl_fail(CTL_USAGE, "empty --grep");
    if (f->status) {
        const char *s = f->status;
        bool cls = strlen(s) == 3 && s[0] >= '1' && s[0] <= '5' &&
                   tolower((unsigned char)s[1]) == 'x' &&
                   tolower((unsigned char)s[2]) == 'x';
        char *e;
        long v = strtol(s, &e, 10);
        if (cls) {
            f->status_lo = (s[0] - '0') * 100;
            f->status_hi = f->status_lo + 99;
        } else if (*e == '\0' && e != s && v >= 100 && v <= 599) {
            f->status_lo = f->status_hi = (int)v;
        } else {
            return ctl_fail(CTL_USAGE, "invalid --status '%s': expected an "
                            "HTTP status (400) or a class (4xx)", s);
        }
    }
    if (f->since && !ctl_parse_when(f->since, now, &f->since_ms))
        return ctl_fail(CTL_USAGE, "invalid --since '%s': expected RFC 3339 "
                        "or a duration such as 2h", f->since);
    if (f->until && !ctl_parse_when(f->until, now, &f->until_ms))
        return ctl_fail(CTL_USAGE, "invalid --until '%s': expected RFC 3339 "
                        "or a duration such as 2h", f->until);
    if (f->shard) {
        char *e;
        long v = strtol(f->shard, &e, 10);
        if (*e != '\0' || e == f->shard || v < 0 || v >= ctl->cfg.shards)
            return ctl_fail(CTL_USAGE, "invalid --shard '%s': expected 0..%d "
                            "(CALLSYNC_SHARDS is %d)", f->shard,
                            ctl->cfg.shards - 1, ctl->cfg.shards);
        f->shard_n = (int)v;
    }
    return CTL_OK;
}

static bool ci_contains(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (; *hay; hay++)
        if (strncasecmp(hay, needle, n) == 0)
            return true;
    return false;
}

static bool filter_match(const struct dl_filter *f, struct dl *d)
{
    if (f->id && strcmp(d->id, f->id) != 0 && strcmp(d->job_id, f->id) != 0)
        return false;
    if (f->provider && strcmp(d->provider, f->provider) != 0)
        return false;
    if (f->connection && strcasecmp(d->connection_id, f->connection) != 0)
        return false;
    if (f->status_lo &&
        (d->http_status < f->status_lo || d->http_status > f->status_hi))
        return false;
    if (f->since && d->at_ms < f->since_ms)
        return false;
    if (f->until && d->at_ms >= f->until_ms)
        return false;
    if (f->agent) {
        const char *a = job_field(d, "agent_id");
        if (!a || strcasecmp(a, f->agent) != 0)
            return false;
    }
    json_t *e;
    size_t i;
    if (f->code && strcasecmp(d->reason, f->code) != 0) {
        bool any = false;
        json_array_foreach(dl_errors(d), i, e) {
            const char *c = json_string_value(json_object_get(e, "code"));
            if (c && strcasecmp(c, f->code) == 0)
                any = true;
        }
        if (!any)
            return false;
    }
    if (f->grep && !ci_contains(d->message, f->grep)) {
        bool any = false;
        json_array_foreach(dl_errors(d), i, e) {
            const char *m = json_string_value(json_object_get(e, "message"));
            if (m && ci_contains(m, f->grep))
                any = true;
        }
        if (!any)
            return false;
    }
    return true;
}

/* Run fn on every matching letter of the filter's shards. */
struct match_ctx {
    const struct dl_filter *f;
    dl_fn *fn;
    void *arg;
    size_t n;
};

static bool match_one(struct dl *d, void *arg)
{
    struct match_ctx *m = arg;
    if (!filter_match(m->f, d))
        return false;
    m->n++;
    return m->fn(d, m->arg);
}

static int dl_each(struct ctl *ctl, const struct dl_filter *f, dl_fn *fn,
                   void *arg, size_t *matched)
{
    struct match_ctx m = {f, fn, arg, 0};
    int rc = CTL_OK;
    for (int s = 0; s < ctl->cfg.shards && rc == CTL_OK; s++)
        if (f->shard_n < 0 || f->shard_n == s)
            rc = dl_scan(ctl, (unsigned)s, match_one, &m);
    if (matched)
        *matched = m.n;
    return rc;
}

/* ---- Output helpers ------------------------------------------------------ */

static void fmt_time(int64_t ms, char out[32])
{
    cs_rfc3339_s(ms, out);
}

/* s cut to n characters (UTF-8 aware: never splits a character), one line. */
static void print_cut(const char *s, size_t n)
{
    size_t chars = 0, i = 0;
    for (; s[i] && chars < n; i++) {
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            chars++;
        if (chars > n)
            break;
    }
    while (s[i] && ((unsigned char)s[i] & 0xC0) == 0x80)
        i++;
    for (size_t k = 0; k < i; k++)
        putchar(s[k] == '\n' || s[k] == '\r' || s[k] == '\t' ? ' ' : s[k]);
    if (s[i])
        fputs("...", stdout);
}

static json_t *dl_summary_json(struct dl *d, const struct redact_ctx *rc)
{
    char at[32];
    cs_rfc3339_ms(d->at_ms, at);
    char *msg = redact_text(rc, d->message);
    json_t *o = json_pack(
        "{s:s,s:i,s:s,s:s,s:s,s:s?,s:s,s:s?,s:s,s:i,s:s,s:i}", "id", d->id,
        "shard", (int)d->shard, "dead_at", d->at[0] ? d->at : at, "provider",
        d->provider, "connection_id", d->connection_id, "agent_id",
        job_field(d, "agent_id"), "job_id", d->job_id, "call_id", call_id(d),
        "code", d->reason, "http_status", d->http_status, "message", msg,
        "attempts", (int)json_array_size(dl_errors(d)));
    free(msg);
    return o;
}

/* ---- dead list ----------------------------------------------------------- */

struct list_ctx {
    const struct ctl *ctl;
    long limit;
    size_t shown;
};

#define LIST_HEAD                                                            \
    "%-20s %-5s %-20s %-12s %-36s %-32s %-20s %-4s %s\n"

static bool list_one(struct dl *d, void *arg)
{
    struct list_ctx *l = arg;
    if (l->limit > 0 && (long)l->shown >= l->limit)
        return true;
    l->shown++;
    if (l->ctl->json) {
        json_t *o = dl_summary_json(d, NULL);
        char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
        printf("%s  %s", l->shown > 1 ? ",\n" : "", s);
        free(s);
        json_decref(o);
        return false;
    }
    char at[32], http[8], shard[8];
    fmt_time(d->at_ms, at);
    snprintf(http, sizeof(http), "%d", d->http_status);
    snprintf(shard, sizeof(shard), "%u", d->shard);
    printf("%-20s %-5s %-20s %-12s %-36s %-32s %-20s %-4s ", d->id, shard, at,
           d->provider, d->connection_id, d->job_id, d->reason,
           d->http_status ? http : "-");
    char *msg = redact_text(NULL, d->message);
    print_cut(msg, 80);
    free(msg);
    putchar('\n');
    return false;
}

int ctl_dead_list(struct ctl *ctl, int argc, char **argv)
{
    static const char usage[] =
        "usage: callsyncctl dead list [filters] [--limit N] [--json]\n\n"
        "List dead letters (shard by shard, oldest first), one line each:\n"
        "id, shard, time, provider, connection, job, reason, HTTP status,\n"
        "message (cut to 80 characters; `dead show ID` prints everything).\n"
        "--json prints a JSON array of objects (also agent_id, call_id and\n"
        "the number of attempts). --limit N stops after N (default: all).\n\n"
        FILTER_HELP
        "\nexit codes: 0 ok (also when nothing matched), 1 Redis failed,\n"
        "2 usage\n";
    struct dl_filter f = {0};
    const char *limit = NULL;
    const struct ctl_opt opts[] = {FILTER_OPTS(f), {"limit", &limit, NULL}};
    const char *pos[1];
    int npos;
    PARSE(ctl, argc, argv, opts, CS_ARRAY_LEN(opts), pos, 0, &npos, usage);
    int rc = filter_prepare(&f, ctl);
    if (rc)
        return rc;
    struct list_ctx l = {ctl, 0, 0};
    if (limit) {
        char *e;
        l.limit = strtol(limit, &e, 10);
        if (*e || e == limit || l.limit < 0)
            return ctl_fail(CTL_USAGE, "invalid --limit '%s'", limit);
    }
    if ((rc = ctl_redis(ctl)) != CTL_OK)
        return rc;
    if (ctl->json)
        fputs("[\n", stdout);
    else
        printf(LIST_HEAD, "ID", "SHARD", "DEAD AT", "PROVIDER", "CONNECTION",
               "JOB", "CODE", "HTTP", "MESSAGE");
    size_t matched = 0;
    rc = dl_each(ctl, &f, list_one, &l, &matched);
    if (ctl->json)
        fputs(l.shown ? "\n]\n" : "]\n", stdout);
    else if (rc == CTL_OK)
        printf("(%zu dead letter%s%s)\n", l.shown, l.shown == 1 ? "" : "s",
               l.limit && l.shown == (size_t)l.limit ? ", --limit reached"
                                                     : "");
    return rc;
}

/* ---- dead show ----------------------------------------------------------- */

struct show_ctx {
    json_t *found; /* [{shard, id, raw fields...}] copies of matches */
};

static bool show_one(struct dl *d, void *arg)
{
    struct show_ctx *s = arg;
    json_t *o = json_pack("{s:i,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:i,s:s?,s:s?}",
                          "shard", (int)d->shard, "id", d->id, "job_id",
                          d->job_id, "provider", d->provider, "connection_id",
                          d->connection_id, "reason", d->reason, "message",
                          d->message, "at", d->at, "http_status",
                          d->http_status, "errors", d->errors_raw, "job",
                          d->job_raw);
    if (o)
        json_array_append_new(s->found, o);
    return false;
}

/* The job hash as {state, attempt, deliveries, replays, replayed_at,
 * steps_done{}, in_flight{}, other fields}; NULL if there is none. */
static json_t *job_state(struct ctl *ctl, unsigned shard, const char *job_id,
                         const struct redact_ctx *rc)
{
    redisReply *r = ctl_rcmd(ctl, "HGETALL cs:{%u}:job:%s", shard, job_id);
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements == 0) {
        freeReplyObject(r);
        return NULL;
    }
    json_t *o = json_object(), *steps = json_object(),
           *inflight = json_object();
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        const char *k = r->element[i]->str, *v = r->element[i + 1]->str;
        if (!k || !v)
            continue;
        if (strncmp(k, "step:", 5) == 0) {
            json_t *j = json_loads(v, JSON_DECODE_ANY, NULL);
            json_object_set_new(steps, k + 5, j ? j : json_string(v));
        } else if (strncmp(k, "inflight:", 9) == 0) {
            json_object_set_new(inflight, k + 9, json_string(v));
        } else if (strcmp(k, "last_error") == 0) {
            json_t *j = json_loads(v, JSON_DECODE_ANY, NULL);
            json_object_set_new(o, k, j ? j : json_string(v));
        } else {
            json_object_set_new(o, k, json_string(v));
        }
    }
    freeReplyObject(r);
    json_object_set_new(o, "steps_done", steps);
    json_object_set_new(o, "in_flight", inflight);
    redact_json(rc, o);
    return o;
}

static void print_kv(const char *k, const char *v)
{
    printf("%-13s %s\n", k, v && *v ? v : "-");
}

static void print_indented_json(json_t *v)
{
    if (json_is_string(v)) {
        printf("  %s\n", json_string_value(v));
        return;
    }
    char *s = json_dumps(v, JSON_INDENT(2) | JSON_PRESERVE_ORDER |
                                JSON_ENCODE_ANY);
    for (char *line = s, *nl; line && *line; line = nl ? nl + 1 : NULL) {
        nl = strchr(line, '\n');
        printf("  %.*s\n", nl ? (int)(nl - line) : (int)strlen(line), line);
    }
    free(s);
}

static void print_show(json_t *out)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s (shard %lld)",
             json_string_value(json_object_get(out, "id")),
             (long long)json_integer_value(json_object_get(out, "shard")));
    print_kv("dead letter", buf);
    const char *keys[][2] = {
        {"job", "job_id"},          {"provider", "provider"},
        {"connection", "connection_id"}, {"agent", "agent_id"},
        {"call", "call_id"},        {"dead at", "dead_at"},
        {"reason", "code"},         {"message", "message"},
    };
    for (size_t i = 0; i < CS_ARRAY_LEN(keys); i++) {
        print_kv(keys[i][0],
                 json_string_value(json_object_get(out, keys[i][1])));
        if (i == 6) {
            json_int_t hs =
                json_integer_value(json_object_get(out, "http_status"));
            snprintf(buf, sizeof(buf), "%lld", (long long)hs);
            print_kv("http status", hs ? buf : "-");
        }
    }
    json_t *st = json_object_get(out, "job_state");
    if (st) {
        snprintf(buf, sizeof(buf),
                 "%s; attempt %s, deliveries %s, replays %s",
                 nz(json_string_value(json_object_get(st, "state"))),
                 json_string_value(json_object_get(st, "attempt"))
                     ? json_string_value(json_object_get(st, "attempt"))
                     : "0",
                 json_string_value(json_object_get(st, "deliveries"))
                     ? json_string_value(json_object_get(st, "deliveries"))
                     : "0",
                 json_string_value(json_object_get(st, "replays"))
                     ? json_string_value(json_object_get(st, "replays"))
                     : "0");
        print_kv("job state", buf);
        const char *k;
        json_t *v;
        bool first = true;
        json_object_foreach(json_object_get(st, "steps_done"), k, v) {
            char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
            snprintf(buf, sizeof(buf), "%s %s", k, s);
            print_kv(first ? "steps done" : "", buf);
            free(s);
            first = false;
        }
        if (first)
            print_kv("steps done", "none");
        first = true;
        json_object_foreach(json_object_get(st, "in_flight"), k, v) {
            snprintf(buf, sizeof(buf), "%s (marked in attempt %s: the "
                     "next run reconciles it)", k, json_string_value(v));
            print_kv(first ? "in flight" : "", buf);
            first = false;
        }
    } else {
        print_kv("job state", "no job hash (expired or removed)");
    }
    json_t *errs = json_object_get(out, "errors");
    printf("\nerrors (%zu)\n", json_array_size(errs));
    printf("  %-7s %-24s %-10s %-22s %-4s %s\n", "ATTEMPT", "AT", "STEP",
           "CODE", "HTTP", "MESSAGE");
    size_t i;
    json_t *e;
    json_array_foreach(errs, i, e) {
        char http[8];
        json_int_t hs = json_integer_value(json_object_get(e, "http_status"));
        snprintf(http, sizeof(http), "%lld", (long long)hs);
        printf("  %-7lld %-24s %-10s %-22s %-4s %s\n",
               (long long)json_integer_value(json_object_get(e, "attempt")),
               nz(json_string_value(json_object_get(e, "at"))),
               nz(json_string_value(json_object_get(e, "step"))),
               nz(json_string_value(json_object_get(e, "code"))),
               hs ? http : "-",
               nz(json_string_value(json_object_get(e, "message"))));
    }
    json_t *rq = json_object_get(out, "last_request");
    json_t *rs = json_object_get(out, "last_response");
    if (json_is_object(rq)) {
        printf("\nlast request\n  %s %s\n",
               nz(json_string_value(json_object_get(rq, "method"))),
               nz(json_string_value(json_object_get(rq, "url"))));
        json_t *b = json_object_get(rq, "body");
        if (b && !json_is_null(b))
            print_indented_json(b);
    }
    if (json_is_object(rs)) {
        printf("\nlast response\n  status %lld\n",
               (long long)json_integer_value(json_object_get(rs, "status")));
        json_t *b = json_object_get(rs, "body");
        if (b && !json_is_null(b))
            print_indented_json(b);
    }
    if (!json_is_object(rq) && !json_is_object(rs))
        printf("\nlast request and response: not recorded\n");
    printf("\nreplay with: callsyncctl dead replay %s\n",
           json_string_value(json_object_get(out, "id")));
}

int ctl_dead_show(struct ctl *ctl, int argc, char **argv)
{
    static const char usage[] =
        "usage: callsyncctl dead show ID [--shard N] [--json]\n\n"
        "Print one dead letter: the job, its state and step checkpoints,\n"
        "every attempt's error, and the last request and response if the\n"
        "worker recorded them. ID is a dead letter id (1732000000000-0) or\n"
        "a job id; if a job has several, the newest is shown. Secrets are\n"
        "redacted: the connection's own (when CALLSYNC_ENCRYPTION_KEYS and\n"
        "the database are available) and anything shaped like one.\n\n"
        "exit codes: 0 ok, 1 Redis failed, 2 usage, 3 no such dead letter\n";
    struct dl_filter f = {0};
    const struct ctl_opt opts[] = {{"shard", &f.shard, NULL}};
    const char *pos[1] = {NULL};
    int npos;
    PARSE(ctl, argc, argv, opts, CS_ARRAY_LEN(opts), pos, 1, &npos, usage);
    if (!pos[0]) {
        fputs(usage, stderr);
        return ctl_fail(CTL_USAGE, "dead show needs an ID");
    }
    f.id = pos[0];
    int rc = filter_prepare(&f, ctl);
    if (rc || (rc = ctl_redis(ctl)) != CTL_OK)
        return rc;
    struct show_ctx s = {json_array()};
    rc = dl_each(ctl, &f, show_one, &s, NULL);
    size_t n = json_array_size(s.found);
    if (rc == CTL_OK && n == 0)
        rc = ctl_fail(CTL_NOTFOUND, "dead letter '%s' not found", f.id);
    if (rc) {
        json_decref(s.found);
        return rc;
    }
    if (n > 1)
        ctl_warn("%zu dead letters match '%s'; showing the newest", n, f.id);
    json_t *m = json_array_get(s.found, n - 1);
    struct dl d = {0};
    d.shard = (unsigned)json_integer_value(json_object_get(m, "shard"));
    d.id = json_string_value(json_object_get(m, "id"));
    d.job_id = json_string_value(json_object_get(m, "job_id"));
    d.provider = json_string_value(json_object_get(m, "provider"));
    d.connection_id = json_string_value(json_object_get(m, "connection_id"));
    d.reason = json_string_value(json_object_get(m, "reason"));
    d.message = json_string_value(json_object_get(m, "message"));
    d.at = json_string_value(json_object_get(m, "at"));
    d.http_status = (int)json_integer_value(json_object_get(m,
                                                            "http_status"));
    d.errors_raw = json_string_value(json_object_get(m, "errors"));
    d.job_raw = json_string_value(json_object_get(m, "job"));
    d.at_ms = strtoll(d.id, NULL, 10);

    char **secrets = ctl_conn_secrets(ctl, d.connection_id);
    struct redact_ctx rx = {(const char *const *)secrets};
    json_t *out = dl_summary_json(&d, &rx);
    json_object_del(out, "attempts");
    json_t *errs = json_deep_copy(dl_errors(&d));
    redact_json(&rx, errs);
    json_object_set_new(out, "errors", errs);
    json_t *st = job_state(ctl, d.shard, d.job_id, &rx);
    json_object_set_new(out, "job_state", st ? st : json_null());
    json_t *job = json_deep_copy(dl_job(&d));
    redact_json(&rx, job);
    json_object_set(out, "last_request",
                    json_object_get(job, "last_request")
                        ? json_object_get(job, "last_request")
                        : json_null());
    json_object_set(out, "last_response",
                    json_object_get(job, "last_response")
                        ? json_object_get(job, "last_response")
                        : json_null());
    json_object_set_new(out, "job", job);
    if (ctl->json)
        ctl_print_json(out);
    else
        print_show(out);
    json_decref(out);
    dl_clear(&d);
    ctl_secrets_free(secrets);
    json_decref(s.found);
    return CTL_OK;
}

/* ---- Snapshots (replay, purge) ------------------------------------------- */

struct snap_item {
    unsigned shard;
    char id[48];
    char job_id[72];
    char provider[48];
    char connection[40];
    char code[48];
    bool replayable;           /* has a job document to run */
    json_t *older;             /* older letters of the same job: [id] */
};

struct snap {
    struct snap_item *v;
    size_t n, cap;
    size_t letters;            /* letters matched (>= n when grouped) */
    json_t *by_job;            /* "shard/job_id" -> index (grouping) */
    bool group;                /* one item per job (replay) */
};

static bool snap_one(struct dl *d, void *arg)
{
    struct snap *s = arg;
    s->letters++;
    json_t *job = dl_job(d);
    const char *prov = d->provider[0] ? d->provider
                                      : nz(json_string_value(json_object_get(
                                            job, "provider")));
    bool ok = json_is_object(job) && json_object_get(job, "job_id") &&
              json_object_get(job, "connection_id") && is_token(prov, 47) &&
              is_token(d->job_id, 64) && strlen(d->id) < 48;
    char key[160];
    snprintf(key, sizeof(key), "%u/%s", d->shard, d->job_id);
    if (s->group && ok) {
        json_t *at = json_object_get(s->by_job, key);
        if (at) {
            /* A newer letter of a job already seen: it becomes the one
             * replayed, the older are removed with it. */
            struct snap_item *it = &s->v[json_integer_value(at)];
            if (!it->older)
                it->older = json_array();
            json_array_append_new(it->older, json_string(it->id));
            snprintf(it->id, sizeof(it->id), "%s", d->id);
            snprintf(it->code, sizeof(it->code), "%s", d->reason);
            return false;
        }
    }
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 256;
        s->v = xrealloc(s->v, s->cap * sizeof(*s->v));
    }
    struct snap_item *it = &s->v[s->n];
    memset(it, 0, sizeof(*it));
    it->shard = d->shard;
    snprintf(it->id, sizeof(it->id), "%s", d->id);
    snprintf(it->job_id, sizeof(it->job_id), "%s", d->job_id);
    snprintf(it->provider, sizeof(it->provider), "%s", prov);
    snprintf(it->connection, sizeof(it->connection), "%s", d->connection_id);
    snprintf(it->code, sizeof(it->code), "%s", d->reason);
    it->replayable = ok;
    if (s->group && ok)
        json_object_set_new(s->by_job, key, json_integer((json_int_t)s->n));
    s->n++;
    return false;
}

static void snap_free(struct snap *s)
{
    for (size_t i = 0; i < s->n; i++)
        json_decref(s->v[i].older);
    free(s->v);
    json_decref(s->by_job);
}

static int snap_take(struct ctl *ctl, const struct dl_filter *f, bool group,
                     struct snap *s)
{
    memset(s, 0, sizeof(*s));
    s->group = group;
    s->by_job = json_object();
    return dl_each(ctl, f, snap_one, s, NULL);
}

static void print_snap(const struct ctl *ctl, const struct snap *s,
                       json_t *into)
{
    if (!ctl->json)
        printf("%-20s %-5s %-12s %-36s %-32s %s\n", "ID", "SHARD", "PROVIDER",
               "CONNECTION", "JOB", "CODE");
    for (size_t i = 0; i < s->n; i++) {
        const struct snap_item *it = &s->v[i];
        if (ctl->json) {
            json_array_append_new(
                into, json_pack("{s:s,s:i,s:s,s:s,s:s,s:s,s:b}", "id", it->id,
                                "shard", (int)it->shard, "provider",
                                it->provider, "connection_id", it->connection,
                                "job_id", it->job_id, "code", it->code,
                                "replayable", it->replayable));
            continue;
        }
        char shard[8];
        snprintf(shard, sizeof(shard), "%u", it->shard);
        printf("%-20s %-5s %-12s %-36s %-32s %s%s\n", it->id, shard,
               it->provider, it->connection, it->job_id, it->code,
               it->replayable ? "" : " (not replayable)");
    }
}

/* Selection shared by replay and purge: an ID, filters, or --all. */
static int selection(struct dl_filter *f, const char *id, bool all,
                     const char *what, const char *usage)
{
    int given = (id != NULL) + filter_given(f) + all;
    if (given == 0) {
        fputs(usage, stderr);
        return ctl_fail(CTL_USAGE, "dead %s needs an ID, filters or --all",
                        what);
    }
    if (given > 1)
        return ctl_fail(CTL_USAGE, "dead %s takes an ID, filters or --all, "
                        "only one of them", what);
    f->id = id;
    return CTL_OK;
}

/* ---- dead replay ---------------------------------------------------------- */

/*
 * KEYS: dead stream, the provider's stream, job hash (one shard's tag).
 * ARGV: the letter's id, job id, the job document to enqueue, now
 * (RFC 3339), then the ids of older letters of the same job.
 * Moves the job back exactly once: the letter must still exist and the job
 * must still be dead (not queued, running or done through another path);
 * then the XDEL that removes the letter and the XADD that enqueues the job
 * happen together. The hash keeps its step checkpoints and in-flight
 * marks, so the run resumes at the first unfinished step and reconciles a
 * step whose outcome is unknown; attempt and deliveries start again, and
 * replayed_at restarts the max-age clock (worker/engine.c).
 * Returns {1, "replayed"} or {0, why}: "gone" or the job's state.
 */
static const char replay_lua[] =
    "local function drop_older()\n"
    "  for i = 5, #ARGV do redis.call('XDEL', KEYS[1], ARGV[i]) end\n"
    "end\n"
    "if #redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1]) == 0 then\n"
    "  return {0, 'gone'}\n"
    "end\n"
    "local st = redis.call('HGET', KEYS[3], 'state')\n"
    "if st and st ~= 'dead' then return {0, st} end\n"
    "if redis.call('XDEL', KEYS[1], ARGV[1]) == 0 then\n"
    "  return {0, 'gone'}\n"
    "end\n"
    "drop_older()\n"
    "redis.call('XADD', KEYS[2], '*', 'job_id', ARGV[2], 'job', ARGV[3])\n"
    "redis.call('HSET', KEYS[3], 'state', 'queued', 'attempt', '0', "
    "'deliveries', '0', 'replayed_at', ARGV[4])\n"
    "redis.call('HINCRBY', KEYS[3], 'replays', 1)\n"
    "redis.call('HDEL', KEYS[3], 'dead_reason', 'due_at', 'finished_at')\n"
    "return {1, 'replayed'}\n";

static volatile sig_atomic_t stop_signal;

static void on_stop_signal(int sig)
{
    stop_signal = sig;
}

/* The job document as it is enqueued again: attempt 0, replayed_at now,
 * replays counted; the errors stay as history, the recorded last
 * exchange goes. */
static char *replay_doc(const char *raw, const char *now)
{
    json_t *job = json_loads(raw, 0, NULL);
    if (!json_is_object(job)) {
        json_decref(job);
        return NULL;
    }
    json_int_t replays = json_integer_value(json_object_get(job, "replays"));
    json_object_set_new(job, "attempt", json_integer(0));
    json_object_set_new(job, "replayed_at", json_string(now));
    json_object_set_new(job, "replays", json_integer(replays + 1));
    json_object_del(job, "last_request");
    json_object_del(job, "last_response");
    char *s = json_dumps(job, JSON_COMPACT);
    json_decref(job);
    return s;
}

enum replay_result { RP_REPLAYED, RP_GONE, RP_STATE, RP_INVALID, RP_FAIL };

static enum replay_result replay_item(struct ctl *ctl,
                                      const struct snap_item *it,
                                      char why[32])
{
    if (!it->replayable) {
        snprintf(why, 32, "not a job");
        return RP_INVALID;
    }
    char dead[32];
    snprintf(dead, sizeof(dead), "cs:{%u}:dead", it->shard);
    redisReply *r = ctl_rcmd(ctl, "XRANGE %s %s %s", dead, it->id, it->id);
    if (!r)
        return RP_FAIL;
    if (r->type != REDIS_REPLY_ARRAY) {
        ctl_fail(CTL_FAIL, "Redis: XRANGE: %s",
                 r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        freeReplyObject(r);
        return RP_FAIL;
    }
    if (r->elements == 0) {
        freeReplyObject(r);
        snprintf(why, 32, "gone");
        return RP_GONE;
    }
    const char *raw = ctl_rfield(r->element[0]->element[1], "job");
    char now[32];
    cs_rfc3339_ms(cs_now_ms(), now);
    char *doc = raw ? replay_doc(raw, now) : NULL;
    freeReplyObject(r);
    if (!doc) {
        snprintf(why, 32, "not a job");
        return RP_INVALID;
    }
    char stream[128], hash[192];
    snprintf(stream, sizeof(stream), "cs:{%u}:q:%s", it->shard, it->provider);
    snprintf(hash, sizeof(hash), "cs:{%u}:job:%s", it->shard, it->job_id);
    size_t nolder = json_array_size(it->older);
    const char **args = xcalloc(7 + nolder, sizeof(char *));
    size_t k = 0;
    args[k++] = dead;
    args[k++] = stream;
    args[k++] = hash;
    args[k++] = it->id;
    args[k++] = it->job_id;
    args[k++] = doc;
    args[k++] = now;
    for (size_t i = 0; i < nolder; i++)
        args[k++] = json_string_value(json_array_get(it->older, i));
    r = ctl_eval(ctl, replay_lua, 3, (int)k, args);
    free(args);
    free(doc);
    enum replay_result res = RP_FAIL;
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[0]->type == REDIS_REPLY_INTEGER) {
        snprintf(why, 32, "%s", nz(r->element[1]->str));
        res = r->element[0]->integer == 1   ? RP_REPLAYED
              : strcmp(why, "gone") == 0 ? RP_GONE
                                         : RP_STATE;
    } else if (r) {
        ctl_fail(CTL_FAIL, "Redis: replay script: %s",
                 r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
    }
    freeReplyObject(r);
    return res;
}

/* The default pace: the slowest documented rate (prov.h) among the
 * providers of the matched letters, DEFAULT_RATE for one without a
 * module. */
static double default_rate(const struct snap *s)
{
    double rate = 0;
    for (size_t i = 0; i < s->n; i++) {
        const struct prov_ops *ops = prov_find(s->v[i].provider);
        double r = ops && ops->rate.requests > 0 && ops->rate.per_ms > 0
                       ? ops->rate.requests * 1000.0 / ops->rate.per_ms
                       : DEFAULT_RATE;
        if (rate == 0 || r < rate)
            rate = r;
    }
    return rate > 0 ? rate : DEFAULT_RATE;
}

static void sleep_until_ns(uint64_t t)
{
    uint64_t now = cs_mono_ns();
    if (t <= now)
        return;
    uint64_t d = t - now;
    struct timespec ts = {(time_t)(d / 1000000000u),
                          (long)(d % 1000000000u)};
    nanosleep(&ts, NULL); /* a signal cuts it short: the loop checks */
}

struct replay_stats {
    size_t done, replayed, gone, state, invalid;
    json_t *skipped;
};

static void progress(const struct replay_stats *st, size_t total,
                     uint64_t started_ns, bool final)
{
    double secs = (double)(cs_mono_ns() - started_ns) / 1e9;
    double rate = secs > 0 ? (double)st->done / secs : 0;
    double left = rate > 0 ? (double)(total - st->done) / rate : 0;
    bool tty = isatty(STDERR_FILENO);
    fprintf(stderr,
            "%sreplay: %zu/%zu done (%zu replayed, %zu skipped), %.1f s "
            "elapsed",
            tty ? "\r" : "", st->done, total, st->replayed,
            st->gone + st->state + st->invalid, secs);
    if (!final && rate > 0)
        fprintf(stderr, ", %.0f/s, about %.0f s left", rate, left);
    fputs(tty && !final ? "   " : "\n", stderr);
    fflush(stderr);
}

int ctl_dead_replay(struct ctl *ctl, int argc, char **argv)
{
    static const char usage[] =
        "usage: callsyncctl dead replay (ID | filters | --all) [--rate N]\n"
        "         [--dry-run] [--json]\n\n"
        "Put dead jobs back on their provider's stream. The matching ids\n"
        "are listed first (a snapshot: letters that arrive later, including\n"
        "jobs that die again during the replay, are not touched), then each\n"
        "job is moved by one atomic script: its dead letter is deleted and,\n"
        "only if that deleted it and the job is still dead, the job is\n"
        "enqueued once with attempt and deliveries reset. Its step\n"
        "checkpoints are kept, so it resumes at the first unfinished step\n"
        "and never writes a second note. Interrupting (Ctrl-C) is safe; run\n"
        "the same command again to finish: nothing is replayed twice.\n\n"
        "  ID          a dead letter id (1732000000000-0) or a job id\n"
        "  --all       every dead letter\n"
        "  --rate N    jobs per second (default: the slowest documented\n"
        "              rate of the providers involved, e.g. HubSpot 10/s,\n"
        "              Retell 20/s; 10/s for a provider without a module)\n"
        "  --dry-run   list what would be replayed; change nothing\n\n"
        FILTER_HELP
        "\nProgress goes to stderr once a second.\n"
        "exit codes: 0 ok (letters already gone or whose job is no longer\n"
        "dead are skipped and counted), 1 Redis failed, 2 usage, 3 nothing\n"
        "matched, 130 interrupted (run again to finish)\n";
    struct dl_filter f = {0};
    const char *rate_s = NULL;
    bool all = false, dry = false;
    const struct ctl_opt opts[] = {FILTER_OPTS(f),
                                   {"rate", &rate_s, NULL},
                                   {"all", NULL, &all},
                                   {"dry-run", NULL, &dry}};
    const char *pos[1] = {NULL};
    int npos;
    PARSE(ctl, argc, argv, opts, CS_ARRAY_LEN(opts), pos, 1, &npos, usage);
    int rc = selection(&f, pos[0], all, "replay", usage);
    if (rc || (rc = filter_prepare(&f, ctl)) != CTL_OK)
        return rc;
    double rate = 0;
    if (rate_s) {
        char *e;
        rate = strtod(rate_s, &e);
        if (*e || e == rate_s || !(rate > 0) || rate > MAX_RATE)
            return ctl_fail(CTL_USAGE, "invalid --rate '%s': expected jobs "
                            "per second, more than 0", rate_s);
    }
    if ((rc = ctl_redis(ctl)) != CTL_OK)
        return rc;
    struct snap s;
    rc = snap_take(ctl, &f, true, &s);
    if (rc == CTL_OK && s.n == 0)
        rc = ctl_fail(CTL_NOTFOUND, "no dead letter matched");
    if (rc) {
        snap_free(&s);
        return rc;
    }
    if (!rate_s)
        rate = default_rate(&s);
    if (dry) {
        json_t *entries = json_array();
        print_snap(ctl, &s, entries);
        if (ctl->json) {
            json_t *o = json_pack("{s:b,s:I,s:I,s:f,s:o}", "dry_run", 1,
                                  "matched", (json_int_t)s.letters, "jobs",
                                  (json_int_t)s.n, "rate", rate, "entries",
                                  entries);
            ctl_print_json(o);
            json_decref(o);
        } else {
            json_decref(entries);
            printf("dry run: would replay %zu job%s (%zu dead letter%s) at "
                   "%.4g/s, about %.0f s; nothing changed\n",
                   s.n, s.n == 1 ? "" : "s", s.letters,
                   s.letters == 1 ? "" : "s", rate, (double)s.n / rate);
        }
        snap_free(&s);
        return CTL_OK;
    }

    struct sigaction sa = {0}, old_int, old_term;
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    stop_signal = 0;

    struct replay_stats st = {0};
    st.skipped = json_array();
    uint64_t started = cs_mono_ns(), last_progress = started;
    double interval_ns = 1e9 / rate;
    fprintf(stderr, "replay: %zu job%s matched, at %.4g/s\n", s.n,
            s.n == 1 ? "" : "s", rate);
    for (size_t i = 0; i < s.n && !stop_signal; i++) {
        sleep_until_ns(started + (uint64_t)(interval_ns * (double)i));
        if (stop_signal)
            break;
        char why[32] = "";
        enum replay_result res = replay_item(ctl, &s.v[i], why);
        if (res == RP_FAIL) {
            rc = CTL_FAIL;
            break;
        }
        st.done++;
        switch (res) {
        case RP_REPLAYED:
            st.replayed++;
            break;
        case RP_GONE:
            st.gone++;
            break;
        case RP_STATE:
            st.state++;
            break;
        default:
            st.invalid++;
            break;
        }
        if (res != RP_REPLAYED && json_array_size(st.skipped) < 1000) {
            json_t *k = json_pack(
                "{s:s,s:i,s:s,s:s}", "id", s.v[i].id, "shard",
                (int)s.v[i].shard, "job_id", s.v[i].job_id, "why",
                res == RP_STATE  ? "job is no longer dead"
                : res == RP_GONE ? "already gone"
                                 : "not a replayable job");
            if (res == RP_STATE)
                json_object_set_new(k, "state", json_string(why));
            json_array_append_new(st.skipped, k);
        }
        uint64_t now = cs_mono_ns();
        if (now - last_progress >= 1000000000u && st.done < s.n) {
            progress(&st, s.n, started, false);
            last_progress = now;
        }
    }
    progress(&st, s.n, started, true);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    double secs = (double)(cs_mono_ns() - started) / 1e9;
    bool interrupted = stop_signal != 0 && st.done < s.n;
    if (ctl->json) {
        json_t *o = json_pack(
            "{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:f,s:f,s:b,s:o}", "matched",
            (json_int_t)s.letters, "jobs", (json_int_t)s.n, "done",
            (json_int_t)st.done, "replayed", (json_int_t)st.replayed,
            "skipped_gone", (json_int_t)st.gone, "skipped_not_dead",
            (json_int_t)st.state, "skipped_invalid", (json_int_t)st.invalid,
            "rate", rate, "seconds", secs, "interrupted", interrupted,
            "skipped", json_incref(st.skipped));
        ctl_print_json(o);
        json_decref(o);
    } else {
        printf("replayed %zu of %zu job%s in %.1f s", st.replayed, s.n,
               s.n == 1 ? "" : "s", secs);
        if (st.gone + st.state + st.invalid)
            printf("; skipped %zu (already gone %zu, job no longer dead "
                   "%zu, not replayable %zu)",
                   st.gone + st.state + st.invalid, st.gone, st.state,
                   st.invalid);
        putchar('\n');
        size_t i;
        json_t *k;
        json_array_foreach(st.skipped, i, k) {
            if (i >= 20) {
                printf("  ... and %zu more skipped\n",
                       json_array_size(st.skipped) - 20);
                break;
            }
            const char *state = json_string_value(json_object_get(k,
                                                                  "state"));
            printf("  skipped %s (job %s): %s%s%s\n",
                   json_string_value(json_object_get(k, "id")),
                   json_string_value(json_object_get(k, "job_id")),
                   json_string_value(json_object_get(k, "why")),
                   state ? ", state " : "", state ? state : "");
        }
        if (interrupted)
            printf("interrupted: %zu job%s not replayed yet; run the same "
                   "command again to finish\n",
                   s.n - st.done, s.n - st.done == 1 ? "" : "s");
    }
    json_decref(st.skipped);
    snap_free(&s);
    if (rc)
        return rc;
    return interrupted ? CTL_INTERRUPTED : CTL_OK;
}

/* ---- dead purge ---------------------------------------------------------- */

/*
 * KEYS: dead stream, job hash. ARGV: letter id, now, retention seconds.
 * Deletes the letter; if it was there and the job is still dead, the job
 * is marked purged and its hash expires like a finished job's
 * (CALLSYNC_JOB_RETENTION_S). Returns 1 if the letter was deleted.
 */
static const char purge_lua[] =
    "if redis.call('XDEL', KEYS[1], ARGV[1]) == 0 then return 0 end\n"
    "if redis.call('HGET', KEYS[2], 'state') == 'dead' then\n"
    "  redis.call('HSET', KEYS[2], 'state', 'purged', 'purged_at', "
    "ARGV[2])\n"
    "  redis.call('EXPIRE', KEYS[2], tonumber(ARGV[3]))\n"
    "end\n"
    "return 1\n";

static bool confirm(size_t n)
{
    fprintf(stderr, "purge %zu dead letter%s for good? type 'yes' to go on: ",
            n, n == 1 ? "" : "s");
    fflush(stderr);
    char line[32];
    if (!fgets(line, sizeof(line), stdin))
        return false;
    line[strcspn(line, "\r\n")] = '\0';
    return strcmp(line, "yes") == 0;
}

int ctl_dead_purge(struct ctl *ctl, int argc, char **argv)
{
    static const char usage[] =
        "usage: callsyncctl dead purge (ID | filters | --all) [--yes]\n"
        "         [--dry-run] [--json]\n\n"
        "Delete dead letters for good. The matching ids are listed first\n"
        "(a snapshot), then deleted one by one; a job still dead is marked\n"
        "purged and its hash expires after CALLSYNC_JOB_RETENTION_S, as a\n"
        "finished job's does. On a terminal it asks to confirm; without a\n"
        "terminal it refuses unless --yes is given.\n\n"
        "  ID          a dead letter id (1732000000000-0) or a job id\n"
        "  --all       every dead letter\n"
        "  --yes       do not ask\n"
        "  --dry-run   list what would be purged; change nothing\n\n"
        FILTER_HELP
        "\nexit codes: 0 ok, 1 Redis failed or not confirmed, 2 usage (also:\n"
        "no terminal and no --yes), 3 nothing matched\n";
    struct dl_filter f = {0};
    bool all = false, yes = false, dry = false;
    const struct ctl_opt opts[] = {FILTER_OPTS(f),
                                   {"all", NULL, &all},
                                   {"yes", NULL, &yes},
                                   {"dry-run", NULL, &dry}};
    const char *pos[1] = {NULL};
    int npos;
    PARSE(ctl, argc, argv, opts, CS_ARRAY_LEN(opts), pos, 1, &npos, usage);
    int rc = selection(&f, pos[0], all, "purge", usage);
    if (rc || (rc = filter_prepare(&f, ctl)) != CTL_OK)
        return rc;
    bool tty = isatty(STDIN_FILENO);
    if (!dry && !yes && !tty)
        return ctl_fail(CTL_USAGE, "refusing to purge without confirmation: "
                        "stdin is not a terminal; add --yes");
    if ((rc = ctl_redis(ctl)) != CTL_OK)
        return rc;
    struct snap s;
    rc = snap_take(ctl, &f, false, &s);
    if (rc == CTL_OK && s.n == 0)
        rc = ctl_fail(CTL_NOTFOUND, "no dead letter matched");
    if (rc) {
        snap_free(&s);
        return rc;
    }
    if (dry) {
        json_t *entries = json_array();
        print_snap(ctl, &s, entries);
        if (ctl->json) {
            json_t *o = json_pack("{s:b,s:I,s:o}", "dry_run", 1, "matched",
                                  (json_int_t)s.n, "entries", entries);
            ctl_print_json(o);
            json_decref(o);
        } else {
            json_decref(entries);
            printf("dry run: would purge %zu dead letter%s; nothing "
                   "changed\n", s.n, s.n == 1 ? "" : "s");
        }
        snap_free(&s);
        return CTL_OK;
    }
    if (!yes && !confirm(s.n)) {
        snap_free(&s);
        return ctl_fail(CTL_FAIL, "not confirmed: nothing purged");
    }
    char now[32], ret[16];
    cs_rfc3339_ms(cs_now_ms(), now);
    snprintf(ret, sizeof(ret), "%d", ctl->cfg.job_retention_s);
    size_t purged = 0, gone = 0;
    for (size_t i = 0; i < s.n; i++) {
        char dead[32], hash[192];
        snprintf(dead, sizeof(dead), "cs:{%u}:dead", s.v[i].shard);
        snprintf(hash, sizeof(hash), "cs:{%u}:job:%s", s.v[i].shard,
                 s.v[i].job_id);
        const char *args[] = {dead, hash, s.v[i].id, now, ret};
        redisReply *r = ctl_eval(ctl, purge_lua, 2, 5, args);
        if (!r || r->type != REDIS_REPLY_INTEGER) {
            if (r)
                ctl_fail(CTL_FAIL, "Redis: purge script: %s",
                         r->type == REDIS_REPLY_ERROR ? r->str
                                                      : "unexpected reply");
            freeReplyObject(r);
            rc = CTL_FAIL;
            break;
        }
        if (r->integer == 1)
            purged++;
        else
            gone++;
        freeReplyObject(r);
    }
    if (ctl->json) {
        json_t *o = json_pack("{s:I,s:I,s:I}", "matched", (json_int_t)s.n,
                              "purged", (json_int_t)purged, "already_gone",
                              (json_int_t)gone);
        ctl_print_json(o);
        json_decref(o);
    } else {
        printf("purged %zu of %zu dead letter%s", purged, s.n,
               s.n == 1 ? "" : "s");
        if (gone)
            printf(" (%zu already gone)", gone);
        putchar('\n');
    }
    snap_free(&s);
    return rc;
}
