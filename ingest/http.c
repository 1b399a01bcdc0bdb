/*
 * http.c - HTTP/1.1 connections of callsync-ingest on libev with
 * http-parser: keep-alive, pipelining (one request processed at a time per
 * connection, the rest kept buffered), chunked bodies (decoded by the
 * parser), caps on header and body size, and timeouts against slow
 * clients:
 *
 *   idle      keep-alive connection waiting for a request: closed silently
 *   headers   first byte to end of headers, not reset by trickling bytes:
 *             408 and close
 *   body      end of headers to end of body: 408 and close
 *
 * A request that is refused before its body is read (404, 405, 413, 415,
 * 431) is answered with "Connection: close"; the socket is then shut down
 * for writing and drained briefly so the client sees the answer rather
 * than a reset.
 */
#define _GNU_SOURCE
#include "ingest.h"
#include "log.h"

#include <ctype.h>
#include <limits.h>
#include <strings.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_CHUNK 65536
#define LINGER_S 1.0

enum conn_state {
    CS_IDLE,        /* between requests */
    CS_HEADERS,     /* reading request line and headers */
    CS_BODY,        /* reading the body */
    CS_PROCESSING,  /* request complete, being answered */
    CS_WRITING,     /* answer being written */
    CS_LINGER,      /* answered, write side shut, draining input */
};

struct ing_conn {
    struct ing_loop *l;
    int fd;
    ev_io rw;
    ev_io ww;
    ev_timer tw;
    http_parser parser;
    struct ing_request rq;
    enum conn_state state;
    size_t header_bytes;
    bool in_value;          /* last header callback was a value */
    int early_status;       /* refuse before the body, then close */
    enum ing_reason early_reason;
    bool complete;          /* on_message_complete fired */
    bool keep_alive;
    bool peer_eof;
    bool closed;            /* socket gone; freed when holds reach 0 */
    int holds;
    struct buf in;          /* bytes read but not yet parsed */
    struct buf out;         /* answer not yet written */
    size_t out_off;
    struct ing_conn *prev, *next;
};

static http_parser_settings settings;

static void conn_on_readable(EV_P_ ev_io *w, int revents);
static void conn_on_writable(EV_P_ ev_io *w, int revents);
static void conn_on_timer(EV_P_ ev_timer *w, int revents);
static void conn_close(struct ing_conn *c);
static void conn_feed(struct ing_conn *c, const char *data, size_t n);

/* ---- Request state ----------------------------------------------------- */

static void request_reset(struct ing_conn *c)
{
    struct ing_request *rq = &c->rq;
    free(rq->url);
    free(rq->path);
    for (size_t i = 0; i < rq->nheaders; i++) {
        free(rq->headers[i].name);
        free(rq->headers[i].value);
    }
    buf_release(&rq->body);
    memset(rq, 0, sizeof(*rq));
    buf_init(&rq->body, (size_t)c->l->cfg->ingest_max_body);
    rq->route = R_OTHER;
    c->header_bytes = 0;
    c->in_value = false;
    c->early_status = 0;
    c->complete = false;
}

const char *ing_header(const struct ing_request *rq, const char *name)
{
    for (size_t i = 0; i < rq->nheaders; i++)
        if (strcasecmp(rq->headers[i].name, name) == 0)
            return rq->headers[i].value;
    return NULL;
}

struct ing_request *ing_conn_request(struct ing_conn *c)
{
    return &c->rq;
}

struct ing_loop *ing_conn_loop(struct ing_conn *c)
{
    return c->l;
}

static void set_timer(struct ing_conn *c, int ms)
{
    ev_timer_stop(c->l->loop, &c->tw);
    if (ms > 0) {
        ev_timer_set(&c->tw, ms / 1000.0, 0.0);
        ev_timer_start(c->l->loop, &c->tw);
    }
}

static void refuse_early(struct ing_conn *c, int status, enum ing_reason why)
{
    if (!c->early_status) {
        c->early_status = status;
        c->early_reason = why;
    }
    http_parser_pause(&c->parser, 1);
}

/* ---- Parser callbacks -------------------------------------------------- */

static struct ing_conn *conn_of(http_parser *p)
{
    return p->data;
}

static int count_header_bytes(struct ing_conn *c, size_t n)
{
    c->header_bytes += n;
    if (c->header_bytes > (size_t)c->l->cfg->ingest_max_header) {
        refuse_early(c, 431, RJ_HEADER_TOO_LARGE);
        return -1;
    }
    return 0;
}

static void append(char **s, const char *at, size_t n)
{
    size_t old = *s ? strlen(*s) : 0;
    *s = xrealloc(*s, old + n + 1);
    memcpy(*s + old, at, n);
    (*s)[old + n] = '\0';
}

static int on_message_begin(http_parser *p)
{
    struct ing_conn *c = conn_of(p);
    c->rq.started_ns = cs_mono_ns();
    if (c->state == CS_IDLE) {
        c->state = CS_HEADERS;
        set_timer(c, c->l->cfg->ingest_header_timeout_ms);
    }
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t n)
{
    struct ing_conn *c = conn_of(p);
    if (count_header_bytes(c, n))
        return 0;
    append(&c->rq.url, at, n);
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t n)
{
    struct ing_conn *c = conn_of(p);
    struct ing_request *rq = &c->rq;
    if (count_header_bytes(c, n))
        return 0;
    if (c->in_value || rq->nheaders == 0) {
        if (rq->nheaders == ING_MAX_HEADERS) {
            refuse_early(c, 431, RJ_HEADER_TOO_LARGE);
            return 0;
        }
        rq->nheaders++;
        c->in_value = false;
    }
    struct ing_header *h = &rq->headers[rq->nheaders - 1];
    size_t old = h->name ? strlen(h->name) : 0;
    append(&h->name, at, n);
    for (size_t i = old; i < old + n; i++)
        h->name[i] = (char)tolower((unsigned char)h->name[i]);
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t n)
{
    struct ing_conn *c = conn_of(p);
    struct ing_request *rq = &c->rq;
    if (count_header_bytes(c, n) || rq->nheaders == 0)
        return 0;
    c->in_value = true;
    append(&rq->headers[rq->nheaders - 1].value, at, n);
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    struct ing_conn *c = conn_of(p);
    struct ing_request *rq = &c->rq;
    /* A header with an empty value never calls on_header_value. */
    for (size_t i = 0; i < rq->nheaders; i++)
        if (!rq->headers[i].value)
            rq->headers[i].value = xstrdup("");
    rq->method = (enum http_method)p->method;
    int status = ing_route_early(c, rq);
    if (status) {
        refuse_early(c, status, c->early_reason);
        return 0;
    }
    if (p->content_length != ULLONG_MAX &&
        p->content_length > (uint64_t)c->l->cfg->ingest_max_body) {
        refuse_early(c, 413, RJ_BODY_TOO_LARGE);
        return 0;
    }
    const char *expect = ing_header(rq, "expect");
    if (expect && strcasecmp(expect, "100-continue") == 0) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        /* Best effort: the socket buffer is empty at this point. */
        (void)!write(c->fd, cont, sizeof(cont) - 1);
    }
    c->state = CS_BODY;
    set_timer(c, c->l->cfg->ingest_body_timeout_ms);
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t n)
{
    struct ing_conn *c = conn_of(p);
    if (buf_add(&c->rq.body, at, n))
        refuse_early(c, 413, RJ_BODY_TOO_LARGE);
    return 0;
}

static int on_message_complete(http_parser *p)
{
    struct ing_conn *c = conn_of(p);
    c->complete = true;
    c->keep_alive = http_should_keep_alive(p);
    http_parser_pause(p, 1);
    return 0;
}

void ing_set_early_reason(struct ing_conn *c, enum ing_reason why)
{
    c->early_reason = why;
}

/* ---- Answers ----------------------------------------------------------- */

static const char *reason_phrase(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 202: return "Accepted";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Unknown";
    }
}

static void start_writing(struct ing_conn *c)
{
    c->state = CS_WRITING;
    ev_io_stop(c->l->loop, &c->rw);
    conn_on_writable(c->l->loop, &c->ww, EV_WRITE);
}

void ing_respond(struct ing_conn *c, int status, const char *content_type,
                 const char *extra_headers, const char *body, size_t len)
{
    if (c->closed)
        return;
    struct ing_request *rq = &c->rq;
    bool close_after = !c->keep_alive || c->early_status || c->peer_eof ||
                       c->l->draining || !c->complete;
    met_request(rq->route, status, cs_mono_ns() - rq->started_ns);
    buf_reset(&c->out);
    c->out_off = 0;
    int rc = buf_addf(&c->out,
                      "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n"
                      "Content-Length: %zu\r\nConnection: %s\r\n%s\r\n",
                      status, reason_phrase(status), content_type, len,
                      close_after ? "close" : "keep-alive",
                      extra_headers ? extra_headers : "");
    if (!rc)
        rc = buf_add(&c->out, body, len);
    CS_ASSERT(rc == 0);
    c->keep_alive = !close_after;
    set_timer(c, c->l->cfg->ingest_body_timeout_ms);
    start_writing(c);
}

void ing_respond_json(struct ing_conn *c, int status, json_t *body)
{
    char *s = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    ing_respond(c, status, "application/json", NULL, s, strlen(s));
    free(s);
}

void ing_fail(struct ing_conn *c, int status, enum ing_reason why,
              const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    met_reject(why);
    json_t *o = json_pack("{s:s,s:s}", "error", ing_reason_name(why),
                          "message", msg);
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    const char *extra = NULL;
    if (status == 503)
        extra = "Retry-After: 5\r\n";
    ing_respond(c, status, "application/json", extra, s, strlen(s));
    free(s);
}

/* ---- I/O --------------------------------------------------------------- */

static void after_response(struct ing_conn *c)
{
    if (!c->keep_alive) {
        /* Lingering close: let the client read the answer. */
        shutdown(c->fd, SHUT_WR);
        c->state = CS_LINGER;
        ev_io_start(c->l->loop, &c->rw);
        ev_timer_stop(c->l->loop, &c->tw);
        ev_timer_set(&c->tw, LINGER_S, 0.0);
        ev_timer_start(c->l->loop, &c->tw);
        return;
    }
    request_reset(c);
    c->state = CS_IDLE;
    set_timer(c, c->l->cfg->ingest_idle_timeout_ms);
    http_parser_pause(&c->parser, 0);
    ev_io_start(c->l->loop, &c->rw);
    if (c->in.len) {
        /* Pipelined requests already read. */
        size_t n;
        char *pending = buf_take(&c->in, &n);
        conn_feed(c, pending, n);
        free(pending);
    }
}

static void conn_on_writable(EV_P_ ev_io *w, int revents)
{
    CS_UNUSED(revents);
    struct ing_conn *c = (struct ing_conn *)((char *)w -
                                             offsetof(struct ing_conn, ww));
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

static void dispatch_complete(struct ing_conn *c)
{
    c->state = CS_PROCESSING;
    ev_timer_stop(c->l->loop, &c->tw);
    ev_io_stop(c->l->loop, &c->rw);  /* backpressure while answering */
    ing_dispatch(c, &c->rq);
}

static void conn_feed(struct ing_conn *c, const char *data, size_t n)
{
    size_t done = http_parser_execute(&c->parser, &settings, data, n);
    enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
    if (c->early_status) {
        struct ing_request *rq = &c->rq;
        if (c->early_status == 404)
            ing_fail(c, 404, c->early_reason, "no route for '%s'",
                     rq->path ? rq->path : "");
        else if (c->early_status == 405)
            ing_fail(c, 405, RJ_METHOD_NOT_ALLOWED, "method '%s' not allowed",
                     http_method_str(rq->method));
        else if (c->early_status == 413)
            ing_fail(c, 413, RJ_BODY_TOO_LARGE,
                     "request body exceeds %d bytes",
                     c->l->cfg->ingest_max_body);
        else if (c->early_status == 415)
            ing_fail(c, 415, RJ_UNSUPPORTED_MEDIA_TYPE,
                     "content type must be application/json");
        else if (c->early_status == 431)
            ing_fail(c, 431, RJ_HEADER_TOO_LARGE,
                     "request line and headers exceed %d bytes or %d fields",
                     c->l->cfg->ingest_max_header, ING_MAX_HEADERS);
        else
            ing_fail(c, c->early_status, c->early_reason, "request refused");
        return;
    }
    if (e != HPE_OK && e != HPE_PAUSED) {
        c->keep_alive = false;
        ing_fail(c, 400, RJ_MALFORMED_HTTP, "malformed request: %s",
                 http_errno_description(e));
        return;
    }
    if (c->complete) {
        if (done < n) {
            buf_reset(&c->in);
            if (buf_add(&c->in, data + done, n - done)) {
                c->keep_alive = false;
                buf_reset(&c->in);
            }
        }
        dispatch_complete(c);
    }
}

static void conn_on_readable(EV_P_ ev_io *w, int revents)
{
    CS_UNUSED(revents);
    struct ing_conn *c = (struct ing_conn *)((char *)w -
                                             offsetof(struct ing_conn, rw));
    char data[READ_CHUNK];
    ssize_t n = recv(c->fd, data, sizeof(data), 0);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return;
        conn_close(c);
        return;
    }
    if (c->state == CS_LINGER) {
        if (n == 0)
            conn_close(c);
        return;
    }
    if (n == 0) {
        c->peer_eof = true;
        /* EOF mid-request: the request is truncated; nobody to answer. */
        if (c->state == CS_HEADERS || c->state == CS_BODY)
            met_reject(RJ_MALFORMED_HTTP);
        conn_close(c);
        return;
    }
    CS_UNUSED(loop);
    conn_feed(c, data, (size_t)n);
}

static void conn_on_timer(EV_P_ ev_timer *w, int revents)
{
    CS_UNUSED(revents);
    CS_UNUSED(loop);
    struct ing_conn *c = (struct ing_conn *)((char *)w -
                                             offsetof(struct ing_conn, tw));
    switch (c->state) {
    case CS_HEADERS:
    case CS_BODY:
        c->keep_alive = false;
        c->early_status = 408;
        ing_fail(c, 408, RJ_TIMEOUT, "request not received in time");
        break;
    default:
        conn_close(c);
        break;
    }
}

/* ---- Lifecycle --------------------------------------------------------- */

static void conn_free(struct ing_conn *c)
{
    request_reset(c);
    buf_release(&c->rq.body);
    buf_release(&c->in);
    buf_release(&c->out);
    free(c);
}

static void conn_close(struct ing_conn *c)
{
    if (c->closed)
        return;
    struct ing_loop *l = c->l;
    ev_io_stop(l->loop, &c->rw);
    ev_io_stop(l->loop, &c->ww);
    ev_timer_stop(l->loop, &c->tw);
    close(c->fd);
    c->fd = -1;
    c->closed = true;
    if (c->prev)
        c->prev->next = c->next;
    else
        l->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    l->nconns--;
    met_conns(-1);
    if (c->holds == 0)
        conn_free(c);
}

void ing_conn_hold(struct ing_conn *c)
{
    c->holds++;
}

bool ing_conn_release(struct ing_conn *c)
{
    CS_ASSERT(c->holds > 0);
    c->holds--;
    if (c->closed) {
        if (c->holds == 0)
            conn_free(c);
        return false;
    }
    return true;
}

void ing_close_idle(struct ing_loop *l)
{
    struct ing_conn *c = l->conns, *next;
    for (; c; c = next) {
        next = c->next;
        if (c->state == CS_IDLE || c->state == CS_LINGER)
            conn_close(c);
    }
}

void ing_close_all(struct ing_loop *l)
{
    while (l->conns)
        conn_close(l->conns);
}

static void init_settings(void)
{
    settings.on_message_begin = on_message_begin;
    settings.on_url = on_url;
    settings.on_header_field = on_header_field;
    settings.on_header_value = on_header_value;
    settings.on_headers_complete = on_headers_complete;
    settings.on_body = on_body;
    settings.on_message_complete = on_message_complete;
}

void ing_accept_cb(EV_P_ ev_io *w, int revents)
{
    CS_UNUSED(revents);
    struct ing_loop *l = (struct ing_loop *)((char *)w -
                                             offsetof(struct ing_loop,
                                                      accept_w));
    if (!settings.on_message_complete)
        init_settings();
    for (int i = 0; i < 64; i++) {
        int fd = accept4(l->listen_fd, NULL, NULL,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
                errno != ECONNABORTED)
                log_warn("accept_failed", LOG_I("errno", errno));
            return;
        }
        if (l->nconns >= l->cfg->ingest_max_conns || l->draining) {
            met_reject(RJ_OVERLOADED);
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct ing_conn *c = xcalloc(1, sizeof(*c));
        c->l = l;
        c->fd = fd;
        buf_init(&c->in, (size_t)l->cfg->ingest_max_body +
                             (size_t)l->cfg->ingest_max_header + READ_CHUNK);
        buf_init(&c->out, SIZE_MAX / 2);
        buf_init(&c->rq.body, (size_t)l->cfg->ingest_max_body);
        request_reset(c);
        http_parser_init(&c->parser, HTTP_REQUEST);
        c->parser.data = c;
        ev_io_init(&c->rw, conn_on_readable, fd, EV_READ);
        ev_io_init(&c->ww, conn_on_writable, fd, EV_WRITE);
        ev_init(&c->tw, conn_on_timer);
        c->state = CS_IDLE;
        c->next = l->conns;
        if (l->conns)
            l->conns->prev = c;
        l->conns = c;
        l->nconns++;
        met_conns(1);
        ev_io_start(EV_A_ & c->rw);
        set_timer(c, l->cfg->ingest_idle_timeout_ms);
    }
}
