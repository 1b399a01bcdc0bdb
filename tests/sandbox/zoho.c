/*
 * zoho.c - the Zoho CRM (API v8) part of the sandbox, under /zoho (the
 * api_domain the sandbox's Zoho token endpoint hands out):
 *
 *   GET  /crm/v8/{Leads|Contacts}/search?email | phone | word | criteria
 *   POST /crm/v8/{module}/upsert      GET|PUT /crm/v8/{module}/{id}
 *   GET  /crm/v8/{module}/{id}/Notes?fields&page&per_page
 *   POST /crm/v8/{module}/{id}/Notes
 *   GET  /crm/v8/{Leads|Contacts}?fields&per_page&page   (Get Records)
 *   GET  /crm/v8/org                  the organisation
 *
 * Auth: "Authorization: Zoho-oauthtoken <token>" (any token unless
 * --zoho-token names some); otherwise 401 {"code": "INVALID_TOKEN",
 * "details": {}, "message": "invalid oauth token", "status": "error"}.
 *
 * Writes take {"data": [records]} (1 to 100) and answer per record in
 * "data" ({"code": "SUCCESS", "details": {"id", ...}, "message",
 * "status": "success"} or the record's error with "details" naming
 * api_name and json_path); a single record's error is also the HTTP
 * status (400). Leads need Last_Name and Company, contacts Last_Name
 * (MANDATORY_NOT_FOUND); Email must look like one (INVALID_DATA); field
 * API names are letters, digits and underscores. The upsert matches
 * duplicate_check_fields in order (default Email), emails ignoring case
 * and phones by digits (with or without the country code), and updates
 * the match ("action": "update", HTTP 200) or inserts ("action":
 * "insert", 201). A search or a list with no result answers 204 without
 * a body. A related list needs "fields" (REQUIRED_PARAM_MISSING).
 * Unknown ids: 400 INVALID_DATA "the related id given seems to be
 * invalid".
 *
 * Limits: --zoho-credits API credits per rolling 24 h, counted per
 * minute (default 5,000, the Free edition's; one per call), and
 * --zoho-rate calls per second (a sandbox stand-in for Zoho's
 * concurrency limit, default unlimited); past either, 429 {"code":
 * "TOO_MANY_REQUESTS", ...}, whose message names the credits when those
 * are spent.
 */
#define _GNU_SOURCE /* strcasestr */
#include "sandbox.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DAY_MS 86400000LL

enum { T_LEADS, T_CONTACTS, T_NOTES, T_COUNT };

static const char *const type_names[T_COUNT] = {"leads", "contacts",
                                                "notes"};

struct sb_zoho {
    json_t *list[T_COUNT];
    json_t *by_id;          /* "<id>" -> record (leads and contacts) */
    long long next_id;
    /* Credits spent per minute over the last 24 h (minute % 1440). */
    int64_t minute[1440];
    long long spent[1440];
    int64_t second;         /* the current second (--zoho-rate) */
    long long in_second;
};

struct sb_zoho *zoho_new(void)
{
    struct sb_zoho *z = xcalloc(1, sizeof(*z));
    for (int i = 0; i < T_COUNT; i++)
        z->list[i] = json_array();
    z->by_id = json_object();
    z->next_id = 1;
    return z;
}

void zoho_free(struct sb_zoho *z)
{
    if (!z)
        return;
    for (int i = 0; i < T_COUNT; i++)
        json_decref(z->list[i]);
    json_decref(z->by_id);
    free(z);
}

json_t *zoho_records(struct sb *s, const char *type)
{
    for (int i = 0; i < T_COUNT; i++)
        if (strcmp(type, type_names[i]) == 0)
            return json_incref(s->zoho->list[i]);
    return NULL;
}

/* ---- Answers ------------------------------------------------------------ */

static json_t *err_obj(const char *code, const char *message, json_t *details)
{
    return json_pack("{s:s,s:o,s:s,s:s}", "code", code, "details",
                     details ? details : json_object(), "message", message,
                     "status", "error");
}

json_t *zoho_error_body(int status)
{
    switch (status) {
    case 401: return err_obj("INVALID_TOKEN", "invalid oauth token", NULL);
    case 429:
        return err_obj("TOO_MANY_REQUESTS",
                       "the concurrency limit was exceeded", NULL);
    case 404:
        return err_obj("INVALID_URL_PATTERN",
                       "Please check if the URL trying to access is a "
                       "correct one", NULL);
    default:
        if (status >= 500)
            return err_obj("INTERNAL_ERROR", "Internal Server Error", NULL);
        return err_obj("INVALID_REQUEST", sb_reason(status), NULL);
    }
}

static void top_error(struct sb_resp *out, int status, const char *code,
                      const char *message, json_t *details)
{
    sb_resp_json(out, status, err_obj(code, message, details));
}

/* A record's error, as the only record of the answer. */
static void record_error(struct sb_resp *out, const char *code,
                         const char *message, const char *api_name,
                         size_t index)
{
    json_t *d = json_object();
    if (api_name) {
        json_object_set_new(d, "api_name", json_string(api_name));
        json_object_set_new(d, "json_path",
                            json_sprintf("$.data[%zu].%s", index, api_name));
    }
    sb_resp_json(out, 400,
                 json_pack("{s:[o]}", "data", err_obj(code, message, d)));
}

static json_t *now_iso(const struct sb_req *rq)
{
    char ts[32];
    cs_rfc3339_s(rq->received_ms, ts);
    return json_string(ts);
}

static json_t *success(const char *message, const json_t *rec,
                       const struct sb_req *rq, const char *action)
{
    json_t *by = json_pack("{s:s,s:s}", "name", "Sandbox User", "id",
                           "1000000000001");
    json_t *o = json_pack(
        "{s:s,s:{s:O,s:O,s:O,s:O,s:O},s:s,s:s}", "code", "SUCCESS",
        "details", "Modified_Time", json_object_get(rec, "Modified_Time"),
        "Modified_By", by, "Created_Time",
        json_object_get(rec, "Created_Time"), "id",
        json_object_get(rec, "id"), "Created_By", by, "message", message,
        "status", "success");
    json_decref(by);
    if (action) {
        json_object_set_new(o, "action", json_string(action));
        json_object_set_new(o, "duplicate_field", json_null());
    }
    CS_UNUSED(rq);
    return o;
}

/* ---- Auth and limits ---------------------------------------------------- */

static bool authorised(struct sb *s, const struct sb_req *rq)
{
    const char *a = sb_header(rq, "authorization");
    static const char scheme[] = "Zoho-oauthtoken ";
    if (!a || strncasecmp(a, scheme, sizeof(scheme) - 1) != 0)
        return false;
    const char *tok = a + sizeof(scheme) - 1;
    while (*tok == ' ')
        tok++;
    if (!*tok)
        return false;
    if (!s->nzoho_tokens)
        return true;
    for (size_t i = 0; i < s->nzoho_tokens; i++)
        if (strcmp(tok, s->zoho_tokens[i]) == 0)
            return true;
    return false;
}

/* NULL when the call may go, else the reason for a 429. Credits are
 * counted per minute over a rolling 24 h. */
static const char *take_credit(struct sb *s, int64_t now)
{
    struct sb_zoho *z = s->zoho;
    int64_t min = now / 60000;
    long long used = 0;
    for (int i = 0; i < 1440; i++)
        if (z->minute[i] > min - 1440)
            used += z->spent[i];
    if (used >= s->zoho_credits)
        return "the API credits of the last 24 hours are used up";
    if (s->zoho_rate > 0) {
        if (now / 1000 != z->second) {
            z->second = now / 1000;
            z->in_second = 0;
        }
        if (z->in_second >= s->zoho_rate)
            return "the concurrency limit was exceeded";
        z->in_second++;
    }
    int slot = (int)(min % 1440);
    if (z->minute[slot] != min) {
        z->minute[slot] = min;
        z->spent[slot] = 0;
    }
    z->spent[slot]++;
    return NULL;
}

/* ---- Records ------------------------------------------------------------ */

static const char *jstr(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s && *s ? s : NULL;
}

static bool api_name_ok(const char *s)
{
    if (!isalpha((unsigned char)*s))
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '$')
            return false;
    return true;
}

static size_t digits_of(const char *s, char *out, size_t n)
{
    size_t k = 0;
    for (; s && *s && k + 1 < n; s++)
        if (isdigit((unsigned char)*s))
            out[k++] = *s;
    out[k] = '\0';
    return k;
}

/* Equal digits, or one number without its country code (7 digits or
 * more that end the other). */
static bool phone_eq(const char *a, const char *b)
{
    char da[40], db[40];
    size_t na = digits_of(a, da, sizeof(da)), nb = digits_of(b, db,
                                                             sizeof(db));
    if (na == 0 || nb == 0)
        return false;
    if (na < 7 || nb < 7)
        return strcmp(da, db) == 0;
    return na < nb ? strcmp(db + nb - na, da) == 0
                   : strcmp(da + na - nb, db) == 0;
}

/* Whether record r holds value v in field f, as Zoho's duplicate check
 * compares it. */
static bool field_matches(const json_t *r, const char *f, const char *v)
{
    if (!v)
        return false;
    if (strcmp(f, "Email") == 0) {
        const char *e = jstr(r, "Email");
        return e && strcasecmp(e, v) == 0;
    }
    if (strcmp(f, "Phone") == 0 || strcmp(f, "Mobile") == 0)
        return phone_eq(jstr(r, "Phone"), v) || phone_eq(jstr(r, "Mobile"),
                                                          v);
    const char *x = jstr(r, f);
    return x && strcmp(x, v) == 0;
}

/* One record's fields checked: true, or false with the error answered. */
static bool check_record(const json_t *rec, size_t index, bool create,
                         bool leads, struct sb_resp *out)
{
    if (!json_is_object(rec)) {
        record_error(out, "INVALID_DATA", "invalid data", NULL, index);
        return false;
    }
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)rec, k, v) {
        if (!api_name_ok(k) || strcmp(k, "id") == 0) {
            record_error(out, "INVALID_DATA", "invalid data", k, index);
            return false;
        }
        if (strcmp(k, "Email") == 0 && !json_is_null(v) &&
            (!json_is_string(v) || !strchr(json_string_value(v), '@'))) {
            record_error(out, "INVALID_DATA", "invalid data", k, index);
            return false;
        }
    }
    static const char *const needs[] = {"Last_Name", "Company"};
    for (size_t i = 0; create && i < (leads ? 2u : 1u); i++)
        if (!jstr(rec, needs[i])) {
            record_error(out, "MANDATORY_NOT_FOUND",
                         "required field not found", needs[i], index);
            return false;
        }
    return true;
}

static void merge(json_t *r, const json_t *in, const struct sb_req *rq)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)in, k, v) json_object_set(r, k, v);
    json_object_set_new(r, "Modified_Time", now_iso(rq));
    const char *f = jstr(r, "First_Name"), *l = jstr(r, "Last_Name");
    json_object_set_new(r, "Full_Name",
                        json_sprintf("%s%s%s", f ? f : "", f && l ? " " : "",
                                     l ? l : ""));
}

/* {"data": [one record]} or the 400 already answered. */
static json_t *single(const struct sb_req *rq, json_t **body,
                      struct sb_resp *out)
{
    if (!sb_is_json_object(rq, body)) {
        top_error(out, 400, "INVALID_DATA", "body is not a valid JSON object",
                  NULL);
        return NULL;
    }
    json_t *d = json_object_get(*body, "data");
    if (!json_is_array(d) || json_array_size(d) == 0) {
        top_error(out, 400, "REQUIRED_PARAM_MISSING",
                  "One of the expected parameter is missing",
                  json_pack("{s:s}", "param", "data"));
    } else if (json_array_size(d) > 100) {
        top_error(out, 400, "LIMIT_REACHED",
                  "the number of records in a request exceeds 100",
                  json_pack("{s:i}", "limit", 100));
    } else {
        const char *k;
        json_t *v;
        json_object_foreach(*body, k, v) {
            if (strcmp(k, "data") && strcmp(k, "trigger") &&
                strcmp(k, "duplicate_check_fields")) {
                top_error(out, 400, "INVALID_DATA", "invalid data",
                          json_pack("{s:s}", "param", k));
                json_decref(*body);
                return NULL;
            }
        }
        return d;
    }
    json_decref(*body);
    return NULL;
}

static void upsert(struct sb *s, const struct sb_req *rq, int type,
                   struct sb_resp *out)
{
    json_t *body;
    json_t *data = single(rq, &body, out);
    if (!data)
        return;
    json_t *checks = json_object_get(body, "duplicate_check_fields");
    if (checks && !json_is_array(checks)) {
        top_error(out, 400, "INVALID_DATA", "invalid data",
                  json_pack("{s:s}", "param", "duplicate_check_fields"));
        json_decref(body);
        return;
    }
    json_t *results = json_array();
    int status = 200;
    size_t i;
    json_t *in;
    json_array_foreach(data, i, in) {
        /* The first duplicate-check field with a match decides. */
        json_t *match = NULL;
        size_t j;
        json_t *f;
        json_t *dflt = json_pack("[s]", "Email");
        json_array_foreach(checks ? checks : dflt, j, f) {
            const char *fn = json_string_value(f);
            size_t k;
            json_t *r;
            json_array_foreach(s->zoho->list[type], k, r) {
                if (!match && fn && json_is_object(in) &&
                    field_matches(r, fn, jstr(in, fn)))
                    match = r;
            }
        }
        json_decref(dflt);
        if (!check_record(in, i, !match, type == T_LEADS, out)) {
            json_decref(results);
            json_decref(body);
            return;
        }
        if (match) {
            merge(match, in, rq);
            json_array_append_new(results, success("record updated", match,
                                                   rq, "update"));
        } else {
            char id[32];
            snprintf(id, sizeof(id), "5725767%012lld", s->zoho->next_id++);
            json_t *r = json_pack("{s:s,s:o,s:o}", "id", id, "Created_Time",
                          now_iso(rq), "received_at_ms",
                          json_integer(rq->received_ms));
            merge(r, in, rq);
            json_object_set(s->zoho->by_id, id, r);
            json_array_append(s->zoho->list[type], r);
            json_array_append_new(results,
                                  success("record added", r, rq, "insert"));
            json_decref(r);
            status = 201;
        }
    }
    sb_resp_json(out, status, json_pack("{s:o}", "data", results));
    json_decref(body);
}

static json_t *record_of(struct sb *s, int type, const char *id)
{
    json_t *r = json_object_get(s->zoho->by_id, id);
    if (!r)
        return NULL;
    size_t i;
    json_t *x;
    json_array_foreach(s->zoho->list[type], i, x) {
        if (x == r)
            return r;
    }
    return NULL;
}

static void invalid_id(struct sb_resp *out, const char *id)
{
    top_error(out, 400, "INVALID_DATA",
              "the related id given seems to be invalid",
              json_pack("{s:s}", "id", id));
}

/* A record as the API shows it (without the sandbox's keys). */
static json_t *pub(const json_t *r)
{
    json_t *o = json_deep_copy(r);
    json_object_del(o, "received_at_ms");
    return o;
}

static void update(struct sb *s, const struct sb_req *rq, int type,
                   const char *id, struct sb_resp *out)
{
    json_t *r = record_of(s, type, id);
    if (!r) {
        invalid_id(out, id);
        return;
    }
    json_t *body;
    json_t *data = single(rq, &body, out);
    if (!data)
        return;
    json_t *in = json_array_get(data, 0);
    if (json_array_size(data) != 1) {
        top_error(out, 400, "INVALID_DATA", "invalid data",
                  json_pack("{s:s}", "param", "data"));
    } else if (check_record(in, 0, false, type == T_LEADS, out)) {
        merge(r, in, rq);
        sb_resp_json(out, 200,
                     json_pack("{s:[o]}", "data",
                               success("record updated", r, rq, NULL)));
    }
    json_decref(body);
}

static void search(struct sb *s, const struct sb_req *rq, int type,
                   struct sb_resp *out)
{
    static const char *const params[] = {"email", "phone", "word",
                                         "criteria"};
    char *v[4];
    int given = 0;
    for (int i = 0; i < 4; i++) {
        v[i] = sb_query_param(rq->query, params[i]);
        given += v[i] && *v[i];
    }
    if (!given) {
        top_error(out, 400, "REQUIRED_PARAM_MISSING",
                  "One of the expected parameter is missing",
                  json_pack("{s:[s,s,s,s]}", "param", "criteria", "email",
                            "phone", "word"));
    } else if (v[3] && *v[3] && !(v[3][0] == '(' &&
                                  v[3][strlen(v[3]) - 1] == ')')) {
        top_error(out, 400, "INVALID_QUERY", "invalid query formed",
                  json_pack("{s:s}", "param", "criteria"));
    } else {
        json_t *hits = json_array();
        size_t i;
        json_t *r;
        json_array_foreach(s->zoho->list[type], i, r) {
            bool m = true;
            if (v[0] && *v[0])
                m &= field_matches(r, "Email", v[0]);
            if (v[1] && *v[1])
                m &= field_matches(r, "Phone", v[1]);
            if (v[2] && *v[2]) {
                char *txt = json_dumps(r, JSON_COMPACT);
                m &= strcasestr(txt, v[2]) != NULL;
                free(txt);
            }
            if (m)
                json_array_append_new(hits, pub(r));
        }
        size_t n = json_array_size(hits);
        if (!n) {
            json_decref(hits);
            out->status = 204;
        } else {
            sb_resp_json(out, 200,
                         json_pack("{s:o,s:{s:i,s:I,s:i,s:b}}", "data", hits,
                                   "info", "per_page", 200, "count",
                                   (json_int_t)n, "page", 1, "more_records",
                                   0));
        }
    }
    for (int i = 0; i < 4; i++)
        free(v[i]);
}

/* ---- Notes -------------------------------------------------------------- */

static void notes_list(struct sb *s, const struct sb_req *rq,
                       const char *parent, struct sb_resp *out)
{
    char *fields = sb_query_param(rq->query, "fields");
    char *page_s = sb_query_param(rq->query, "page");
    char *per_s = sb_query_param(rq->query, "per_page");
    long page = page_s && *page_s ? strtol(page_s, NULL, 10) : 1;
    long per = per_s && *per_s ? strtol(per_s, NULL, 10) : 200;
    if (!fields || !*fields) {
        top_error(out, 400, "REQUIRED_PARAM_MISSING",
                  "One of the expected parameter is missing",
                  json_pack("{s:s}", "param", "fields"));
    } else if (page < 1 || per < 1 || per > 200) {
        top_error(out, 400, "INVALID_DATA", "invalid data",
                  json_pack("{s:s}", "param", "per_page"));
    } else {
        json_t *mine = json_array();
        size_t i;
        json_t *n;
        json_array_foreach(s->zoho->list[T_NOTES], i, n) {
            if (strcmp(jstr(json_object_get(n, "Parent_Id"), "id"), parent) ==
                0)
                json_array_append(mine, n);
        }
        size_t total = json_array_size(mine);
        size_t from = (size_t)((page - 1) * per);
        json_t *data = json_array();
        for (size_t k = from; k < total && k < from + (size_t)per; k++) {
            json_t *src = json_array_get(mine, k);
            json_t *o = json_pack("{s:O}", "id", json_object_get(src, "id"));
            /* Only the requested fields, as Zoho answers. */
            for (char *f = fields, *e; f && *f; f = e ? e + 1 : NULL) {
                e = strchr(f, ',');
                char name[64];
                snprintf(name, sizeof(name), "%.*s",
                         (int)(e ? (size_t)(e - f) : strlen(f)), f);
                if (json_object_get(src, name))
                    json_object_set(o, name, json_object_get(src, name));
            }
            json_array_append_new(data, o);
        }
        json_decref(mine);
        if (!json_array_size(data)) {
            json_decref(data);
            out->status = 204;
        } else {
            bool more = from + (size_t)per < total;
            sb_resp_json(out, 200,
                         json_pack("{s:o,s:{s:i,s:I,s:i,s:b}}", "data", data,
                                   "info", "per_page", (int)per, "count",
                                   (json_int_t)json_array_size(data), "page",
                                   (int)page, "more_records", more));
        }
    }
    free(fields);
    free(page_s);
    free(per_s);
}

static void note_create(struct sb *s, const struct sb_req *rq,
                        const char *module, const char *parent,
                        struct sb_resp *out)
{
    json_t *body;
    json_t *data = single(rq, &body, out);
    if (!data)
        return;
    json_t *in = json_array_get(data, 0);
    const char *k;
    json_t *v;
    const char *bad = NULL;
    json_object_foreach(in, k, v) {
        if (strcmp(k, "Note_Title") && strcmp(k, "Note_Content") &&
            strcmp(k, "Parent_Id") && strcmp(k, "se_module"))
            bad = k;
        else if (!json_is_string(v) && strcmp(k, "Parent_Id"))
            bad = k;
    }
    if (json_array_size(data) != 1 || !json_is_object(in)) {
        top_error(out, 400, "INVALID_DATA", "invalid data",
                  json_pack("{s:s}", "param", "data"));
    } else if (bad) {
        record_error(out, "INVALID_DATA", "invalid data", bad, 0);
    } else if (!jstr(in, "Note_Content")) {
        record_error(out, "MANDATORY_NOT_FOUND", "required field not found",
                     "Note_Content", 0);
    } else {
        char id[32];
        snprintf(id, sizeof(id), "5725767%012lld", s->zoho->next_id++);
        json_t *n = json_pack("{s:s,s:O,s:o,s:{s:s,s:{s:s}},s:o,s:o,s:I}",
                              "id", id, "Note_Content",
                              json_object_get(in, "Note_Content"),
                              "Note_Title",
                              jstr(in, "Note_Title")
                                  ? json_string(jstr(in, "Note_Title"))
                                  : json_null(),
                              "Parent_Id", "id", parent, "module",
                              "api_name", module, "Created_Time",
                              now_iso(rq), "Modified_Time", now_iso(rq),
                              "received_at_ms", (json_int_t)rq->received_ms);
        json_array_append(s->zoho->list[T_NOTES], n);
        sb_resp_json(out, 201,
                     json_pack("{s:[o]}", "data",
                               success("record added", n, rq, NULL)));
        json_decref(n);
    }
    json_decref(body);
}

/* ---- Routing ------------------------------------------------------------ */

/* Get Organization Data: the one org the sandbox stands for. */
static void org_data(struct sb_resp *out)
{
    sb_resp_json(out, 200,
                 json_pack("{s:[{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s}]}", "org",
                           "id", "4150868000000225013", "zgid",
                           "4150868000000225002", "company_name",
                           "Acme Roofing", "time_zone", "America/New_York",
                           "country_code", "US", "iso_code", "USD",
                           "currency", "US Dollar - USD", "primary_email",
                           "admin@acme.example"));
}

/* Get Records: fields is mandatory; per_page (1..200, default 200) and
 * page; 204 when there is nothing to show. */
static void record_list(struct sb *s, const struct sb_req *rq, int type,
                        struct sb_resp *out)
{
    char *fields = sb_query_param(rq->query, "fields");
    char *pp = sb_query_param(rq->query, "per_page");
    char *pg = sb_query_param(rq->query, "page");
    long per = pp && *pp ? strtol(pp, NULL, 10) : 200;
    long page = pg && *pg ? strtol(pg, NULL, 10) : 1;
    if (!fields || !*fields) {
        top_error(out, 400, "REQUIRED_PARAM_MISSING",
                  "One of the expected parameter is missing",
                  json_pack("{s:s}", "param_name", "fields"));
    } else if (per < 1 || per > 200 || page < 1) {
        top_error(out, 400, "INVALID_DATA", "invalid data",
                  json_pack("{s:s}", "param_name",
                            per < 1 || per > 200 ? "per_page" : "page"));
    } else {
        const json_t *all = s->zoho->list[type];
        size_t total = json_array_size(all);
        size_t from = (size_t)((page - 1) * per);
        json_t *data = json_array();
        for (size_t i = from; i < total && i < from + (size_t)per; i++) {
            json_t *r = pub(json_array_get(all, i));
            json_t *o = json_pack("{s:O}", "id", json_object_get(r, "id"));
            char *save = NULL;
            for (char *f = strtok_r(fields, ",", &save); f;
                 f = strtok_r(NULL, ",", &save)) {
                json_t *v = json_object_get(r, f);
                json_object_set(o, f, v ? v : json_null());
            }
            json_array_append_new(data, o);
            json_decref(r);
        }
        if (!json_array_size(data)) {
            json_decref(data);
            out->status = 204;
        } else {
            size_t got = json_array_size(data);
            sb_resp_json(out, 200,
                         json_pack("{s:o,s:{s:i,s:i,s:i,s:b}}", "data", data,
                                   "info", "per_page", (int)per, "count",
                                   (int)got, "page", (int)page,
                                   "more_records", from + got < total));
        }
    }
    free(fields);
    free(pp);
    free(pg);
}

static void route(struct sb *s, const struct sb_req *rq, struct sb_resp *out)
{
    const char *p = rq->sub;
    static const char pfx[] = "/crm/v8/";
    if (strncmp(p, pfx, sizeof(pfx) - 1) != 0) {
        sb_resp_json(out, 404, zoho_error_body(404));
        return;
    }
    p += sizeof(pfx) - 1;
    char seg[3][64] = {"", "", ""};
    int n = 0;
    while (*p && n < 3) {
        size_t l = strcspn(p, "/");
        if (l == 0 || l >= 64) {
            n = -1;
            break;
        }
        snprintf(seg[n++], 64, "%.*s", (int)l, p);
        p += l;
        if (*p == '/')
            p++;
    }
    int type = strcmp(seg[0], "Leads") == 0      ? T_LEADS
               : strcmp(seg[0], "Contacts") == 0 ? T_CONTACTS
                                                 : -1;
    int m = rq->method;
    if (n < 1 || *p) {
        sb_resp_json(out, 404, zoho_error_body(404));
    } else if (n == 1 && strcmp(seg[0], "org") == 0 && m == HTTP_GET) {
        org_data(out);
    } else if (type < 0) {
        top_error(out, 400, "INVALID_MODULE",
                  "the module name given seems to be invalid",
                  json_pack("{s:s}", "module", seg[0]));
    } else if (n == 1 && m == HTTP_GET) {
        record_list(s, rq, type, out);
    } else if (n == 2 && strcmp(seg[1], "search") == 0 && m == HTTP_GET) {
        search(s, rq, type, out);
    } else if (n == 2 && strcmp(seg[1], "upsert") == 0 && m == HTTP_POST) {
        upsert(s, rq, type, out);
    } else if (n == 2 && m == HTTP_GET) {
        json_t *r = record_of(s, type, seg[1]);
        if (r)
            sb_resp_json(out, 200, json_pack("{s:[o]}", "data", pub(r)));
        else
            out->status = 204;
    } else if (n == 2 && m == HTTP_PUT) {
        update(s, rq, type, seg[1], out);
    } else if (n == 3 && strcmp(seg[2], "Notes") == 0 &&
               (m == HTTP_GET || m == HTTP_POST)) {
        if (!record_of(s, type, seg[1]))
            invalid_id(out, seg[1]);
        else if (m == HTTP_GET)
            notes_list(s, rq, seg[1], out);
        else
            note_create(s, rq, seg[0], seg[1], out);
    } else {
        sb_resp_json(out, 404, zoho_error_body(404));
    }
}

void zoho_handle(struct sb *s, const struct sb_req *rq, struct sb_resp *out)
{
    const char *why;
    if (!authorised(s, rq))
        sb_resp_json(out, 401, zoho_error_body(401));
    else if ((why = take_credit(s, cs_now_ms())))
        top_error(out, 429, "TOO_MANY_REQUESTS", why, NULL);
    else
        route(s, rq, out);
}
