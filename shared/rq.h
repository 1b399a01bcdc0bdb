/*
 * rq.h - the Redis queue layout that worker and scheduler share: the Lua
 * scripts that move jobs between a shard's stream, delayed set, parked
 * lists and dead letters, the names of the provider streams, and small
 * helpers for hiredis on libev (URL parsing, connecting, EVALSHA).
 *
 * Keys of shard S (DESIGN.md, "Redis layout"), all with the hash tag {S}:
 *   cs:{S}:q:<provider>        stream, consumer group "workers"
 *   cs:{S}:delayed             zset: job JSON scored by due time (ms)
 *   cs:{S}:job:<job_id>        hash: state, deliveries, checkpoints
 *   cs:{S}:parked:<conn_id>    list of job JSON waiting for the connection
 *   cs:{S}:parked_conns        set of the connection ids that have such a
 *                              list (kept by the park and replay scripts)
 *   cs:{S}:dead                stream of dead letters
 * Scripts that build keys from a shard prefix ("cs:{S}:") only build keys
 * of that shard, so every script touches one Cluster slot.
 */
#ifndef CS_RQ_H
#define CS_RQ_H

#include "cs.h"

#include <ev.h>
#include <hiredis/async.h>

/* Every provider a job can be queued for: the integration types of the
 * schema plus retell (outbound calls). One stream each per shard. */
extern const char *const rq_providers[];
extern const size_t rq_nproviders;

/*
 * Promote due retries. KEYS: delayed zset. ARGV: now ms, shard prefix
 * "cs:{S}:", limit. Moves up to limit due jobs into their provider's
 * stream, sets their hash to state queued and deliveries 0 (a retry ended
 * its delivery cleanly, so it does not count towards poison), and returns
 * how many it moved.
 */
extern const char rq_promote_lua[];

/*
 * Park a job until its connection's user acts. KEYS: stream, job hash,
 * parked list cs:{S}:parked:<conn_id>. ARGV: msg id, job JSON, reason.
 * Also records the connection in cs:{S}:parked_conns.
 */
extern const char rq_park_lua[];

/*
 * Re-queue the entries of dead consumers. KEYS: stream. ARGV: visibility
 * ms, limit, forget ms. An entry pending longer than the visibility
 * timeout whose consumer has not touched the stream for as long (or no
 * longer exists) is appended again with the same fields, then acked and
 * deleted; a live worker's entries stay, since it heartbeats them.
 * Consumers with nothing pending that have been idle for forget ms (0:
 * never) are removed from the group. Returns {re-queued, pending entries
 * whose stream entry was gone (acked), consumers removed}.
 */
extern const char rq_requeue_lua[];

/*
 * Replay one batch of a connection's parked jobs. KEYS: parked list,
 * cs:{S}:parked_conns, dead stream. ARGV: shard prefix, limit, connection
 * id, now (RFC 3339). Each job goes back to its provider's stream (state
 * queued, deliveries 0); an entry that is not a job becomes a dead letter
 * (reason malformed_job). Returns {replayed, dead-lettered, left}.
 */
extern const char rq_replay_lua[];

/*
 * Trim dead letters. KEYS: dead stream. ARGV: max age ms (0: none), max
 * entries (0: none), limit. Removes at most limit of the oldest entries:
 * first those older than max age (by Redis's clock), then those beyond
 * max entries. Returns {by age, by count, first id, last id, more} where
 * the ids bound what was removed and more is 1 when another batch is due.
 */
extern const char rq_trim_dead_lua[];

/* A redis:// URL: redis://[[user]:password@]host[:port][/db]. */
struct rq_addr {
    char host[256];
    int port;
    int db;
    char user[128];
    char pass[256];
};

/* 0, or CS_EINVAL with *err filled (the password never appears in it). */
CS_MUST_CHECK int rq_parse_url(const char *url, struct rq_addr *a,
                               struct cs_err *err);

/*
 * Start connecting to a on loop (AUTH and SELECT are queued first). The
 * caller sets data and the connect/disconnect callbacks. NULL if hiredis
 * cannot even start (out of memory, bad address).
 */
redisAsyncContext *rq_connect(struct ev_loop *loop, const struct rq_addr *a);

/*
 * EVALSHA lua with nkeys keys followed by the other arguments (kv holds
 * nkv strings in all; NULL is sent as ""). Falls back to EVAL once when
 * Redis answers NOSCRIPT. Returns CS_EIO if ac is NULL or the command
 * cannot be queued (cb never runs); else 0 and cb runs exactly once, with
 * a NULL reply if the connection is lost. cb may be NULL.
 */
int rq_eval(redisAsyncContext *ac, const char *lua, redisCallbackFn *cb,
            void *arg, int nkeys, const char *const *kv, int nkv);

#endif
