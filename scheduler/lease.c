/*
 * lease.c - who leads: a lease in Redis that one scheduler holds at a time.
 *
 *   cs:lease:scheduler            our random token, with a PX expiry
 *   {cs:lease:scheduler}:fence    counter, INCR'd at every acquisition
 *
 * The fence key's hash tag is the lease key's whole name, so both hash to
 * the same Cluster slot and one script can take the lease and draw the
 * next fencing token atomically. The token only ever grows: a holder can
 * hand it to anything it writes so that a later holder's writes win.
 *
 * A stand-by tries SET NX PX every min(tick, lease/3). The leader renews
 * every lease/3 with compare-and-pexpire and acts only while its lease
 * still runs by its own monotonic clock, counted from when the renewal was
 * *sent* (so it stops before Redis lets the key expire). A renewal that
 * finds another token, or no answer before that deadline, ends the
 * leadership at once; the next attempt uses a fresh token. On SIGTERM the
 * holder deletes the key with compare-and-delete, so a stand-by takes over
 * on its next try instead of after the lease runs out.
 */
#include "sched.h"
#include "crypto.h"
#include "log.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define LEASE_KEY "cs:lease:scheduler"
#define FENCE_KEY "{cs:lease:scheduler}:fence"

/* KEYS: lease, fence. ARGV: token, px. {1, fence} or {0, pttl}. */
static const char acquire_lua[] =
    "if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then\n"
    "  return {1, redis.call('INCR', KEYS[2])}\n"
    "end\n"
    "return {0, redis.call('PTTL', KEYS[1])}\n";

/* KEYS: lease. ARGV: token, px. 1 if still ours (and extended), else 0. */
static const char renew_lua[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
    "  return redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
    "end\n"
    "return 0\n";

/* KEYS: lease. ARGV: token. 1 if it was ours (and is gone), else 0. */
static const char release_lua[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
    "  return redis.call('DEL', KEYS[1])\n"
    "end\n"
    "return 0\n";

static int lease_ms(const struct sch *s)
{
    return s->cfg->scheduler_lease_ms;
}

/* Stop acting a tenth of the lease before Redis would let the key go. */
static int64_t valid_for(const struct sch *s)
{
    return lease_ms(s) - lease_ms(s) / 10;
}

static void new_token(struct sch *s)
{
    unsigned char r[12];
    char hex[25];
    char host[48] = "scheduler";
    if (cs_random(r, sizeof(r)) != 0) {
        /* Unique enough without the kernel's randomness: time and pid. */
        uint64_t t = cs_mono_ns() ^ (uint64_t)cs_now_ms();
        memcpy(r, &t, sizeof(t));
        memset(r + sizeof(t), 0, sizeof(r) - sizeof(t));
    }
    cs_hex_encode(r, sizeof(r), hex);
    gethostname(host, sizeof(host) - 1);
    host[sizeof(host) - 1] = '\0';
    snprintf(s->token, sizeof(s->token), "%s-%d-%s", host, (int)getpid(),
             hex);
}

bool sch_is_leader(const struct sch *s)
{
    return s->leader && cs_mono_ms() < s->lease_until;
}

static void step_down(struct sch *s, const char *why)
{
    if (!s->leader)
        return;
    s->leader = false;
    s->m.lease_lost++;
    log_warn("lease_lost", LOG_S("reason", why), LOG_I("fence", s->fence));
    new_token(s);
}

static void do_release(struct sch *s);

/* A release waits for an acquisition or renewal in flight. */
static bool release_pending(struct sch *s)
{
    if (!s->release_done)
        return false;
    do_release(s);
    return true;
}

static void on_acquire(redisAsyncContext *ac, void *r, void *priv)
{
    CS_UNUSED(ac);
    struct sch *s = priv;
    redisReply *reply = r;
    s->lease_busy = false;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_INTEGER ||
        reply->element[1]->type != REDIS_REPLY_INTEGER) {
        if (reply)
            s->m.errors_redis++;
        release_pending(s);
        return;
    }
    if (reply->element[0]->integer == 1) {
        s->leader = true;
        s->fence = reply->element[1]->integer;
        s->lease_until = s->lease_sent + valid_for(s);
        s->m.lease_acquired++;
        log_info("lease_acquired", LOG_I("fence", s->fence),
                 LOG_S("token", s->token), LOG_I("lease_ms", lease_ms(s)));
    }
    release_pending(s);
}

static void on_renew(redisAsyncContext *ac, void *r, void *priv)
{
    CS_UNUSED(ac);
    struct sch *s = priv;
    redisReply *reply = r;
    s->lease_busy = false;
    if (reply && reply->type == REDIS_REPLY_INTEGER) {
        if (reply->integer == 1 && s->leader)
            s->lease_until = s->lease_sent + valid_for(s);
        else if (reply->integer != 1)
            step_down(s, "held by another scheduler");
    } else if (reply) {
        s->m.errors_redis++;
    }
    /* No answer: the deadline check in the timer decides. */
    release_pending(s);
}

static void send_lease(struct sch *s, bool renew)
{
    char px[16];
    snprintf(px, sizeof(px), "%d", lease_ms(s));
    s->lease_sent = cs_mono_ms();
    s->lease_busy = true;
    int rc;
    if (renew) {
        const char *kv[] = {LEASE_KEY, s->token, px};
        rc = rq_eval(s->rc, renew_lua, on_renew, s, 1, kv, 3);
    } else {
        const char *kv[] = {LEASE_KEY, FENCE_KEY, s->token, px};
        rc = rq_eval(s->rc, acquire_lua, on_acquire, s, 2, kv, 4);
    }
    if (rc)
        s->lease_busy = false;
}

static void lease_step(struct sch *s)
{
    int64_t now = cs_mono_ms();
    if (s->leader && now >= s->lease_until)
        step_down(s, s->lease_busy ? "renewal not answered in time"
                                   : "lease ran out (Redis unreachable)");
    if (s->lease_busy) {
        /* hiredis 0.14 has no command timeout: a connection that answers
         * nothing for a whole lease is dropped and made again. */
        if (now - s->lease_sent > lease_ms(s))
            sch_redis_reset(s, "lease command not answered");
        return;
    }
    if (s->stopping || !s->rc || !s->rc_ready)
        return;
    if (!s->leader)
        send_lease(s, false);
    else if (now - s->lease_sent >= lease_ms(s) / 3)
        send_lease(s, true);
}

static void on_lease_timer(EV_P_ ev_timer *t, int revents)
{
    CS_UNUSED(loop);
    CS_UNUSED(revents);
    lease_step(t->data);
}

void sch_lease_start(struct sch *s)
{
    new_token(s);
    int poll = s->cfg->scheduler_tick_ms;
    if (poll > lease_ms(s) / 3)
        poll = lease_ms(s) / 3;
    ev_timer_init(&s->lease_timer, on_lease_timer, poll / 1000.0,
                  poll / 1000.0);
    s->lease_timer.data = s;
    ev_timer_start(s->loop, &s->lease_timer);
}

void sch_lease_kick(struct sch *s)
{
    lease_step(s);
}

void sch_lease_stop(struct sch *s)
{
    ev_timer_stop(s->loop, &s->lease_timer);
}

static void on_release(redisAsyncContext *ac, void *r, void *priv)
{
    CS_UNUSED(ac);
    struct sch *s = priv;
    redisReply *reply = r;
    if (reply && reply->type == REDIS_REPLY_INTEGER && reply->integer == 1)
        log_info("lease_released", LOG_I("fence", s->fence));
    else
        log_warn("lease_not_released",
                 LOG_S("reason", reply ? "no longer ours" : "Redis gone"));
    s->leader = false;
    sch_release_cb *done = s->release_done;
    s->release_done = NULL;
    done(s);
}

static void do_release(struct sch *s)
{
    if (s->lease_busy)
        return; /* on_acquire / on_renew call back here */
    if (s->leader && s->rc) {
        const char *kv[] = {LEASE_KEY, s->token};
        if (rq_eval(s->rc, release_lua, on_release, s, 1, kv, 2) == 0)
            return;
    }
    s->leader = false;
    sch_release_cb *done = s->release_done;
    s->release_done = NULL;
    done(s);
}

void sch_lease_release(struct sch *s, sch_release_cb *done)
{
    s->release_done = done;
    do_release(s);
}
