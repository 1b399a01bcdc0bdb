/*
 * scripts.c - the Lua scripts that end a job's delivery. Each moves the
 * job to exactly one place and acknowledges its stream entry in the same
 * step, so a crash leaves the job either still pending (and reclaimed
 * later) or fully moved: never both, never neither.
 *
 * All keys of one call share the shard's hash tag {S}. The scripts the
 * scheduler runs too (promote, park) are in shared/rq.c.
 */
#include "worker.h"

/* KEYS: stream, job hash. ARGV: msg id, now, retention seconds, and, when
 * the last step has just finished, its checkpoint field, its value and its
 * in-flight mark (checkpointed and unmarked here, in the same step). */
const char wrk_finish_lua[] =
    "redis.call('XACK', KEYS[1], 'workers', ARGV[1])\n"
    "redis.call('XDEL', KEYS[1], ARGV[1])\n"
    "if ARGV[6] then\n"
    "  redis.call('HSET', KEYS[2], 'state', 'done', 'finished_at', ARGV[2],\n"
    "             ARGV[4], ARGV[5])\n"
    "  redis.call('HDEL', KEYS[2], ARGV[6])\n"
    "else\n"
    "  redis.call('HSET', KEYS[2], 'state', 'done', 'finished_at', ARGV[2])\n"
    "end\n"
    "redis.call('EXPIRE', KEYS[2], tonumber(ARGV[3]))\n"
    "return 1\n";

/* KEYS: stream, job hash, delayed zset. ARGV: msg id, due ms, job JSON,
 * attempt, last error JSON, state ("retrying" or "deferred"). */
const char wrk_retry_lua[] =
    "redis.call('ZADD', KEYS[3], tonumber(ARGV[2]), ARGV[3])\n"
    "redis.call('HSET', KEYS[2], 'state', ARGV[6], 'attempt', ARGV[4], "
    "'last_error', ARGV[5], 'due_at', ARGV[2])\n"
    "redis.call('XACK', KEYS[1], 'workers', ARGV[1])\n"
    "redis.call('XDEL', KEYS[1], ARGV[1])\n"
    "return 1\n";

/* KEYS: stream, job hash, dead stream. ARGV: msg id, job id, job JSON,
 * reason, message, errors JSON, at, provider, connection id, HTTP status.
 * Dead letters are never trimmed here: retention trims them, and counts
 * what it trims. */
const char wrk_dead_lua[] =
    "redis.call('XADD', KEYS[3], '*', 'job_id', ARGV[2], 'job', ARGV[3], "
    "'reason', ARGV[4], 'message', ARGV[5], 'errors', ARGV[6], 'at', "
    "ARGV[7], 'provider', ARGV[8], 'connection_id', ARGV[9], "
    "'http_status', ARGV[10])\n"
    "redis.call('HSET', KEYS[2], 'state', 'dead', 'dead_reason', ARGV[4])\n"
    "redis.call('XACK', KEYS[1], 'workers', ARGV[1])\n"
    "redis.call('XDEL', KEYS[1], ARGV[1])\n"
    "return 1\n";
