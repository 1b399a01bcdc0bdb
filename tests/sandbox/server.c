/*
 * server.c - HTTP/1.1 connections of the sandbox on libev with
 * http-parser: keep-alive, pipelining (one request answered at a time, the
 * rest kept buffered), chunked bodies (decoded by the parser), and answers
 * that may be delayed by an ev_timer or never sent at all (a hang, closed
 * after a while). Nothing here blocks, so thousands of connections can
 * wait on injected latency at once.
 */
#define _GNU_SOURCE
#include "sandbox.h"
#include "log.h"

#include <ctype.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_CHUNK 65536
#define IDLE_TIMEOUT_S 300.0
#define LINGER_S 1.0
#define MAX_URL 16384

enum conn_state {
    ST_READ,    /* reading a request (or idle between requests) */
    ST_WAIT,    /* answer delayed, or hanging */
    ST_WRITE,   /* answer being written */
    ST_LINGER,  /* answered with close: write side shut, draining */
};

struct conn {
    int fd;
    ev_io rw;
    ev_io ww;
    ev_timer tw;
    http_parser parser;
    struct sb_req rq;
    enum conn_state state;
    bool in_value;
    bool complete;
    bool keep_alive;
    bool hanging;
    int refuse;            /* status to refuse with, then close */
    struct buf in;         /* bytes read but not yet parsed */
    struct buf out;
    size_t out_off;
    struct conn *prev, *next;
};

/* The one server of the process (single loop, single listener). */
static struct {
    struct sb *s;
    int listen_fd;
    ev_io accept_w;
    struct conn *conns;
} srv = {NULL, -1, {0}, NULL};

static http_parser_settings settings;

static void conn_on_writable(EV_P_ ev_io *w, int revents);
static void conn_close(struct conn *c);
static void conn_feed(struct conn *c, const char *data, size_t n);

#define CONN_OF(ptr, field)                                                  \
    ((struct conn *)((char *)(ptr) - offsetof(struct conn, field)))

/* ---- Request state ------------------------------------------------------ */

static void request_reset(struct conn *c)
{
    struct sb_req *rq = &c->rq;
    free(rq->url);
    free(rq->path);
    for (size_t i = 0; i < rq->nheaders; i++) {
        free(rq->headers[i].name);
        free(rq->headers[i].value);
    }
    buf_release(&rq->body);
    memset(rq, 0, sizeof(*rq));
    buf_init(&rq->body, SB_MAX_BODY);
    c->in_value = false;
    c->complete = false;
    c->refuse = 0;
}

const char *sb_header(const struct sb_req *rq, const char *name)
{
    for (size_t i = 0; i < rq->nheaders; i++)
        if (strcmp(rq->headers[i].name, name) == 0)
            return rq->headers[i].value;
    return NULL;
}

static void set_timer(struct conn *c, double s)
{
    ev_timer_stop(srv.s->loop, &c->tw);
    if (s > 0) {
        ev_timer_set(&c->tw, s, 0.0);
        ev_timer_start(srv.s->loop, &c->tw);
    }
}

static void refuse(struct conn *c, int status)
{
    if (!c->refuse)
        c->refuse = status;
    http_parser_pause(&c->parser, 1);
}

/* ---- Parser callbacks --------------------------------------------------- */

static void append(char **s, const char *at, size_t n)
{
    size_t old = *s ? strlen(*s) : 0;
    *s = xrealloc(*s, old + n + 1);
    memcpy(*s + old, at, n);
    (*s)[old + n] = '\0';
}

static int on_url(http_parser *p, const char *at, size_t n)
{
    struct conn *c = p->data;
    if ((c->rq.url ? strlen(c->rq.url) : 0) + n > MAX_URL) {
        refuse(c, 414);
        return 0;
    }
    append(&c->rq.url, at, n);
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t n)
{
    struct conn *c = p->data;
    struct sb_req *rq = &c->rq;
    if (c->in_value || rq->nheaders == 0) {
        if (rq->nheaders == SB_MAX_HEADERS) {
            refuse(c, 431);
            return 0;
        }
        rq->nheaders++;
        c->in_value = false;
    }
    struct sb_header *h = &rq->headers[rq->nheaders - 1];
    size_t old = h->name ? strlen(h->name) : 0;
    append(&h->name, at, n);
    for (size_t i = old; i < old + n; i++)
        h->name[i] = (char)tolower((unsigned char)h->name[i]);
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t n)
{
    struct conn *c = p->data;
    struct sb_req *rq = &c->rq;
    if (rq->nheaders == 0)
        return 0;
    c->in_value = true;
    append(&rq->headers[rq->nheaders - 1].value, at, n);
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    struct conn *c = p->data;
    struct sb_req *rq = &c->rq;
    /* A header with an empty value never calls on_header_value. */
    for (size_t i = 0; i < rq->nheaders; i++)
        if (!rq->headers[i].value)
            rq->headers[i].value = xstrdup("");
    rq->method = (int)p->method;
    if (p->content_length != ULLONG_MAX &&
        p->content_length > (uint64_t)SB_MAX_BODY)
        refuse(c, 413);
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t n)
{
    struct conn *c = p->data;
    if (buf_add(&c->rq.body, at, n))
        refuse(c, 413);
    return 0;
}

static int on_message_complete(http_parser *p)
{
    struct conn *c = p->data;
    c->complete = true;
    c->keep_alive = http_should_keep_alive(p);
    http_parser_pause(p, 1);
    return 0;
}

/* ---- Answers ------------------------------------------------------------ */

static void start_writing(struct conn *c)
{
    c->state = ST_WRITE;
    ev_timer_stop(srv.s->loop, &c->tw);
    conn_on_writable(srv.s->loop, &c->ww, EV_WRITE);
}

/* Serialise resp into c->out. */
static void format_answer(struct conn *c, const struct sb_resp *resp)
{
    buf_reset(&c->out);
    c->out_off = 0;
    int rc = buf_addf(&c->out, "HTTP/1.1 %d %s\r\n", resp->status,
                      sb_reason(resp->status));
    if (!rc && resp->status != 204)
        rc = buf_addf(&c->out,
                      "Content-Type: application/json;charset=utf-8\r\n"
                      "Content-Length: %zu\r\n",
                      resp->len);
    if (!rc)
        rc = buf_addf(&c->out, "Connection: %s\r\n%s\r\n",
                      c->keep_alive ? "keep-alive" : "close",
                      resp->headers.data ? resp->headers.data : "");
    if (!rc && resp->len)
        rc = buf_add(&c->out, resp->body, resp->len);
    CS_ASSERT(rc == 0);
}

static void answer_simple(struct conn *c, int status)
{
    struct sb_resp r = {0};
    char *body = xasprintf("{\"error\":\"%s\"}", sb_reason(status));
    r.status = status;
    r.body = body;
    r.len = strlen(body);
    c->keep_alive = false;
    format_answer(c, &r);
    free(body);
    ev_io_stop(srv.s->loop, &c->rw);
    start_writing(c);
}

static void dispatch(struct conn *c)
{
    struct sb_resp resp = {0};
    buf_init(&resp.headers, 64 * 1024);
    ev_io_stop(srv.s->loop, &c->rw); /* backpressure while answering */
    ev_timer_stop(srv.s->loop, &c->tw);
    sb_dispatch(srv.s, &c->rq, &resp);
    if (resp.hang_ms > 0) {
        c->hanging = true;
        c->state = ST_WAIT;
        set_timer(c, resp.hang_ms / 1000.0);
    } else {
        format_answer(c, &resp);
        if (resp.delay_ms > 0) {
            c->state = ST_WAIT;
            set_timer(c, resp.delay_ms / 1000.0);
        } else {
            start_writing(c);
        }
    }
    free(resp.body);
    buf_release(&resp.headers);
}

/* ---- I/O ---------------------------------------------------------------- */

static void after_response(struct conn *c)
{
    if (!c->keep_alive) {
        shutdown(c->fd, SHUT_WR);
        c->state = ST_LINGER;
        ev_io_start(srv.s->loop, &c->rw);
        set_timer(c, LINGER_S);
        return;
    }
    request_reset(c);
    c->state = ST_READ;
    set_timer(c, IDLE_TIMEOUT_S);
    http_parser_pause(&c->parser, 0);
    ev_io_start(srv.s->loop, &c->rw);
    if (c->in.len) {
        size_t n;
        char *pending = buf_take(&c->in, &n);
        conn_feed(c, pending, n);
        free(pending);
    }
}

static void conn_on_writable(EV_P_ ev_io *w, int revents)
{
    CS_UNUSED(revents);
    struct conn *c = CONN_OF(w, ww);
    while (c->out_off < c->out.len) {
        ssize_t n = send(c->fd, c->out.data + c->out_off,
                         c->out.len - c->out_off, MSG_NOSIGNAL);
        if (n > 0) {
            c->out_off += (size_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            ev_io_start(EV_A_ & c->ww);
            return;
        }
        if (n < 0 && errno == EINTR)
            continue;
        conn_close(c);
        return;
    }
    ev_io_stop(EV_A_ & c->ww);
    buf_reset(&c->out);
    c->out_off = 0;
    after_response(c);
}

static void split_url(struct sb_req *rq)
{
    const char *url = rq->url ? rq->url : "/";
    const char *q = strchr(url, '?');
    size_t n = q ? (size_t)(q - url) : strlen(url);
    rq->path = xstrndup(url, n);
    rq->query = q ? q + 1 : "";
}

static void conn_feed(struct conn *c, const char *data, size_t n)
{
    size_t done = http_parser_execute(&c->parser, &settings, data, n);
    enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
    if (c->refuse) {
        answer_simple(c, c->refuse);
        return;
    }
    if (e != HPE_OK && e != HPE_PAUSED) {
        answer_simple(c, 400);
        return;
    }
    if (!c->complete)
        return;
    if (done < n) {
        buf_reset(&c->in);
        if (buf_add(&c->in, data + done, n - done)) {
            c->keep_alive = false;
            buf_reset(&c->in);
        }
    }
    split_url(&c->rq);
    dispatch(c);
}

static void conn_on_readable(EV_P_ ev_io *w, int revents)
{
    CS_UNUSED(revents);
    CS_UNUSED(loop);
    struct conn *c = CONN_OF(w, rw);
    char data[READ_CHUNK];
    ssize_t n = recv(c->fd, data, sizeof(data), 0);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return;
        conn_close(c);
        return;
    }
    if (n == 0 || c->state == ST_LINGER) {
        if (n == 0)
            conn_close(c);
        return;
    }
    conn_feed(c, data, (size_t)n);
}

static void conn_on_timer(EV_P_ ev_timer *w, int revents)
{
    CS_UNUSED(revents);
    CS_UNUSED(loop);
    struct conn *c = CONN_OF(w, tw);
    if (c->state == ST_WAIT && !c->hanging) {
        start_writing(c);
        return;
    }
    conn_close(c);
}

/* ---- Lifecycle ---------------------------------------------------------- */

static void conn_close(struct conn *c)
{
    ev_io_stop(srv.s->loop, &c->rw);
    ev_io_stop(srv.s->loop, &c->ww);
    ev_timer_stop(srv.s->loop, &c->tw);
    close(c->fd);
    if (c->prev)
        c->prev->next = c->next;
    else
        srv.conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    request_reset(c);
    buf_release(&c->rq.body);
    buf_release(&c->in);
    buf_release(&c->out);
    free(c);
}

static void on_accept(EV_P_ ev_io *w, int revents)
{
    CS_UNUSED(revents);
    CS_UNUSED(w);
    for (int i = 0; i < 256; i++) {
        int fd = accept4(srv.listen_fd, NULL, NULL,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
                errno != ECONNABORTED)
                log_warn("accept_failed", LOG_I("errno", errno));
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct conn *c = xcalloc(1, sizeof(*c));
        c->fd = fd;
        buf_init(&c->in, SB_MAX_BODY + 2 * READ_CHUNK);
        buf_init(&c->out, SIZE_MAX / 2);
        buf_init(&c->rq.body, SB_MAX_BODY);
        http_parser_init(&c->parser, HTTP_REQUEST);
        c->parser.data = c;
        ev_io_init(&c->rw, conn_on_readable, fd, EV_READ);
        ev_io_init(&c->ww, conn_on_writable, fd, EV_WRITE);
        ev_init(&c->tw, conn_on_timer);
        c->state = ST_READ;
        c->next = srv.conns;
        if (srv.conns)
            srv.conns->prev = c;
        srv.conns = c;
        ev_io_start(EV_A_ & c->rw);
        set_timer(c, IDLE_TIMEOUT_S);
    }
}

void sb_server_start(struct sb *s, int listen_fd)
{
    settings.on_url = on_url;
    settings.on_header_field = on_header_field;
    settings.on_header_value = on_header_value;
    settings.on_headers_complete = on_headers_complete;
    settings.on_body = on_body;
    settings.on_message_complete = on_message_complete;
    srv.s = s;
    srv.listen_fd = listen_fd;
    ev_io_init(&srv.accept_w, on_accept, listen_fd, EV_READ);
    ev_io_start(s->loop, &srv.accept_w);
}

void sb_server_stop(void)
{
    if (!srv.s)
        return;
    ev_io_stop(srv.s->loop, &srv.accept_w);
    if (srv.listen_fd >= 0)
        close(srv.listen_fd);
    srv.listen_fd = -1;
    while (srv.conns)
        conn_close(srv.conns);
}
