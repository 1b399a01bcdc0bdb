/*
 * httpc.c - libcurl multi on libev; see httpc.h. One ev_io per socket
 * curl tells us about, one ev_timer for curl's timeout, and completed
 * transfers drained from curl_multi_info_read after every action.
 */
#include "httpc.h"
#include "buf.h"
#include "log.h"

#include <ctype.h>
#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>

struct httpc {
    struct ev_loop *loop;
    CURLM *multi;
    ev_timer timer;
    ev_idle start;             /* first action after a send */
    struct httpc_opts o;
    size_t inflight;
    struct xfer *xfers;        /* in flight, for httpc_free */
};

struct sock {
    ev_io io;
    struct httpc *h;
    curl_socket_t fd;
};

struct xfer {
    struct httpc *h;
    CURL *easy;
    struct curl_slist *hdrs;
    struct buf body;
    struct prov_header rh[64];
    size_t nrh;
    char *req_body;
    httpc_cb *cb;
    void *arg;
    uint64_t started_ns;
    char errbuf[CURL_ERROR_SIZE];
    struct xfer *prev, *next;
};

static void xfer_unlink(struct xfer *x)
{
    if (x->prev)
        x->prev->next = x->next;
    else
        x->h->xfers = x->next;
    if (x->next)
        x->next->prev = x->prev;
}

static void xfer_free(struct xfer *x)
{
    curl_easy_cleanup(x->easy);
    curl_slist_free_all(x->hdrs);
    buf_release(&x->body);
    for (size_t i = 0; i < x->nrh; i++) {
        free(x->rh[i].name);
        free(x->rh[i].value);
    }
    free(x->req_body);
    free(x);
}

static void check_done(struct httpc *h)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(h->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        struct xfer *x = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        CURLcode res = m->data.result;
        long code = 0;
        curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &code);
        curl_multi_remove_handle(h->multi, m->easy_handle);
        struct prov_response rsp = {0};
        rsp.status = res == CURLE_OK ? (int)code : 0;
        rsp.headers = x->rh;
        rsp.nheaders = x->nrh;
        rsp.body = x->body.data ? x->body.data : "";
        rsp.body_len = x->body.len;
        const char *err = res == CURLE_OK
                              ? NULL
                              : (x->errbuf[0] ? x->errbuf
                                              : curl_easy_strerror(res));
        int64_t dur = (int64_t)((cs_mono_ns() - x->started_ns) / 1000000);
        h->inflight--;
        xfer_unlink(x);
        x->cb(&rsp, err, dur, x->arg);
        xfer_free(x);
    }
}

static void on_sock(EV_P_ ev_io *w, int revents)
{
    CS_UNUSED(loop);
    struct sock *s = (struct sock *)w;
    /* The action may free s (CURL_POLL_REMOVE): keep what we need. */
    struct httpc *h = s->h;
    int action = (revents & EV_READ ? CURL_CSELECT_IN : 0) |
                 (revents & EV_WRITE ? CURL_CSELECT_OUT : 0);
    int running;
    curl_multi_socket_action(h->multi, s->fd, action, &running);
    check_done(h);
}

static void on_timer(EV_P_ ev_timer *w, int revents)
{
    CS_UNUSED(loop);
    CS_UNUSED(revents);
    struct httpc *h = w->data;
    int running;
    curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(h);
}

static void on_start(EV_P_ ev_idle *w, int revents)
{
    CS_UNUSED(revents);
    ev_idle_stop(EV_A_ w);
    on_timer(EV_A_ & ((struct httpc *)w->data)->timer, 0);
}

static int sock_cb(CURL *e, curl_socket_t fd, int what, void *userp,
                   void *sockp)
{
    CS_UNUSED(e);
    struct httpc *h = userp;
    struct sock *s = sockp;
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            ev_io_stop(h->loop, &s->io);
            free(s);
            curl_multi_assign(h->multi, fd, NULL);
        }
        return 0;
    }
    if (!s) {
        s = xcalloc(1, sizeof(*s));
        s->h = h;
        s->fd = fd;
        ev_init(&s->io, on_sock);
        curl_multi_assign(h->multi, fd, s);
    }
    int ev = (what & CURL_POLL_IN ? EV_READ : 0) |
             (what & CURL_POLL_OUT ? EV_WRITE : 0);
    ev_io_stop(h->loop, &s->io);
    ev_io_set(&s->io, fd, ev);
    ev_io_start(h->loop, &s->io);
    return 0;
}

static int timer_cb(CURLM *m, long timeout_ms, void *userp)
{
    CS_UNUSED(m);
    struct httpc *h = userp;
    ev_timer_stop(h->loop, &h->timer);
    if (timeout_ms >= 0) {
        /* 0 means "now": act on the next loop iteration, not inside curl. */
        ev_timer_set(&h->timer, timeout_ms / 1000.0, 0.0);
        ev_timer_start(h->loop, &h->timer);
    }
    return 0;
}

static size_t on_body(char *p, size_t sz, size_t n, void *arg)
{
    struct xfer *x = arg;
    size_t len = sz * n;
    if (buf_add(&x->body, p, len))
        return 0; /* over the cap: curl fails the transfer */
    return len;
}

static size_t on_header(char *p, size_t sz, size_t n, void *arg)
{
    struct xfer *x = arg;
    size_t len = sz * n;
    if (len >= 7 && strncmp(p, "HTTP/", 5) == 0) {
        /* A new response (after 100 Continue or a redirect): start over. */
        for (size_t i = 0; i < x->nrh; i++) {
            free(x->rh[i].name);
            free(x->rh[i].value);
        }
        x->nrh = 0;
        return len;
    }
    const char *colon = memchr(p, ':', len);
    if (!colon || x->nrh == CS_ARRAY_LEN(x->rh))
        return len;
    size_t nl = (size_t)(colon - p);
    const char *v = colon + 1, *end = p + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
        end--;
    char *name = xstrndup(p, nl);
    for (size_t i = 0; i < nl; i++)
        name[i] = (char)tolower((unsigned char)name[i]);
    x->rh[x->nrh].name = name;
    x->rh[x->nrh].value = xstrndup(v, (size_t)(end - v));
    x->nrh++;
    return len;
}

struct httpc *httpc_new(struct ev_loop *loop, const struct httpc_opts *o)
{
    static bool global;
    if (!global) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        global = true;
    }
    struct httpc *h = xcalloc(1, sizeof(*h));
    h->loop = loop;
    h->o = *o;
    h->multi = curl_multi_init();
    CS_ASSERT(h->multi);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
                      (long)o->max_host_conns);
    curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS,
                      (long)o->max_host_conns * 4);
    ev_init(&h->timer, on_timer);
    h->timer.data = h;
    ev_idle_init(&h->start, on_start);
    h->start.data = h;
    return h;
}

void httpc_free(struct httpc *h)
{
    if (!h)
        return;
    /* Fail what is left, then tear down. */
    struct xfer *x;
    while ((x = h->xfers)) {
        xfer_unlink(x);
        curl_multi_remove_handle(h->multi, x->easy);
        h->inflight--;
        struct prov_response rsp = {0};
        rsp.body = "";
        x->cb(&rsp, "canceled", 0, x->arg);
        xfer_free(x);
    }
    ev_timer_stop(h->loop, &h->timer);
    ev_idle_stop(h->loop, &h->start);
    curl_multi_cleanup(h->multi);
    free(h);
}

size_t httpc_inflight(const struct httpc *h)
{
    return h->inflight;
}

void httpc_send(struct httpc *h, const struct prov_request *rq, httpc_cb *cb,
                void *arg)
{
    struct xfer *x = xcalloc(1, sizeof(*x));
    x->h = h;
    x->cb = cb;
    x->arg = arg;
    buf_init(&x->body, h->o.max_body);
    x->easy = curl_easy_init();
    CS_ASSERT(x->easy);
    CURL *e = x->easy;
    curl_easy_setopt(e, CURLOPT_URL, rq->url);
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, rq->method);
    if (strcmp(rq->method, "GET") == 0)
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    for (size_t i = 0; i < rq->nheaders; i++) {
        char *line = xasprintf("%s: %s", rq->headers[i].name,
                               rq->headers[i].value);
        x->hdrs = curl_slist_append(x->hdrs, line);
        free(line);
    }
    /* No "Expect: 100-continue" round trip. */
    x->hdrs = curl_slist_append(x->hdrs, "Expect:");
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->hdrs);
    if (rq->body) {
        x->req_body = xstrndup(rq->body, rq->body_len);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, x->req_body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)rq->body_len);
    } else if (strcmp(rq->method, "POST") == 0 ||
               strcmp(rq->method, "PUT") == 0 ||
               strcmp(rq->method, "PATCH") == 0) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, "");
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, 0L);
    }
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(e, CURLOPT_PRIVATE, x);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                     (long)h->o.connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS,
                     (long)(rq->timeout_ms ? rq->timeout_ms : h->o.timeout_ms));
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "callsync/1");
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    x->started_ns = cs_mono_ns();
    h->inflight++;
    x->next = h->xfers;
    if (h->xfers)
        h->xfers->prev = x;
    h->xfers = x;
    curl_multi_add_handle(h->multi, e);
    ev_idle_start(h->loop, &h->start);
}
