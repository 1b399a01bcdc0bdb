/*
 * test_mhttp.c - the operational HTTP listener (shared/mhttp.h) on a real
 * socket: its loop runs in a second thread, the test talks to it with
 * plain blocking sockets.
 */
#include "it_support.h"
#include "mhttp.h"

#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>

static struct ev_loop *tloop;
static ev_async stop_w;
static pthread_t th;
static struct mhttp *srv;
static int port;
static atomic_int ready_flag = 1;
static atomic_int scrapes;
static atomic_int huge_metrics;

static int render(struct buf *b, void *arg)
{
    CS_UNUSED(arg);
    int n = atomic_fetch_add(&scrapes, 1) + 1;
    int rc = buf_addf(b, "# HELP t_scrapes_total Scrapes so far.\n"
                         "# TYPE t_scrapes_total counter\n"
                         "t_scrapes_total %d\n",
                      n);
    if (atomic_load(&huge_metrics)) {
        char line[1024];
        memset(line, 'x', sizeof(line) - 2);
        line[sizeof(line) - 2] = '\n';
        line[sizeof(line) - 1] = '\0';
        for (int i = 0; i < 9000 && !rc; i++)
            rc = buf_adds(b, line);
    }
    return rc;
}

static bool ready(json_t *body, void *arg)
{
    CS_UNUSED(arg);
    bool r = atomic_load(&ready_flag);
    json_object_set_new(body, "redis", json_boolean(r));
    return r;
}

static void on_stop(EV_P_ ev_async *w, int revents)
{
    CS_UNUSED(w);
    CS_UNUSED(revents);
    ev_break(EV_A_ EVBREAK_ALL);
}

static void *run(void *arg)
{
    CS_UNUSED(arg);
    ev_run(tloop, 0);
    return NULL;
}

static void start_with(int timeout_ms, int max_conns)
{
    tloop = ev_loop_new(EVFLAG_AUTO);
    struct mhttp_opts o = {
        .addr = "127.0.0.1:0",
        .metrics = render,
        .ready = ready,
        .timeout_ms = timeout_ms,
        .max_header = 1024,
        .max_conns = max_conns,
    };
    struct cs_err err = {0};
    srv = mhttp_new(tloop, &o, &err);
    cr_assert(srv, "%s", err.msg);
    port = mhttp_port(srv);
    cr_assert_gt(port, 0);
    ev_async_init(&stop_w, on_stop);
    ev_async_start(tloop, &stop_w);
    atomic_store(&ready_flag, 1);
    atomic_store(&scrapes, 0);
    atomic_store(&huge_metrics, 0);
    pthread_create(&th, NULL, run, NULL);
}

static void start(void)
{
    start_with(400, 8);
}

static void stop(void)
{
    if (!srv)
        return;
    ev_async_send(tloop, &stop_w);
    pthread_join(th, NULL);
    ev_async_stop(tloop, &stop_w);
    mhttp_free(srv);
    srv = NULL;
    /* The loop must be left with no watcher of ours. */
    cr_expect_not(ev_run(tloop, EVRUN_NOWAIT), "watchers left active");
    ev_loop_destroy(tloop);
}

static struct it_resp req(const char *raw)
{
    struct it_resp r;
    cr_assert(it_raw(port, raw, strlen(raw), &r), "no answer to %s", raw);
    return r;
}

static json_t *body_json(const struct it_resp *r)
{
    json_t *j = json_loadb(r->body, r->body_len, 0, NULL);
    cr_assert(j, "body is not JSON: %.*s", (int)r->body_len, r->body);
    return j;
}

static const char *jstr(json_t *j, const char *k)
{
    return json_string_value(json_object_get(j, k));
}

TestSuite(mhttp, .init = start, .fini = stop, .timeout = 30);

Test(mhttp, metrics_are_prometheus_text)
{
    struct it_resp r = it_get(port, "/metrics");
    cr_assert_eq(r.status, 200);
    cr_expect(strstr(r.headers, "Content-Type: text/plain; version=0.0.4; "
                                "charset=utf-8\r\n"));
    cr_expect(strstr(r.headers, "Connection: close\r\n"));
    cr_expect(r.closed);
    cr_expect(strstr(r.body, "# TYPE t_scrapes_total counter\n"
                             "t_scrapes_total 1\n"),
              "%s", r.body);
    r = it_get(port, "/metrics?name[]=x");
    cr_expect_eq(r.status, 200, "a query string does not change the route");
    cr_expect(strstr(r.body, "t_scrapes_total 2\n"));
}

Test(mhttp, head_has_headers_without_body)
{
    struct it_resp g = it_get(port, "/metrics");
    int fd = it_connect(port);
    static const char h[] = "HEAD /metrics HTTP/1.1\r\nHost: t\r\n\r\n";
    it_send(fd, h, sizeof(h) - 1);
    /* A HEAD answer's Content-Length describes the GET body, so read the
     * raw bytes until the server closes. */
    char buf[4096];
    size_t have = 0;
    ssize_t n;
    while ((n = recv(fd, buf + have, sizeof(buf) - 1 - have, 0)) > 0)
        have += (size_t)n;
    buf[have] = '\0';
    close(fd);
    cr_assert(strncmp(buf, "HTTP/1.1 200 OK\r\n", 17) == 0, "%s", buf);
    char *end = strstr(buf, "\r\n\r\n");
    cr_assert(end);
    cr_expect_eq((size_t)(end + 4 - buf), have, "HEAD carried a body");
    char want[64];
    snprintf(want, sizeof(want), "Content-Length: %zu\r\n", g.body_len);
    cr_expect(strstr(buf, want), "%s", buf);
}

Test(mhttp, healthz_and_readyz)
{
    struct it_resp r = it_get(port, "/healthz");
    cr_assert_eq(r.status, 200);
    json_t *j = body_json(&r);
    cr_expect_str_eq(jstr(j, "status"), "ok");
    json_decref(j);

    r = it_get(port, "/readyz");
    cr_assert_eq(r.status, 200);
    j = body_json(&r);
    cr_expect_str_eq(jstr(j, "status"), "ready");
    cr_expect(json_is_true(json_object_get(j, "redis")));
    json_decref(j);

    atomic_store(&ready_flag, 0);
    r = it_get(port, "/readyz");
    cr_assert_eq(r.status, 503);
    cr_expect(strstr(r.headers, "Retry-After: 5\r\n"));
    j = body_json(&r);
    cr_expect_str_eq(jstr(j, "status"), "not_ready");
    cr_expect(json_is_false(json_object_get(j, "redis")));
    json_decref(j);
}

Test(mhttp, unknown_path_is_404_json)
{
    struct it_resp r = it_get(port, "/metricsx");
    cr_assert_eq(r.status, 404);
    cr_expect(strstr(r.headers, "Content-Type: application/json\r\n"));
    json_t *j = body_json(&r);
    cr_expect_str_eq(jstr(j, "error"), "not_found");
    cr_expect_str_eq(jstr(j, "message"), "no route for '/metricsx'");
    json_decref(j);
    r = it_get(port, "/");
    cr_expect_eq(r.status, 404);
    /* Bytes that are not printable never reach the JSON message raw. */
    r = req("GET /a%ff\xc3\x28 HTTP/1.1\r\nHost: t\r\n\r\n");
    if (r.status == 404) {
        j = body_json(&r);
        cr_expect(jstr(j, "message"));
        json_decref(j);
    } else {
        cr_expect_eq(r.status, 400);
    }
}

Test(mhttp, other_methods_are_405)
{
    struct it_resp r = req("POST /metrics HTTP/1.1\r\nHost: t\r\n"
                           "Content-Length: 2\r\n\r\n{}");
    cr_assert_eq(r.status, 405);
    cr_expect(strstr(r.headers, "Allow: GET, HEAD\r\n"));
    json_t *j = body_json(&r);
    cr_expect_str_eq(jstr(j, "error"), "method_not_allowed");
    json_decref(j);
    r = req("DELETE /readyz HTTP/1.1\r\nHost: t\r\n\r\n");
    cr_expect_eq(r.status, 405);
}

Test(mhttp, malformed_request_is_400)
{
    struct it_resp r = req("GARBAGE\r\n\r\n");
    cr_assert_eq(r.status, 400);
    json_t *j = body_json(&r);
    cr_expect_str_eq(jstr(j, "error"), "malformed_http");
    json_decref(j);
    r = req("GET /metrics HTTP/1.1\r\nBad Header\r\n\r\n");
    cr_expect_eq(r.status, 400);
}

Test(mhttp, oversized_headers_are_431)
{
    char *big = xmalloc(4096);
    int n = snprintf(big, 4096, "GET /metrics HTTP/1.1\r\nHost: t\r\nX-Pad: ");
    memset(big + n, 'a', 2000);
    memcpy(big + n + 2000, "\r\n\r\n", 5);
    struct it_resp r = req(big);
    free(big);
    cr_assert_eq(r.status, 431);
    json_t *j = body_json(&r);
    cr_expect_str_eq(jstr(j, "error"), "header_too_large");
    json_decref(j);
    /* A long URL counts too. */
    char url[1400] = "GET /";
    memset(url + 5, 'b', 1200);
    memcpy(url + 1205, " HTTP/1.1\r\n\r\n", 14);
    r = req(url);
    cr_expect_eq(r.status, 431);
}

Test(mhttp, body_beyond_the_cap_is_413)
{
    char raw[4096];
    int n = snprintf(raw, sizeof(raw),
                     "GET /metrics HTTP/1.1\r\nContent-Length: 3000\r\n\r\n");
    memset(raw + n, 'z', 3000);
    struct it_resp r;
    cr_assert(it_raw(port, raw, (size_t)n + 3000, &r));
    cr_expect_eq(r.status, 413);
}

Test(mhttp, request_trickled_byte_by_byte)
{
    static const char raw[] = "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";
    int fd = it_connect(port);
    for (size_t i = 0; i < sizeof(raw) - 1; i++) {
        it_send(fd, raw + i, 1);
        usleep(2000);
    }
    struct it_resp r;
    cr_assert(it_read_resp(fd, &r, 2000));
    close(fd);
    cr_expect_eq(r.status, 200);
}

Test(mhttp, slow_request_gets_408)
{
    int fd = it_connect(port);
    it_send(fd, "GET /metr", 9);
    int64_t t0 = cs_mono_ms();
    struct it_resp r;
    cr_assert(it_read_resp(fd, &r, 3000), "no 408 for a slow request");
    close(fd);
    cr_expect_eq(r.status, 408);
    int64_t waited = cs_mono_ms() - t0;
    cr_expect(waited >= 300 && waited < 2000, "408 after %lld ms",
              (long long)waited);
}

Test(mhttp, silent_connection_is_closed)
{
    int fd = it_connect(port);
    struct pollfd p = {fd, POLLIN, 0};
    cr_assert_eq(poll(&p, 1, 3000), 1, "the idle connection stayed open");
    char c;
    cr_expect_eq(recv(fd, &c, 1, 0), 0, "closed without an answer");
    close(fd);
}

Test(mhttp, connections_beyond_the_cap_are_refused)
{
    int fds[8];
    for (int i = 0; i < 8; i++) {
        fds[i] = it_connect(port);
        cr_assert(fds[i] >= 0);
    }
    usleep(50000); /* let the loop accept them */
    int extra = it_connect(port);
    struct pollfd p = {extra, POLLIN, 0};
    cr_assert_eq(poll(&p, 1, 2000), 1);
    char c;
    cr_expect_eq(recv(extra, &c, 1, 0), 0, "a ninth connection was served");
    close(extra);
    for (int i = 0; i < 8; i++)
        close(fds[i]);
    usleep(50000);
    struct it_resp r = it_get(port, "/healthz");
    cr_expect_eq(r.status, 200, "served again once below the cap");
}

Test(mhttp, metrics_too_large_is_500)
{
    atomic_store(&huge_metrics, 1);
    struct it_resp r = it_get(port, "/metrics");
    cr_assert_eq(r.status, 500);
    json_t *j = body_json(&r);
    cr_expect_str_eq(jstr(j, "error"), "metrics_too_large");
    json_decref(j);
}

static int open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    while (d && readdir(d))
        n++;
    if (d)
        closedir(d);
    return n;
}

Test(mhttp, many_scrapes_leak_no_descriptor)
{
    struct it_resp r = it_get(port, "/metrics");
    usleep(20000);
    int before = open_fds();
    for (int i = 0; i < 300; i++) {
        r = it_get(port, i % 2 ? "/metrics" : "/readyz");
        cr_assert_eq(r.status, 200);
    }
    /* Lingering server sockets close once we have closed ours. */
    int64_t end = cs_mono_ms() + 3000;
    while (open_fds() > before && cs_mono_ms() < end)
        usleep(20000);
    cr_expect_eq(open_fds(), before);
    cr_expect_eq(atomic_load(&scrapes), 151);
}

Test(mhttp_addr, parses_addresses)
{
    char host[64];
    int p = -1;
    struct cs_err err = {0};
    cr_expect_eq(mhttp_parse_addr("127.0.0.1:9102", host, sizeof(host), &p,
                                  &err),
                 0);
    cr_expect_str_eq(host, "127.0.0.1");
    cr_expect_eq(p, 9102);
    cr_expect_eq(mhttp_parse_addr(":9103", host, sizeof(host), &p, &err), 0);
    cr_expect_str_eq(host, "");
    cr_expect_eq(p, 9103);
    cr_expect_eq(mhttp_parse_addr("[::1]:80", host, sizeof(host), &p, &err),
                 0);
    cr_expect_str_eq(host, "::1");
    cr_expect_eq(p, 80);
    cr_expect_eq(mhttp_parse_addr("localhost:0", host, sizeof(host), &p,
                                  &err),
                 0);
    const char *bad[] = {"", "9102", "127.0.0.1", "127.0.0.1:", "h:70000",
                         "h:-1", "h:12x", "::1:80", "[::1]80", "[::1"};
    for (size_t i = 0; i < CS_ARRAY_LEN(bad); i++) {
        cs_err_clear(&err);
        cr_expect_eq(mhttp_parse_addr(bad[i], host, sizeof(host), &p, &err),
                     CS_EINVAL, "'%s' was accepted", bad[i]);
        cr_expect(strstr(err.msg, "host:port"), "%s", err.msg);
    }
}

Test(mhttp_addr, port_in_use_is_an_error)
{
    struct ev_loop *l = ev_loop_new(EVFLAG_AUTO);
    struct mhttp_opts o = {.addr = "127.0.0.1:0"};
    struct cs_err err = {0};
    struct mhttp *a = mhttp_new(l, &o, &err);
    cr_assert(a, "%s", err.msg);
    char addr[32];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", mhttp_port(a));
    o.addr = addr;
    struct mhttp *b = mhttp_new(l, &o, &err);
    cr_expect_null(b);
    cr_expect(strstr(err.msg, "cannot listen on"), "%s", err.msg);
    o.addr = "nonsense";
    cs_err_clear(&err);
    cr_expect_null(mhttp_new(l, &o, &err));
    cr_expect(strstr(err.msg, "host:port"), "%s", err.msg);
    mhttp_free(a);
    mhttp_free(NULL);
    ev_loop_destroy(l);
}
