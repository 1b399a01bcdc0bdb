/*
 * conns.c - the worker's cache of connections: type, status, config and
 * opened credentials, loaded from PostgreSQL without blocking, kept for a
 * short time and dropped whenever callsyncctl announces a change.
 */
#include "worker.h"
#include "log.h"

#include <stdlib.h>
#include <string.h>

#define TTL_MS 30000

struct wconn_wait {
    wconn_cb *cb;
    void *arg;
    struct wconn_wait *next;
};

struct wconn_slot {
    char *id;
    struct wconn *conn;        /* NULL while loading or when not found */
    bool loading;
    bool missing;
    unsigned gen;              /* bumped by every invalidation */
    int64_t loaded_ms;
    struct wconn_wait *waits;
    struct wconn_slot *next;
};

struct load {
    struct wrk *w;
    char *id;
    unsigned gen;              /* the slot's generation when it started */
};

static void start_load(struct wrk *w, struct wconn_slot *s);

static void conn_free(struct wconn *c)
{
    free(c->id);
    free(c->type);
    free(c->status);
    free(c->auth_type);
    json_decref(c->config);
    for (size_t i = 0; i < CS_ARRAY_LEN(c->owned); i++) {
        if (c->owned[i]) {
            memset(c->owned[i], 0, strlen(c->owned[i]));
            free(c->owned[i]);
        }
    }
    free(c);
}

void wconn_put(struct wrk *w, struct wconn *c)
{
    CS_UNUSED(w);
    if (c && --c->refs == 0)
        conn_free(c);
}

static struct wconn_slot *find_slot(struct wrk *w, const char *id)
{
    for (struct wconn_slot *s = w->conns; s; s = s->next)
        if (strcmp(s->id, id) == 0)
            return s;
    return NULL;
}

static char *open_col(struct wrk *w, const PGresult *r, int col,
                      const char *id)
{
    if (PQgetisnull(r, 0, col))
        return NULL;
    const char *v = PQgetvalue(r, 0, col);
    if (strncmp(v, "v1:", 3) != 0)
        return xstrdup(v); /* not a secret column (URLs) */
    struct cs_err err = {0};
    size_t n;
    char *plain = w->kr ? cs_open(w->kr, v, &n, &err) : NULL;
    if (!plain)
        log_error("secret_unreadable", LOG_S("connection", id),
                  LOG_S("err", w->kr ? err.msg : "no encryption keys"));
    return plain;
}

static void on_loaded(int rc, const PGresult *r, void *arg)
{
    struct load *ld = arg;
    struct wrk *w = ld->w;
    struct wconn_slot *s = find_slot(w, ld->id);
    if (s && rc == 0 && ld->gen != s->gen) {
        /* Invalidated while the query ran (a token was refreshed, the
         * connection changed): the answer may predate the change, so
         * the waiters get a fresh one. */
        free(ld->id);
        free(ld);
        start_load(w, s);
        return;
    }
    struct wconn *c = NULL;
    int result = rc ? CS_EIO : 0;
    if (!rc && r && PQntuples(r) == 1) {
        c = xcalloc(1, sizeof(*c));
        c->id = xstrdup(ld->id);
        c->type = xstrdup(PQgetvalue(r, 0, 0));
        c->status = xstrdup(PQgetvalue(r, 0, 1));
        c->active = strcmp(PQgetvalue(r, 0, 2), "t") == 0;
        json_error_t je;
        c->config = json_loads(PQgetvalue(r, 0, 3), 0, &je);
        if (!json_is_object(c->config)) {
            json_decref(c->config);
            c->config = json_object();
        }
        c->owned[0] = open_col(w, r, 4, ld->id);
        c->owned[1] = open_col(w, r, 5, ld->id);
        c->owned[2] = open_col(w, r, 6, ld->id);
        c->owned[3] = open_col(w, r, 7, ld->id);
        c->owned[4] = open_col(w, r, 8, ld->id);
        c->auth_type = xstrdup(PQgetvalue(r, 0, 9));
        c->expires_ms = PQgetisnull(r, 0, 10)
                            ? 0
                            : strtoll(PQgetvalue(r, 0, 10), NULL, 10);
        c->creds.access_token = c->owned[0];
        c->creds.api_key = c->owned[1];
        c->creds.api_secret = c->owned[2];
        c->creds.webhook_url = c->owned[3];
        c->creds.instance_url = c->owned[4];
        c->refs = 1;
        c->loaded_ms = cs_mono_ms();
    } else if (!rc) {
        result = CS_ENOENT;
    }
    if (s) {
        s->loading = false;
        s->conn = c;
        s->missing = result == CS_ENOENT;
        s->loaded_ms = cs_mono_ms();
        struct wconn_wait *q = s->waits;
        s->waits = NULL;
        while (q) {
            struct wconn_wait *next = q->next;
            if (c)
                c->refs++;
            q->cb(result, c, q->arg);
            free(q);
            q = next;
        }
        if (result == CS_EIO) {
            /* Never serve a failure from the cache. */
            s->loaded_ms = 0;
        }
    } else if (c) {
        wconn_put(w, c);
    }
    free(ld->id);
    free(ld);
}

void wconn_get(struct wrk *w, const char *id, wconn_cb *cb, void *arg)
{
    struct wconn_slot *s = find_slot(w, id);
    int64_t now = cs_mono_ms();
    if (!s) {
        s = xcalloc(1, sizeof(*s));
        s->id = xstrdup(id);
        s->next = w->conns;
        w->conns = s;
    }
    struct wconn_wait *q = xmalloc(sizeof(*q));
    q->cb = cb;
    q->arg = arg;
    q->next = s->waits;
    s->waits = q;
    if (s->loading)
        return;
    if (s->loaded_ms && now - s->loaded_ms < TTL_MS &&
        (s->conn || s->missing)) {
        /* Cached: answer the waiter just added. */
        s->waits = q->next;
        if (s->conn)
            s->conn->refs++;
        cb(s->conn ? 0 : CS_ENOENT, s->conn, arg);
        free(q);
        return;
    }
    if (s->conn) {
        wconn_put(w, s->conn);
        s->conn = NULL;
    }
    start_load(w, s);
}

static void start_load(struct wrk *w, struct wconn_slot *s)
{
    s->loading = true;
    struct load *ld = xmalloc(sizeof(*ld));
    ld->w = w;
    ld->id = xstrdup(s->id);
    ld->gen = s->gen;
    const char *params[] = {s->id};
    pga_query(w->pg,
              "SELECT integration_type, connection_status, is_active, "
              "config::text, access_token, api_key, api_secret, webhook_url, "
              "instance_url, auth_type, "
              "(extract(epoch FROM token_expires_at) * 1000)::bigint "
              "FROM integration_connections WHERE id = $1::uuid",
              1, params, on_loaded, ld);
}

void wconn_invalidate_all(struct wrk *w)
{
    for (struct wconn_slot *s = w->conns; s; s = s->next) {
        s->gen++;
        s->loaded_ms = 0;
    }
}

void wconn_invalidate(struct wrk *w, const char *id)
{
    struct wconn_slot *s = find_slot(w, id);
    if (s) {
        s->gen++;
        s->loaded_ms = 0;
    }
}

bool wconn_refreshable(const struct wconn *c)
{
    return c && c->auth_type &&
           (strcmp(c->auth_type, "oauth") == 0 ||
            strcmp(c->auth_type, "jwt") == 0) &&
           oauth_provider_for_type(c->type) >= 0;
}

/* Retell places outbound calls with the fleet's Retell API key (the same
 * key Retell signs its webhooks with): the first of CALLSYNC_RETELL_API_KEYS.
 * The connection is built once and held by the worker. */
struct wconn *wconn_fleet(struct wrk *w, const char *provider)
{
    if (strcmp(provider, "retell") != 0)
        return NULL;
    if (!w->fleet_retell) {
        const char *keys = w->cfg->retell_api_keys;
        size_t n = keys ? strcspn(keys, ",") : 0;
        while (n > 0 && keys[n - 1] == ' ')
            n--;
        if (n == 0)
            return NULL;
        struct wconn *c = xcalloc(1, sizeof(*c));
        c->id = xstrdup("retell");
        c->type = xstrdup("retell");
        c->status = xstrdup("connected");
        c->active = true;
        c->config = json_object();
        c->owned[0] = xstrndup(keys, n);
        c->creds.api_key = c->owned[0];
        c->refs = 1;
        w->fleet_retell = c;
    }
    w->fleet_retell->refs++;
    return w->fleet_retell;
}

void wconn_free_all(struct wrk *w)
{
    if (w->fleet_retell) {
        wconn_put(w, w->fleet_retell);
        w->fleet_retell = NULL;
    }
    struct wconn_slot *s = w->conns, *next;
    for (; s; s = next) {
        next = s->next;
        if (s->conn)
            wconn_put(w, s->conn);
        struct wconn_wait *q = s->waits;
        while (q) {
            struct wconn_wait *qn = q->next;
            q->cb(CS_ECANCELED, NULL, q->arg);
            free(q);
            q = qn;
        }
        free(s->id);
        free(s);
    }
    w->conns = NULL;
}
