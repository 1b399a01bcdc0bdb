/*
 * others.c - the smaller providers of the sandbox:
 *
 *   Zapier catch hooks  POST|PUT /zapier/hooks/catch/{account}/{hook}/
 *       Zapier always answers 200 with debugging ids, whatever the Zap's
 *       state; ".../silent/" answers with an empty body.
 *   Retell              POST /retell/v2/create-phone-call
 *       Bearer auth; from_number and to_number must be E.164; 201 with a
 *       PhoneCallResponse in state "registered".
 *   Custom REST         any method under /custom/...
 *       201 {"id": n}; an Idempotency-Key seen before returns the first
 *       answer again without a new record.
 */
#include "sandbox.h"
#include "crypto.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- Zapier ------------------------------------------------------------- */

json_t *zap_error_body(int status)
{
    return json_pack("{s:s,s:s}", "status", "error", "message",
                     sb_reason(status));
}

/* The request body as JSON, or as a string when it is not JSON. */
static json_t *body_value(const struct sb_req *rq)
{
    json_t *j = sb_body_json(rq);
    if (j)
        return j;
    return json_stringn(rq->body.data ? rq->body.data : "", rq->body.len);
}

void zap_handle(struct sb *s, const struct sb_req *rq, struct sb_resp *out)
{
    static const char pre[] = "/hooks/catch/";
    const char *p = rq->sub;
    char account[128], hook[128];
    bool silent = false;
    bool ok = strncmp(p, pre, sizeof(pre) - 1) == 0;
    if (ok) {
        /* {account}/{hook}[/][silent[/]] */
        const char *a = p + sizeof(pre) - 1;
        size_t al = strcspn(a, "/");
        const char *h = a[al] ? a + al + 1 : a + al;
        size_t hl = strcspn(h, "/");
        const char *rest = h[hl] ? h + hl + 1 : h + hl;
        ok = al && hl && al < sizeof(account) && hl < sizeof(hook) &&
             (!*rest || strcmp(rest, "silent") == 0 ||
              strcmp(rest, "silent/") == 0);
        if (ok) {
            silent = *rest != '\0';
            memcpy(account, a, al);
            account[al] = '\0';
            memcpy(hook, h, hl);
            hook[hl] = '\0';
        }
    }
    if (!ok) {
        sb_resp_json(out, 404, zap_error_body(404));
        return;
    }
    if (rq->method != HTTP_POST && rq->method != HTTP_PUT) {
        sb_resp_json(out, 405, zap_error_body(405));
        return;
    }
    char attempt[37], id[37], request_id[37];
    cs_uuid4(attempt);
    cs_uuid4(id);
    cs_uuid4(request_id);
    /* Zapier ignores Idempotency-Key; the record keeps it so tests can
     * count duplicate deliveries (distinct=idempotency_key). */
    json_array_append_new(
        s->zapier_hooks,
        json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:o,s:s?,s:I}", "id", id,
                  "attempt", attempt, "request_id", request_id, "account",
                  account, "hook", hook, "method",
                  http_method_str((enum http_method)rq->method), "body",
                  body_value(rq), "idempotency_key",
                  sb_header(rq, "idempotency-key"), "received_at_ms",
                  (json_int_t)rq->received_ms));
    if (silent) {
        out->status = 200;
        return;
    }
    sb_resp_json(out, 200,
                 json_pack("{s:s,s:s,s:s,s:s}", "attempt", attempt, "id", id,
                           "request_id", request_id, "status", "success"));
}

/* ---- Retell ------------------------------------------------------------- */

json_t *retell_error_body(int status)
{
    return json_pack("{s:s}", "error_message", sb_reason(status));
}

static void retell_fail(struct sb_resp *out, int status, const char *msg)
{
    sb_resp_json(out, status, json_pack("{s:s}", "error_message", msg));
}

/* E.164: '+', a non-zero digit, then 1 to 14 more digits. */
static bool is_e164(const char *s)
{
    if (!s || s[0] != '+' || s[1] < '1' || s[1] > '9')
        return false;
    size_t n = 0;
    for (const char *p = s + 1; *p; p++, n++)
        if (!isdigit((unsigned char)*p))
            return false;
    return n >= 2 && n <= 15;
}

static void call_id(struct sb *s, char out[33])
{
    static const char alnum[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    for (int i = 0; i < 32; i++)
        out[i] = alnum[sb_rand(s) % (sizeof(alnum) - 1)];
    out[32] = '\0';
}

void retell_handle(struct sb *s, const struct sb_req *rq, struct sb_resp *out)
{
    if (strcmp(rq->sub, "/v2/create-phone-call") != 0) {
        retell_fail(out, 404, "Not Found");
        return;
    }
    if (rq->method != HTTP_POST) {
        retell_fail(out, 405, "Method Not Allowed");
        return;
    }
    const char *a = sb_header(rq, "authorization");
    if (!a || strncasecmp(a, "Bearer ", 7) != 0 || !a[7]) {
        retell_fail(out, 401, "Unauthorized: missing or invalid API key");
        return;
    }
    json_t *in;
    if (!sb_is_json_object(rq, &in)) {
        retell_fail(out, 400, "Invalid request body: expected a JSON object");
        return;
    }
    const char *from = json_string_value(json_object_get(in, "from_number"));
    const char *to = json_string_value(json_object_get(in, "to_number"));
    if (!is_e164(from) || !is_e164(to)) {
        char *msg = xasprintf("%s must be a valid phone number in E.164 "
                              "format",
                              !is_e164(from) ? "from_number" : "to_number");
        retell_fail(out, 400, msg);
        free(msg);
        json_decref(in);
        return;
    }
    char cid[33];
    call_id(s, cid);
    json_t *agent = json_object_get(in, "override_agent_id");
    json_t *version = json_object_get(in, "override_agent_version");
    json_t *call = json_pack(
        "{s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "call_id", cid, "agent_id",
        json_is_string(agent) ? json_string_value(agent) : "agent_sandbox",
        "call_status", "registered", "call_type", "phone_call", "direction",
        "outbound", "from_number", from, "to_number", to);
    json_object_set_new(call, "agent_version",
                        version ? json_incref(version) : json_integer(1));
    static const char *const copied[] = {"metadata",
                                         "retell_llm_dynamic_variables",
                                         "custom_sip_headers"};
    for (size_t i = 0; i < CS_ARRAY_LEN(copied); i++) {
        json_t *v = json_object_get(in, copied[i]);
        if (v)
            json_object_set(call, copied[i], v);
    }
    json_object_set_new(call, "data_storage_setting",
                        json_string("everything"));
    json_t *rec = json_deep_copy(call);
    json_object_set_new(rec, "received_at_ms",
                        json_integer((json_int_t)rq->received_ms));
    json_object_set_new(rec, "request", in);
    json_array_append_new(s->retell_calls, rec);
    sb_resp_json(out, 201, call);
}

/* ---- Custom REST -------------------------------------------------------- */

json_t *custom_error_body(int status)
{
    return json_pack("{s:s,s:i}", "error", sb_reason(status), "status",
                     status);
}

void custom_handle(struct sb *s, const struct sb_req *rq, struct sb_resp *out)
{
    const char *key = sb_header(rq, "idempotency-key");
    if (key && *key) {
        json_t *prev = json_object_get(s->idem, key);
        if (prev) {
            sb_resp_json(out,
                         (int)json_integer_value(json_object_get(prev,
                                                                 "status")),
                         json_incref(json_object_get(prev, "body")));
            sb_resp_header(out, "Idempotent-Replayed: true");
            return;
        }
    }
    long long id = s->custom_next++;
    json_t *headers = json_object();
    for (size_t i = 0; i < rq->nheaders; i++)
        json_object_set_new(headers, rq->headers[i].name,
                            json_string(rq->headers[i].value));
    json_t *rec = json_pack(
        "{s:I,s:s,s:s,s:s,s:o,s:o,s:I}", "id", (json_int_t)id, "method",
        http_method_str((enum http_method)rq->method), "path", rq->path,
        "query", rq->query, "headers", headers, "body",
        rq->body.len ? body_value(rq) : json_null(), "received_at_ms",
        (json_int_t)rq->received_ms);
    if (key && *key)
        json_object_set_new(rec, "idempotency_key", json_string(key));
    json_array_append_new(s->custom, rec);
    json_t *body = json_pack("{s:I}", "id", (json_int_t)id);
    if (key && *key)
        json_object_set_new(s->idem, key,
                            json_pack("{s:i,s:O}", "status", 201, "body",
                                      body));
    sb_resp_json(out, 201, body);
}
