/*
 * tools.c - the live-call tools: Retell custom functions that the voice
 * agent calls while the caller waits (POST /tools/retell, or
 * /tools/retell/<function>).
 *
 * Retell posts {"name": <function>, "call": <the call so far>, "args":
 * {...}} signed like its webhooks (X-Retell-Signature) and reads the 2xx
 * body to the model. Order of checks: signature -> JSON -> function and
 * arguments (400 naming the field) -> the agent by call.agent_id (404) ->
 * its calendar connection. Ingest does no provider I/O: it writes one
 * live request to the shard's cs:{S}:live stream and answers when a
 * worker's reply reaches this loop's reply list (live.c), or with a
 * spoken fallback when CALLSYNC_LIVE_DEADLINE_MS passes first.
 *
 * Functions:
 *   check_availability  date (YYYY-MM-DD) or from and to (RFC 3339 or a
 *                       date), optional timezone (IANA), optional
 *                       duration_minutes (5-1440)
 *   book_appointment    appointment_date, appointment_time (HH:MM),
 *                       optional duration_minutes, timezone,
 *                       customer_name, customer_phone, customer_email,
 *                       notes
 */
#include "ingest.h"
#include "log.h"
#include "sig.h"
#include "calendar.h"
#include "when.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What the caller hears when no answer can be had in time. */
#define FALLBACK_MSG                                                         \
    "I can't reach the calendar right now, so I can't confirm a time on "   \
    "this call. I've noted your request and someone will call you back to " \
    "confirm a time."
#define NO_CALENDAR_MSG                                                      \
    "Booking isn't available on this line, so I can't check the calendar "  \
    "or book a time myself. I've noted your request and someone will call " \
    "you back to set up a time."

/* The longest string argument accepted. */
#define ARG_MAX 500

struct tctx {
    struct ing_conn *c;
    char *fn;
    json_t *call;              /* what the worker gets of the call */
    json_t *args;
    char *retell_agent;
};

static void tctx_free(struct tctx *x)
{
    free(x->fn);
    json_decref(x->call);
    json_decref(x->args);
    free(x->retell_agent);
    free(x);
}

static void answer_message(struct ing_conn *c, const char *status,
                           const char *msg)
{
    ing_respond_json(c, 200, json_pack("{s:b,s:s,s:s}", "ok", 0, "status",
                                       status, "message", msg));
}

/* ---- Arguments ----------------------------------------------------------- */

static int bad(struct cs_err *err, const char *field, const char *msg)
{
    return cs_err_set(err, CS_EINVAL, field, "%s", msg);
}

static bool is_date(const char *s)
{
    int y, m, d;
    char tail;
    if (!s || strlen(s) != 10 || s[4] != '-' || s[7] != '-' ||
        sscanf(s, "%4d-%2d-%2d%c", &y, &m, &d, &tail) != 3)
        return false;
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30,
                                31};
    if (y < 1970 || y > 9999 || m < 1 || m > 12 || d < 1 || d > mdays[m - 1])
        return false;
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return !(m == 2 && d == 29 && !leap);
}

static bool is_time(const char *s)
{
    int h, m;
    size_t n = s ? strlen(s) : 0;
    if ((n != 5 && n != 8) || s[2] != ':' || (n == 8 && s[5] != ':'))
        return false;
    for (size_t i = 0; i < n; i++)
        if (i != 2 && i != 5 && (s[i] < '0' || s[i] > '9'))
            return false;
    h = (s[0] - '0') * 10 + (s[1] - '0');
    m = (s[3] - '0') * 10 + (s[4] - '0');
    return h < 24 && m < 60;
}

/* An optional string argument: absent, or a string of 1..ARG_MAX. */
static int opt_string(const json_t *args, const char *name, const char *field,
                      struct cs_err *err)
{
    const json_t *v = json_object_get(args, name);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v) || json_string_length(v) > ARG_MAX)
        return bad(err, field, "must be a string of at most 500 characters");
    return 0;
}

static int check_tz(const json_t *args, const char *field, struct cs_err *err)
{
    const json_t *v = json_object_get(args, "timezone");
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v) || !when_tz_known(json_string_value(v)))
        return bad(err, field, "must be an IANA time zone (America/Chicago)");
    return 0;
}

static int check_duration(const json_t *args, const char *field,
                          struct cs_err *err)
{
    const json_t *v = json_object_get(args, "duration_minutes");
    if (!v || json_is_null(v))
        return 0;
    long long n = -1;
    if (json_is_integer(v)) {
        n = json_integer_value(v);
    } else if (json_is_string(v)) {
        char *end;
        const char *s = json_string_value(v);
        n = strtoll(s, &end, 10);
        if (end == s || *end)
            n = -1;
    }
    if (n < 5 || n > 1440)
        return bad(err, field, "must be a whole number of minutes, 5 to 1440");
    return 0;
}

static bool date_or_time(const char *s)
{
    int64_t ms;
    return s && (is_date(s) || cs_parse_rfc3339(s, &ms));
}

static int check_availability_args(const json_t *args, struct cs_err *err)
{
    const json_t *date = json_object_get(args, "date");
    const json_t *from = json_object_get(args, "from");
    const json_t *to = json_object_get(args, "to");
    if (date && !json_is_null(date)) {
        if (!is_date(json_string_value(date)))
            return bad(err, "args.date", "must be a date (YYYY-MM-DD)");
    } else if ((from && !json_is_null(from)) || (to && !json_is_null(to))) {
        if (!date_or_time(json_string_value(from)))
            return bad(err, "args.from",
                       "must be a date (YYYY-MM-DD) or an RFC 3339 time");
        if (!date_or_time(json_string_value(to)))
            return bad(err, "args.to",
                       "must be a date (YYYY-MM-DD) or an RFC 3339 time");
    } else {
        return bad(err, "args.date",
                   "is required (YYYY-MM-DD), or args.from and args.to");
    }
    if (check_tz(args, "args.timezone", err) ||
        check_duration(args, "args.duration_minutes", err))
        return CS_EINVAL;
    return 0;
}

static int book_appointment_args(const json_t *args, struct cs_err *err)
{
    if (!is_date(json_string_value(json_object_get(args,
                                                   "appointment_date"))))
        return bad(err, "args.appointment_date",
                   "is required as a date (YYYY-MM-DD)");
    if (!is_time(json_string_value(json_object_get(args,
                                                   "appointment_time"))))
        return bad(err, "args.appointment_time",
                   "is required as a time of day (HH:MM, 24-hour)");
    static const char *const strs[] = {"customer_name", "customer_phone",
                                       "customer_email", "notes"};
    for (size_t i = 0; i < CS_ARRAY_LEN(strs); i++) {
        char field[48];
        snprintf(field, sizeof(field), "args.%s", strs[i]);
        if (opt_string(args, strs[i], field, err))
            return CS_EINVAL;
    }
    const char *email = json_string_value(json_object_get(args,
                                                          "customer_email"));
    if (email && *email && !strchr(email, '@'))
        return bad(err, "args.customer_email", "must be an email address");
    if (check_tz(args, "args.timezone", err) ||
        check_duration(args, "args.duration_minutes", err))
        return CS_EINVAL;
    return 0;
}

/* The function name: the path's last segment, else the body's "name". */
static int function_of(const struct ing_request *rq, const json_t *body,
                       char **out, struct cs_err *err)
{
    const char *in_path = NULL;
    if (strncmp(rq->path, "/tools/retell/", 14) == 0)
        in_path = rq->path + 14;
    const char *in_body = json_string_value(json_object_get(body, "name"));
    if (in_path && (!*in_path || strchr(in_path, '/')))
        return bad(err, "name", "the path must be /tools/retell/<function>");
    const char *fn = in_path ? in_path : in_body;
    if (!fn)
        return bad(err, "name", "is required (the function's name)");
    if (in_path && in_body && strcmp(in_path, in_body) != 0)
        return bad(err, "name", "differs from the function in the path");
    if (strcmp(fn, "check_availability") != 0 &&
        strcmp(fn, "book_appointment") != 0)
        return cs_err_set(err, CS_EINVAL, "name",
                          "unknown function '%.64s' (check_availability or "
                          "book_appointment)", fn);
    *out = xstrdup(fn);
    return 0;
}

/* What the worker needs of Retell's call object. */
static json_t *call_summary(const json_t *call, struct cs_err *err)
{
    const char *id = json_string_value(json_object_get(call, "call_id"));
    const char *agent = json_string_value(json_object_get(call, "agent_id"));
    if (!json_is_object(call)) {
        bad(err, "call", "must be the call object");
        return NULL;
    }
    if (!id || !*id || strlen(id) > 128) {
        bad(err, "call.call_id", "is required (a string of 1-128 characters)");
        return NULL;
    }
    if (!agent || !*agent || strlen(agent) > 128) {
        bad(err, "call.agent_id", "is required (the Retell agent id)");
        return NULL;
    }
    json_t *o = json_object();
    static const char *const keep[] = {"call_id", "agent_id", "from_number",
                                       "to_number", "direction"};
    for (size_t i = 0; i < CS_ARRAY_LEN(keep); i++) {
        const json_t *v = json_object_get(call, keep[i]);
        if (json_is_string(v) && json_string_length(v) <= 128)
            json_object_set(o, keep[i], (json_t *)v);
    }
    return o;
}

/* ---- Answers ------------------------------------------------------------- */

static void on_live(int rc, json_t *reply, void *arg)
{
    struct tctx *x = arg;
    if (!ing_conn_release(x->c)) {
        tctx_free(x);
        return;
    }
    if (rc == 0) {
        json_t *result = json_object_get(reply, "result");
        if (json_is_true(json_object_get(reply, "ok")) &&
            json_is_object(result)) {
            met_live("answered");
            ing_respond_json(x->c, 200, json_incref(result));
        } else {
            json_t *e = json_object_get(reply, "error");
            const char *msg = json_string_value(json_object_get(e,
                                                                "message"));
            const char *code = json_string_value(json_object_get(e, "code"));
            met_live("failed");
            ing_respond_json(x->c, 200,
                             json_pack("{s:b,s:s,s:s}", "ok", 0, "status",
                                       code ? code : "failed", "message",
                                       msg ? msg : FALLBACK_MSG));
        }
    } else if (rc == CS_ETIMEDOUT) {
        met_live("deadline");
        log_warn("live_deadline_passed", LOG_S("fn", x->fn),
                 LOG_S("call_id", json_string_value(json_object_get(
                                      x->call, "call_id"))));
        answer_message(x->c, "unavailable", FALLBACK_MSG);
    } else if (rc == CS_EIO) {
        /* The caller is waiting: a retry would meet the same Redis. */
        met_live("queue_unavailable");
        log_warn("live_not_queued", LOG_S("fn", x->fn));
        answer_message(x->c, "unavailable", FALLBACK_MSG);
    } else {
        ing_fail(x->c, 503, RJ_REDIS_UNAVAILABLE, "ingest is stopping");
    }
    tctx_free(x);
}

/* The agent's calendar for live calls: a connection with "live_tools":
 * true in its config, else the first whose type has calendar functions.
 * Expired connections cannot answer and are passed over. */
static const struct ing_connection *pick_calendar(const struct ing_agent *a)
{
    const struct ing_connection *first = NULL;
    for (size_t i = 0; i < a->nconns; i++) {
        const struct ing_connection *c = &a->conns[i];
        if (!cal_find(c->type) || strcmp(c->status, "expired") == 0)
            continue;
        if (c->live_tools)
            return c;
        if (!first)
            first = c;
    }
    return first;
}

static void on_agent(int rc, const struct ing_agent *a, void *arg)
{
    struct tctx *x = arg;
    struct ing_loop *l = ing_conn_loop(x->c);
    if (!ing_conn_release(x->c)) {
        tctx_free(x);
        return;
    }
    if (rc == CS_ENOENT) {
        ing_fail(x->c, 404, RJ_UNKNOWN_AGENT, "agent '%s' is not known",
                 x->retell_agent);
        tctx_free(x);
        return;
    }
    if (rc) {
        ing_fail(x->c, 503, RJ_DB_UNAVAILABLE,
                 "connections cannot be looked up now; retry later");
        tctx_free(x);
        return;
    }
    const struct ing_connection *conn = pick_calendar(a);
    if (!conn) {
        met_live("no_calendar");
        log_info("live_no_calendar", LOG_S("agent_id", a->id),
                 LOG_S("fn", x->fn));
        answer_message(x->c, "not_available", NO_CALENDAR_MSG);
        tctx_free(x);
        return;
    }
    json_object_set_new(x->call, "callsync_agent_id", json_string(a->id));
    if (a->org_id)
        json_object_set_new(x->call, "org_id", json_string(a->org_id));
    char *call = json_dumps(x->call, JSON_COMPACT);
    char *args = json_dumps(x->args, JSON_COMPACT);
    unsigned shard = cs_shard_of(a->id, (unsigned)l->cfg->shards);
    ing_conn_hold(x->c);
    live_request(l->live, shard, x->fn, conn->id, call, args, on_live, x);
    free(call);
    free(args);
}

void ing_tools_retell(struct ing_conn *c, struct ing_request *rq)
{
    struct ing_loop *l = ing_conn_loop(c);
    if (ing_secrets.nretell == 0) {
        ing_fail(c, 401, RJ_NOT_CONFIGURED,
                 "no Retell API key is configured to verify signatures");
        return;
    }
    int rc = cs_sig_retell(ing_header(rq, "x-retell-signature"),
                           rq->body.data, rq->body.len,
                           (const char *const *)ing_secrets.retell,
                           ing_secrets.nretell, cs_now_ms(),
                           (int64_t)l->cfg->sig_tolerance_s * 1000);
    if (rc) {
        ing_fail_sig(c, rc, "x-retell-signature");
        return;
    }
    struct cs_err err = {0};
    json_error_t je;
    json_t *body = json_loadb(rq->body.data ? rq->body.data : "",
                              rq->body.len, 0, &je);
    if (!json_is_object(body)) {
        cs_err_set(&err, CS_EINVAL, "", "body must be a JSON object");
        ing_fail_norm(c, &err);
        json_decref(body);
        return;
    }
    struct tctx *x = xcalloc(1, sizeof(*x));
    x->c = c;
    json_t *args = json_object_get(body, "args");
    if (function_of(rq, body, &x->fn, &err) ||
        !(x->call = call_summary(json_object_get(body, "call"), &err)))
        goto out_refuse;
    if (args && !json_is_null(args) && !json_is_object(args)) {
        bad(&err, "args", "must be an object");
        goto out_refuse;
    }
    x->args = json_is_object(args) ? json_incref(args) : json_object();
    if (strcmp(x->fn, "check_availability") == 0
            ? check_availability_args(x->args, &err)
            : book_appointment_args(x->args, &err))
        goto out_refuse;
    x->retell_agent = xstrdup(json_string_value(json_object_get(x->call,
                                                                "agent_id")));
    json_decref(body);
    ing_conn_hold(c);
    store_lookup(l->store, SK_RETELL_AGENT, x->retell_agent, on_agent, x);
    return;

out_refuse:
    ing_fail_norm(c, &err);
    json_decref(body);
    tctx_free(x);
}
