/*
 * gohighlevel.c - the GoHighLevel (API v2, services.leadconnectorhq.com)
 * part of the sandbox, under /gohighlevel:
 *
 *   GET  /contacts/search/duplicate?locationId&number&email  {"contact"}
 *   POST /contacts/            POST /contacts/upsert
 *   GET  /contacts/{id}        PUT  /contacts/{id}
 *   GET  /contacts/{id}/notes  POST /contacts/{id}/notes
 *   POST /contacts/{id}/workflow/{workflowId}
 *   GET  /calendars/events?locationId&calendarId&startTime&endTime (ms)
 *   POST /calendars/events/appointments
 *   GET  /opportunities/search?location_id&pipeline_id&contact_id&status
 *   POST /opportunities/
 *   GET  /locations/{id}       {"location": {...}}
 *
 * Shapes follow HighLevel's OpenAPI documents (tests/specs/gohighlevel):
 * every request needs "Authorization: Bearer" (401 {"statusCode":401,
 * "message":"Invalid token: access token is invalid","error":
 * "Unauthorized"} otherwise, or for a token not given with
 * --gohighlevel-token when some are) and its operation's Version header
 * (2021-07-28; 2021-04-15 for calendars; 400 otherwise). Bodies are
 * checked as HighLevel's validation pipe does: unknown properties, wrong
 * types, missing required ones and bad enum values give 422 {"statusCode":
 * 422,"message":[...],"error":"Unprocessable Entity"}. Locations do not
 * allow duplicate contacts (HighLevel's default): creating a second
 * contact with a known email or phone gives 400 "This location does not
 * allow duplicated contacts." with meta.contactId, and a second
 * opportunity for a contact in a pipeline 400 "Can not create duplicate
 * opportunity for the contact.". An appointment must fit a free slot of
 * its calendar unless ignoreFreeSlotValidation is true.
 *
 * Rate limits: every answer carries X-RateLimit-Max, -Remaining,
 * -Interval-Milliseconds (a sliding 10 s window of --gohighlevel-rate
 * accepted requests, 100 by default), X-RateLimit-Limit-Daily and
 * X-RateLimit-Daily-Remaining (--gohighlevel-daily, 200,000 by default,
 * counted since start or reset); past either, 429. HighLevel does not
 * document its 429 body; the sandbox answers {"statusCode":429,
 * "message":"Too Many Requests"} in the same error shape.
 */
#include "sandbox.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define WINDOW_MS 10000
#define V_CONTACTS "2021-07-28"
#define V_CALENDARS "2021-04-15"

enum { T_CONTACTS, T_NOTES, T_APPTS, T_OPPS, T_ENROLL, T_COUNT };

static const char *const type_names[T_COUNT] = {
    "contacts", "notes", "appointments", "opportunities", "enrollments"};

struct sb_ghl {
    json_t *list[T_COUNT];  /* records in creation order */
    json_t *contacts;       /* id -> record */
    json_t *index;          /* "e:<email>" / "p:<digits>" -> id */
    long long next_id;
    long long daily_used;
    int64_t *window;        /* accepted request times, a ring */
    size_t wcap, whead, wlen;
};

/* ---- Lifecycle ---------------------------------------------------------- */

struct sb_ghl *ghl_new(void)
{
    struct sb_ghl *g = xcalloc(1, sizeof(*g));
    for (int i = 0; i < T_COUNT; i++)
        g->list[i] = json_array();
    g->contacts = json_object();
    g->index = json_object();
    g->next_id = 1;
    return g;
}

void ghl_free(struct sb_ghl *g)
{
    if (!g)
        return;
    for (int i = 0; i < T_COUNT; i++)
        json_decref(g->list[i]);
    json_decref(g->contacts);
    json_decref(g->index);
    free(g->window);
    free(g);
}

json_t *ghl_records(struct sb *s, const char *type)
{
    for (int i = 0; i < T_COUNT; i++)
        if (strcmp(type, type_names[i]) == 0)
            return json_incref(s->ghl->list[i]);
    return NULL;
}

/* A 20-character id in HighLevel's style. */
static json_t *new_id(struct sb *s, const char *prefix)
{
    return json_sprintf("%s%016lld", prefix, s->ghl->next_id++);
}

static json_t *now_iso(const struct sb_req *rq)
{
    char ts[32];
    cs_rfc3339_ms(rq->received_ms, ts);
    return json_string(ts);
}

/* ---- Errors ------------------------------------------------------------- */

json_t *ghl_error_body(int status)
{
    switch (status) {
    case 401:
        return json_pack("{s:i,s:s,s:s}", "statusCode", 401, "message",
                         "Invalid token: access token is invalid", "error",
                         "Unauthorized");
    case 422:
        return json_pack("{s:i,s:[s],s:s}", "statusCode", 422, "message",
                         "Unprocessable Entity", "error",
                         "Unprocessable Entity");
    case 429:
        return json_pack("{s:i,s:s}", "statusCode", 429, "message",
                         "Too Many Requests");
    default:
        if (status >= 500)
            return json_pack("{s:i,s:s}", "statusCode", status, "message",
                             "Internal server error");
        return json_pack("{s:i,s:s}", "statusCode", status, "message",
                         sb_reason(status));
    }
}

static void fail(struct sb_resp *out, int status, const char *message)
{
    sb_resp_json(out, status,
                 json_pack("{s:i,s:s}", "statusCode", status, "message",
                           message));
}

/* ---- Rate limit and auth ------------------------------------------------ */

static size_t window_count(struct sb *s, int64_t now)
{
    struct sb_ghl *g = s->ghl;
    while (g->wlen && g->window[g->whead] <= now - WINDOW_MS) {
        g->whead = (g->whead + 1) % g->wcap;
        g->wlen--;
    }
    return g->wlen;
}

static bool rate_take(struct sb *s, int64_t now)
{
    struct sb_ghl *g = s->ghl;
    if (!g->window) {
        g->wcap = (size_t)s->ghl_rate;
        g->window = xcalloc(g->wcap, sizeof(*g->window));
    }
    if (window_count(s, now) >= g->wcap || g->daily_used >= s->ghl_daily)
        return false;
    g->window[(g->whead + g->wlen) % g->wcap] = now;
    g->wlen++;
    g->daily_used++;
    return true;
}

void ghl_rate_headers(struct sb *s, struct sb_resp *out)
{
    long long used = s->ghl->window ? (long long)window_count(s, cs_mono_ms())
                                    : 0;
    long long left = s->ghl_rate - used;
    long long dleft = s->ghl_daily - s->ghl->daily_used;
    sb_resp_header(out, "X-RateLimit-Limit-Daily: %lld", s->ghl_daily);
    sb_resp_header(out, "X-RateLimit-Daily-Remaining: %lld",
                   dleft < 0 ? 0 : dleft);
    sb_resp_header(out, "X-RateLimit-Interval-Milliseconds: %d", WINDOW_MS);
    sb_resp_header(out, "X-RateLimit-Max: %d", s->ghl_rate);
    sb_resp_header(out, "X-RateLimit-Remaining: %lld", left < 0 ? 0 : left);
}

static bool authorised(struct sb *s, const struct sb_req *rq)
{
    const char *a = sb_header(rq, "authorization");
    if (!a || strncasecmp(a, "Bearer ", 7) != 0)
        return false;
    const char *tok = a + 7;
    while (*tok == ' ')
        tok++;
    if (!*tok)
        return false;
    if (!s->nghl_tokens)
        return true;
    for (size_t i = 0; i < s->nghl_tokens; i++)
        if (strcmp(tok, s->ghl_tokens[i]) == 0)
            return true;
    return false;
}

/* ---- Validation (the validation pipe's messages) ------------------------ */

enum vtype { V_STR, V_BOOL, V_NUM, V_STRS, V_CFS, V_ANY, V_OBJ };

struct vfield {
    const char *name;
    enum vtype type;
    bool required;
    const char *const *enums;  /* NULL-terminated, or NULL */
};

static const char *const appt_status[] = {"new",     "confirmed", "cancelled",
                                          "showed",  "noshow",    "invalid",
                                          NULL};
static const char *const meeting_types[] = {"custom",   "zoom", "gmeet",
                                            "phone",    "address",
                                            "ms_teams", "google", NULL};
static const char *const opp_status[] = {"open", "won", "lost", "abandoned",
                                         "all", NULL};

#define CONTACT_COMMON                                                       \
    {"firstName", V_STR, false, NULL}, {"lastName", V_STR, false, NULL},     \
        {"name", V_STR, false, NULL}, {"email", V_STR, false, NULL},         \
        {"phone", V_STR, false, NULL}, {"address1", V_STR, false, NULL},     \
        {"city", V_STR, false, NULL}, {"state", V_STR, false, NULL},         \
        {"postalCode", V_STR, false, NULL}, {"website", V_STR, false, NULL}, \
        {"timezone", V_STR, false, NULL}, {"dnd", V_BOOL, false, NULL},      \
        {"dndSettings", V_OBJ, false, NULL},                                 \
        {"inboundDndSettings", V_OBJ, false, NULL},                          \
        {"tags", V_STRS, false, NULL}, {"customFields", V_CFS, false, NULL}, \
        {"source", V_STR, false, NULL}, {"dateOfBirth", V_ANY, false, NULL}, \
        {"country", V_STR, false, NULL}, {"assignedTo", V_STR, false, NULL}

static const struct vfield create_contact[] = {
    CONTACT_COMMON,
    {"locationId", V_STR, true, NULL},
    {"gender", V_STR, false, NULL},
    {"companyName", V_STR, false, NULL},
    {NULL, V_ANY, false, NULL}};
static const struct vfield upsert_contact[] = {
    CONTACT_COMMON,
    {"locationId", V_STR, true, NULL},
    {"gender", V_STR, false, NULL},
    {"companyName", V_STR, false, NULL},
    {"createNewIfDuplicateAllowed", V_BOOL, false, NULL},
    {NULL, V_ANY, false, NULL}};
static const struct vfield update_contact[] = {CONTACT_COMMON,
                                               {NULL, V_ANY, false, NULL}};
static const struct vfield create_note[] = {
    {"body", V_STR, true, NULL},     {"userId", V_STR, false, NULL},
    {"title", V_STR, false, NULL},   {"color", V_STR, false, NULL},
    {"pinned", V_BOOL, false, NULL}, {NULL, V_ANY, false, NULL}};
static const struct vfield add_workflow[] = {
    {"eventStartTime", V_STR, false, NULL}, {NULL, V_ANY, false, NULL}};
static const struct vfield create_appt[] = {
    {"title", V_STR, false, NULL},
    {"meetingLocationType", V_STR, false, meeting_types},
    {"meetingLocationId", V_STR, false, NULL},
    {"overrideLocationConfig", V_BOOL, false, NULL},
    {"appointmentStatus", V_STR, false, appt_status},
    {"assignedUserId", V_STR, false, NULL},
    {"description", V_STR, false, NULL},
    {"address", V_STR, false, NULL},
    {"ignoreDateRange", V_BOOL, false, NULL},
    {"toNotify", V_BOOL, false, NULL},
    {"ignoreFreeSlotValidation", V_BOOL, false, NULL},
    {"rrule", V_STR, false, NULL},
    {"calendarId", V_STR, true, NULL},
    {"locationId", V_STR, true, NULL},
    {"contactId", V_STR, true, NULL},
    {"startTime", V_STR, true, NULL},
    {"endTime", V_STR, false, NULL},
    {NULL, V_ANY, false, NULL}};
static const struct vfield create_opp[] = {
    {"pipelineId", V_STR, true, NULL},
    {"locationId", V_STR, true, NULL},
    {"name", V_STR, true, NULL},
    {"pipelineStageId", V_STR, false, NULL},
    {"status", V_STR, true, opp_status},
    {"contactId", V_STR, true, NULL},
    {"monetaryValue", V_NUM, false, NULL},
    {"assignedTo", V_STR, false, NULL},
    {"customFields", V_CFS, false, NULL},
    {NULL, V_ANY, false, NULL}};

static bool in_list(const char *v, const char *const *list)
{
    for (; *list; list++)
        if (strcmp(v, *list) == 0)
            return true;
    return false;
}

static bool strings_only(const json_t *a)
{
    size_t i;
    const json_t *t;
    json_array_foreach(a, i, t) {
        if (!json_is_string(t))
            return false;
    }
    return true;
}

/* customFields: a list of objects with an id or a key, and a field_value
 * (fieldValue and value are accepted as well). */
static void check_cfs(const json_t *a, json_t *msgs)
{
    size_t i;
    const json_t *e;
    json_array_foreach(a, i, e) {
        if (!json_is_object(e)) {
            json_array_append_new(
                msgs, json_sprintf("customFields.%zu must be an object", i));
            continue;
        }
        const json_t *id = json_object_get(e, "id");
        const json_t *key = json_object_get(e, "key");
        if (!json_is_string(id) && !json_is_string(key))
            json_array_append_new(
                msgs, json_sprintf("customFields.%zu.id must be a string", i));
        const char *k;
        const json_t *v;
        json_object_foreach((json_t *)e, k, v) {
            if (strcmp(k, "id") && strcmp(k, "key") &&
                strcmp(k, "field_value") && strcmp(k, "fieldValue") &&
                strcmp(k, "value"))
                json_array_append_new(
                    msgs, json_sprintf("customFields.%zu.property %s should "
                                       "not exist", i, k));
        }
    }
}

/* The request body checked against fields: NULL after answering 422 (or
 * 400 for a body that is not a JSON object). */
static json_t *checked_body(const struct sb_req *rq,
                            const struct vfield *fields, struct sb_resp *out)
{
    json_t *b;
    if (!sb_is_json_object(rq, &b)) {
        fail(out, 400, "Bad Request");
        return NULL;
    }
    json_t *msgs = json_array();
    const char *k;
    json_t *v;
    json_object_foreach(b, k, v) {
        const struct vfield *f = fields;
        while (f->name && strcmp(f->name, k) != 0)
            f++;
        if (!f->name)
            json_array_append_new(msgs,
                                  json_sprintf("property %s should not exist",
                                               k));
    }
    for (const struct vfield *f = fields; f->name; f++) {
        v = json_object_get(b, f->name);
        bool empty = !v || json_is_null(v) ||
                     (json_is_string(v) && json_string_length(v) == 0);
        if (empty) {
            if (f->required)
                json_array_append_new(
                    msgs, json_sprintf("%s should not be empty", f->name));
            continue;
        }
        switch (f->type) {
        case V_STR:
            if (!json_is_string(v))
                json_array_append_new(
                    msgs, json_sprintf("%s must be a string", f->name));
            else if (f->enums && !in_list(json_string_value(v), f->enums))
                json_array_append_new(
                    msgs, json_sprintf("%s must be a valid enum value",
                                       f->name));
            break;
        case V_BOOL:
            if (!json_is_boolean(v))
                json_array_append_new(
                    msgs, json_sprintf("%s must be a boolean value",
                                       f->name));
            break;
        case V_NUM:
            if (!json_is_number(v))
                json_array_append_new(
                    msgs, json_sprintf("%s must be a number conforming to "
                                       "the specified constraints",
                                       f->name));
            break;
        case V_STRS:
            if (!json_is_array(v) || !strings_only(v))
                json_array_append_new(
                    msgs, json_sprintf("each value in %s must be a string",
                                       f->name));
            break;
        case V_CFS:
            if (!json_is_array(v))
                json_array_append_new(
                    msgs, json_sprintf("%s must be an array", f->name));
            else
                check_cfs(v, msgs);
            break;
        case V_OBJ:
            if (!json_is_object(v))
                json_array_append_new(
                    msgs, json_sprintf("%s must be an object", f->name));
            break;
        case V_ANY:
            break;
        }
    }
    if (json_array_size(msgs)) {
        sb_resp_json(out, 422,
                     json_pack("{s:i,s:o,s:s}", "statusCode", 422, "message",
                               msgs, "error", "Unprocessable Entity"));
        json_decref(b);
        return NULL;
    }
    json_decref(msgs);
    return b;
}

/* ---- Contacts ----------------------------------------------------------- */

static const char *jstr(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s && *s ? s : NULL;
}

/* Index keys: "e:" + lower-case email, "p:" + the phone's digits. */
static char *email_key(const char *e)
{
    char *k = xasprintf("e:%s", e);
    for (char *p = k; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return k;
}

static char *phone_key(const char *ph)
{
    char *k = xmalloc(strlen(ph) + 3);
    size_t n = 0;
    k[n++] = 'p';
    k[n++] = ':';
    for (const char *p = ph; *p; p++)
        if (isdigit((unsigned char)*p))
            k[n++] = *p;
    k[n] = '\0';
    return k;
}

static json_t *by_key(struct sb *s, char *key)
{
    const char *id = json_string_value(json_object_get(s->ghl->index, key));
    free(key);
    return id ? json_object_get(s->ghl->contacts, id) : NULL;
}

/* The duplicate rule: email first, then phone. *field names the match. */
static json_t *find_dup(struct sb *s, const char *loc, const char *email,
                        const char *phone, const char **field)
{
    json_t *c = email ? by_key(s, email_key(email)) : NULL;
    *field = "email";
    if (!c && phone) {
        c = by_key(s, phone_key(phone));
        *field = "phone";
    }
    if (c && loc && strcmp(jstr(c, "locationId"), loc) != 0)
        c = NULL;
    return c;
}

static void index_contact(struct sb *s, json_t *c)
{
    const char *id = jstr(c, "id");
    if (jstr(c, "email")) {
        char *k = email_key(jstr(c, "email"));
        json_object_set_new(s->ghl->index, k, json_string(id));
        free(k);
    }
    if (jstr(c, "phone")) {
        char *k = phone_key(jstr(c, "phone"));
        json_object_set_new(s->ghl->index, k, json_string(id));
        free(k);
    }
}

/* Copy the input's fields onto the contact record: customFields merge by
 * id as [{id, value}], tags replace, everything else is set. */
static void apply_fields(json_t *c, json_t *in)
{
    const char *k;
    json_t *v;
    json_object_foreach(in, k, v) {
        if (strcmp(k, "customFields") == 0) {
            json_t *have = json_object_get(c, "customFields");
            size_t i, j;
            json_t *e, *h;
            json_array_foreach(v, i, e) {
                const char *id = jstr(e, "id") ? jstr(e, "id") : jstr(e, "key");
                if (!id)
                    continue;
                json_t *val = json_object_get(e, "field_value");
                if (!val)
                    val = json_object_get(e, "fieldValue");
                if (!val)
                    val = json_object_get(e, "value");
                bool set = false;
                json_array_foreach(have, j, h) {
                    if (!set && strcmp(jstr(h, "id"), id) == 0) {
                        json_object_set(h, "value", val ? val : json_null());
                        set = true;
                    }
                }
                if (!set)
                    json_array_append_new(
                        have, json_pack("{s:s,s:O}", "id", id, "value",
                                        val ? val : json_null()));
            }
        } else if (strcmp(k, "locationId") && strcmp(k, "createNewIf"
                                                        "DuplicateAllowed")) {
            json_object_set(c, k, v);
        }
    }
    if (!jstr(c, "name") && (jstr(c, "firstName") || jstr(c, "lastName")))
        json_object_set_new(
            c, "name",
            json_sprintf("%s%s%s", jstr(c, "firstName") ? jstr(c, "firstName")
                                                        : "",
                         jstr(c, "firstName") && jstr(c, "lastName") ? " "
                                                                     : "",
                         jstr(c, "lastName") ? jstr(c, "lastName") : ""));
}

static json_t *contact_new(struct sb *s, const struct sb_req *rq, json_t *in)
{
    json_t *c = json_pack("{s:o,s:s,s:[],s:[],s:o,s:o,s:I}", "id",
                          new_id(s, "ct"), "locationId",
                          jstr(in, "locationId"), "tags", "customFields",
                          "dateAdded", now_iso(rq), "dateUpdated",
                          now_iso(rq), "received_at_ms",
                          (json_int_t)rq->received_ms);
    apply_fields(c, in);
    json_object_set(s->ghl->contacts, jstr(c, "id"), c);
    json_array_append(s->ghl->list[T_CONTACTS], c);
    index_contact(s, c);
    json_decref(c); /* the store holds it; the caller borrows it */
    return c;
}

static void duplicate(struct sb_resp *out, json_t *c, const char *field)
{
    sb_resp_json(out, 400,
                 json_pack("{s:i,s:s,s:{s:s?,s:s,s:s}}", "statusCode", 400,
                           "message",
                           "This location does not allow duplicated "
                           "contacts.",
                           "meta", "contactName", jstr(c, "name"),
                           "contactId", jstr(c, "id"), "matchingField",
                           field));
}

static void contact_create(struct sb *s, const struct sb_req *rq,
                           struct sb_resp *out)
{
    json_t *in = checked_body(rq, create_contact, out);
    if (!in)
        return;
    const char *field;
    json_t *dup = find_dup(s, jstr(in, "locationId"), jstr(in, "email"),
                           jstr(in, "phone"), &field);
    if (dup)
        duplicate(out, dup, field);
    else
        sb_resp_json(out, 201,
                     json_pack("{s:O}", "contact", contact_new(s, rq, in)));
    json_decref(in);
}

static void contact_upsert(struct sb *s, const struct sb_req *rq,
                           struct sb_resp *out)
{
    json_t *in = checked_body(rq, upsert_contact, out);
    if (!in)
        return;
    const char *field;
    json_t *c = find_dup(s, jstr(in, "locationId"), jstr(in, "email"),
                         jstr(in, "phone"), &field);
    bool created = c == NULL;
    if (c) {
        apply_fields(c, in);
        json_object_set_new(c, "dateUpdated", now_iso(rq));
        index_contact(s, c);
    } else {
        c = contact_new(s, rq, in);
    }
    sb_resp_json(out, 200,
                 json_pack("{s:b,s:O,s:s}", "new", created, "contact", c,
                           "traceId", "sandbox"));
    json_decref(in);
}

static void contact_search_dup(struct sb *s, const struct sb_req *rq,
                               struct sb_resp *out)
{
    char *loc = sb_query_param(rq->query, "locationId");
    char *number = sb_query_param(rq->query, "number");
    char *email = sb_query_param(rq->query, "email");
    if (!loc || !*loc) {
        sb_resp_json(out, 422,
                     json_pack("{s:i,s:[s],s:s}", "statusCode", 422,
                               "message", "locationId should not be empty",
                               "error", "Unprocessable Entity"));
    } else {
        const char *field;
        json_t *c = find_dup(s, loc, email && *email ? email : NULL,
                             number && *number ? number : NULL, &field);
        sb_resp_json(out, 200,
                     json_pack("{s:O}", "contact", c ? c : json_null()));
    }
    free(loc);
    free(number);
    free(email);
}

static json_t *contact_or_400(struct sb *s, const char *id,
                              struct sb_resp *out)
{
    json_t *c = json_object_get(s->ghl->contacts, id);
    if (!c) {
        char *m = xasprintf("Contact with id %s not found", id);
        fail(out, 400, m);
        free(m);
    }
    return c;
}

static void contact_update(struct sb *s, const struct sb_req *rq,
                           const char *id, struct sb_resp *out)
{
    json_t *c = contact_or_400(s, id, out);
    if (!c)
        return;
    json_t *in = checked_body(rq, update_contact, out);
    if (!in)
        return;
    const char *field;
    json_t *dup = find_dup(s, jstr(c, "locationId"), jstr(in, "email"),
                           jstr(in, "phone"), &field);
    if (dup && dup != c) {
        duplicate(out, dup, field);
    } else {
        apply_fields(c, in);
        json_object_set_new(c, "dateUpdated", now_iso(rq));
        index_contact(s, c);
        sb_resp_json(out, 200,
                     json_pack("{s:b,s:O}", "succeded", 1, "contact", c));
    }
    json_decref(in);
}

/* ---- Notes and workflows ------------------------------------------------ */

static void notes_list(struct sb *s, const char *cid, struct sb_resp *out)
{
    json_t *a = json_array();
    size_t i;
    json_t *n;
    json_array_foreach(s->ghl->list[T_NOTES], i, n) {
        if (strcmp(jstr(n, "contactId"), cid) == 0)
            json_array_append(a, n);
    }
    sb_resp_json(out, 200, json_pack("{s:o}", "notes", a));
}

static void note_create(struct sb *s, const struct sb_req *rq,
                        const char *cid, struct sb_resp *out)
{
    json_t *in = checked_body(rq, create_note, out);
    if (!in)
        return;
    json_t *n = json_pack("{s:o,s:O,s:s,s:o,s:I}", "id", new_id(s, "nt"),
                          "body", json_object_get(in, "body"), "contactId",
                          cid, "dateAdded", now_iso(rq), "received_at_ms",
                          (json_int_t)rq->received_ms);
    static const char *const opt[] = {"userId", "title", "color", "pinned"};
    for (size_t i = 0; i < CS_ARRAY_LEN(opt); i++)
        if (json_object_get(in, opt[i]))
            json_object_set(n, opt[i], json_object_get(in, opt[i]));
    json_array_append(s->ghl->list[T_NOTES], n);
    sb_resp_json(out, 201, json_pack("{s:o}", "note", n));
    json_decref(in);
}

static void workflow_add(struct sb *s, const struct sb_req *rq,
                         const char *cid, const char *wid,
                         struct sb_resp *out)
{
    json_t *in = checked_body(rq, add_workflow, out);
    if (!in)
        return;
    json_t *e = json_pack("{s:s,s:s,s:I}", "contactId", cid, "workflowId",
                          wid, "received_at_ms", (json_int_t)rq->received_ms);
    if (json_object_get(in, "eventStartTime"))
        json_object_set(e, "eventStartTime",
                        json_object_get(in, "eventStartTime"));
    json_array_append_new(s->ghl->list[T_ENROLL], e);
    sb_resp_json(out, 200, json_pack("{s:b}", "succeded", 1));
    json_decref(in);
}

/* ---- Calendars ---------------------------------------------------------- */

static bool slot_taken(struct sb *s, const char *cal, int64_t start,
                       int64_t end)
{
    size_t i;
    json_t *a;
    json_array_foreach(s->ghl->list[T_APPTS], i, a) {
        if (strcmp(jstr(a, "calendarId"), cal) != 0 ||
            strcmp(jstr(a, "appointmentStatus"), "cancelled") == 0)
            continue;
        int64_t as = json_integer_value(json_object_get(a, "start_ms"));
        int64_t ae = json_integer_value(json_object_get(a, "end_ms"));
        if (as < end && start < ae)
            return true;
    }
    return false;
}

static void appt_create(struct sb *s, const struct sb_req *rq,
                        struct sb_resp *out)
{
    json_t *in = checked_body(rq, create_appt, out);
    if (!in)
        return;
    int64_t start, end;
    const char *es = jstr(in, "endTime");
    if (!cs_parse_rfc3339(jstr(in, "startTime"), &start) ||
        (es && !cs_parse_rfc3339(es, &end))) {
        sb_resp_json(out, 422,
                     json_pack("{s:i,s:[s],s:s}", "statusCode", 422,
                               "message",
                               "startTime and endTime must be valid ISO 8601 "
                               "date strings",
                               "error", "Unprocessable Entity"));
        json_decref(in);
        return;
    }
    if (!es)
        end = start + 30 * 60000;
    const char *cal = jstr(in, "calendarId");
    if (!contact_or_400(s, jstr(in, "contactId"), out)) {
        json_decref(in);
        return;
    }
    if (end <= start) {
        fail(out, 400, "endTime must be after startTime");
    } else if (!json_is_true(json_object_get(in, "ignoreFreeSlotValidation")) &&
               slot_taken(s, cal, start, end)) {
        fail(out, 400, "The slot you have selected is no longer available.");
    } else {
        json_t *a = json_deep_copy(in);
        json_object_set_new(a, "id", new_id(s, "ap"));
        if (!jstr(a, "appointmentStatus"))
            json_object_set_new(a, "appointmentStatus", json_string("new"));
        if (!es) {
            char e[32];
            cs_rfc3339_s(end, e);
            json_object_set_new(a, "endTime", json_string(e));
        }
        json_object_set_new(a, "start_ms", json_integer(start));
        json_object_set_new(a, "end_ms", json_integer(end));
        json_object_set_new(a, "dateAdded", now_iso(rq));
        json_object_set_new(a, "received_at_ms",
                            json_integer(rq->received_ms));
        json_array_append(s->ghl->list[T_APPTS], a);
        /* AppointmentSchemaResponse */
        json_t *r = json_pack("{s:O,s:O,s:O,s:O,s:O,s:O,s:O}", "id",
                              json_object_get(a, "id"), "calendarId",
                              json_object_get(a, "calendarId"), "locationId",
                              json_object_get(a, "locationId"), "contactId",
                              json_object_get(a, "contactId"), "startTime",
                              json_object_get(a, "startTime"), "endTime",
                              json_object_get(a, "endTime"),
                              "appointmentStatus",
                              json_object_get(a, "appointmentStatus"));
        if (json_object_get(a, "title"))
            json_object_set(r, "title", json_object_get(a, "title"));
        json_decref(a);
        sb_resp_json(out, 200, r);
    }
    json_decref(in);
}

static bool ms_param(const char *query, const char *name, int64_t *v)
{
    char *p = sb_query_param(query, name);
    char *end = NULL;
    bool ok = p && *p;
    if (ok) {
        *v = strtoll(p, &end, 10);
        ok = *end == '\0';
    }
    free(p);
    return ok;
}

static void events_list(struct sb *s, const struct sb_req *rq,
                        struct sb_resp *out)
{
    char *loc = sb_query_param(rq->query, "locationId");
    char *cal = sb_query_param(rq->query, "calendarId");
    char *user = sb_query_param(rq->query, "userId");
    char *group = sb_query_param(rq->query, "groupId");
    int64_t from = 0, to = 0;
    json_t *msgs = json_array();
    if (!loc || !*loc)
        json_array_append_new(msgs, json_string("locationId should not be "
                                                "empty"));
    if (!ms_param(rq->query, "startTime", &from))
        json_array_append_new(msgs, json_string("startTime must be a number "
                                                "string (millis)"));
    if (!ms_param(rq->query, "endTime", &to))
        json_array_append_new(msgs, json_string("endTime must be a number "
                                                "string (millis)"));
    if ((!cal || !*cal) && (!user || !*user) && (!group || !*group))
        json_array_append_new(msgs, json_string("Either of calendarId, "
                                                "userId or groupId is "
                                                "required"));
    if (json_array_size(msgs)) {
        sb_resp_json(out, 422,
                     json_pack("{s:i,s:O,s:s}", "statusCode", 422, "message",
                               msgs, "error", "Unprocessable Entity"));
    } else {
        json_t *events = json_array();
        size_t i;
        json_t *a;
        json_array_foreach(s->ghl->list[T_APPTS], i, a) {
            int64_t st = json_integer_value(json_object_get(a, "start_ms"));
            if (strcmp(jstr(a, "locationId"), loc) != 0 || st < from ||
                st > to ||
                (cal && *cal && strcmp(jstr(a, "calendarId"), cal)) ||
                (user && *user &&
                 (!jstr(a, "assignedUserId") ||
                  strcmp(jstr(a, "assignedUserId"), user))))
                continue;
            /* CalendarEventDTO */
            json_t *ev = json_object();
            static const char *const keys[] = {
                "id",          "title",          "calendarId",
                "locationId",  "contactId",      "appointmentStatus",
                "assignedUserId", "description", "address",
                "startTime",   "endTime",        "dateAdded"};
            for (size_t k = 0; k < CS_ARRAY_LEN(keys); k++)
                if (json_object_get(a, keys[k]))
                    json_object_set(ev, keys[k], json_object_get(a, keys[k]));
            json_array_append_new(events, ev);
        }
        sb_resp_json(out, 200, json_pack("{s:o}", "events", events));
    }
    json_decref(msgs);
    free(loc);
    free(cal);
    free(user);
    free(group);
}

/* ---- Opportunities ------------------------------------------------------ */

static void opp_create(struct sb *s, const struct sb_req *rq,
                       struct sb_resp *out)
{
    json_t *in = checked_body(rq, create_opp, out);
    if (!in)
        return;
    if (!contact_or_400(s, jstr(in, "contactId"), out)) {
        json_decref(in);
        return;
    }
    size_t i;
    json_t *o;
    json_array_foreach(s->ghl->list[T_OPPS], i, o) {
        if (strcmp(jstr(o, "contactId"), jstr(in, "contactId")) == 0 &&
            strcmp(jstr(o, "pipelineId"), jstr(in, "pipelineId")) == 0) {
            fail(out, 400,
                 "Can not create duplicate opportunity for the contact.");
            json_decref(in);
            return;
        }
    }
    json_t *r = json_deep_copy(in);
    json_object_set_new(r, "id", new_id(s, "op"));
    json_object_set_new(r, "createdAt", now_iso(rq));
    json_object_set_new(r, "updatedAt", now_iso(rq));
    json_object_set_new(r, "received_at_ms", json_integer(rq->received_ms));
    json_array_append(s->ghl->list[T_OPPS], r);
    sb_resp_json(out, 201, json_pack("{s:o}", "opportunity", r));
    json_decref(in);
}

static void opp_search(struct sb *s, const struct sb_req *rq,
                       struct sb_resp *out)
{
    char *loc = sb_query_param(rq->query, "location_id");
    char *pipe = sb_query_param(rq->query, "pipeline_id");
    char *contact = sb_query_param(rq->query, "contact_id");
    char *status = sb_query_param(rq->query, "status");
    char *limit_s = sb_query_param(rq->query, "limit");
    long limit = limit_s && *limit_s ? strtol(limit_s, NULL, 10) : 20;
    if (!loc || !*loc) {
        sb_resp_json(out, 422,
                     json_pack("{s:i,s:[s],s:s}", "statusCode", 422,
                               "message", "location_id should not be empty",
                               "error", "Unprocessable Entity"));
    } else if (status && *status && !in_list(status, opp_status)) {
        sb_resp_json(out, 422,
                     json_pack("{s:i,s:[s],s:s}", "statusCode", 422,
                               "message", "status must be a valid enum value",
                               "error", "Unprocessable Entity"));
    } else if (limit < 1 || limit > 100) {
        sb_resp_json(out, 422,
                     json_pack("{s:i,s:[s],s:s}", "statusCode", 422,
                               "message", "limit must not be greater than 100",
                               "error", "Unprocessable Entity"));
    } else {
        json_t *list = json_array();
        size_t i, total = 0;
        json_t *o;
        json_array_foreach(s->ghl->list[T_OPPS], i, o) {
            if (strcmp(jstr(o, "locationId"), loc) != 0 ||
                (pipe && *pipe && strcmp(jstr(o, "pipelineId"), pipe)) ||
                (contact && *contact &&
                 strcmp(jstr(o, "contactId"), contact)) ||
                (status && *status && strcmp(status, "all") &&
                 strcmp(jstr(o, "status"), status)))
                continue;
            total++;
            if ((long)json_array_size(list) < limit)
                json_array_append(list, o);
        }
        sb_resp_json(out, 200,
                     json_pack("{s:o,s:{s:I,s:i}}", "opportunities", list,
                               "meta", "total", (json_int_t)total,
                               "currentPage", 1));
    }
    free(loc);
    free(pipe);
    free(contact);
    free(status);
    free(limit_s);
}

/* ---- Routing ------------------------------------------------------------ */

/* Split "/a/b/c" after prefix into at most 3 segments; returns count. */
static int segments(const char *p, char seg[3][128])
{
    int n = 0;
    while (*p == '/')
        p++;
    while (*p && n < 3) {
        size_t l = strcspn(p, "/");
        if (l == 0 || l >= 128)
            return -1;
        char *d = sb_url_decode(p, l, false);
        snprintf(seg[n++], 128, "%s", d);
        free(d);
        p += l;
        while (*p == '/')
            p++;
    }
    return *p ? -1 : n;
}

static bool version_ok(const struct sb_req *rq, const char *want,
                       struct sb_resp *out)
{
    const char *v = sb_header(rq, "version");
    if (v && strcmp(v, want) == 0)
        return true;
    char *m = xasprintf("Version header must be %s for this endpoint", want);
    fail(out, 400, m);
    free(m);
    return false;
}

static void route(struct sb *s, const struct sb_req *rq, struct sb_resp *out)
{
    char seg[3][128];
    int m = rq->method;
    bool get = m == HTTP_GET, post = m == HTTP_POST, put = m == HTTP_PUT;
    const char *p = rq->sub;
    if (strncmp(p, "/calendars/", 11) == 0) {
        if (!version_ok(rq, V_CALENDARS, out))
            return;
        if (strcmp(p, "/calendars/events/appointments") == 0 && post)
            appt_create(s, rq, out);
        else if (strcmp(p, "/calendars/events") == 0 && get)
            events_list(s, rq, out);
        else
            fail(out, 404, "Cannot find the requested route");
        return;
    }
    if (!version_ok(rq, V_CONTACTS, out))
        return;
    if (strncmp(p, "/locations/", 11) == 0 && get &&
        segments(p + 11, seg) == 1) {
        /* Any location the token asks for exists here. */
        sb_resp_json(out, 200,
                     json_pack("{s:{s:s,s:s,s:s,s:s}}", "location", "id",
                               seg[0], "companyId", "sandbox-company",
                               "name", "Sandbox sub-account", "timezone",
                               "America/Chicago"));
    } else if (strcmp(p, "/opportunities/search") == 0 && get) {
        opp_search(s, rq, out);
    } else if ((strcmp(p, "/opportunities/") == 0 ||
                strcmp(p, "/opportunities") == 0) && post) {
        opp_create(s, rq, out);
    } else if (strcmp(p, "/contacts/search/duplicate") == 0 && get) {
        contact_search_dup(s, rq, out);
    } else if ((strcmp(p, "/contacts/") == 0 || strcmp(p, "/contacts") == 0) &&
               post) {
        contact_create(s, rq, out);
    } else if (strcmp(p, "/contacts/upsert") == 0 && post) {
        contact_upsert(s, rq, out);
    } else if (strncmp(p, "/contacts/", 10) == 0) {
        int n = segments(p + 10, seg);
        json_t *c = n >= 1 ? json_object_get(s->ghl->contacts, seg[0]) : NULL;
        if (n == 1 && get && c)
            sb_resp_json(out, 200, json_pack("{s:O}", "contact", c));
        else if (n == 1 && put)
            contact_update(s, rq, seg[0], out);
        else if (n == 2 && strcmp(seg[1], "notes") == 0 && (get || post) &&
                 contact_or_400(s, seg[0], out))
            get ? notes_list(s, seg[0], out)
                : note_create(s, rq, seg[0], out);
        else if (n == 3 && strcmp(seg[1], "workflow") == 0 && post &&
                 contact_or_400(s, seg[0], out))
            workflow_add(s, rq, seg[0], seg[2], out);
        else if (!out->status)
            fail(out, n == 1 && get ? 400 : 404,
                 n == 1 && get ? "Contact not found"
                               : "Cannot find the requested route");
    } else {
        fail(out, 404, "Cannot find the requested route");
    }
}

void ghl_handle(struct sb *s, const struct sb_req *rq, struct sb_resp *out)
{
    if (!authorised(s, rq))
        sb_resp_json(out, 401, ghl_error_body(401));
    else if (!rate_take(s, cs_mono_ms()))
        sb_resp_json(out, 429, ghl_error_body(429));
    else
        route(s, rq, out);
    ghl_rate_headers(s, out);
}
