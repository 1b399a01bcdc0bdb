/*
 * redis.c - callsyncctl's blocking Redis access: one connection per
 * invocation, commands, scripts, SCAN, and the cache-invalidation
 * publish; plus the time helpers the queue commands share.
 */
#include "ctl.h"
#include "dur.h"

#include <openssl/evp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define CACHE_CHANNEL "cs:cache:connections"
#define REDIS_TIMEOUT_S 10

/* redis://[[user]:password@]host[:port][/db] into its parts. */
struct redis_addr {
    char host[256];
    int port;
    int db;
    char user[128];
    char pass[256];
};

static bool parse_redis_url(const char *url, struct redis_addr *a)
{
    memset(a, 0, sizeof(*a));
    a->port = 6379;
    if (strncmp(url, "redis://", 8) != 0)
        return false;
    const char *p = url + 8;
    const char *end = p + strcspn(p, "/?");
    const char *at = memchr(p, '@', (size_t)(end - p));
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon) {
            snprintf(a->user, sizeof(a->user), "%.*s", (int)(colon - p), p);
            snprintf(a->pass, sizeof(a->pass), "%.*s",
                     (int)(at - colon - 1), colon + 1);
        } else {
            snprintf(a->pass, sizeof(a->pass), "%.*s", (int)(at - p), p);
        }
        p = at + 1;
    }
    const char *colon = memchr(p, ':', (size_t)(end - p));
    const char *hend = colon ? colon : end;
    if (hend == p || (size_t)(hend - p) >= sizeof(a->host))
        return false;
    snprintf(a->host, sizeof(a->host), "%.*s", (int)(hend - p), p);
    if (colon) {
        char *e;
        long port = strtol(colon + 1, &e, 10);
        if (e != end || port < 1 || port > 65535)
            return false;
        a->port = (int)port;
    }
    if (*end == '/' && end[1] && end[1] != '?') {
        char *e;
        long db = strtol(end + 1, &e, 10);
        if ((*e != '\0' && *e != '?') || db < 0 || db > 1000000)
            return false;
        a->db = (int)db;
    }
    return true;
}

/*
 * Connect, authenticate and select the database. Returns the context, or
 * NULL with the reason in why[256].
 */
static redisContext *redis_open(const char *url, struct timeval tv,
                                char why[256])
{
    struct redis_addr a;
    if (!parse_redis_url(url, &a)) {
        snprintf(why, 256, "CALLSYNC_REDIS_URL is not a redis:// URL");
        return NULL;
    }
    redisContext *rc = redisConnectWithTimeout(a.host, a.port, tv);
    redisReply *reply = NULL;
    if (!rc || rc->err) {
        snprintf(why, 256, "cannot connect to %.128s:%d: %.100s", a.host,
                 a.port, rc ? rc->errstr : "out of memory");
        goto out_fail;
    }
    if (redisSetTimeout(rc, tv) != REDIS_OK) {
        snprintf(why, 256, "cannot set a timeout: %s", rc->errstr);
        goto out_fail;
    }
    if (a.pass[0]) {
        if (a.user[0])
            reply = redisCommand(rc, "AUTH %s %s", a.user, a.pass);
        else
            reply = redisCommand(rc, "AUTH %s", a.pass);
        if (!reply || reply->type == REDIS_REPLY_ERROR) {
            snprintf(why, 256, "AUTH failed: %s",
                     reply ? reply->str : rc->errstr);
            goto out_fail;
        }
        freeReplyObject(reply);
        reply = NULL;
    }
    if (a.db) {
        reply = redisCommand(rc, "SELECT %d", a.db);
        if (!reply || reply->type == REDIS_REPLY_ERROR) {
            snprintf(why, 256, "SELECT %d failed: %s", a.db,
                     reply ? reply->str : rc->errstr);
            goto out_fail;
        }
        freeReplyObject(reply);
    }
    return rc;
out_fail:
    if (reply)
        freeReplyObject(reply);
    if (rc)
        redisFree(rc);
    return NULL;
}

int ctl_redis(struct ctl *ctl)
{
    if (ctl->redis)
        return CTL_OK;
    char why[256];
    struct timeval tv = {REDIS_TIMEOUT_S, 0};
    ctl->redis = redis_open(ctl->cfg.redis_url, tv, why);
    if (!ctl->redis)
        return ctl_fail(CTL_FAIL, "Redis: %s", why);
    return CTL_OK;
}

static redisReply *checked(struct ctl *ctl, redisReply *r)
{
    if (!r)
        ctl_fail(CTL_FAIL, "Redis: %s",
                 ctl->redis->errstr[0] ? ctl->redis->errstr
                                       : "connection lost");
    return r;
}

redisReply *ctl_rcmd(struct ctl *ctl, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(ctl->redis, fmt, ap);
    va_end(ap);
    return checked(ctl, r);
}

redisReply *ctl_rcmd_argv(struct ctl *ctl, int argc, const char **argv,
                          const size_t *lens)
{
    return checked(ctl, redisCommandArgv(ctl->redis, argc, argv, lens));
}

redisReply *ctl_eval(struct ctl *ctl, const char *lua, int nkeys, int nargs,
                     const char **args)
{
    unsigned char h[20];
    char sha[41], nk[16];
    EVP_Digest(lua, strlen(lua), h, NULL, EVP_sha1(), NULL);
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 20; i++) {
        sha[2 * i] = hex[h[i] >> 4];
        sha[2 * i + 1] = hex[h[i] & 15];
    }
    sha[40] = '\0';
    snprintf(nk, sizeof(nk), "%d", nkeys);
    const char **argv = xcalloc((size_t)nargs + 3, sizeof(char *));
    argv[0] = "EVALSHA";
    argv[1] = sha;
    argv[2] = nk;
    for (int i = 0; i < nargs; i++)
        argv[3 + i] = args[i];
    redisReply *r = ctl_rcmd_argv(ctl, nargs + 3, argv, NULL);
    if (r && r->type == REDIS_REPLY_ERROR &&
        strncmp(r->str, "NOSCRIPT", 8) == 0) {
        freeReplyObject(r);
        argv[0] = "EVAL";
        argv[1] = lua;
        r = ctl_rcmd_argv(ctl, nargs + 3, argv, NULL);
    }
    free(argv);
    return r;
}

const char *ctl_rfield(const redisReply *f, const char *name)
{
    if (!f || f->type != REDIS_REPLY_ARRAY)
        return NULL;
    for (size_t i = 0; i + 1 < f->elements; i += 2)
        if (f->element[i]->str && strcmp(f->element[i]->str, name) == 0)
            return f->element[i + 1]->str;
    return NULL;
}

int ctl_scan(struct ctl *ctl, const char *pattern,
             void (*fn)(const char *key, void *arg), void *arg)
{
    /* SCAN may return a key more than once: remember what was seen. */
    json_t *seen = json_object();
    char cursor[32] = "0";
    int rc = CTL_OK;
    do {
        redisReply *r = ctl_rcmd(ctl, "SCAN %s MATCH %s COUNT 1000", cursor,
                                 pattern);
        if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
            if (r)
                ctl_fail(CTL_FAIL, "Redis: SCAN: %s",
                         r->type == REDIS_REPLY_ERROR ? r->str
                                                      : "unexpected reply");
            freeReplyObject(r);
            rc = CTL_FAIL;
            break;
        }
        snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
        const redisReply *keys = r->element[1];
        for (size_t i = 0; i < keys->elements; i++) {
            const char *k = keys->element[i]->str;
            if (!k || json_object_get(seen, k))
                continue;
            json_object_set_new(seen, k, json_true());
            fn(k, arg);
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    json_decref(seen);
    return rc;
}

void ctl_publish_change(struct ctl *ctl, const char *agent_id)
{
    char why[256] = "";
    struct timeval tv = {1, 0};
    redisContext *rc = redis_open(ctl->cfg.redis_url, tv, why);
    redisReply *reply = NULL;
    if (!rc)
        goto out_warn;
    reply = redisCommand(rc, "PUBLISH %s %s", CACHE_CHANNEL, agent_id);
    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        snprintf(why, sizeof(why), "%s",
                 reply ? reply->str : rc->errstr[0] ? rc->errstr
                                                    : "Redis unreachable");
        goto out_warn;
    }
    freeReplyObject(reply);
    redisFree(rc);
    return;
out_warn:
    ctl_warn("cannot tell ingest that agent '%s' changed: %s; caches "
             "expire on their own",
             agent_id, why);
    if (reply)
        freeReplyObject(reply);
    if (rc)
        redisFree(rc);
}

bool ctl_parse_when(const char *s, int64_t now_ms, int64_t *ms)
{
    int64_t d;
    if (dur_parse_ms(s, strlen(s), &d) == 0) {
        *ms = now_ms - d;
        return true;
    }
    return cs_parse_rfc3339(s, ms);
}

void ctl_fmt_age(int64_t ms, char out[32])
{
    if (ms < 0)
        ms = 0;
    int64_t s = ms / 1000;
    if (s == 0)
        snprintf(out, 32, "%lldms", (long long)ms);
    else if (s < 60)
        snprintf(out, 32, "%llds", (long long)s);
    else if (s < 3600)
        snprintf(out, 32, "%lldm%llds", (long long)(s / 60),
                 (long long)(s % 60));
    else if (s < 86400)
        snprintf(out, 32, "%lldh%lldm", (long long)(s / 3600),
                 (long long)(s % 3600 / 60));
    else
        snprintf(out, 32, "%lldd%lldh", (long long)(s / 86400),
                 (long long)(s % 86400 / 3600));
}
