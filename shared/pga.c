/*
 * pga.c - non-blocking libpq on libev; see pga.h.
 *
 * States: DOWN (waiting to reconnect), CONNECTING (PQconnectPoll driven by
 * the socket), READY. One query runs at a time; the rest wait in a FIFO.
 * A query or connect that passes its deadline resets the connection: its
 * state is unknown then, and a fresh one is cheaper to reason about.
 */
#include "pga.h"
#include "log.h"

#include <stdlib.h>
#include <string.h>

#define RETRY_S 1.0

struct pq {
    char *sql;
    int nparams;
    char **params;
    pga_cb *cb;
    void *arg;
    bool answered;             /* its callback has run */
    struct pq *next;
};

enum pga_state { PGA_DOWN, PGA_CONNECTING, PGA_READY };

struct pga {
    struct ev_loop *loop;
    char *url;
    int timeout_ms;
    PGconn *conn;
    enum pga_state state;
    ev_io io;
    ev_timer timer;            /* deadline, or the reconnect wait */
    ev_idle kick;              /* runs callbacks of queries failed early */
    struct pq *head, *tail, *cur;
    bool closing;
};

static void pga_connect(struct pga *p);
static void pga_next(struct pga *p);

static void pq_free(struct pq *q)
{
    free(q->sql);
    for (int i = 0; i < q->nparams; i++)
        free(q->params[i]);
    free(q->params);
    free(q);
}

static void pq_finish(struct pq *q, int rc, const PGresult *res)
{
    if (!q->answered)
        q->cb(rc, res, q->arg);
    pq_free(q);
}

static void fail_all(struct pga *p, int rc)
{
    struct pq *q = p->cur;
    p->cur = NULL;
    if (q)
        pq_finish(q, rc, NULL);
    while ((q = p->head)) {
        p->head = q->next;
        if (!p->head)
            p->tail = NULL;
        pq_finish(q, rc, NULL);
    }
}

static void on_retry(EV_P_ ev_timer *w, int revents)
{
    CS_UNUSED(loop);
    CS_UNUSED(revents);
    pga_connect(w->data);
}

static void go_down(struct pga *p, const char *why)
{
    if (p->state != PGA_DOWN)
        log_warn("postgres_down", LOG_S("err", why));
    ev_io_stop(p->loop, &p->io);
    ev_timer_stop(p->loop, &p->timer);
    if (p->conn)
        PQfinish(p->conn);
    p->conn = NULL;
    p->state = PGA_DOWN;
    fail_all(p, CS_EIO);
    if (!p->closing) {
        ev_timer_init(&p->timer, on_retry, RETRY_S, 0.0);
        ev_timer_start(p->loop, &p->timer);
    }
}

static void on_deadline(EV_P_ ev_timer *w, int revents)
{
    CS_UNUSED(loop);
    CS_UNUSED(revents);
    struct pga *p = w->data;
    struct pq *q = p->cur;
    p->cur = NULL;
    if (q)
        pq_finish(q, CS_ETIMEDOUT, NULL);
    go_down(p, p->state == PGA_CONNECTING ? "connect timed out"
                                          : "query timed out");
}

static void arm(struct pga *p, int events)
{
    ev_io_stop(p->loop, &p->io);
    ev_io_set(&p->io, PQsocket(p->conn), events);
    ev_io_start(p->loop, &p->io);
}

static void start_deadline(struct pga *p)
{
    ev_timer_stop(p->loop, &p->timer);
    ev_timer_init(&p->timer, on_deadline, p->timeout_ms / 1000.0, 0.0);
    ev_timer_start(p->loop, &p->timer);
}

static void poll_connect(struct pga *p)
{
    switch (PQconnectPoll(p->conn)) {
    case PGRES_POLLING_READING:
        arm(p, EV_READ);
        return;
    case PGRES_POLLING_WRITING:
        arm(p, EV_WRITE);
        return;
    case PGRES_POLLING_OK:
        ev_timer_stop(p->loop, &p->timer);
        if (PQsetnonblocking(p->conn, 1) != 0) {
            go_down(p, "cannot set non-blocking");
            return;
        }
        p->state = PGA_READY;
        arm(p, EV_READ);
        log_info("postgres_connected");
        pga_next(p);
        return;
    default:
        go_down(p, PQerrorMessage(p->conn));
        return;
    }
}

static void read_results(struct pga *p)
{
    if (!PQconsumeInput(p->conn)) {
        go_down(p, PQerrorMessage(p->conn));
        return;
    }
    while (p->cur && !PQisBusy(p->conn)) {
        PGresult *r = PQgetResult(p->conn);
        struct pq *q = p->cur;
        if (!r) {
            /* The query is over; an error was reported already. */
            p->cur = NULL;
            ev_timer_stop(p->loop, &p->timer);
            pq_finish(q, 0, NULL);
            pga_next(p);
            return;
        }
        ExecStatusType st = PQresultStatus(r);
        if (!q->answered) {
            bool ok = st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK;
            q->answered = true; /* later results are drained */
            q->cb(ok ? 0 : CS_EIO, r, q->arg);
        }
        PQclear(r);
    }
}

static void on_io(EV_P_ ev_io *w, int revents)
{
    CS_UNUSED(loop);
    struct pga *p = w->data;
    if (p->state == PGA_CONNECTING) {
        poll_connect(p);
        return;
    }
    if (revents & EV_WRITE) {
        int f = PQflush(p->conn);
        if (f < 0) {
            go_down(p, PQerrorMessage(p->conn));
            return;
        }
        if (f == 0)
            arm(p, EV_READ);
    }
    if (revents & EV_READ)
        read_results(p);
}

static void pga_next(struct pga *p)
{
    if (p->state != PGA_READY || p->cur || !p->head)
        return;
    struct pq *q = p->head;
    p->head = q->next;
    if (!p->head)
        p->tail = NULL;
    p->cur = q;
    if (!PQsendQueryParams(p->conn, q->sql, q->nparams, NULL,
                           (const char *const *)q->params, NULL, NULL, 0)) {
        go_down(p, PQerrorMessage(p->conn));
        return;
    }
    start_deadline(p);
    int f = PQflush(p->conn);
    if (f < 0) {
        go_down(p, PQerrorMessage(p->conn));
        return;
    }
    arm(p, f ? EV_READ | EV_WRITE : EV_READ);
}

static void pga_connect(struct pga *p)
{
    ev_timer_stop(p->loop, &p->timer);
    p->conn = PQconnectStart(p->url);
    if (!p->conn || PQstatus(p->conn) == CONNECTION_BAD) {
        go_down(p, p->conn ? PQerrorMessage(p->conn) : "out of memory");
        return;
    }
    p->state = PGA_CONNECTING;
    start_deadline(p);
    arm(p, EV_WRITE);
}

/* Queries queued while the connection is down fail on the next iteration,
 * so that no callback runs inside pga_query. */
static void on_kick(EV_P_ ev_idle *w, int revents)
{
    CS_UNUSED(revents);
    struct pga *p = w->data;
    ev_idle_stop(EV_A_ w);
    if (p->state == PGA_DOWN)
        fail_all(p, CS_EIO);
}

struct pga *pga_new(struct ev_loop *loop, const char *url, int timeout_ms)
{
    struct pga *p = xcalloc(1, sizeof(*p));
    p->loop = loop;
    p->url = xstrdup(url);
    p->timeout_ms = timeout_ms;
    ev_init(&p->io, on_io);
    p->io.data = p;
    ev_init(&p->timer, on_retry);
    p->timer.data = p;
    ev_idle_init(&p->kick, on_kick);
    p->kick.data = p;
    pga_connect(p);
    return p;
}

void pga_free(struct pga *p)
{
    if (!p)
        return;
    p->closing = true;
    ev_io_stop(p->loop, &p->io);
    ev_timer_stop(p->loop, &p->timer);
    ev_idle_stop(p->loop, &p->kick);
    fail_all(p, CS_ECANCELED);
    if (p->conn)
        PQfinish(p->conn);
    free(p->url);
    free(p);
}

bool pga_ready(const struct pga *p)
{
    return p->state == PGA_READY && PQstatus(p->conn) == CONNECTION_OK;
}

bool pga_idle(const struct pga *p)
{
    return !p->cur && !p->head;
}

void pga_query(struct pga *p, const char *sql, int nparams,
               const char *const *params, pga_cb *cb, void *arg)
{
    struct pq *q = xcalloc(1, sizeof(*q));
    q->sql = xstrdup(sql);
    q->nparams = nparams;
    q->params = xcalloc((size_t)(nparams ? nparams : 1), sizeof(char *));
    for (int i = 0; i < nparams; i++)
        q->params[i] = params[i] ? xstrdup(params[i]) : NULL;
    q->cb = cb;
    q->arg = arg;
    if (p->tail)
        p->tail->next = q;
    else
        p->head = q;
    p->tail = q;
    if (p->state == PGA_DOWN)
        ev_idle_start(p->loop, &p->kick);
    else
        pga_next(p);
}
