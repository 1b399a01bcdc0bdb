/*
 * cal_sandbox_support.h - the calendar providers' sandbox tests: start
 * callsync-sandbox with options, send raw requests, and drive the
 * providers' pure availability and booking functions (calendar.h)
 * against it over real HTTP, the way the live-call tools will. Header
 * only; include from one test file each.
 */
#ifndef CS_TESTS_CAL_SANDBOX_SUPPORT_H
#define CS_TESTS_CAL_SANDBOX_SUPPORT_H

#include "it_support.h"
#include "calendar.h"

#include <ctype.h>
#include <jansson.h>

#define SBC_SANDBOX CS_BIN_DIR "/callsync-sandbox"

static pid_t sbc_pid = -1;
static int sbc_port;
static char sbc_log[64];

/* Start the sandbox with up to 8 extra arguments (NULL-terminated). */
static inline void sbc_start(const char *const *extra)
{
    sbc_port = it_free_port();
    char port[16];
    snprintf(port, sizeof(port), "%d", sbc_port);
    char *argv[16] = {(char *)SBC_SANDBOX, (char *)"--port", port};
    int n = 3;
    for (int i = 0; extra && extra[i] && n < 14; i++)
        argv[n++] = (char *)extra[i];
    argv[n] = NULL;
    snprintf(sbc_log, sizeof(sbc_log), "/tmp/cs_sbcal_%d.log", (int)getpid());
    unlink(sbc_log);
    sbc_pid = it_spawn(argv, NULL, sbc_log);
    for (int i = 0; i < 250; i++) {
        int fd = it_connect(sbc_port);
        if (fd >= 0) {
            close(fd);
            return;
        }
        usleep(20000);
    }
    cr_assert_fail("sandbox did not start");
}

static inline void sbc_stop(void)
{
    if (sbc_pid > 0)
        cr_expect_eq(it_stop(sbc_pid, SIGTERM, 5000), 0,
                     "sandbox did not exit 0 on SIGTERM");
    sbc_pid = -1;
    it_expect_clean_log(sbc_log);
}

/* A raw request; headers are "Name: value\r\n" lines. */
static inline struct it_resp sbc_req(const char *method, const char *path,
                                     const char *headers, const char *body)
{
    char *text = xasprintf("%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                           "Content-Type: application/json\r\n"
                           "Content-Length: %zu\r\n%s\r\n%s",
                           method, path, sbc_port, body ? strlen(body) : 0,
                           headers ? headers : "", body ? body : "");
    struct it_resp r;
    bool ok = it_raw(sbc_port, text, strlen(text), &r);
    free(text);
    cr_assert(ok, "no answer to %s %s", method, path);
    return r;
}

static inline json_t *sbc_json(const struct it_resp *r)
{
    json_error_t e;
    json_t *j = json_loadb(r->body, r->body_len, 0, &e);
    cr_assert(j, "answer is not JSON (%s): %.*s", e.text, (int)r->body_len,
              r->body);
    return j;
}

/* The value of a response header, "" when absent. */
static inline const char *sbc_hdr(const struct it_resp *r, const char *name,
                                  char out[128])
{
    char key[96];
    snprintf(key, sizeof(key), "\r\n%s: ", name);
    const char *p = strcasestr(r->headers, key);
    out[0] = '\0';
    if (p) {
        p += strlen(key);
        size_t n = strcspn(p, "\r");
        if (n > 127)
            n = 127;
        memcpy(out, p, n);
        out[n] = '\0';
    }
    return out;
}

static inline int sbc_count(const char *provider, const char *type)
{
    char path[160];
    snprintf(path, sizeof(path),
             "/_sandbox/records?provider=%s&type=%s&count=1", provider, type);
    struct it_resp r = it_get(sbc_port, path);
    cr_assert_eq(r.status, 200, "%s: %.*s", path, (int)r.body_len, r.body);
    json_t *j = sbc_json(&r);
    int n = (int)json_integer_value(json_object_get(j, "count"));
    json_decref(j);
    return n;
}

static inline json_t *sbc_records(const char *provider, const char *type)
{
    char path[160];
    snprintf(path, sizeof(path), "/_sandbox/records?provider=%s&type=%s",
             provider, type);
    struct it_resp r = it_get(sbc_port, path);
    cr_assert_eq(r.status, 200);
    json_t *j = sbc_json(&r);
    json_t *recs = json_incref(json_object_get(j, "records"));
    json_decref(j);
    return recs;
}

static inline void sbc_faults(const char *json)
{
    struct it_resp r = it_post(sbc_port, "/_sandbox/faults", NULL, json,
                               strlen(json));
    cr_assert_eq(r.status, 200, "faults: %.*s", (int)r.body_len, r.body);
}

/* ---- Driving the providers' functions over HTTP ------------------------- */

/* The base URL the providers get for the sandbox's prefix. */
static inline char *sbc_base(const char *prefix)
{
    return xasprintf("http://127.0.0.1:%d/%s", sbc_port, prefix);
}

struct sbc_answer {
    struct it_resp r;
    struct prov_header h[32];
    char names[32][64];
    char values[32][256];
    struct prov_response rsp;
    bool answered;
};

/* Send a built request to the sandbox; a missing answer is status 0. */
static inline void sbc_send(const struct prov_request *rq,
                            struct sbc_answer *a)
{
    memset(a, 0, sizeof(*a));
    char host[64];
    int hl = snprintf(host, sizeof(host), "http://127.0.0.1:%d", sbc_port);
    cr_assert(strncmp(rq->url, host, (size_t)hl) == 0, "url %s", rq->url);
    struct buf b;
    buf_init(&b, 1 << 20);
    int rc = buf_addf(&b, "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n",
                      rq->method, rq->url + hl, sbc_port);
    for (size_t i = 0; i < rq->nheaders && !rc; i++)
        rc = buf_addf(&b, "%s: %s\r\n", rq->headers[i].name,
                      rq->headers[i].value);
    if (!rc)
        rc = buf_addf(&b, "Content-Length: %zu\r\n\r\n", rq->body_len);
    if (!rc && rq->body_len)
        rc = buf_add(&b, rq->body, rq->body_len);
    cr_assert_eq(rc, 0);
    size_t n;
    char *text = buf_take(&b, &n);
    a->answered = it_raw(sbc_port, text, n, &a->r);
    free(text);
    a->rsp.status = a->answered ? a->r.status : 0;
    a->rsp.body = a->r.body;
    a->rsp.body_len = a->r.body_len;
    /* Header lines after the status line, names in lower case. */
    const char *p = strstr(a->r.headers, "\r\n");
    size_t k = 0;
    while (p && a->answered && k < 32) {
        p += 2;
        const char *colon = strchr(p, ':');
        const char *eol = strstr(p, "\r\n");
        if (!colon || !eol || colon > eol)
            break;
        size_t nl = (size_t)(colon - p);
        const char *v = colon + 1;
        while (*v == ' ')
            v++;
        size_t vl = (size_t)(eol - v);
        if (nl < 64 && vl < 256) {
            for (size_t i = 0; i < nl; i++)
                a->names[k][i] = (char)tolower((unsigned char)p[i]);
            a->names[k][nl] = '\0';
            memcpy(a->values[k], v, vl);
            a->values[k][vl] = '\0';
            a->h[k].name = a->names[k];
            a->h[k].value = a->values[k];
            k++;
        }
        p = eol;
    }
    a->rsp.headers = a->h;
    a->rsp.nheaders = k;
}

/* A context for a connection with config_json and token, against the
 * sandbox prefix. The caller frees *job, *config and the scratch. */
struct sbc_ctx {
    json_t *job, *config, *scratch, *done;
    struct prov_creds creds;
    struct prov_ctx ctx;
    char *base;
};

static inline void sbc_ctx_init(struct sbc_ctx *c, const char *prefix,
                                const char *token, const char *config_json,
                                const char *job_id)
{
    memset(c, 0, sizeof(*c));
    c->job = json_pack("{s:s,s:{s:s}}", "job_id", job_id, "call",
                       "call_id", "call_sbc");
    c->config = json_loads(config_json, 0, NULL);
    cr_assert(c->config, "bad config %s", config_json);
    c->scratch = json_object();
    c->done = json_object();
    c->creds.access_token = token;
    c->base = sbc_base(prefix);
    c->ctx.job = c->job;
    c->ctx.call = json_object_get(c->job, "call");
    c->ctx.config = c->config;
    c->ctx.creds = &c->creds;
    c->ctx.done = c->done;
    c->ctx.scratch = c->scratch;
    c->ctx.base_url = c->base;
    c->ctx.now_ms = cs_now_ms();
}

static inline void sbc_ctx_release(struct sbc_ctx *c)
{
    json_decref(c->job);
    json_decref(c->config);
    json_decref(c->scratch);
    json_decref(c->done);
    free(c->base);
}

/* Run the availability function to its end; returns the outcome. */
static inline enum prov_outcome sbc_avail(const struct cal_ops *ops,
                                          struct sbc_ctx *c,
                                          const struct cal_query *q,
                                          struct cal_slots *out,
                                          struct prov_result *res)
{
    json_object_clear(c->scratch);
    for (int i = 0; i < 20; i++) {
        struct prov_request rq = {0};
        struct cs_err err = {0};
        cr_assert_eq(ops->avail_build(&c->ctx, q, &rq, &err), 0, "%s",
                     err.msg);
        struct sbc_answer a;
        sbc_send(&rq, &a);
        prov_request_release(&rq);
        prov_result_release(res);
        res->retry_after_ms = -1;
        ops->avail_parse(&c->ctx, q, &a.rsp, res, out);
        if (res->outcome != PROV_NEXT)
            return res->outcome;
    }
    cr_assert_fail("availability did not finish in 20 requests");
    return PROV_PERMANENT;
}

/* Run the booking function to its end (a fresh attempt each call). */
static inline enum prov_outcome sbc_book(const struct cal_ops *ops,
                                         struct sbc_ctx *c,
                                         const struct cal_booking *b,
                                         struct prov_result *res)
{
    json_object_clear(c->scratch);
    for (int i = 0; i < 20; i++) {
        struct prov_request rq = {0};
        struct cs_err err = {0};
        cr_assert_eq(ops->book_build(&c->ctx, b, &rq, &err), 0, "%s",
                     err.msg);
        struct sbc_answer a;
        sbc_send(&rq, &a);
        prov_request_release(&rq);
        prov_result_release(res);
        res->retry_after_ms = -1;
        ops->book_parse(&c->ctx, b, &a.rsp, res);
        if (res->outcome != PROV_NEXT)
            return res->outcome;
    }
    cr_assert_fail("booking did not finish in 20 requests");
    return PROV_PERMANENT;
}

/* A booking of one person at start_ms for minutes, keyed key. */
static inline void sbc_booking(struct cal_booking *b, int64_t start_ms,
                               int minutes, const char *key)
{
    memset(b, 0, sizeof(*b));
    b->start_ms = start_ms;
    b->end_ms = start_ms + (int64_t)minutes * 60000;
    snprintf(b->tz, sizeof(b->tz), "America/Chicago");
    b->title = xstrdup("Roof inspection - Marcus Bell");
    b->description = xstrdup("Sync reference: callsync:test\n");
    b->name = xstrdup("Marcus Bell");
    b->email = xstrdup("marcus@example.org");
    b->phone = xstrdup("+13125550187");
    b->key = xstrdup(key);
}

/* The next whole hour at least `days` days from now, ms. */
static inline int64_t sbc_future_hour(int days)
{
    int64_t t = cs_now_ms() + (int64_t)days * 86400000;
    return (t / 3600000 + 1) * 3600000;
}

#endif
