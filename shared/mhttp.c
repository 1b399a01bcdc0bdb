/*
 * mhttp.c - the operational HTTP listener; see mhttp.h.
 *
 * A connection lives through: READ (http-parser fed from the socket until
 * the request is complete, or refused) -> WRITE (the whole answer is built
 * in memory, then written as the socket allows) -> LINGER (write side shut,
 * input drained until the peer closes or a second passes, so that a client
 * that sent more than we read still sees the answer instead of a reset)
 * -> closed. One timer per connection holds the deadline of the current
 * state.
 */
#define _GNU_SOURCE /* accept4 */
#include "mhttp.h"
#include "log.h"

#include <http_parser.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_CHUNK 4096
#define LINGER_S 1.0
#define METRICS_MAX (8u * 1024 * 1024)
#define MAX_PATH_ECHO 96

enum mconn_state { MC_READ, MC_APP, MC_WRITE, MC_LINGER };

struct mhttp_req {
    struct mconn *c;           /* NULL once the connection is gone */
};

struct mconn {
    struct mhttp *m;
    int fd;
    enum mconn_state state;
    ev_io rw, ww;
    ev_timer tw;
    http_parser parser;
    size_t header_bytes;
    char *url;                 /* request target as sent */
    size_t url_len;
    bool started;              /* a byte of a request arrived */
    bool complete;             /* on_message_complete fired */
    int refuse;                /* answer with this status at once */
    struct buf out;
    size_t out_off;
    struct mhttp_req *app;     /* an application route is answering */
    struct mconn *prev, *next;
};

struct mhttp {
    struct ev_loop *loop;
    struct mhttp_opts o;
    int fd;
    int port;
    ev_io accept_w;
    struct mconn *conns;
    int nconns;
};

static http_parser_settings settings;

static void conn_close(struct mconn *c);
static void conn_on_writable(EV_P_ ev_io *w, int revents);

/* ---- Address ----------------------------------------------------------- */

int mhttp_parse_addr(const char *addr, char *host, size_t hostlen, int *port,
                     struct cs_err *err)
{
    const char *a = addr ? addr : "";
    const char *colon;
    const char *h = a;
    size_t hl;
    if (*a == '[') {
        const char *close = strchr(a, ']');
        if (!close || close[1] != ':')
            goto bad;
        h = a + 1;
        hl = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(a, ':');
        if (!colon || memchr(a, ':', (size_t)(colon - a)))
            goto bad; /* a bare IPv6 address needs brackets */
        hl = (size_t)(colon - a);
    }
    if (hl >= hostlen)
        goto bad;
    char *end;
    errno = 0;
    long p = strtol(colon + 1, &end, 10);
    if (errno || end == colon + 1 || *end || p < 0 || p > 65535)
        goto bad;
    memcpy(host, h, hl);
    host[hl] = '\0';
    *port = (int)p;
    return 0;
bad:
    return cs_err_set(err, CS_EINVAL, "", "address '%s' must be host:port, "
                                          "[v6]:port or :port",
                      a);
}

/* ---- Answers ----------------------------------------------------------- */

static const char *reason_phrase(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 302: return "Found";
    case 303: return "See Other";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 413: return "Content Too Large";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
    }
}

const char *mhttp_reason(int status)
{
    return reason_phrase(status);
}

static void start_writing(struct mconn *c)
{
    c->state = MC_WRITE;
    ev_io_stop(c->m->loop, &c->rw);
    ev_timer_stop(c->m->loop, &c->tw);
    ev_timer_set(&c->tw, c->m->o.timeout_ms / 1000.0, 0.0);
    ev_timer_start(c->m->loop, &c->tw);
    conn_on_writable(c->m->loop, &c->ww, EV_WRITE);
}

static void respond(struct mconn *c, int status, const char *ctype,
                    const char *extra, const char *body, size_t len,
                    bool head)
{
    buf_reset(&c->out);
    c->out_off = 0;
    int rc = buf_addf(&c->out,
                      "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n"
                      "Content-Length: %zu\r\nCache-Control: no-store\r\n"
                      "Connection: close\r\n%s\r\n",
                      status, reason_phrase(status), ctype, len,
                      extra ? extra : "");
    if (!rc && !head)
        rc = buf_add(&c->out, body, len);
    CS_ASSERT(rc == 0); /* out has no cap beyond the metrics cap */
    start_writing(c);
}

static void respond_json(struct mconn *c, int status, json_t *o,
                         const char *extra, bool head)
{
    char *s = json_dumps(o, JSON_COMPACT);
    respond(c, status, "application/json", extra, s, strlen(s), head);
    free(s);
}

static void respond_error(struct mconn *c, int status, const char *code,
                          const char *msg)
{
    json_t *o = json_pack("{s:s,s:s}", "error", code, "message", msg);
    bool head = c->complete && c->parser.method == HTTP_HEAD;
    respond_json(c, status, o, NULL, head);
    json_decref(o);
}

/* The request path, printable ASCII only and cut short, for a message. */
static void path_echo(const char *path, size_t n, char out[MAX_PATH_ECHO + 4])
{
    size_t k = 0;
    for (size_t i = 0; i < n && k < MAX_PATH_ECHO; i++) {
        unsigned char ch = (unsigned char)path[i];
        out[k++] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
    }
    if (n > MAX_PATH_ECHO) {
        memcpy(out + k, "...", 3);
        k += 3;
    }
    out[k] = '\0';
}

static void route(struct mconn *c)
{
    struct mhttp *m = c->m;
    enum http_method meth = (enum http_method)c->parser.method;
    const char *url = c->url ? c->url : "";
    size_t plen = strcspn(url, "?#");
    bool head = meth == HTTP_HEAD;
    enum { P_NONE, P_METRICS, P_HEALTHZ, P_READYZ } p = P_NONE;
    if (plen == 8 && memcmp(url, "/metrics", 8) == 0 && m->o.metrics)
        p = P_METRICS;
    else if (plen == 8 && memcmp(url, "/healthz", 8) == 0)
        p = P_HEALTHZ;
    else if (plen == 7 && memcmp(url, "/readyz", 7) == 0)
        p = P_READYZ;
    if (p == P_NONE && m->o.route) {
        struct mhttp_req *r = xcalloc(1, sizeof(*r));
        r->c = c;
        c->app = r;
        c->state = MC_APP;
        ev_io_stop(m->loop, &c->rw);
        ev_timer_stop(m->loop, &c->tw);
        ev_timer_set(&c->tw, m->o.route_timeout_ms / 1000.0, 0.0);
        ev_timer_start(m->loop, &c->tw);
        if (m->o.route(r, http_method_str(meth), url, m->o.arg))
            return;
        /* Not taken (and so not answered): the 404 below. */
        c->app = NULL;
        free(r);
        c->state = MC_READ;
    }
    if (p == P_NONE) {
        char echo[MAX_PATH_ECHO + 4], msg[160];
        path_echo(url, plen, echo);
        snprintf(msg, sizeof(msg), "no route for '%s'", echo);
        respond_error(c, 404, "not_found", msg);
        return;
    }
    if (meth != HTTP_GET && !head) {
        json_t *o = json_pack("{s:s,s:s}", "error", "method_not_allowed",
                              "message", "only GET and HEAD are allowed");
        respond_json(c, 405, o, "Allow: GET, HEAD\r\n", false);
        json_decref(o);
        return;
    }
    if (p == P_METRICS) {
        struct buf b;
        buf_init(&b, METRICS_MAX);
        if (m->o.metrics(&b, m->o.arg)) {
            buf_release(&b);
            respond_error(c, 500, "metrics_too_large",
                          "the metrics page exceeds its size cap");
            return;
        }
        respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", NULL,
                b.data ? b.data : "", b.len, head);
        buf_release(&b);
        return;
    }
    json_t *o = json_object();
    int status = 200;
    if (p == P_HEALTHZ) {
        json_object_set_new(o, "status", json_string("ok"));
    } else {
        bool ready = m->o.ready ? m->o.ready(o, m->o.arg) : true;
        if (!json_object_get(o, "status"))
            json_object_set_new(o, "status",
                                json_string(ready ? "ready" : "not_ready"));
        status = ready ? 200 : 503;
    }
    respond_json(c, status, o, status == 503 ? "Retry-After: 5\r\n" : NULL,
                 head);
    json_decref(o);
}

/* ---- Parser callbacks -------------------------------------------------- */

static int count(struct mconn *c, size_t n)
{
    c->header_bytes += n;
    if (c->header_bytes > c->m->o.max_header) {
        c->refuse = 431;
        return -1;
    }
    return 0;
}

static int on_message_begin(http_parser *p)
{
    struct mconn *c = p->data;
    c->started = true;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t n)
{
    struct mconn *c = p->data;
    if (count(c, n))
        return -1;
    c->url = xrealloc(c->url, c->url_len + n + 1);
    memcpy(c->url + c->url_len, at, n);
    c->url_len += n;
    c->url[c->url_len] = '\0';
    return 0;
}

static int on_header_bytes(http_parser *p, const char *at, size_t n)
{
    CS_UNUSED(at);
    return count(p->data, n);
}

static int on_body(http_parser *p, const char *at, size_t n)
{
    CS_UNUSED(at);
    struct mconn *c = p->data;
    /* Probes send no body; one is read and dropped, within the same cap. */
    c->header_bytes += n;
    if (c->header_bytes > c->m->o.max_header) {
        c->refuse = 413;
        return -1;
    }
    return 0;
}

static int on_message_complete(http_parser *p)
{
    struct mconn *c = p->data;
    c->complete = true;
    http_parser_pause(p, 1);
    return 0;
}

static void init_settings(void)
{
    settings.on_message_begin = on_message_begin;
    settings.on_url = on_url;
    settings.on_header_field = on_header_bytes;
    settings.on_header_value = on_header_bytes;
    settings.on_body = on_body;
    settings.on_message_complete = on_message_complete;
}

/* ---- I/O --------------------------------------------------------------- */

static void feed(struct mconn *c, const char *data, size_t n)
{
    http_parser_execute(&c->parser, &settings, data, n);
    enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
    if (c->refuse == 431) {
        char msg[96];
        snprintf(msg, sizeof(msg), "request line and headers exceed %zu bytes",
                 c->m->o.max_header);
        respond_error(c, 431, "header_too_large", msg);
    } else if (c->refuse == 413) {
        respond_error(c, 413, "body_too_large",
                      "these endpoints take no request body");
    } else if (c->complete) {
        route(c);
    } else if (e != HPE_OK) {
        char msg[128];
        snprintf(msg, sizeof(msg), "malformed request: %s",
                 http_errno_description(e));
        respond_error(c, 400, "malformed_http", msg);
    }
}

static void conn_on_readable(EV_P_ ev_io *w, int revents)
{
    CS_UNUSED(loop);
    CS_UNUSED(revents);
    struct mconn *c = w->data;
    char data[READ_CHUNK];
    ssize_t n = recv(c->fd, data, sizeof(data), 0);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return;
        conn_close(c);
        return;
    }
    if (c->state == MC_LINGER) {
        if (n == 0)
            conn_close(c);
        return;
    }
    if (n == 0) {
        /* The peer gave up before a whole request: nobody to answer. */
        conn_close(c);
        return;
    }
    feed(c, data, (size_t)n);
}

static void conn_on_writable(EV_P_ ev_io *w, int revents)
{
    CS_UNUSED(revents);
    struct mconn *c = w->data;
    while (c->out_off < c->out.len) {
        ssize_t n = send(c->fd, c->out.data + c->out_off,
                         c->out.len - c->out_off, MSG_NOSIGNAL);
        if (n > 0) {
            c->out_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            ev_io_start(EV_A_ & c->ww);
            return;
        }
        conn_close(c);
        return;
    }
    ev_io_stop(EV_A_ & c->ww);
    /* Answered: shut our side, drain theirs briefly, then close. */
    shutdown(c->fd, SHUT_WR);
    c->state = MC_LINGER;
    ev_timer_stop(EV_A_ & c->tw);
    ev_timer_set(&c->tw, LINGER_S, 0.0);
    ev_timer_start(EV_A_ & c->tw);
    ev_io_start(EV_A_ & c->rw);
}

static void conn_on_timer(EV_P_ ev_timer *w, int revents)
{
    CS_UNUSED(loop);
    CS_UNUSED(revents);
    struct mconn *c = w->data;
    if (c->state == MC_APP) {
        c->app->c = NULL;
        c->app = NULL;
        respond_error(c, 504, "timeout", "the request took too long");
        return;
    }
    if (c->state == MC_READ && c->started) {
        respond_error(c, 408, "request_timeout",
                      "request not received in time");
        return;
    }
    /* Silent connections, stuck writes and lingering ones just close. */
    conn_close(c);
}

static void conn_close(struct mconn *c)
{
    struct mhttp *m = c->m;
    ev_io_stop(m->loop, &c->rw);
    ev_io_stop(m->loop, &c->ww);
    ev_timer_stop(m->loop, &c->tw);
    if (c->app)
        c->app->c = NULL;
    close(c->fd);
    if (c->prev)
        c->prev->next = c->next;
    else
        m->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    m->nconns--;
    buf_release(&c->out);
    free(c->url);
    free(c);
}

static void on_accept(EV_P_ ev_io *w, int revents)
{
    CS_UNUSED(revents);
    struct mhttp *m = w->data;
    for (int i = 0; i < 16; i++) {
        int fd = accept4(m->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
                errno != ECONNABORTED)
                log_warn("mhttp_accept_failed", LOG_I("errno", errno));
            return;
        }
        if (m->nconns >= m->o.max_conns) {
            close(fd);
            continue;
        }
        struct mconn *c = xcalloc(1, sizeof(*c));
        c->m = m;
        c->fd = fd;
        c->state = MC_READ;
        http_parser_init(&c->parser, HTTP_REQUEST);
        c->parser.data = c;
        buf_init(&c->out, METRICS_MAX + 4096);
        ev_io_init(&c->rw, conn_on_readable, fd, EV_READ);
        c->rw.data = c;
        ev_io_init(&c->ww, conn_on_writable, fd, EV_WRITE);
        c->ww.data = c;
        ev_timer_init(&c->tw, conn_on_timer, m->o.timeout_ms / 1000.0, 0.0);
        c->tw.data = c;
        c->next = m->conns;
        if (m->conns)
            m->conns->prev = c;
        m->conns = c;
        m->nconns++;
        ev_io_start(EV_A_ & c->rw);
        ev_timer_start(EV_A_ & c->tw);
    }
}

/* ---- Lifecycle --------------------------------------------------------- */

static int open_listener(const char *addr, int *port_out, struct cs_err *err)
{
    char host[256];
    int port;
    if (mhttp_parse_addr(addr, host, sizeof(host), &port, err))
        return -1;
    char ports[8];
    snprintf(ports, sizeof(ports), "%d", port);
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int gai = getaddrinfo(host[0] ? host : NULL, ports, &hints, &ai);
    if (gai) {
        cs_err_set(err, CS_EINVAL, "", "cannot resolve '%s': %s", host,
                   gai_strerror(gai));
        return -1;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    0);
    if (fd < 0) {
        freeaddrinfo(ai);
        cs_err_set(err, CS_EIO, "", "cannot open a socket for '%s': errno %d",
                   addr, errno);
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, 128)) {
        int e = errno;
        freeaddrinfo(ai);
        close(fd);
        cs_err_set(err, CS_EIO, "", "cannot listen on '%s': errno %d", addr,
                   e);
        return -1;
    }
    freeaddrinfo(ai);
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    *port_out = port;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET)
            *port_out = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        else if (ss.ss_family == AF_INET6)
            *port_out = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    return fd;
}

struct mhttp *mhttp_new(struct ev_loop *loop, const struct mhttp_opts *o,
                        struct cs_err *err)
{
    if (!settings.on_message_complete)
        init_settings();
    int port = 0;
    int fd = open_listener(o->addr, &port, err);
    if (fd < 0)
        return NULL;
    struct mhttp *m = xcalloc(1, sizeof(*m));
    m->loop = loop;
    m->o = *o;
    m->o.addr = NULL; /* borrowed: not kept */
    if (m->o.timeout_ms <= 0)
        m->o.timeout_ms = 5000;
    if (m->o.max_header == 0)
        m->o.max_header = 8192;
    if (m->o.max_conns <= 0)
        m->o.max_conns = 64;
    if (m->o.route_timeout_ms <= 0)
        m->o.route_timeout_ms = 30000;
    m->fd = fd;
    m->port = port;
    ev_io_init(&m->accept_w, on_accept, fd, EV_READ);
    m->accept_w.data = m;
    ev_io_start(loop, &m->accept_w);
    return m;
}

void mhttp_reply(struct mhttp_req *r, int status, const char *ctype,
                 const char *extra, const char *body, size_t len)
{
    struct mconn *c = r->c;
    free(r);
    if (!c)
        return;
    c->app = NULL;
    respond(c, status, ctype, extra, body ? body : "", body ? len : 0,
            c->parser.method == HTTP_HEAD);
}

void mhttp_free(struct mhttp *m)
{
    if (!m)
        return;
    ev_io_stop(m->loop, &m->accept_w);
    close(m->fd);
    while (m->conns)
        conn_close(m->conns);
    free(m);
}

int mhttp_port(const struct mhttp *m)
{
    return m->port;
}
