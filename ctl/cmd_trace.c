/*
 * cmd_trace.c - callsyncctl trace (everything that happened to one call)
 * and connections show (one connection's health and sync stats).
 *
 * A call's jobs are found the way ingest made them: the job id of (call,
 * connection) is cs_job_id(call_id, connection_id) and its shard
 * cs_shard_of(agent_id, CALLSYNC_SHARDS) (shared/norm.h), so trace
 * computes the id for every candidate connection (the agent's with
 * --agent, one with --connection, else all) and reads the hashes that
 * exist. Jobs named only in the sync log (an outbound call's job has a
 * random id) are looked up too.
 */
#include "ctl.h"
#include "norm.h"
#include "redact.h"

#include <stdlib.h>
#include <string.h>

#define CHUNK 1000
#define DEAD_PAGE 500

struct tjob {
    char job_id[136];
    char conn[40];
    char agent[40];
    char type[40];
    unsigned shard;
    json_t *hash;              /* its fields, or NULL when it has none */
    json_t *dead_ids;          /* dead letters of the job */
};

struct tjobs {
    struct tjob *v;
    size_t n, cap;
};

static struct tjob *tjob_add(struct tjobs *t, const char *job_id,
                             const char *conn, const char *agent,
                             const char *type, unsigned nshards)
{
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->v[i].job_id, job_id) == 0 &&
            strcmp(t->v[i].conn, conn) == 0)
            return NULL;
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 64;
        t->v = xrealloc(t->v, t->cap * sizeof(*t->v));
    }
    struct tjob *j = &t->v[t->n++];
    memset(j, 0, sizeof(*j));
    snprintf(j->job_id, sizeof(j->job_id), "%s", job_id);
    snprintf(j->conn, sizeof(j->conn), "%s", conn);
    snprintf(j->agent, sizeof(j->agent), "%s", agent);
    snprintf(j->type, sizeof(j->type), "%s", type);
    j->shard = cs_shard_of(agent, nshards);
    return j;
}

static void tjobs_free(struct tjobs *t)
{
    for (size_t i = 0; i < t->n; i++) {
        json_decref(t->v[i].hash);
        json_decref(t->v[i].dead_ids);
    }
    free(t->v);
}

/* HGETALL the hashes of jobs [from, n), pipelined. */
static int read_hashes(struct ctl *ctl, struct tjobs *t, size_t from)
{
    for (size_t at = from; at < t->n; at += CHUNK) {
        size_t end = at + CHUNK < t->n ? at + CHUNK : t->n;
        for (size_t i = at; i < end; i++)
            redisAppendCommand(ctl->redis, "HGETALL cs:{%u}:job:%s",
                               t->v[i].shard, t->v[i].job_id);
        for (size_t i = at; i < end; i++) {
            redisReply *r = NULL;
            if (redisGetReply(ctl->redis, (void **)&r) != REDIS_OK || !r)
                return ctl_fail(CTL_FAIL, "Redis: %s",
                                ctl->redis->errstr[0] ? ctl->redis->errstr
                                                      : "connection lost");
            if (r->type == REDIS_REPLY_ARRAY && r->elements > 0) {
                json_t *h = json_object();
                for (size_t k = 0; k + 1 < r->elements; k += 2)
                    if (r->element[k]->str && r->element[k + 1]->str)
                        json_object_set_new(h, r->element[k]->str,
                                            json_string(
                                                r->element[k + 1]->str));
                t->v[i].hash = h;
            }
            freeReplyObject(r);
        }
    }
    return CTL_OK;
}

/* Find the dead letters of the dead jobs, one pass per shard. */
static int find_dead(struct ctl *ctl, struct tjobs *t)
{
    for (int s = 0; s < ctl->cfg.shards; s++) {
        json_t *want = json_object();
        for (size_t i = 0; i < t->n; i++) {
            const char *st = json_string_value(json_object_get(t->v[i].hash,
                                                               "state"));
            if (t->v[i].shard == (unsigned)s && st &&
                strcmp(st, "dead") == 0)
                json_object_set_new(want, t->v[i].job_id,
                                    json_integer((json_int_t)i));
        }
        if (json_object_size(want) == 0) {
            json_decref(want);
            continue;
        }
        char key[32], start[64] = "-";
        snprintf(key, sizeof(key), "cs:{%d}:dead", s);
        for (;;) {
            redisReply *r = ctl_rcmd(ctl, "XRANGE %s %s + COUNT %d", key,
                                     start, DEAD_PAGE);
            if (!r || r->type != REDIS_REPLY_ARRAY) {
                freeReplyObject(r);
                json_decref(want);
                return CTL_FAIL;
            }
            size_t n = r->elements;
            for (size_t i = 0; i < n; i++) {
                const char *id = ctl_rfield(r->element[i]->element[1],
                                            "job_id");
                json_t *at = id ? json_object_get(want, id) : NULL;
                if (!at)
                    continue;
                struct tjob *j = &t->v[json_integer_value(at)];
                if (!j->dead_ids)
                    j->dead_ids = json_array();
                json_array_append_new(
                    j->dead_ids, json_string(r->element[i]->element[0]->str));
            }
            if (n)
                snprintf(start, sizeof(start), "(%s",
                         r->element[n - 1]->element[0]->str);
            freeReplyObject(r);
            if (n < DEAD_PAGE)
                break;
        }
        json_decref(want);
    }
    return CTL_OK;
}

/* The job as JSON: identity, where it is, state, steps; redacted. */
static json_t *tjob_json(struct ctl *ctl, const struct tjob *j)
{
    json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:i}", "job_id", j->job_id,
                          "connection_id", j->conn, "provider", j->type,
                          "agent_id", j->agent, "shard", (int)j->shard);
    json_t *steps = json_object(), *inflight = json_object(),
           *fields = json_object();
    const char *k;
    json_t *v;
    json_object_foreach(j->hash, k, v) {
        const char *s = json_string_value(v);
        if (strncmp(k, "step:", 5) == 0) {
            json_t *p = json_loads(s, JSON_DECODE_ANY, NULL);
            json_object_set_new(steps, k + 5, p ? p : json_string(s));
        } else if (strncmp(k, "inflight:", 9) == 0) {
            json_object_set_new(inflight, k + 9, json_string(s));
        } else if (strcmp(k, "last_error") == 0) {
            json_t *p = json_loads(s, JSON_DECODE_ANY, NULL);
            json_object_set_new(fields, k, p ? p : json_string(s));
        } else {
            json_object_set_new(fields, k, json_string(s));
        }
    }
    json_object_update(o, fields);
    json_decref(fields);
    json_object_set_new(o, "steps_done", steps);
    json_object_set_new(o, "in_flight", inflight);
    const char *st = json_string_value(json_object_get(j->hash, "state"));
    char where[256] = "";
    if (!st)
        snprintf(where, sizeof(where), "unknown");
    else if (strcmp(st, "queued") == 0)
        snprintf(where, sizeof(where), "stream cs:{%u}:q:%s", j->shard,
                 j->type);
    else if (strcmp(st, "retrying") == 0 || strcmp(st, "deferred") == 0)
        snprintf(where, sizeof(where), "cs:{%u}:delayed", j->shard);
    else if (strcmp(st, "parked") == 0)
        snprintf(where, sizeof(where), "cs:{%u}:parked:%s", j->shard,
                 j->conn);
    else if (strcmp(st, "dead") == 0)
        snprintf(where, sizeof(where), "cs:{%u}:dead", j->shard);
    else if (strcmp(st, "done") == 0)
        snprintf(where, sizeof(where), "finished: nothing left to run");
    else
        snprintf(where, sizeof(where), "nothing queued (%s)", st);
    json_object_set_new(o, "where", json_string(where));
    json_object_set_new(o, "dead_letters",
                        j->dead_ids ? json_incref(j->dead_ids)
                                    : json_array());
    char **secrets = ctl_conn_secrets(ctl, j->conn);
    struct redact_ctx rx = {(const char *const *)secrets};
    redact_json(&rx, o);
    ctl_secrets_free(secrets);
    return o;
}

static const char *jstr(json_t *o, const char *k, const char *dflt)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : dflt;
}

static void print_tjob(json_t *o)
{
    printf("\njob %s  %s  connection %s  shard %lld\n",
           jstr(o, "job_id", ""), jstr(o, "provider", ""),
           jstr(o, "connection_id", ""),
           (long long)json_integer_value(json_object_get(o, "shard")));
    const char *st = jstr(o, "state", "-");
    const char *why = json_string_value(json_object_get(o, "dead_reason"));
    if (!why)
        why = json_string_value(json_object_get(o, "parked_reason"));
    printf("  %-11s %s%s%s%s\n", "state", st, why ? " (" : "",
           why ? why : "", why ? ")" : "");
    printf("  %-11s %s\n", "where", jstr(o, "where", "-"));
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(o, "dead_letters"), i, v)
        printf("  %-11s %s: callsyncctl dead show %s\n",
               i == 0 ? "dead letter" : "", json_string_value(v),
               json_string_value(v));
    printf("  %-11s attempt %s, deliveries %s, replays %s\n", "counts",
           jstr(o, "attempt", "0"), jstr(o, "deliveries", "0"),
           jstr(o, "replays", "0"));
    const char *times[] = {"due_at", "replayed_at", "finished_at",
                           "purged_at"};
    for (size_t k = 0; k < CS_ARRAY_LEN(times); k++)
        if (json_object_get(o, times[k]))
            printf("  %-11s %s\n", times[k], jstr(o, times[k], ""));
    const char *k;
    bool first = true;
    json_object_foreach(json_object_get(o, "steps_done"), k, v) {
        char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        printf("  %-11s %s %s\n", first ? "steps done" : "", k, s);
        free(s);
        first = false;
    }
    if (first)
        printf("  %-11s none\n", "steps done");
    first = true;
    json_object_foreach(json_object_get(o, "in_flight"), k, v) {
        printf("  %-11s %s (marked in attempt %s)\n", first ? "in flight" : "",
               k, json_string_value(v));
        first = false;
    }
    json_t *le = json_object_get(o, "last_error");
    if (le && !json_is_null(le)) {
        char *s = json_dumps(le, JSON_COMPACT | JSON_ENCODE_ANY);
        printf("  %-11s %s\n", "last error", s);
        free(s);
    }
}

static char *cell(json_t *v)
{
    if (json_is_string(v))
        return xstrdup(json_string_value(v));
    if (!v || json_is_null(v))
        return xstrdup("-");
    return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
}

/* An array of flat objects as an aligned table, columns in key order. */
static void print_rows(json_t *rows)
{
    json_t *first = json_array_get(rows, 0);
    size_t nf = json_object_size(first), nr = json_array_size(rows);
    int *w = xcalloc(nf ? nf : 1, sizeof(int));
    const char **names = xcalloc(nf ? nf : 1, sizeof(char *));
    const char *k;
    json_t *v;
    size_t c = 0;
    json_object_foreach(first, k, v) {
        names[c] = k;
        w[c] = (int)strlen(k);
        for (size_t r = 0; r < nr; r++) {
            char *s = cell(json_object_get(json_array_get(rows, r), k));
            if ((int)strlen(s) > w[c])
                w[c] = (int)strlen(s);
            free(s);
        }
        c++;
    }
    for (size_t r = 0; r <= nr; r++) {
        for (c = 0; c < nf; c++) {
            char *s = r == 0 ? xstrdup(names[c])
                             : cell(json_object_get(
                                   json_array_get(rows, r - 1), names[c]));
            if (c + 1 == nf)
                printf("%s\n", s);
            else
                printf("%-*s  ", w[c], s);
            free(s);
        }
    }
    free(w);
    free(names);
}

int ctl_trace(struct ctl *ctl, int argc, char **argv)
{
    static const char usage[] =
        "usage: callsyncctl trace CALL_ID [--agent ID] [--connection ID] "
        "[--json]\n\n"
        "Everything that happened to one call: each of its jobs in Redis\n"
        "(state, where it is now, attempts, step checkpoints, in-flight\n"
        "marks, last error, dead letters) and every step attempt in\n"
        "integration_sync_logs. Jobs are found by computing the job id of\n"
        "the call for each connection (of the agent with --agent, the one\n"
        "with --connection, else every connection). Secrets are redacted.\n"
        "--json prints {call_id, jobs: [...], sync_logs: [...]}.\n\n"
        "exit codes: 0 ok, 1 Redis or PostgreSQL failed, 2 usage, 3 nothing\n"
        "known about the call\n";
    const char *agent = NULL, *conn = NULL;
    const struct ctl_opt opts[] = {{"agent", &agent, NULL},
                                   {"connection", &conn, NULL}};
    const char *pos[1] = {NULL};
    int npos;
    PARSE(ctl, argc, argv, opts, CS_ARRAY_LEN(opts), pos, 1, &npos, usage);
    const char *call = pos[0];
    if (!call || !*call) {
        fputs(usage, stderr);
        return ctl_fail(CTL_USAGE, "trace needs a CALL_ID");
    }
    if (strlen(call) > 512)
        return ctl_fail(CTL_USAGE, "CALL_ID is longer than 512 bytes");
    if (agent && !ctl_is_uuid(agent))
        return ctl_fail(CTL_USAGE, "invalid --agent '%s'", agent);
    if (conn && !ctl_is_uuid(conn))
        return ctl_fail(CTL_USAGE, "invalid --connection '%s'", conn);
    int rc = ctl_db(ctl);
    if (rc || (rc = ctl_redis(ctl)) != CTL_OK)
        return rc;

    const char *cp[] = {agent, conn, call};
    PGresult *cands = ctl_query(
        ctl, "list connections",
        "SELECT id::text, agent_id::text, integration_type "
        "FROM integration_connections "
        "WHERE ($1::uuid IS NULL OR agent_id = $1) "
        "  AND ($2::uuid IS NULL OR id = $2)",
        2, cp);
    if (!cands)
        return CTL_FAIL;
    PGresult *logjobs = ctl_query(
        ctl, "read sync logs",
        "SELECT DISTINCT l.job_id, l.integration_connection_id::text, "
        " ic.agent_id::text, ic.integration_type "
        "FROM integration_sync_logs l JOIN integration_connections ic "
        "  ON ic.id = l.integration_connection_id "
        "WHERE l.call_id = $3 AND l.job_id IS NOT NULL "
        "  AND ($1::uuid IS NULL OR ic.agent_id = $1) "
        "  AND ($2::uuid IS NULL OR ic.id = $2)",
        3, cp);
    PGresult *logs = logjobs ? ctl_query(
        ctl, "read sync logs",
        "SELECT to_char(l.created_at AT TIME ZONE 'UTC', "
        "        'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS at, "
        " l.integration_connection_id AS connection_id, "
        " ic.integration_type AS type, l.job_id, l.operation_type AS step, "
        " l.status, l.attempt, l.http_status, l.duration_ms, "
        " l.error_message AS error "
        "FROM integration_sync_logs l LEFT JOIN integration_connections ic "
        "  ON ic.id = l.integration_connection_id "
        "WHERE l.call_id = $3 "
        "  AND ($1::uuid IS NULL OR ic.agent_id = $1) "
        "  AND ($2::uuid IS NULL OR l.integration_connection_id = $2) "
        "ORDER BY l.created_at, l.id",
        3, cp) : NULL;
    if (!logjobs || !logs) {
        PQclear(cands);
        if (logjobs)
            PQclear(logjobs);
        return CTL_FAIL;
    }

    struct tjobs t = {0};
    unsigned nshards = (unsigned)ctl->cfg.shards;
    for (int i = 0; i < PQntuples(cands); i++) {
        char id[33];
        cs_job_id(call, PQgetvalue(cands, i, 0), id);
        tjob_add(&t, id, PQgetvalue(cands, i, 0), PQgetvalue(cands, i, 1),
                 PQgetvalue(cands, i, 2), nshards);
    }
    for (int i = 0; i < PQntuples(logjobs); i++)
        tjob_add(&t, PQgetvalue(logjobs, i, 0), PQgetvalue(logjobs, i, 1),
                 PQgetvalue(logjobs, i, 2), PQgetvalue(logjobs, i, 3),
                 nshards);
    PQclear(cands);
    PQclear(logjobs);
    rc = read_hashes(ctl, &t, 0);
    if (rc == CTL_OK)
        rc = find_dead(ctl, &t);
    if (rc) {
        tjobs_free(&t);
        PQclear(logs);
        return rc;
    }
    json_t *jobs = json_array();
    for (size_t i = 0; i < t.n; i++)
        if (t.v[i].hash)
            json_array_append_new(jobs, tjob_json(ctl, &t.v[i]));
    tjobs_free(&t);
    json_t *rows = ctl_result_json(logs);
    redact_json(NULL, rows);
    int nlogs = PQntuples(logs);
    if (json_array_size(jobs) == 0 && nlogs == 0) {
        json_decref(jobs);
        json_decref(rows);
        PQclear(logs);
        return ctl_fail(CTL_NOTFOUND, "nothing is known about call '%s' "
                        "(no job in Redis, no sync log)", call);
    }
    if (ctl->json) {
        json_t *o = json_pack("{s:s,s:o,s:o}", "call_id", call, "jobs", jobs,
                              "sync_logs", rows);
        ctl_print_json(o);
        json_decref(o);
    } else {
        printf("call %s: %zu job%s in Redis, %d sync log row%s\n", call,
               json_array_size(jobs), json_array_size(jobs) == 1 ? "" : "s",
               nlogs, nlogs == 1 ? "" : "s");
        size_t i;
        json_t *j;
        json_array_foreach(jobs, i, j)
            print_tjob(j);
        if (nlogs) {
            printf("\nsync log (integration_sync_logs)\n");
            print_rows(rows);
        }
        json_decref(jobs);
        json_decref(rows);
    }
    PQclear(logs);
    return CTL_OK;
}

/* ---- connections show ---------------------------------------------------- */

static long long dead_of_connection(struct ctl *ctl, unsigned shard,
                                    const char *conn)
{
    char key[32], start[64] = "-";
    snprintf(key, sizeof(key), "cs:{%u}:dead", shard);
    long long n = 0;
    for (;;) {
        redisReply *r = ctl_rcmd(ctl, "XRANGE %s %s + COUNT %d", key, start,
                                 DEAD_PAGE);
        if (!r || r->type != REDIS_REPLY_ARRAY) {
            freeReplyObject(r);
            return -1;
        }
        size_t got = r->elements;
        for (size_t i = 0; i < got; i++) {
            const char *c = ctl_rfield(r->element[i]->element[1],
                                       "connection_id");
            if (c && strcasecmp(c, conn) == 0)
                n++;
        }
        if (got)
            snprintf(start, sizeof(start), "(%s",
                     r->element[got - 1]->element[0]->str);
        freeReplyObject(r);
        if (got < DEAD_PAGE)
            return n;
    }
}

int ctl_connections_show(struct ctl *ctl, int argc, char **argv)
{
    static const char usage[] =
        "usage: callsyncctl connections show CONNECTION_ID [--json]\n\n"
        "One connection: status, credentials present (never their values),\n"
        "token expiry, last sync, last error, sync stats from\n"
        "integration_sync_logs (all time: total, successful, failed, as in\n"
        "the seed's monitoring query; and the last 7 days with the success\n"
        "rate), and its jobs parked and dead in Redis (skipped with a\n"
        "warning when Redis is unreachable).\n\n"
        "exit codes: 0 ok, 1 PostgreSQL failed, 2 usage, 3 not found\n";
    const char *pos[1] = {NULL};
    int npos;
    PARSE(ctl, argc, argv, NULL, 0, pos, 1, &npos, usage);
    if (!pos[0]) {
        fputs(usage, stderr);
        return ctl_fail(CTL_USAGE, "connections show needs a CONNECTION_ID");
    }
    if (!ctl_is_uuid(pos[0]))
        return ctl_fail(CTL_USAGE, "invalid connection id '%s'", pos[0]);
    int rc = ctl_db(ctl);
    if (rc)
        return rc;
    const char *params[] = {pos[0]};
#define TS(col) "to_char(" col " AT TIME ZONE 'UTC', " \
                "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
    PGresult *r = ctl_query(
        ctl, "show connection",
        "SELECT ic.id, ic.agent_id, a.name AS agent_name, "
        " ic.organization_id, ic.integration_type AS type, "
        " ic.auth_type AS auth, ic.connection_status AS status, "
        " ic.is_active AS active, ic.sync_enabled, "
        " " TS("ic.token_expires_at") " AS token_expires_at, "
        " CASE WHEN ic.token_expires_at IS NULL THEN NULL "
        "      ELSE floor(extract(epoch FROM ic.token_expires_at - now()))"
        "           ::bigint END AS token_expires_in_s, "
        " " TS("ic.last_sync_at") " AS last_sync_at, ic.last_error, "
        " ic.access_token IS NOT NULL AS has_access_token, "
        " ic.refresh_token IS NOT NULL AS has_refresh_token, "
        " ic.api_key IS NOT NULL AS has_api_key, "
        " ic.webhook_url IS NOT NULL AS has_webhook_url, "
        " ic.webhook_secret IS NOT NULL AS has_webhook_secret, "
        " ic.instance_url, "
        " " TS("ic.created_at") " AS created_at, "
        " " TS("ic.updated_at") " AS updated_at, "
        " s.total_syncs, s.successful_syncs, s.failed_syncs, "
        " s.syncs_7d, s.failed_7d, "
        " ROUND(s.successful_7d::numeric / NULLIF(s.syncs_7d, 0) * 100, 2)"
        "   ::text AS success_rate_7d_percent, "
        " " TS("s.last_failure_at") " AS last_failure_at "
        "FROM integration_connections ic "
        "JOIN agents a ON a.id = ic.agent_id "
        "CROSS JOIN LATERAL ("
        " SELECT COUNT(isl.id) AS total_syncs, "
        "  COUNT(CASE WHEN isl.status = 'success' THEN 1 END) "
        "    AS successful_syncs, "
        "  COUNT(CASE WHEN isl.status = 'failed' THEN 1 END) "
        "    AS failed_syncs, "
        "  COUNT(isl.id) FILTER (WHERE isl.created_at > now() - "
        "    INTERVAL '7 days') AS syncs_7d, "
        "  COUNT(isl.id) FILTER (WHERE isl.status = 'success' AND "
        "    isl.created_at > now() - INTERVAL '7 days') AS successful_7d, "
        "  COUNT(isl.id) FILTER (WHERE isl.status = 'failed' AND "
        "    isl.created_at > now() - INTERVAL '7 days') AS failed_7d, "
        "  max(isl.created_at) FILTER (WHERE isl.status = 'failed') "
        "    AS last_failure_at "
        " FROM integration_sync_logs isl "
        " WHERE isl.integration_connection_id = ic.id) s "
        "WHERE ic.id = $1",
        1, params);
#undef TS
    if (!r)
        return CTL_FAIL;
    if (PQntuples(r) == 0) {
        PQclear(r);
        return ctl_fail(CTL_NOTFOUND, "connection '%s' not found", pos[0]);
    }
    json_t *rows = ctl_result_json(r);
    json_t *o = json_incref(json_array_get(rows, 0));
    json_decref(rows);
    /* No secret column is selected; the last error is free text. */
    char **secrets = ctl_conn_secrets(ctl, pos[0]);
    struct redact_ctx rx = {(const char *const *)secrets};
    redact_json(&rx, json_object_get(o, "last_error"));
    ctl_secrets_free(secrets);
    unsigned shard = cs_shard_of(jstr(o, "agent_id", ""),
                                 (unsigned)ctl->cfg.shards);
    json_object_set_new(o, "shard", json_integer(shard));
    long long parked = -1, dead = -1;
    if (ctl_redis(ctl) == CTL_OK) {
        redisReply *x = ctl_rcmd(ctl, "LLEN cs:{%u}:parked:%s", shard,
                                 pos[0]);
        if (x && x->type == REDIS_REPLY_INTEGER)
            parked = x->integer;
        freeReplyObject(x);
        dead = dead_of_connection(ctl, shard, pos[0]);
    }
    if (parked < 0 || dead < 0)
        ctl_warn("Redis unavailable: parked and dead jobs not counted");
    json_object_set_new(o, "jobs_parked",
                        parked >= 0 ? json_integer(parked) : json_null());
    json_object_set_new(o, "jobs_dead",
                        dead >= 0 ? json_integer(dead) : json_null());
    if (ctl->json) {
        ctl_print_json(o);
    } else {
        const char *k;
        json_t *v;
        json_object_foreach(o, k, v) {
            char *s = json_is_string(v) ? NULL
                      : json_is_true(v) ? xstrdup("yes")
                      : json_is_false(v) ? xstrdup("no")
                      : json_is_null(v)  ? xstrdup("-")
                                         : json_dumps(v, JSON_ENCODE_ANY);
            printf("%-24s %s\n", k, s ? s : json_string_value(v));
            free(s);
        }
    }
    json_decref(o);
    PQclear(r);
    return CTL_OK;
}
