/*
 * live.c - the worker's side of the live-call tools: requests a caller is
 * waiting for (ingest/tools.c), read from the priority streams
 * cs:{S}:live of this worker's shards and answered on the reply list the
 * request names.
 *
 * They never wait behind normal jobs: a connection of their own does a
 * blocking XREADGROUP on the live streams only, and they count against
 * CALLSYNC_WORKER_LIVE_INFLIGHT, not CALLSYNC_WORKER_INFLIGHT. A request:
 *
 *   deadline passed? -> ack and drop (nobody listens any more)
 *   connection (cache) -> limiter, as a job step would, but a wait longer
 *   than the time left answers "busy" -> the provider's availability or
 *   booking function (calendar.h), each request timed out at the time
 *   left -> one script: the reply LPUSHed (EXPIRE 60) to the reply list,
 *   the stream entry XACKed and XDELed, and for a booking the post-call
 *   job's checkpoint of the calendar step.
 *
 * The checkpoint: a booking made live writes step:<step> on the job hash
 * cs:{S}:job:<cs_job_id(call_id, connection_id)> (the key the post-call
 * job of the same call and connection will have) with book_parse's value,
 * so that job finds the step done and books nothing more. Before its
 * request goes out the booking marks inflight:<step>, as a job step does,
 * so a booking whose answer was lost is reconciled by the post-call job
 * instead of repeated blind. A hash that has no job yet gets a TTL of
 * CALLSYNC_DEDUP_TTL_S; ingest's enqueue script persists it when the job
 * arrives.
 *
 * Entries left pending by a worker that died are past their deadline by
 * the time anyone could look; the tick claims those idle for a minute and
 * drops them the same way.
 */
#include "worker.h"
#include "calendar.h"
#include "limiter.h"
#include "log.h"
#include "norm.h"
#include "when.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REPLY_TTL_S "60"
/* Time kept back from the deadline for the reply to reach ingest. */
#define REPLY_MARGIN_MS 60
#define STALE_IDLE_MS "60000"
#define MAX_ROUNDS 20
#define RESULT_MAX 14000

/*
 * KEYS: live stream, reply list, job hash. ARGV: msg id, reply JSON ("":
 * none), reply TTL s, checkpoint field ("": none), its value, job hash TTL
 * s, in-flight mark to remove.
 */
static const char live_end_lua[] =
    "if ARGV[4] ~= '' then\n"
    "  redis.call('HSET', KEYS[3], ARGV[4], ARGV[5])\n"
    "  redis.call('HDEL', KEYS[3], ARGV[7])\n"
    "  if redis.call('HEXISTS', KEYS[3], 'state') == 0 then\n"
    "    redis.call('EXPIRE', KEYS[3], tonumber(ARGV[6]))\n"
    "  end\n"
    "end\n"
    "if ARGV[2] ~= '' then\n"
    "  redis.call('LPUSH', KEYS[2], ARGV[2])\n"
    "  redis.call('EXPIRE', KEYS[2], tonumber(ARGV[3]))\n"
    "end\n"
    "redis.call('XACK', KEYS[1], 'workers', ARGV[1])\n"
    "redis.call('XDEL', KEYS[1], ARGV[1])\n"
    "return 1\n";

/* KEYS: job hash. ARGV: in-flight mark, TTL s for a hash with no job. */
static const char live_mark_lua[] =
    "redis.call('HSET', KEYS[1], ARGV[1], 'live')\n"
    "if redis.call('HEXISTS', KEYS[1], 'state') == 0 then\n"
    "  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))\n"
    "end\n"
    "return 1\n";

/* KEYS: live stream. ARGV: consumer, idle ms. Entries idle that long
 * (their worker died) are past any deadline: claimed, acked, deleted. */
static const char live_stale_lua[] =
    "local r = redis.call('XAUTOCLAIM', KEYS[1], 'workers', ARGV[1], "
    "tonumber(ARGV[2]), '0-0', 'COUNT', 100, 'JUSTID')\n"
    "for _, id in ipairs(r[2]) do\n"
    "  redis.call('XACK', KEYS[1], 'workers', id)\n"
    "  redis.call('XDEL', KEYS[1], id)\n"
    "end\n"
    "return #r[2]\n";

enum lphase { LP_AVAIL, LP_CHECK, LP_BOOK };

struct ljob {
    struct wlive *lv;
    char *stream;
    char *msg_id;
    char *req_id;
    char *reply_to;
    char *fn;
    char *conn_id;
    int64_t deadline_ms;
    json_t *call;
    json_t *args;
    struct wconn *conn;
    const struct cal_ops *cops;
    const struct prov_ops *pops;
    const char *step;          /* the post-call calendar step */
    char job_id[33];
    char jobkey[96];
    char tz[72];               /* the zone times are spoken in */
    enum lphase phase;
    json_t *config;            /* the connection's, slot length adjusted */
    json_t *job;               /* {job_id, call}: the booking's job */
    json_t *scratch;
    struct prov_ctx ctx;
    struct prov_request rq;
    struct cal_query q;
    struct cal_slots slots;
    struct cal_booking b;
    bool have_booking;
    struct rl_limit lim;
    ev_timer wait;
    bool ending;
    struct ljob *prev, *next;
};

struct wlive {
    struct wrk *w;
    struct rq_addr addr;
    redisAsyncContext *rb;     /* blocking XREADGROUP on the live streams */
    bool ready, reading;
    char **keys;               /* cs:{S}:live per shard */
    size_t nkeys;
    size_t running;
    int64_t last_stale_ms;
    struct ljob *jobs;
    ev_timer reconnect;
    uint64_t n_answered, n_expired, n_failed;
};

static void live_read(struct wlive *lv);
static void acquire(struct ljob *j);

/* ---- Ending -------------------------------------------------------------- */

static void ljob_free(struct ljob *j)
{
    struct wlive *lv = j->lv;
    ev_timer_stop(lv->w->loop, &j->wait);
    if (j->prev)
        j->prev->next = j->next;
    else
        lv->jobs = j->next;
    if (j->next)
        j->next->prev = j->prev;
    prov_request_release(&j->rq);
    cal_slots_release(&j->slots);
    if (j->have_booking)
        cal_booking_release(&j->b);
    if (j->conn)
        wconn_put(lv->w, j->conn);
    json_decref(j->call);
    json_decref(j->args);
    json_decref(j->config);
    json_decref(j->job);
    json_decref(j->scratch);
    free(j->stream);
    free(j->msg_id);
    free(j->req_id);
    free(j->reply_to);
    free(j->fn);
    free(j->conn_id);
    free(j);
    lv->running--;
    live_read(lv);
}

static void on_ended(redisAsyncContext *ac, void *r, void *priv)
{
    CS_UNUSED(ac);
    struct ljob *j = priv;
    if (!r)
        log_warn("live_reply_not_sent", LOG_S("req_id", j->req_id));
    ljob_free(j);
}

/* Reply (result or error object, stolen; NULL: none), ack, and for a
 * booking its checkpoint, in one script. */
static void finish(struct ljob *j, json_t *reply, const json_t *checkpoint)
{
    struct wrk *w = j->lv->w;
    j->ending = true;
    char *text = NULL;
    if (reply) {
        json_object_set_new(reply, "req_id", json_string(j->req_id));
        text = json_dumps(reply, JSON_COMPACT);
        json_decref(reply);
    }
    char *cp = checkpoint ? json_dumps(checkpoint,
                                       JSON_COMPACT | JSON_ENCODE_ANY)
                          : NULL;
    char field[96] = "", mark[96] = "", ttl[16];
    if (cp) {
        snprintf(field, sizeof(field), "step:%s", j->step);
        snprintf(mark, sizeof(mark), "inflight:%s", j->step);
    }
    snprintf(ttl, sizeof(ttl), "%d", w->cfg->dedup_ttl_s);
    const char *kv[] = {j->stream, j->reply_to, j->jobkey[0] ? j->jobkey
                                                             : j->stream,
                        j->msg_id, text ? text : "", REPLY_TTL_S, field,
                        cp ? cp : "", ttl, mark};
    wrk_eval(w, live_end_lua, on_ended, j, 3, kv, 10);
    free(text);
    free(cp);
}

static void answer(struct ljob *j, json_t *result)
{
    j->lv->n_answered++;
    finish(j, json_pack("{s:b,s:o}", "ok", 1, "result", result), NULL);
}

/* An error the caller hears: code for the logs, message to speak. */
static void answer_error(struct ljob *j, const char *code, const char *msg,
                         const char *detail)
{
    j->lv->n_failed++;
    log_warn("live_failed", LOG_S("req_id", j->req_id), LOG_S("fn", j->fn),
             LOG_S("code", code), LOG_S("err", detail ? detail : ""));
    finish(j, json_pack("{s:b,s:{s:s,s:s}}", "ok", 0, "error", "code", code,
                        "message", msg),
           NULL);
}

#define MSG_BUSY                                                             \
    "The calendar is busy right now and I can't check it on this call. "    \
    "I've noted your request and someone will call you back to confirm a "  \
    "time."
#define MSG_TROUBLE                                                          \
    "I'm having trouble with the calendar right now. I've noted your "      \
    "request and someone will call you back to confirm a time."

static int64_t time_left(const struct ljob *j)
{
    return j->deadline_ms - cs_now_ms() - REPLY_MARGIN_MS;
}

/* ---- Speaking times -------------------------------------------------------- */

static const char *const wdays[] = {"Sunday", "Monday", "Tuesday",
                                    "Wednesday", "Thursday", "Friday",
                                    "Saturday"};
static const char *const months[] = {"January", "February", "March",
                                     "April", "May", "June", "July",
                                     "August", "September", "October",
                                     "November", "December"};

/* "2 PM", "9:30 AM", "12 PM". */
static void say_time(int minute, char out[16])
{
    int h = minute / 60 % 24, m = minute % 60;
    int h12 = h % 12 ? h % 12 : 12;
    if (m)
        snprintf(out, 16, "%d:%02d %s", h12, m, h < 12 ? "AM" : "PM");
    else
        snprintf(out, 16, "%d %s", h12, h < 12 ? "AM" : "PM");
}

/* "Friday, March 15". */
static void say_day(const struct when_local *l, char out[40])
{
    snprintf(out, 40, "%s, %s %d", wdays[l->wday], months[l->month - 1],
             l->day);
}

/* "I have Friday, March 15 at 9 AM, 10 AM or 2 PM, and Monday, March 18
 * at 9 AM." from up to n slots. */
static char *say_slots(const char *tz, const struct cal_slots *s, size_t n)
{
    struct buf b;
    buf_init(&b, RESULT_MAX);
    (void)!buf_adds(&b, "I have ");
    size_t i = 0;
    while (i < n) {
        struct when_local day;
        (void)when_local_parts(tz, s->v[i].start_ms, &day);
        size_t k = i;
        struct when_local l = day;
        while (k < n && l.year == day.year && l.month == day.month &&
               l.day == day.day)
            if (++k < n)
                (void)when_local_parts(tz, s->v[k].start_ms, &l);
        char d[40];
        say_day(&day, d);
        if (i > 0)
            (void)!buf_adds(&b, k == n ? ", and " : ", ");
        (void)!buf_addf(&b, "%s at ", d);
        for (size_t x = i; x < k; x++) {
            struct when_local t;
            char tm[16];
            (void)when_local_parts(tz, s->v[x].start_ms, &t);
            say_time(t.minute, tm);
            if (x > i)
                (void)!buf_adds(&b, x + 1 == k ? " or " : ", ");
            (void)!buf_adds(&b, tm);
        }
        i = k;
    }
    (void)!buf_adds(&b, ". Which would you like?");
    return buf_take(&b, NULL);
}

static json_t *slot_json(const char *tz, const struct cal_slot *s)
{
    char a[40] = "", z[40] = "", tm[16];
    struct when_local l;
    (void)when_local_rfc3339(tz, s->start_ms, a);
    (void)when_local_rfc3339(tz, s->end_ms, z);
    (void)when_local_parts(tz, s->start_ms, &l);
    say_time(l.minute, tm);
    char d[40];
    say_day(&l, d);
    char *spoken = xasprintf("%s at %s", d, tm);
    json_t *o = json_pack("{s:s,s:s,s:s}", "start", a, "end", z, "spoken",
                          spoken);
    free(spoken);
    return o;
}

static void answer_slots(struct ljob *j)
{
    size_t max = (size_t)j->lv->w->cfg->live_slots;
    size_t n = j->slots.n < max ? j->slots.n : max;
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, slot_json(j->tz, &j->slots.v[i]));
    char *msg;
    if (n == 0) {
        struct when_local a, z;
        char d1[40], d2[40];
        (void)when_local_parts(j->tz, j->q.from_ms, &a);
        (void)when_local_parts(j->tz, j->q.to_ms - 1, &z);
        say_day(&a, d1);
        say_day(&z, d2);
        if (strcmp(d1, d2) == 0)
            msg = xasprintf("I don't have any open times on %s. Would "
                            "another day work?", d1);
        else
            msg = xasprintf("I don't have any open times between %s and "
                            "%s. Would another day work?", d1, d2);
    } else {
        msg = say_slots(j->tz, &j->slots, n);
    }
    answer(j, json_pack("{s:s,s:s,s:o,s:b}", "message", msg, "timezone",
                        j->tz, "slots", arr, "more", j->slots.n > n));
    free(msg);
}

/* ---- Provider requests ------------------------------------------------------ */

static void on_http(const struct prov_response *rsp, const char *err,
                    int64_t dur_ms, void *arg);

static void send_next(struct ljob *j)
{
    struct cs_err err = {0};
    int64_t left = time_left(j);
    if (left <= 0) {
        j->lv->n_expired++;
        finish(j, NULL, NULL);
        return;
    }
    prov_request_release(&j->rq);
    j->ctx.scratch = j->scratch;
    j->ctx.now_ms = cs_now_ms();
    int rc = j->phase == LP_BOOK
                 ? j->cops->book_build(&j->ctx, &j->b, &j->rq, &err)
                 : j->cops->avail_build(&j->ctx, &j->q, &j->rq, &err);
    if (rc) {
        answer_error(j, "config_error", MSG_TROUBLE, err.msg);
        return;
    }
    /* To the deadline itself: an answer that comes later than ingest's
     * deadline is dropped there, not raced against. */
    j->rq.timeout_ms = (int)(left + REPLY_MARGIN_MS);
    httpc_send(j->lv->w->http, &j->rq, on_http, j);
}

static void on_marked(redisAsyncContext *ac, void *r, void *priv)
{
    CS_UNUSED(ac);
    struct ljob *j = priv;
    if (!r) {
        answer_error(j, "redis_unavailable", MSG_TROUBLE, "mark not written");
        return;
    }
    acquire(j);
}

/* Whether the checked slots cover the booking's whole time. */
static bool booking_free(const struct ljob *j)
{
    int64_t at = j->b.start_ms;
    for (size_t i = 0; i < j->slots.n && at < j->b.end_ms; i++)
        if (j->slots.v[i].start_ms <= at && j->slots.v[i].end_ms > at)
            at = j->slots.v[i].end_ms;
    return at >= j->b.end_ms;
}

static void booked(struct ljob *j, const json_t *value)
{
    char a[40] = "", tm[16], d[40];
    struct when_local l;
    (void)when_local_rfc3339(j->tz, j->b.start_ms, a);
    (void)when_local_parts(j->tz, j->b.start_ms, &l);
    say_time(l.minute, tm);
    say_day(&l, d);
    char *msg = xasprintf("You're booked for %s at %s. You'll get a "
                          "confirmation%s.", d, tm,
                          j->b.email ? " by email" : " shortly");
    j->lv->n_answered++;
    json_t *r = json_pack("{s:b,s:{s:s,s:b,s:s,s:s,s:i,s:O}}", "ok", 1,
                          "result", "message", msg, "booked", 1, "start", a,
                          "timezone", j->tz, "duration_minutes",
                          (int)((j->b.end_ms - j->b.start_ms) / 60000),
                          "booking", value);
    free(msg);
    log_info("live_booked", LOG_S("req_id", j->req_id),
             LOG_S("job_id", j->job_id), LOG_S("provider", j->pops->name));
    finish(j, r, value);
}

static void after_check(struct ljob *j)
{
    if (!booking_free(j)) {
        char tm[16], d[40];
        struct when_local l;
        (void)when_local_parts(j->tz, j->b.start_ms, &l);
        say_time(l.minute, tm);
        say_day(&l, d);
        char *msg = xasprintf("%s at %s isn't available. Would you like me "
                              "to check other times?", d, tm);
        answer(j, json_pack("{s:s,s:b}", "message", msg, "booked", 0));
        free(msg);
        return;
    }
    j->phase = LP_BOOK;
    json_object_clear(j->scratch);
    char ttl[16];
    snprintf(ttl, sizeof(ttl), "%d", j->lv->w->cfg->dedup_ttl_s);
    char mark[96];
    snprintf(mark, sizeof(mark), "inflight:%s", j->step);
    const char *kv[] = {j->jobkey, mark, ttl};
    wrk_eval(j->lv->w, live_mark_lua, on_marked, j, 1, kv, 3);
}

static void on_http(const struct prov_response *rsp, const char *err,
                    int64_t dur_ms, void *arg)
{
    struct ljob *j = arg;
    CS_UNUSED(dur_ms);
    struct prov_result res = {0};
    res.retry_after_ms = -1;
    j->ctx.scratch = j->scratch;
    if (j->phase == LP_BOOK)
        j->cops->book_parse(&j->ctx, &j->b, rsp, &res);
    else
        j->cops->avail_parse(&j->ctx, &j->q, rsp, &res, &j->slots);
    prov_request_release(&j->rq);
    const char *acct = j->conn_id;
    switch (res.outcome) {
    case PROV_NEXT:
        acquire(j);
        break;
    case PROV_DONE:
    case PROV_SKIP:
        if (j->phase == LP_AVAIL) {
            cal_slots_sort_unique(&j->slots);
            answer_slots(j);
        } else if (j->phase == LP_CHECK) {
            cal_slots_sort_unique(&j->slots);
            after_check(j);
        } else {
            json_t *v = res.value ? json_incref(res.value)
                                  : json_pack("{s:b}", "skipped", 1);
            booked(j, v);
            json_decref(v);
        }
        break;
    case PROV_RATE_LIMITED:
        rl_pause_async(j->lv->w, j->pops->name, acct,
                       res.retry_after_ms > 0 ? res.retry_after_ms : 1000);
        answer_error(j, "busy", MSG_BUSY, res.message);
        break;
    default:
        answer_error(j, res.code[0] ? res.code : "provider_error",
                     MSG_TROUBLE,
                     res.message[0] ? res.message : (err ? err : ""));
        break;
    }
    prov_result_release(&res);
}

/* ---- Limiter ------------------------------------------------------------------ */

static void on_wait(EV_P_ ev_timer *t, int revents)
{
    CS_UNUSED(loop);
    CS_UNUSED(revents);
    acquire(t->data);
}

/* Whose budget: as a job's (engine.c): the provider's rate scope, else the
 * connection. */
static const char *rate_account(const struct ljob *j)
{
    const char *scope = j->pops->rate_scope;
    if (scope && strcmp(scope, "connection") != 0) {
        const char *v = json_string_value(json_object_get(j->conn->config,
                                                          scope));
        if (v && *v)
            return v;
    }
    return j->conn_id;
}

static void on_acquired(redisAsyncContext *ac, void *r, void *priv)
{
    CS_UNUSED(ac);
    struct ljob *j = priv;
    bool allowed = false;
    int64_t wait = 0;
    if (!r || rl_parse_reply(r, &allowed, &wait)) {
        answer_error(j, "redis_unavailable", MSG_TROUBLE, "limiter");
        return;
    }
    if (allowed) {
        send_next(j);
        return;
    }
    if (wait >= time_left(j)) {
        answer_error(j, "busy", MSG_BUSY, "rate limit wait exceeds deadline");
        return;
    }
    ev_timer_set(&j->wait, wait / 1000.0, 0.0);
    ev_timer_start(j->lv->w->loop, &j->wait);
}

static void acquire(struct ljob *j)
{
    char k1[RL_KEY_MAX], k2[RL_KEY_MAX], interval[32];
    if (rl_keys(j->pops->name, rate_account(j), k1, sizeof(k1), k2,
                sizeof(k2))) {
        answer_error(j, "bad_rate_key", MSG_TROUBLE, "rate key");
        return;
    }
    snprintf(interval, sizeof(interval), "%lld",
             (long long)rl_interval_us(j->lim));
    const char *kv[] = {k1, k2, "-1", interval, "1", "1"};
    wrk_eval(j->lv->w, rl_acquire_script(), on_acquired, j, 2, kv, 6);
}

/* ---- Starting a request ------------------------------------------------------- */

static const char *arg_str(const struct ljob *j, const char *k)
{
    const char *v = json_string_value(json_object_get(j->args, k));
    return v && *v ? v : NULL;
}

static int arg_minutes(const struct ljob *j)
{
    const json_t *v = json_object_get(j->args, "duration_minutes");
    if (json_is_integer(v))
        return (int)json_integer_value(v);
    if (json_is_string(v))
        return atoi(json_string_value(v));
    return 0;
}

/* A date or an RFC 3339 time to ms; a date is the start of that day in
 * tz, or with end, the start of the next. */
static bool to_ms(const char *s, const char *tz, bool end, int64_t *out)
{
    int y, m, d;
    char tail;
    if (s && strlen(s) == 10 &&
        sscanf(s, "%4d-%2d-%2d%c", &y, &m, &d, &tail) == 3)
        return when_local_to_ms(tz, y, m, d, end ? 1440 : 0, out);
    return s && cs_parse_rfc3339(s, out);
}

/* The availability window from the arguments. */
static int query_from_args(struct ljob *j, struct cs_err *err)
{
    const char *date = arg_str(j, "date");
    const char *from = date ? date : arg_str(j, "from");
    const char *to = date ? date : arg_str(j, "to");
    if (!to_ms(from, j->tz, false, &j->q.from_ms) ||
        !to_ms(to, j->tz, true, &j->q.to_ms) || j->q.to_ms <= j->q.from_ms)
        return cs_err_set(err, CS_EINVAL, "args", "the window is empty");
    return 0;
}

/* The booking from the arguments, as the post-call step would build it
 * from a call that booked this appointment (cal_booking_from_call). */
static int booking_from_args(struct ljob *j, struct cs_err *err)
{
    const struct cfg *cfg = j->lv->w->cfg;
    json_t *cust = json_object();
    const char *name = arg_str(j, "customer_name");
    const char *email = arg_str(j, "customer_email");
    const char *phone = arg_str(j, "customer_phone");
    if (!phone)
        phone = json_string_value(json_object_get(j->call, "from_number"));
    char e164[17];
    if (name)
        json_object_set_new(cust, "name", json_string(name));
    if (email)
        json_object_set_new(cust, "email", json_string(email));
    if (phone && cs_phone_e164(phone, cfg->default_country_code, e164))
        json_object_set_new(cust, "phone", json_string(e164));
    int minutes = arg_minutes(j);
    json_t *appt = json_pack("{s:s,s:s,s:s}", "date",
                             arg_str(j, "appointment_date"), "time",
                             arg_str(j, "appointment_time"), "timezone",
                             j->tz);
    if (minutes > 0)
        json_object_set_new(appt, "duration_min", json_integer(minutes));
    const char *notes = arg_str(j, "notes");
    json_t *call = json_pack("{s:s,s:s,s:o,s:o}", "call_id",
                             json_string_value(json_object_get(j->call,
                                                               "call_id")),
                             "source", "retell", "customer", cust,
                             "appointment", appt);
    if (notes)
        json_object_set_new(call, "summary", json_string(notes));
    j->job = json_pack("{s:s,s:s,s:o}", "job_id", j->job_id, "provider",
                       j->pops->name, "call", call);
    j->ctx.job = j->job;
    j->ctx.call = call;
    if (cal_booking_from_call(&j->ctx, &j->b, err))
        return CS_EINVAL;
    j->have_booking = true;
    /* The check before the booking: its exact time, on a fine grid. */
    j->q.from_ms = j->b.start_ms;
    j->q.to_ms = j->b.end_ms;
    return 0;
}

/* The job hash key shares the stream's hash tag: "cs:{S}:live". */
static void set_jobkey(struct ljob *j)
{
    const char *o = strchr(j->stream, '{');
    const char *c = o ? strchr(o, '}') : NULL;
    if (o && c)
        snprintf(j->jobkey, sizeof(j->jobkey), "cs:%.*s:job:%s",
                 (int)(c - o + 1), o, j->job_id);
}

static void on_conn(int rc, struct wconn *c, void *arg)
{
    struct ljob *j = arg;
    if (rc == CS_ECANCELED) {
        ljob_free(j);
        return;
    }
    if (rc || !c->active || strcmp(c->status, "disconnected") == 0 ||
        strcmp(c->status, "expired") == 0) {
        if (c)
            wconn_put(j->lv->w, c);
        answer_error(j, rc == CS_EIO ? "database_unavailable"
                                     : "connection_unavailable",
                     MSG_TROUBLE, "connection");
        return;
    }
    j->conn = c;
    j->cops = cal_find(c->type);
    j->pops = prov_find(c->type);
    if (!j->cops || !j->pops) {
        answer_error(j, "not_a_calendar", MSG_TROUBLE, c->type);
        return;
    }
    j->step = j->pops->steps[0].name;
    for (size_t i = 0; i < j->pops->nsteps; i++)
        if (strcmp(j->pops->steps[i].name, "appointment") == 0)
            j->step = j->pops->steps[i].name;
    struct cal_hours h;
    struct cs_err err = {0};
    if (cal_hours_from_config(c->config, &h, &err)) {
        answer_error(j, "config_error", MSG_TROUBLE, err.msg);
        return;
    }
    const char *tz = arg_str(j, "timezone");
    snprintf(j->tz, sizeof(j->tz), "%s", tz && when_tz_known(tz) ? tz : h.tz);
    j->config = json_is_object(c->config) ? json_deep_copy(c->config)
                                          : json_object();
    j->lim.requests = j->pops->rate.requests > 0 ? j->pops->rate.requests
                                                 : 10;
    j->lim.per_ms = j->pops->rate.per_ms > 0 ? j->pops->rate.per_ms : 1000;
    const char *over = json_string_value(json_object_get(c->config,
                                                         "rate_limit"));
    struct rl_limit l;
    if (over && rl_limit_parse(over, &l) == 0)
        j->lim = l;
    j->scratch = json_object();
    j->ctx.config = j->config;
    j->ctx.creds = &c->creds;
    j->ctx.base_url = wrk_base_url(j->lv->w, c->type);
    j->ctx.done = NULL;
    j->ctx.scratch = j->scratch;
    j->ctx.now_ms = cs_now_ms();
    cs_job_id(json_string_value(json_object_get(j->call, "call_id")),
              j->conn_id, j->job_id);
    set_jobkey(j);
    int minutes = arg_minutes(j);
    if (strcmp(j->fn, "book_appointment") == 0) {
        j->phase = LP_CHECK;
        if (booking_from_args(j, &err)) {
            answer_error(j, "invalid_booking",
                         "I couldn't book that time: the date or time "
                         "isn't valid. Could you give me the date and time "
                         "again?", err.msg);
            return;
        }
        if (j->b.start_ms <= cs_now_ms()) {
            answer(j, json_pack("{s:s,s:b}", "message",
                                "That time has already passed. Which day "
                                "and time would you like?", "booked", 0));
            return;
        }
        /* Free 5-minute slots covering the booking mean it is free. */
        json_object_set_new(j->config, "slot_duration_minutes",
                            json_integer(5));
    } else {
        j->phase = LP_AVAIL;
        if (query_from_args(j, &err)) {
            answer_error(j, "invalid_window",
                         "I couldn't read that date. Which day would you "
                         "like?", err.msg);
            return;
        }
        if (minutes > 0)
            json_object_set_new(j->config, "slot_duration_minutes",
                                json_integer(minutes));
    }
    acquire(j);
}

static void start(struct wlive *lv, const char *stream, const redisReply *e)
{
    struct ljob *j = xcalloc(1, sizeof(*j));
    j->lv = lv;
    j->stream = xstrdup(stream);
    j->msg_id = xstrdup(e->element[0]->str);
    ev_init(&j->wait, on_wait);
    j->wait.data = j;
    lv->running++;
    j->next = lv->jobs;
    if (lv->jobs)
        lv->jobs->prev = j;
    lv->jobs = j;
    const redisReply *f = e->element[1];
    const char *call = NULL, *args = NULL, *dl = NULL;
    for (size_t k = 0; k + 1 < f->elements; k += 2) {
        const char *n = f->element[k]->str, *v = f->element[k + 1]->str;
        if (!n || !v)
            continue;
        if (strcmp(n, "req_id") == 0)
            j->req_id = xstrdup(v);
        else if (strcmp(n, "reply_to") == 0)
            j->reply_to = xstrdup(v);
        else if (strcmp(n, "fn") == 0)
            j->fn = xstrdup(v);
        else if (strcmp(n, "connection_id") == 0)
            j->conn_id = xstrdup(v);
        else if (strcmp(n, "deadline_ms") == 0)
            dl = v;
        else if (strcmp(n, "call") == 0)
            call = v;
        else if (strcmp(n, "args") == 0)
            args = v;
    }
    j->deadline_ms = dl ? strtoll(dl, NULL, 10) : 0;
    j->call = call ? json_loads(call, 0, NULL) : NULL;
    j->args = args ? json_loads(args, 0, NULL) : NULL;
    if (!j->req_id || !j->reply_to || !j->fn || !j->conn_id ||
        !json_is_object(j->call) || !json_is_object(j->args) ||
        !json_string_value(json_object_get(j->call, "call_id"))) {
        log_warn("live_malformed", LOG_S("msg_id", j->msg_id));
        if (!j->reply_to)
            j->reply_to = xstrdup(j->stream);
        finish(j, NULL, NULL);
        return;
    }
    if (time_left(j) <= 0) {
        lv->n_expired++;
        log_info("live_expired", LOG_S("req_id", j->req_id),
                 LOG_I("late_ms", (long long)(cs_now_ms() - j->deadline_ms)));
        finish(j, NULL, NULL);
        return;
    }
    wconn_get(lv->w, j->conn_id, on_conn, j);
}

/* ---- Reading ------------------------------------------------------------------ */

static void take(struct wlive *lv, const redisReply *streams)
{
    for (size_t i = 0; streams && i < streams->elements; i++) {
        const redisReply *s = streams->element[i];
        if (s->type != REDIS_REPLY_ARRAY || s->elements < 2 ||
            s->element[1]->type != REDIS_REPLY_ARRAY)
            continue;
        const redisReply *es = s->element[1];
        for (size_t k = 0; k < es->elements; k++) {
            const redisReply *e = es->element[k];
            if (e->type == REDIS_REPLY_ARRAY && e->elements >= 2 &&
                e->element[0]->str &&
                e->element[1]->type == REDIS_REPLY_ARRAY)
                start(lv, s->element[0]->str, e);
        }
    }
}

static void on_read(redisAsyncContext *ac, void *r, void *priv)
{
    CS_UNUSED(ac);
    struct wlive *lv = priv;
    redisReply *reply = r;
    lv->reading = false;
    if (!reply)
        return;
    if (reply->type == REDIS_REPLY_ERROR)
        log_error("live_read_failed", LOG_S("err", reply->str));
    else if (reply->type == REDIS_REPLY_ARRAY)
        take(lv, reply);
    live_read(lv);
}

static void live_read(struct wlive *lv)
{
    struct wrk *w = lv->w;
    int cap = w->cfg->worker_live_inflight - (int)lv->running;
    if (w->draining || lv->reading || !lv->rb || !lv->ready || !w->rc_ready ||
        cap <= 0)
        return;
    const char **argv = xcalloc(10 + 2 * lv->nkeys, sizeof(char *));
    char count[16];
    snprintf(count, sizeof(count), "%d", cap);
    int i = 0;
    argv[i++] = "XREADGROUP";
    argv[i++] = "GROUP";
    argv[i++] = "workers";
    argv[i++] = w->consumer;
    argv[i++] = "COUNT";
    argv[i++] = count;
    argv[i++] = "BLOCK";
    argv[i++] = "1000";
    argv[i++] = "STREAMS";
    for (size_t k = 0; k < lv->nkeys; k++)
        argv[i++] = lv->keys[k];
    for (size_t k = 0; k < lv->nkeys; k++)
        argv[i++] = ">";
    if (redisAsyncCommandArgv(lv->rb, on_read, lv, i, argv, NULL) ==
        REDIS_OK)
        lv->reading = true;
    free(argv);
}

/* ---- Connection ------------------------------------------------------------------ */

static void live_connect(struct wlive *lv);

static void on_reconnect(EV_P_ ev_timer *t, int revents)
{
    CS_UNUSED(loop);
    CS_UNUSED(revents);
    live_connect(t->data);
}

static void lost(struct wlive *lv)
{
    lv->rb = NULL;
    lv->ready = false;
    lv->reading = false;
    if (!lv->w->stopping && !ev_is_active(&lv->reconnect)) {
        ev_timer_set(&lv->reconnect, 0.5, 0.0);
        ev_timer_start(lv->w->loop, &lv->reconnect);
    }
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    if (status != REDIS_OK)
        lost(ac->data);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    CS_UNUSED(status);
    lost(ac->data);
}

static void on_group(redisAsyncContext *ac, void *r, void *priv)
{
    CS_UNUSED(ac);
    CS_UNUSED(priv);
    redisReply *reply = r;
    if (reply && reply->type == REDIS_REPLY_ERROR &&
        strncmp(reply->str, "BUSYGROUP", 9) != 0)
        log_error("xgroup_failed", LOG_S("err", reply->str));
}

static void on_ready(redisAsyncContext *ac, void *r, void *priv)
{
    CS_UNUSED(ac);
    struct wlive *lv = priv;
    if (!r)
        return;
    lv->ready = true;
    live_read(lv);
}

static void live_connect(struct wlive *lv)
{
    if (lv->rb || lv->w->stopping)
        return;
    lv->rb = rq_connect(lv->w->loop, &lv->addr);
    if (!lv->rb) {
        lost(lv);
        return;
    }
    lv->rb->data = lv;
    redisAsyncSetConnectCallback(lv->rb, on_connect);
    redisAsyncSetDisconnectCallback(lv->rb, on_disconnect);
    for (size_t i = 0; i < lv->nkeys; i++)
        redisAsyncCommand(lv->rb, on_group, NULL,
                          "XGROUP CREATE %s workers 0 MKSTREAM",
                          lv->keys[i]);
    redisAsyncCommand(lv->rb, on_ready, lv, "PING");
}

/* ---- Hooks ------------------------------------------------------------------------ */

int wlive_start(struct wrk *w)
{
    struct wlive *lv = xcalloc(1, sizeof(*lv));
    struct cs_err err = {0};
    if (rq_parse_url(w->cfg->redis_url, &lv->addr, &err)) {
        free(lv);
        fprintf(stderr, "callsync-worker: %s\n", err.msg);
        return 2;
    }
    lv->w = w;
    lv->keys = xcalloc(w->nshards ? w->nshards : 1, sizeof(char *));
    for (size_t i = 0; i < w->nshards; i++)
        lv->keys[lv->nkeys++] = xasprintf("cs:{%u}:live", w->shards[i]);
    ev_init(&lv->reconnect, on_reconnect);
    lv->reconnect.data = lv;
    w->live = lv;
    live_connect(lv);
    return 0;
}

void wlive_tick(struct wrk *w)
{
    struct wlive *lv = w->live;
    if (!lv || w->draining)
        return;
    live_read(lv);
    int64_t now = cs_mono_ms();
    if (now - lv->last_stale_ms < 30000 || !w->rc)
        return;
    lv->last_stale_ms = now;
    for (size_t i = 0; i < lv->nkeys; i++) {
        const char *kv[] = {lv->keys[i], w->consumer, STALE_IDLE_MS};
        wrk_eval(w, live_stale_lua, NULL, NULL, 1, kv, 3);
    }
}

size_t wlive_running(const struct wrk *w)
{
    return w->live ? w->live->running : 0;
}

void wlive_stop(struct wrk *w)
{
    struct wlive *lv = w->live;
    if (!lv)
        return;
    ev_timer_stop(w->loop, &lv->reconnect);
    if (lv->rb)
        redisAsyncFree(lv->rb);
    lv->rb = NULL;
    while (lv->jobs)
        ljob_free(lv->jobs);
    log_info("live_stopped", LOG_I("answered", (long long)lv->n_answered),
             LOG_I("failed", (long long)lv->n_failed),
             LOG_I("expired", (long long)lv->n_expired));
    for (size_t i = 0; i < lv->nkeys; i++)
        free(lv->keys[i]);
    free(lv->keys);
    free(lv);
    w->live = NULL;
}
