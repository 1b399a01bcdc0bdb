/*
 * segment.c - Segment's HTTP Tracking API (api.segment.io) part of the
 * sandbox, under /segment:
 *
 *   POST /v1/track      POST /v1/identify
 *
 * As the HTTP API source documents it: the write key comes as HTTP Basic
 * (the key as user name, no password) or as "writeKey" in the body;
 * Content-Type must be JSON; a call over 32 KB (32768 bytes) or with a
 * body that is not a JSON object is 400; so is one without a userId or an
 * anonymousId ("no_user_anon_id") and a messageId of 100 characters or
 * more. Everything else is 200 {"success": true}, including calls that
 * Segment then drops: an unknown write key (when --segment-write-key
 * names the known ones; Segment does not validate keys at the edge) and a
 * Track without an event name are answered 200 and not recorded (the
 * stats count them as dropped). No write key at all is 400. Segment
 * de-duplicates by messageId: a messageId seen before is answered 200 and
 * recorded once (the stats count duplicates). The 400 bodies are
 * {"success": false, "code", "message"}: Segment does not document their
 * shape.
 *
 * Rate: --segment-rate N accepted calls per second (default 0: none)
 * answers 429 {"success": false, "message": "Too Many Requests"} with
 * Retry-After: 1 past it (Segment queues past 1,000 events per second per
 * workspace rather than refusing; the option exists to test clients).
 * Records: ?provider=segment&type=tracks|identifies|stats.
 */
#include "sandbox.h"
#include "crypto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define SEG_MAX_CALL 32768
#define SECOND_MS 1000

struct sb_segment {
    const char *keys[SB_MAX_TOKENS];
    size_t nkeys;
    long long rate;        /* per second, 0: none */
    json_t *tracks;
    json_t *identifies;
    json_t *seen;          /* messageId -> true */
    long long dropped, duplicates;
    int64_t *window;
    size_t wcap, whead, wlen;
};

static struct sb_segment *state(struct sb *s)
{
    if (!s->segment) {
        s->segment = xcalloc(1, sizeof(*s->segment));
        segment_reset(s->segment);
    }
    return s->segment;
}

void segment_reset(struct sb_segment *g)
{
    json_decref(g->tracks);
    json_decref(g->identifies);
    json_decref(g->seen);
    g->tracks = json_array();
    g->identifies = json_array();
    g->seen = json_object();
    g->dropped = g->duplicates = 0;
    free(g->window);
    g->window = NULL;
    g->wcap = g->whead = g->wlen = 0;
}

void segment_free(struct sb_segment *g)
{
    if (!g)
        return;
    json_decref(g->tracks);
    json_decref(g->identifies);
    json_decref(g->seen);
    free(g->window);
    free(g);
}

bool segment_option(struct sb *s, const char *flag, const char *val)
{
    struct sb_segment *g = state(s);
    if (strcmp(flag, "--segment-write-key") == 0 && *val &&
        g->nkeys < SB_MAX_TOKENS) {
        g->keys[g->nkeys++] = val;
        return true;
    }
    if (strcmp(flag, "--segment-rate") == 0) {
        char *end;
        errno = 0;
        long long n = strtoll(val, &end, 10);
        if (errno || !*val || *end || n < 0)
            return false;
        g->rate = n;
        return true;
    }
    return false;
}

json_t *segment_records(struct sb *s, const char *type)
{
    struct sb_segment *g = state(s);
    if (strcmp(type, "tracks") == 0)
        return json_incref(g->tracks);
    if (strcmp(type, "identifies") == 0)
        return json_incref(g->identifies);
    if (strcmp(type, "stats") == 0)
        return json_pack("[{s:I,s:I}]", "dropped", (json_int_t)g->dropped,
                         "duplicates", (json_int_t)g->duplicates);
    return NULL;
}

json_t *segment_error_body(int status)
{
    return json_pack("{s:b,s:s}", "success", 0, "message",
                     sb_reason(status));
}

static void bad(struct sb_resp *out, const char *code, const char *message)
{
    sb_resp_json(out, 400, json_pack("{s:b,s:s,s:s}", "success", 0, "code",
                                     code, "message", message));
}

/* The write key: Basic user name, else the body's writeKey; xmalloc'd or
 * NULL. */
static char *write_key(const struct sb_req *rq, const json_t *body)
{
    const char *a = sb_header(rq, "authorization");
    if (a && strncasecmp(a, "Basic ", 6) == 0) {
        const char *b64 = a + 6;
        while (*b64 == ' ')
            b64++;
        size_t n = strlen(b64);
        unsigned char *raw = xmalloc(n + 1);
        int len = cs_base64_decode(b64, n, raw, n);
        char *key = NULL;
        if (len > 0) {
            raw[len] = '\0';
            char *colon = strchr((char *)raw, ':');
            size_t kl = colon ? (size_t)(colon - (char *)raw) : (size_t)len;
            if (kl)
                key = xstrndup((char *)raw, kl);
        }
        free(raw);
        if (key)
            return key;
    }
    const char *k = json_string_value(json_object_get(body, "writeKey"));
    return k && *k ? xstrdup(k) : NULL;
}

static bool key_known(struct sb_segment *g, const char *key)
{
    if (!g->nkeys)
        return true;
    for (size_t i = 0; i < g->nkeys; i++)
        if (strcmp(key, g->keys[i]) == 0)
            return true;
    return false;
}

static bool rate_take(struct sb_segment *g, int64_t now)
{
    if (g->rate <= 0)
        return true;
    if (!g->window) {
        g->wcap = (size_t)g->rate;
        g->window = xcalloc(g->wcap, sizeof(*g->window));
    }
    while (g->wlen && g->window[g->whead] <= now - SECOND_MS) {
        g->whead = (g->whead + 1) % g->wcap;
        g->wlen--;
    }
    if (g->wlen >= g->wcap)
        return false;
    g->window[(g->whead + g->wlen) % g->wcap] = now;
    g->wlen++;
    return true;
}

static bool nonempty(const json_t *v)
{
    return (json_is_string(v) && json_string_length(v) > 0) ||
           json_is_integer(v);
}

void segment_handle(struct sb *s, const struct sb_req *rq,
                    struct sb_resp *out)
{
    struct sb_segment *g = state(s);
    bool track = strcmp(rq->sub, "/v1/track") == 0;
    bool identify = strcmp(rq->sub, "/v1/identify") == 0;
    if (!track && !identify) {
        sb_resp_json(out, 404, segment_error_body(404));
        return;
    }
    if (rq->method != HTTP_POST) {
        sb_resp_json(out, 405, segment_error_body(405));
        return;
    }
    if (!rate_take(g, cs_mono_ms())) {
        sb_resp_json(out, 429, segment_error_body(429));
        sb_resp_header(out, "Retry-After: 1");
        return;
    }
    if (rq->body.len > SEG_MAX_CALL) {
        bad(out, "payload_too_large", "the call is over 32KB");
        return;
    }
    const char *ct = sb_header(rq, "content-type");
    json_t *b;
    if (!ct || strncasecmp(ct, "application/json", 16) != 0 ||
        !sb_is_json_object(rq, &b)) {
        bad(out, "invalid_json", "the body is not a JSON object");
        return;
    }
    char *key = write_key(rq, b);
    const json_t *mid = json_object_get(b, "messageId");
    if (!key) {
        bad(out, "no_write_key", "no write key");
    } else if (!nonempty(json_object_get(b, "userId")) &&
               !nonempty(json_object_get(b, "anonymousId"))) {
        bad(out, "no_user_anon_id", "a userId or an anonymousId is required");
    } else if (mid && (!json_is_string(mid) ||
                       json_string_length(mid) >= 100)) {
        bad(out, "invalid_message_id",
            "messageId must be a string under 100 characters");
    } else {
        /* Accepted at the edge; kept unless Segment would drop it. */
        const char *ev = json_string_value(json_object_get(b, "event"));
        const char *m = json_string_value(mid);
        if (!key_known(g, key) || (track && (!ev || !*ev))) {
            g->dropped++;
        } else if (m && json_object_get(g->seen, m)) {
            g->duplicates++;
        } else {
            if (m)
                json_object_set_new(g->seen, m, json_true());
            json_t *rec = json_deep_copy(b);
            json_object_del(rec, "writeKey");
            char ts[32];
            cs_rfc3339_ms(rq->received_ms, ts);
            json_object_set_new(rec, "type",
                                json_string(track ? "track" : "identify"));
            json_object_set_new(rec, "receivedAt", json_string(ts));
            json_object_set_new(rec, "writeKey", json_string(key));
            json_array_append_new(track ? g->tracks : g->identifies, rec);
        }
        sb_resp_json(out, 200, json_pack("{s:b}", "success", 1));
    }
    free(key);
    json_decref(b);
}
