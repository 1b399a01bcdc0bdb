/*
 * sentry.c - Sentry's ingestion endpoint, under /sentry:
 *
 *   POST /api/{project_id}/envelope/    an envelope of one or more items
 *
 * As Sentry does: X-Sentry-Auth must name sentry_key (401 {"detail":
 * "..."} otherwise, or for a key not given with --sentry-key when one is);
 * the envelope is a header line, then per item a header line (with
 * "length" in bytes, or up to the next newline) and its payload. Event
 * items must be JSON objects with a 32-hex-digit event_id that matches the
 * envelope's; a malformed envelope is 400 {"detail": ...}. The answer is
 * 200 {"id": event_id}. Events are kept for /_sandbox/records
 * ?provider=sentry&type=events.
 */
#include "sandbox.h"
#include "log.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void detail(struct sb_resp *out, int status, const char *msg)
{
    sb_resp_json(out, status, json_pack("{s:s}", "detail", msg));
}

json_t *sentry_error_body(int status)
{
    return json_pack("{s:s}", "detail",
                     status == 429 ? "Event dropped due to rate limit"
                                   : "internal error");
}

/* The value of key=... in an X-Sentry-Auth header, or NULL. */
static char *auth_param(const char *h, const char *key)
{
    size_t kl = strlen(key);
    const char *p = h;
    while ((p = strstr(p, key))) {
        bool start = p == h || p[-1] == ' ' || p[-1] == ',';
        if (start && p[kl] == '=') {
            const char *v = p + kl + 1;
            return xstrndup(v, strcspn(v, ", "));
        }
        p += kl;
    }
    return NULL;
}

static bool hex32(const char *s)
{
    if (!s || strlen(s) != 32)
        return false;
    for (; *s; s++)
        if (!isxdigit((unsigned char)*s))
            return false;
    return true;
}

/* The next line of [p, end) (without the newline) and the rest. */
static const char *line_of(const char *p, const char *end, size_t *len)
{
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    *len = (size_t)((nl ? nl : end) - p);
    return nl ? nl + 1 : end;
}

void sentry_handle(struct sb *s, const struct sb_req *rq, struct sb_resp *out)
{
    const char *sub = rq->sub;
    if (strncmp(sub, "/api/", 5) != 0 ||
        strcmp(sub + 5 + strcspn(sub + 5, "/"), "/envelope/") != 0) {
        detail(out, 404, "not found");
        return;
    }
    if (rq->method != HTTP_POST) {
        detail(out, 405, "method not allowed");
        return;
    }
    const char *auth = sb_header(rq, "x-sentry-auth");
    char *key = auth ? auth_param(auth, "sentry_key") : NULL;
    bool ok = key && *key && (!s->sentry_key || !strcmp(key, s->sentry_key));
    free(key);
    if (!ok) {
        detail(out, 401, "missing or invalid sentry_key");
        return;
    }
    if (!rq->body.data || rq->body.len == 0) {
        detail(out, 400, "empty envelope");
        return;
    }
    const char *p = rq->body.data, *end = rq->body.data + rq->body.len;
    size_t n;
    const char *rest = line_of(p, end, &n);
    json_t *hdr = p && n ? json_loadb(p, n, 0, NULL) : NULL;
    const char *id = json_string_value(json_object_get(hdr, "event_id"));
    if (!json_is_object(hdr)) {
        json_decref(hdr);
        detail(out, 400, "invalid envelope header");
        return;
    }
    size_t events = 0;
    p = rest;
    while (p < end) {
        const char *ih_end = line_of(p, end, &n);
        if (n == 0) { /* a trailing newline */
            p = ih_end;
            continue;
        }
        json_t *ih = json_loadb(p, n, 0, NULL);
        if (!json_is_object(ih)) {
            json_decref(ih);
            json_decref(hdr);
            detail(out, 400, "invalid item header");
            return;
        }
        json_t *jl = json_object_get(ih, "length");
        size_t len;
        if (json_is_integer(jl)) {
            len = (size_t)json_integer_value(jl);
            if (json_integer_value(jl) < 0 ||
                len > (size_t)(end - ih_end)) {
                json_decref(ih);
                json_decref(hdr);
                detail(out, 400, "item length past the end");
                return;
            }
        } else {
            line_of(ih_end, end, &len);
        }
        const char *type = json_string_value(json_object_get(ih, "type"));
        if (type && strcmp(type, "event") == 0) {
            json_t *ev = json_loadb(ih_end, len, 0, NULL);
            const char *eid = json_string_value(json_object_get(ev,
                                                                "event_id"));
            if (!json_is_object(ev) || !hex32(eid) || (id && strcmp(id, eid))) {
                json_decref(ev);
                json_decref(ih);
                json_decref(hdr);
                detail(out, 400, "invalid event");
                return;
            }
            json_object_set_new(ev, "received_at_ms",
                                json_integer((json_int_t)rq->received_ms));
            json_array_append_new(s->sentry_events, ev);
            events++;
        }
        json_decref(ih);
        p = ih_end + len;
        if (p < end && *p == '\n')
            p++;
    }
    sb_resp_json(out, 200, json_pack("{s:s?}", "id", id));
    json_decref(hdr);
    if (!events)
        log_info("sandbox_sentry_no_event");
}
