/*
 * hubspot.c - the HubSpot part of the sandbox: CRM v3 objects (contacts,
 * notes, meetings, calls, deals) with create, read, update and search, and
 * the legacy workflow enrolment. Shapes follow HubSpot's published OpenAPI
 * documents (SimplePublicObject, SimplePublicObjectInputForCreate,
 * PublicObjectSearchRequest, CollectionResponseWithTotalSimplePublicObject
 * and the Error schema).
 *
 * Every answer carries X-HubSpot-RateLimit-Max/-Remaining/
 * -Interval-Milliseconds for a sliding 10 s window; requests past the
 * configured maximum get HubSpot's 429 TEN_SECONDLY_ROLLING body. Only
 * accepted requests take a slot in the window, so the accepted rate never
 * exceeds the maximum in any 10 s.
 *
 * Records keep the properties as strings (HubSpot's own representation),
 * the associations given at creation, and the wall-clock receive time.
 * Equality searches on email and phone use an index, so a long benchmark
 * does not turn every search into a scan.
 */
#include "sandbox.h"
#include "crypto.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define WINDOW_MS 10000
#define MAX_FILTER_GROUPS 6
#define MAX_FILTERS 6
#define MAX_LIMIT 200

static const char *const contact_props[] = {
    "email", "firstname", "lastname", "phone", "mobilephone", "company",
    "website", "jobtitle", "address", "city", "state", "zip", "country",
    "lifecyclestage", "hs_lead_status", "hubspot_owner_id", "fax",
    "salutation", "message", "industry", "annualrevenue", "numemployees",
    "date_of_birth", "hs_language", NULL};
static const char *const note_props[] = {
    "hs_timestamp", "hs_note_body", "hubspot_owner_id", "hs_attachment_ids",
    NULL};
static const char *const meeting_props[] = {
    "hs_timestamp", "hs_meeting_title", "hs_meeting_body",
    "hs_internal_meeting_notes", "hs_meeting_external_url",
    "hs_meeting_location", "hs_meeting_start_time", "hs_meeting_end_time",
    "hs_meeting_outcome", "hs_activity_type", "hubspot_owner_id",
    "hs_attachment_ids", NULL};
static const char *const call_props[] = {
    "hs_timestamp", "hs_call_body", "hs_call_title", "hs_call_duration",
    "hs_call_direction", "hs_call_from_number", "hs_call_to_number",
    "hs_call_recording_url", "hs_call_status", "hs_call_disposition",
    "hubspot_owner_id", NULL};
static const char *const deal_props[] = {
    "dealname", "amount", "pipeline", "dealstage", "closedate", "dealtype",
    "description", "hs_priority", "hubspot_owner_id", NULL};

/* Properties indexed for EQ searches. */
static const char *const indexed_props[] = {"email", "phone", "mobilephone"};

enum { T_CONTACTS, T_NOTES, T_MEETINGS, T_CALLS, T_DEALS, T_COUNT };

struct hs_type {
    const char *name;
    const char *type_id;  /* HubSpot's object type id, accepted in paths */
    const char *const *props;
    bool contact_like;  /* createdate/lastmodifieddate, not hs_ prefixed */
    bool needs_timestamp;
    json_t *list;       /* records in creation order */
    json_t *by_id;      /* id -> record */
    json_t *index;      /* "prop\x1fvalue" -> [ids] */
};

struct sb_hubspot {
    struct hs_type types[T_COUNT];
    json_t *owner;      /* id -> type name, for association targets */
    json_t *enrollments;
    long long next_id;
    int64_t *window;    /* accepted request times, a ring */
    size_t wcap, whead, wlen;
};

/* ---- Lifecycle ---------------------------------------------------------- */

struct sb_hubspot *hs_new(void)
{
    static const struct {
        const char *name, *type_id;
        const char *const *props;
        bool contact_like, needs_ts;
    } defs[T_COUNT] = {
        {"contacts", "0-1", contact_props, true, false},
        {"notes", "0-46", note_props, false, true},
        {"meetings", "0-47", meeting_props, false, true},
        {"calls", "0-48", call_props, false, true},
        {"deals", "0-3", deal_props, true, false},
    };
    struct sb_hubspot *h = xcalloc(1, sizeof(*h));
    for (int i = 0; i < T_COUNT; i++) {
        h->types[i].name = defs[i].name;
        h->types[i].type_id = defs[i].type_id;
        h->types[i].props = defs[i].props;
        h->types[i].contact_like = defs[i].contact_like;
        h->types[i].needs_timestamp = defs[i].needs_ts;
        h->types[i].list = json_array();
        h->types[i].by_id = json_object();
        h->types[i].index = json_object();
    }
    h->owner = json_object();
    h->enrollments = json_array();
    h->next_id = 1001;
    return h;
}

void hs_free(struct sb_hubspot *h)
{
    if (!h)
        return;
    for (int i = 0; i < T_COUNT; i++) {
        json_decref(h->types[i].list);
        json_decref(h->types[i].by_id);
        json_decref(h->types[i].index);
    }
    json_decref(h->owner);
    json_decref(h->enrollments);
    free(h->window);
    free(h);
}

json_t *hs_records(struct sb *s, const char *type)
{
    if (strcmp(type, "enrollments") == 0)
        return json_incref(s->hs->enrollments);
    for (int i = 0; i < T_COUNT; i++)
        if (strcmp(type, s->hs->types[i].name) == 0)
            return json_incref(s->hs->types[i].list);
    return NULL;
}

/* ---- Errors ------------------------------------------------------------- */

static json_t *hs_err(const char *category, const char *message)
{
    char cid[37];
    cs_uuid4(cid);
    return json_pack("{s:s,s:s,s:s,s:s}", "status", "error", "message",
                     message, "correlationId", cid, "category", category);
}

static json_t *rate_limit_body(void)
{
    char cid[37];
    cs_uuid4(cid);
    return json_pack("{s:s,s:s,s:s,s:s,s:s}", "status", "error", "message",
                     "You have reached your ten_secondly_rolling limit.",
                     "errorType", "RATE_LIMIT", "correlationId", cid,
                     "policyName", "TEN_SECONDLY_ROLLING");
}

static json_t *auth_body(void)
{
    return hs_err("INVALID_AUTHENTICATION",
                  "Authentication credentials not found. This API supports "
                  "OAuth 2.0 authentication and you can find more details at "
                  "https://developers.hubspot.com/docs/methods/auth/"
                  "oauth-overview");
}

json_t *hs_error_body(int status)
{
    switch (status) {
    case 429: return rate_limit_body();
    case 401: return auth_body();
    case 400: return hs_err("VALIDATION_ERROR", "Invalid input");
    case 403:
        return hs_err("MISSING_SCOPES", "This app hasn't been granted all "
                                        "required scopes to make this call.");
    case 404: return hs_err("OBJECT_NOT_FOUND", "resource not found");
    case 409: return hs_err("CONFLICT", "Conflict");
    default:
        if (status >= 500)
            return hs_err("INTERNAL_ERROR", "internal error");
        return hs_err("UNKNOWN", sb_reason(status));
    }
}

static void fail(struct sb_resp *out, int status, const char *category,
                 const char *message)
{
    sb_resp_json(out, status, hs_err(category, message));
}

/* 400 VALIDATION_ERROR listing invalid properties as HubSpot does: a
 * message with the JSON list of per-property results, plus the same
 * problems as the spec's ErrorDetail entries. */
static void fail_props(struct sb_resp *out, json_t *problems)
{
    json_t *details = json_array();
    size_t i;
    json_t *p;
    json_array_foreach(problems, i, p) {
        json_array_append_new(
            details,
            json_pack("{s:O,s:O,s:{s:[O]}}", "message",
                      json_object_get(p, "message"), "code",
                      json_object_get(p, "error"), "context", "propertyName",
                      json_object_get(p, "name")));
    }
    char *list = json_dumps(problems, JSON_COMPACT);
    char *msg = xasprintf("Property values were not valid: %s", list);
    json_t *body = hs_err("VALIDATION_ERROR", msg);
    json_object_set_new(body, "errors", details);
    free(list);
    free(msg);
    json_decref(problems);
    sb_resp_json(out, 400, body);
}

static void add_problem(json_t *problems, const char *name, const char *code,
                        const char *message)
{
    json_array_append_new(problems,
                          json_pack("{s:b,s:s,s:s,s:s,s:s}", "isValid", 0,
                                    "message", message, "error", code,
                                    "name", name, "localizedErrorMessage",
                                    message));
}

/* ---- Rate limit --------------------------------------------------------- */

static size_t window_count(struct sb *s, int64_t now)
{
    struct sb_hubspot *h = s->hs;
    while (h->wlen && h->window[h->whead] <= now - WINDOW_MS) {
        h->whead = (h->whead + 1) % h->wcap;
        h->wlen--;
    }
    return h->wlen;
}

static bool rate_take(struct sb *s, int64_t now)
{
    struct sb_hubspot *h = s->hs;
    if (!h->window) {
        h->wcap = (size_t)s->hubspot_rate;
        h->window = xcalloc(h->wcap, sizeof(*h->window));
    }
    if (window_count(s, now) >= h->wcap)
        return false;
    h->window[(h->whead + h->wlen) % h->wcap] = now;
    h->wlen++;
    return true;
}

void hs_rate_headers(struct sb *s, struct sb_resp *out)
{
    long long used = s->hs->window ? (long long)window_count(s, cs_mono_ms())
                                   : 0;
    long long left = s->hubspot_rate - used;
    sb_resp_header(out, "X-HubSpot-RateLimit-Interval-Milliseconds: %d",
                   WINDOW_MS);
    sb_resp_header(out, "X-HubSpot-RateLimit-Max: %d", s->hubspot_rate);
    sb_resp_header(out, "X-HubSpot-RateLimit-Remaining: %lld",
                   left < 0 ? 0 : left);
}

/*
 * NULL when the request may go on, else HubSpot's 401 body. Accepted: an
 * access token the sandbox's OAuth endpoint issued (until it expires, as
 * long as its grant is not revoked), a --hubspot-token, or any token when
 * no --hubspot-token was given.
 */
static json_t *unauthorised(struct sb *s, const struct sb_req *rq)
{
    const char *a = sb_header(rq, "authorization");
    if (!a || strncasecmp(a, "Bearer ", 7) != 0)
        return auth_body();
    const char *tok = a + 7;
    while (*tok == ' ')
        tok++;
    if (!*tok)
        return auth_body();
    int64_t ago = 0;
    switch (oauth_access(s, "hubspot", tok, &ago)) {
    case SB_ACCESS_OK:
        return NULL;
    case SB_ACCESS_EXPIRED: {
        char msg[128];
        snprintf(msg, sizeof(msg),
                 "The OAuth token used to make this call expired %lld "
                 "minute(s) ago.",
                 (long long)(ago / 60000));
        return hs_err("EXPIRED_AUTHENTICATION", msg);
    }
    case SB_ACCESS_REVOKED:
        return auth_body();
    case SB_ACCESS_UNKNOWN:
        break;
    }
    if (!s->ntokens)
        return NULL;
    for (size_t i = 0; i < s->ntokens; i++)
        if (strcmp(tok, s->tokens[i]) == 0)
            return NULL;
    return auth_body();
}

/* ---- Records ------------------------------------------------------------ */

static const char *created_prop(const struct hs_type *t)
{
    return t->contact_like ? "createdate" : "hs_createdate";
}

static const char *modified_prop(const struct hs_type *t)
{
    return t->contact_like ? "lastmodifieddate" : "hs_lastmodifieddate";
}

static bool is_read_only(const char *name)
{
    static const char *const ro[] = {"hs_object_id", "createdate",
                                     "lastmodifieddate", "hs_createdate",
                                     "hs_lastmodifieddate"};
    for (size_t i = 0; i < CS_ARRAY_LEN(ro); i++)
        if (strcmp(name, ro[i]) == 0)
            return true;
    return false;
}

static bool known_prop(const struct hs_type *t, const char *name)
{
    for (const char *const *p = t->props; *p; p++)
        if (strcmp(*p, name) == 0)
            return true;
    return false;
}

static bool valid_email(const char *e)
{
    const char *at = strchr(e, '@');
    if (!at || at == e || strchr(at + 1, '@') || strchr(e, ' '))
        return false;
    const char *dot = strrchr(at + 1, '.');
    return dot && dot > at + 1 && dot[1];
}

/* Check and normalise input properties to strings. Returns the normalised
 * object, or NULL after answering 400. */
static json_t *check_props(const struct hs_type *t, json_t *props,
                           struct sb_resp *out)
{
    json_t *norm = json_object();
    json_t *problems = json_array();
    const char *k;
    json_t *v;
    json_object_foreach(props, k, v) {
        char *msg = NULL;
        if (is_read_only(k)) {
            msg = xasprintf("\"%s\" is a read only property; its value "
                            "cannot be set.",
                            k);
            add_problem(problems, k, "READ_ONLY_VALUE", msg);
        } else if (!known_prop(t, k)) {
            msg = xasprintf("Property \"%s\" does not exist", k);
            add_problem(problems, k, "PROPERTY_DOESNT_EXIST", msg);
        } else if (json_is_object(v) || json_is_array(v)) {
            msg = xasprintf("%s was not a valid string", k);
            add_problem(problems, k, "INVALID_STRING", msg);
        } else {
            char *sv;
            if (json_is_string(v))
                sv = xstrdup(json_string_value(v));
            else if (json_is_null(v))
                sv = xstrdup("");
            else
                sv = json_dumps(v, JSON_ENCODE_ANY);
            if (strcmp(k, "email") == 0 && *sv && !valid_email(sv)) {
                msg = xasprintf("Email address %s is invalid", sv);
                add_problem(problems, k, "INVALID_EMAIL", msg);
            }
            json_object_set_new(norm, k, json_string(sv));
            free(sv);
        }
        free(msg);
    }
    if (json_array_size(problems)) {
        json_decref(norm);
        fail_props(out, problems);
        return NULL;
    }
    json_decref(problems);
    return norm;
}

static void lower(char *s)
{
    for (; *s; s++)
        *s = (char)tolower((unsigned char)*s);
}

static char *index_key(const char *prop, const char *value)
{
    char *k = xasprintf("%s\x1f%s", prop, value);
    lower(k);
    return k;
}

static bool is_indexed(const char *prop)
{
    for (size_t i = 0; i < CS_ARRAY_LEN(indexed_props); i++)
        if (strcmp(prop, indexed_props[i]) == 0)
            return true;
    return false;
}

static void index_change(struct hs_type *t, const char *prop,
                         const char *value, const char *id, bool add)
{
    if (!value || !*value)
        return;
    char *k = index_key(prop, value);
    json_t *ids = json_object_get(t->index, k);
    if (add) {
        if (!ids) {
            ids = json_array();
            json_object_set_new(t->index, k, ids);
        }
        json_array_append_new(ids, json_string(id));
    } else if (ids) {
        size_t i;
        json_t *x;
        json_array_foreach(ids, i, x) {
            if (strcmp(json_string_value(x), id) == 0) {
                json_array_remove(ids, i);
                break;
            }
        }
    }
    free(k);
}

static const char *prop_str(json_t *rec, const char *name)
{
    return json_string_value(
        json_object_get(json_object_get(rec, "properties"), name));
}

static json_t *find_by_email(struct hs_type *t, const char *email)
{
    char *k = index_key("email", email);
    json_t *ids = json_object_get(t->index, k);
    free(k);
    if (!json_array_size(ids))
        return NULL;
    return json_object_get(t->by_id,
                           json_string_value(json_array_get(ids, 0)));
}

/* The object as the API returns it. want: property names to return (plus
 * the base ones), or NULL for all stored properties. */
static json_t *public_view(const struct hs_type *t, json_t *rec, json_t *want)
{
    json_t *props = json_object_get(rec, "properties");
    json_t *shown;
    if (!want) {
        shown = json_deep_copy(props);
    } else {
        shown = json_object();
        const char *base[] = {created_prop(t), modified_prop(t),
                              "hs_object_id"};
        for (size_t i = 0; i < CS_ARRAY_LEN(base); i++)
            json_object_set(shown, base[i], json_object_get(props, base[i]));
        size_t i;
        json_t *w;
        json_array_foreach(want, i, w) {
            const char *n = json_string_value(w);
            if (!n)
                continue;
            json_t *v = json_object_get(props, n);
            json_object_set(shown, n, v ? v : json_null());
        }
    }
    return json_pack("{s:O,s:o,s:O,s:O,s:b}", "id", json_object_get(rec, "id"),
                     "properties", shown, "createdAt",
                     json_object_get(rec, "createdAt"), "updatedAt",
                     json_object_get(rec, "updatedAt"), "archived", 0);
}

/* Default properties of GET and search when none are asked for. */
static json_t *default_want(const struct hs_type *t)
{
    if (strcmp(t->name, "contacts") == 0)
        return json_pack("[s,s,s]", "email", "firstname", "lastname");
    return json_array();
}

/* Check the associations of a create request; NULL after answering 400. */
static json_t *check_assocs(struct sb *s, json_t *assocs, struct sb_resp *out)
{
    json_t *norm = json_array();
    if (!assocs || json_is_null(assocs))
        return norm;
    const char *problem = NULL;
    char *msg = NULL;
    if (!json_is_array(assocs))
        problem = "associations must be a list";
    size_t i;
    json_t *a;
    json_array_foreach(assocs, i, a) {
        if (problem)
            break;
        json_t *to = json_object_get(json_object_get(a, "to"), "id");
        json_t *types = json_object_get(a, "types");
        char *id = NULL;
        if (json_is_string(to))
            id = xstrdup(json_string_value(to));
        else if (json_is_integer(to))
            id = xasprintf("%lld", (long long)json_integer_value(to));
        if (!id || !json_is_array(types) || !json_array_size(types)) {
            free(id);
            problem = "each association needs to.id and a non-empty types";
            break;
        }
        json_t *ntypes = json_array();
        size_t k;
        json_t *ty;
        json_array_foreach(types, k, ty) {
            const char *cat = json_string_value(
                json_object_get(ty, "associationCategory"));
            json_t *tid = json_object_get(ty, "associationTypeId");
            if (!cat || !json_is_integer(tid) ||
                (strcmp(cat, "HUBSPOT_DEFINED") != 0 &&
                 strcmp(cat, "INTEGRATOR_DEFINED") != 0 &&
                 strcmp(cat, "USER_DEFINED") != 0 &&
                 strcmp(cat, "WORK") != 0)) {
                problem = "invalid association type: associationCategory "
                          "must be HUBSPOT_DEFINED, INTEGRATOR_DEFINED, "
                          "USER_DEFINED or WORK and associationTypeId an "
                          "integer";
                break;
            }
            json_array_append_new(ntypes,
                                  json_pack("{s:s,s:O}", "associationCategory",
                                            cat, "associationTypeId", tid));
        }
        if (!problem && !json_object_get(s->hs->owner, id)) {
            msg = xasprintf("No object with ID %s exists", id);
            problem = msg;
        }
        if (!problem)
            json_array_append_new(
                norm, json_pack("{s:{s:s},s:o}", "to", "id", id, "types",
                                ntypes));
        else
            json_decref(ntypes);
        free(id);
    }
    if (!problem)
        return norm;
    json_decref(norm);
    json_t *body = hs_err("VALIDATION_ERROR",
                          "One or more associations are invalid");
    json_object_set_new(body, "errors",
                        json_pack("[{s:s,s:s}]", "message", problem, "code",
                                  "INVALID_ASSOCIATION"));
    free(msg);
    sb_resp_json(out, 400, body);
    return NULL;
}

/* ---- Handlers ----------------------------------------------------------- */

/* The request body as an object with a "properties" object; NULL after
 * answering 400. */
static json_t *input_object(const struct sb_req *rq, struct sb_resp *out)
{
    json_error_t e;
    json_t *j = json_loadb(rq->body.data ? rq->body.data : "", rq->body.len,
                           0, &e);
    if (!j) {
        char *msg = xasprintf("Invalid input JSON on line %d, column %d: %s",
                              e.line, e.column, e.text);
        fail(out, 400, "VALIDATION_ERROR", msg);
        free(msg);
        return NULL;
    }
    if (!json_is_object(json_object_get(j, "properties"))) {
        json_decref(j);
        fail(out, 400, "VALIDATION_ERROR",
             "Invalid input JSON: 'properties' must be an object");
        return NULL;
    }
    return j;
}

static void conflict(struct sb_resp *out, json_t *existing)
{
    char *msg = xasprintf("Contact already exists. Existing ID: %s",
                          json_string_value(json_object_get(existing, "id")));
    fail(out, 409, "CONFLICT", msg);
    free(msg);
}

static void obj_create(struct sb *s, struct hs_type *t,
                       const struct sb_req *rq, struct sb_resp *out)
{
    json_t *in = input_object(rq, out);
    if (!in)
        return;
    json_t *props = check_props(t, json_object_get(in, "properties"), out);
    json_t *assocs = NULL;
    if (props && t->needs_timestamp && !json_object_get(props, "hs_timestamp")) {
        json_t *problems = json_array();
        add_problem(problems, "hs_timestamp", "REQUIRED_FIELD",
                    "Property \"hs_timestamp\" is required");
        fail_props(out, problems);
        goto out_props;
    }
    if (props && t == &s->hs->types[T_CONTACTS]) {
        const char *email = json_string_value(json_object_get(props, "email"));
        json_t *ex = email && *email ? find_by_email(t, email) : NULL;
        if (ex) {
            conflict(out, ex);
            goto out_props;
        }
    }
    if (props)
        assocs = check_assocs(s, json_object_get(in, "associations"), out);
    if (!props || !assocs)
        goto out_props;

    char id[32], now[32];
    snprintf(id, sizeof(id), "%lld", s->hs->next_id++);
    cs_rfc3339_ms(rq->received_ms, now);
    json_object_set_new(props, created_prop(t), json_string(now));
    json_object_set_new(props, modified_prop(t), json_string(now));
    json_object_set_new(props, "hs_object_id", json_string(id));
    json_t *rec = json_pack("{s:s,s:O,s:s,s:s,s:b,s:O,s:I}", "id", id,
                            "properties", props, "createdAt", now,
                            "updatedAt", now, "archived", 0, "associations",
                            assocs, "received_at_ms",
                            (json_int_t)rq->received_ms);
    json_array_append(t->list, rec);
    json_object_set(t->by_id, id, rec);
    json_object_set_new(s->hs->owner, id, json_string(t->name));
    for (size_t i = 0; i < CS_ARRAY_LEN(indexed_props); i++)
        index_change(t, indexed_props[i], prop_str(rec, indexed_props[i]), id,
                     true);
    sb_resp_json(out, 201, public_view(t, rec, NULL));
    json_decref(rec);
out_props:
    json_decref(assocs);
    json_decref(props);
    json_decref(in);
}

/* The record named by id_raw (or by email with idProperty=email). */
static json_t *lookup(struct hs_type *t, const struct sb_req *rq,
                      const char *id_raw)
{
    char *idp = sb_query_param(rq->query, "idProperty");
    char *id = sb_url_decode(id_raw, strlen(id_raw), false);
    json_t *rec;
    if (idp && strcmp(idp, "email") == 0)
        rec = find_by_email(t, id);
    else
        rec = json_object_get(t->by_id, id);
    free(idp);
    free(id);
    return rec;
}

static void obj_get(struct hs_type *t, const struct sb_req *rq,
                    const char *id, struct sb_resp *out)
{
    json_t *rec = lookup(t, rq, id);
    if (!rec) {
        fail(out, 404, "OBJECT_NOT_FOUND", "resource not found");
        return;
    }
    char *p = sb_query_param(rq->query, "properties");
    json_t *want;
    if (p && *p) {
        want = json_array();
        char *save = p;
        while (save) {
            char *comma = strchr(save, ',');
            if (comma)
                *comma = '\0';
            if (*save)
                json_array_append_new(want, json_string(save));
            save = comma ? comma + 1 : NULL;
        }
    } else {
        want = default_want(t);
    }
    free(p);
    sb_resp_json(out, 200, public_view(t, rec, want));
    json_decref(want);
}

/* GET .../objects/{type}?limit=N: the first page (limit 1..100, default
 * 10), paging.next.after when there are more. */
static void obj_list(struct hs_type *t, const struct sb_req *rq,
                     struct sb_resp *out)
{
    char *l = sb_query_param(rq->query, "limit");
    long limit = l && *l ? strtol(l, NULL, 10) : 10;
    free(l);
    if (limit < 1 || limit > 100) {
        fail(out, 400, "VALIDATION_ERROR", "limit must be from 1 to 100");
        return;
    }
    json_t *want = default_want(t);
    json_t *results = json_array();
    size_t n = json_array_size(t->list);
    for (size_t i = 0; i < n && i < (size_t)limit; i++)
        json_array_append_new(results,
                              public_view(t, json_array_get(t->list, i),
                                          want));
    json_decref(want);
    json_t *o = json_pack("{s:o}", "results", results);
    if (n > (size_t)limit) {
        char after[24];
        snprintf(after, sizeof(after), "%ld", limit);
        json_object_set_new(o, "paging",
                            json_pack("{s:{s:s}}", "next", "after", after));
    }
    sb_resp_json(out, 200, o);
}

static void obj_update(struct sb *s, struct hs_type *t,
                       const struct sb_req *rq, const char *id_raw,
                       struct sb_resp *out)
{
    json_t *rec = lookup(t, rq, id_raw);
    if (!rec) {
        fail(out, 404, "OBJECT_NOT_FOUND", "resource not found");
        return;
    }
    json_t *in = input_object(rq, out);
    if (!in)
        return;
    json_t *props = check_props(t, json_object_get(in, "properties"), out);
    const char *id = json_string_value(json_object_get(rec, "id"));
    if (props && t == &s->hs->types[T_CONTACTS]) {
        const char *email = json_string_value(json_object_get(props, "email"));
        json_t *ex = email && *email ? find_by_email(t, email) : NULL;
        if (ex && ex != rec) {
            conflict(out, ex);
            json_decref(props);
            props = NULL;
        }
    }
    if (props) {
        json_t *stored = json_object_get(rec, "properties");
        const char *k;
        json_t *v;
        json_object_foreach(props, k, v) {
            if (is_indexed(k)) {
                index_change(t, k, prop_str(rec, k), id, false);
                index_change(t, k, json_string_value(v), id, true);
            }
            json_object_set(stored, k, v);
        }
        char now[32];
        cs_rfc3339_ms(rq->received_ms, now);
        json_object_set_new(stored, modified_prop(t), json_string(now));
        json_object_set_new(rec, "updatedAt", json_string(now));
        sb_resp_json(out, 200, public_view(t, rec, NULL));
    }
    json_decref(props);
    json_decref(in);
}

/* ---- Search ------------------------------------------------------------- */

static bool contains_ci(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    if (!n)
        return true;
    for (; *hay; hay++)
        if (strncasecmp(hay, needle, n) == 0)
            return true;
    return false;
}

static bool num(const char *s, double *v)
{
    char *end;
    if (!s || !*s)
        return false;
    *v = strtod(s, &end);
    return *end == '\0';
}

static bool filter_match(json_t *rec, json_t *f)
{
    const char *op = json_string_value(json_object_get(f, "operator"));
    const char *name = json_string_value(json_object_get(f, "propertyName"));
    const char *val = json_string_value(json_object_get(f, "value"));
    const char *have = prop_str(rec, name);
    bool present = have && *have;
    if (strcmp(op, "HAS_PROPERTY") == 0)
        return present;
    if (strcmp(op, "NOT_HAS_PROPERTY") == 0)
        return !present;
    if (strcmp(op, "EQ") == 0)
        return present && val && strcasecmp(have, val) == 0;
    if (strcmp(op, "NEQ") == 0)
        return !present || !val || strcasecmp(have, val) != 0;
    if (strcmp(op, "CONTAINS_TOKEN") == 0 ||
        strcmp(op, "NOT_CONTAINS_TOKEN") == 0) {
        /* A token search; the sandbox treats it as a case-insensitive
         * substring, ignoring HubSpot's '*' wildcards. */
        char *needle = xstrdup(val ? val : "");
        char *p = needle;
        while (*p == '*')
            p++;
        size_t n = strlen(p);
        while (n && p[n - 1] == '*')
            p[--n] = '\0';
        bool hit = present && contains_ci(have, p);
        free(needle);
        return strcmp(op, "CONTAINS_TOKEN") == 0 ? hit : !hit;
    }
    if (strcmp(op, "IN") == 0 || strcmp(op, "NOT_IN") == 0) {
        bool hit = false;
        size_t i;
        json_t *x;
        json_array_foreach(json_object_get(f, "values"), i, x) {
            if (present && json_is_string(x) &&
                strcasecmp(have, json_string_value(x)) == 0)
                hit = true;
        }
        return strcmp(op, "IN") == 0 ? hit : !hit;
    }
    double a, b, c;
    if (!num(have, &a) || !num(val, &b))
        return false;
    if (strcmp(op, "GT") == 0)
        return a > b;
    if (strcmp(op, "GTE") == 0)
        return a >= b;
    if (strcmp(op, "LT") == 0)
        return a < b;
    if (strcmp(op, "LTE") == 0)
        return a <= b;
    if (strcmp(op, "BETWEEN") == 0)
        return num(json_string_value(json_object_get(f, "highValue")), &c) &&
               a >= b && a <= c;
    return false;
}

static bool query_match(json_t *rec, const char *q)
{
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(rec, "properties"), k, v) {
        if (json_is_string(v) && contains_ci(json_string_value(v), q))
            return true;
    }
    return false;
}

static bool record_matches(json_t *rec, json_t *groups, const char *q)
{
    if (q && *q && !query_match(rec, q))
        return false;
    if (!json_array_size(groups))
        return true;
    size_t i;
    json_t *g;
    json_array_foreach(groups, i, g) {
        bool all = true;
        size_t k;
        json_t *f;
        json_array_foreach(json_object_get(g, "filters"), k, f) {
            if (!filter_match(rec, f)) {
                all = false;
                break;
            }
        }
        if (all)
            return true;
    }
    return false;
}

/* Validate the search request; a message, or NULL when it is fine. */
static const char *check_search(json_t *req, long long *limit,
                                long long *after)
{
    static const char *const ops[] = {
        "EQ", "NEQ", "LT", "LTE", "GT", "GTE", "BETWEEN", "IN", "NOT_IN",
        "HAS_PROPERTY", "NOT_HAS_PROPERTY", "CONTAINS_TOKEN",
        "NOT_CONTAINS_TOKEN"};
    json_t *groups = json_object_get(req, "filterGroups");
    if (groups && !json_is_array(groups))
        return "filterGroups must be a list";
    if (json_array_size(groups) > MAX_FILTER_GROUPS)
        return "Too many filter groups: at most 6 are allowed";
    size_t i;
    json_t *g;
    json_array_foreach(groups, i, g) {
        json_t *filters = json_object_get(g, "filters");
        if (!json_is_array(filters))
            return "each filter group needs a list of filters";
        if (json_array_size(filters) > MAX_FILTERS)
            return "Too many filters in a group: at most 6 are allowed";
        size_t k;
        json_t *f;
        json_array_foreach(filters, k, f) {
            const char *op = json_string_value(json_object_get(f, "operator"));
            if (!json_is_string(json_object_get(f, "propertyName")) || !op)
                return "each filter needs propertyName and operator";
            bool ok = false;
            for (size_t n = 0; n < CS_ARRAY_LEN(ops); n++)
                if (strcmp(op, ops[n]) == 0)
                    ok = true;
            if (!ok)
                return "unknown filter operator";
        }
    }
    json_t *l = json_object_get(req, "limit");
    *limit = 10;
    if (l) {
        if (!json_is_integer(l) || json_integer_value(l) < 0 ||
            json_integer_value(l) > MAX_LIMIT)
            return "limit must be an integer between 0 and 200";
        *limit = json_integer_value(l);
    }
    json_t *a = json_object_get(req, "after");
    *after = 0;
    if (json_is_string(a) && *json_string_value(a)) {
        char *end;
        *after = strtoll(json_string_value(a), &end, 10);
        if (*end || *after < 0)
            return "after must be a paging cursor from a previous page";
    } else if (json_is_integer(a)) {
        *after = json_integer_value(a);
    }
    json_t *p = json_object_get(req, "properties");
    if (p && !json_is_array(p))
        return "properties must be a list of names";
    json_t *q = json_object_get(req, "query");
    if (q && !json_is_string(q))
        return "query must be a string";
    return NULL;
}

static int cmp_rec_id(const void *a, const void *b)
{
    const json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
    long long i = strtoll(json_string_value(json_object_get(x, "id")), NULL,
                          10);
    long long j = strtoll(json_string_value(json_object_get(y, "id")), NULL,
                          10);
    return i < j ? -1 : i > j;
}

/* Candidates from the index when every group has an indexed EQ filter;
 * otherwise NULL (scan everything). */
static json_t *indexed_candidates(struct hs_type *t, json_t *groups)
{
    if (!json_array_size(groups))
        return NULL;
    json_t *ids = json_object();
    size_t i;
    json_t *g;
    json_array_foreach(groups, i, g) {
        json_t *hit = NULL;
        size_t k;
        json_t *f;
        json_array_foreach(json_object_get(g, "filters"), k, f) {
            const char *op = json_string_value(json_object_get(f, "operator"));
            const char *n = json_string_value(json_object_get(f,
                                                              "propertyName"));
            const char *v = json_string_value(json_object_get(f, "value"));
            if (strcmp(op, "EQ") == 0 && is_indexed(n) && v) {
                char *key = index_key(n, v);
                hit = json_object_get(t->index, key);
                free(key);
                if (!hit)
                    hit = json_null();
                break;
            }
        }
        if (!hit) {
            json_decref(ids);
            return NULL;
        }
        size_t m;
        json_t *id;
        json_array_foreach(hit, m, id) {
            json_object_set(ids, json_string_value(id),
                            json_object_get(t->by_id, json_string_value(id)));
        }
    }
    size_t n = json_object_size(ids);
    json_t **recs = xcalloc(n ? n : 1, sizeof(*recs));
    size_t k = 0;
    const char *key;
    json_t *rec;
    json_object_foreach(ids, key, rec) {
        recs[k++] = rec;
    }
    qsort(recs, n, sizeof(*recs), cmp_rec_id);
    json_t *out = json_array();
    for (k = 0; k < n; k++)
        json_array_append(out, recs[k]);
    free(recs);
    json_decref(ids);
    return out;
}

static void obj_search(struct hs_type *t, const struct sb_req *rq,
                       struct sb_resp *out)
{
    json_error_t e;
    json_t *req = json_loadb(rq->body.data ? rq->body.data : "",
                             rq->body.len, 0, &e);
    if (!json_is_object(req)) {
        json_decref(req);
        fail(out, 400, "VALIDATION_ERROR",
             "Invalid input JSON: the search request must be an object");
        return;
    }
    long long limit, after;
    const char *problem = check_search(req, &limit, &after);
    if (problem) {
        fail(out, 400, "VALIDATION_ERROR", problem);
        json_decref(req);
        return;
    }
    json_t *groups = json_object_get(req, "filterGroups");
    const char *q = json_string_value(json_object_get(req, "query"));
    json_t *want = json_object_get(req, "properties");
    json_t *dflt = NULL;
    if (!json_array_size(want))
        want = dflt = default_want(t);
    json_t *cand = indexed_candidates(t, groups);
    json_t *from = cand ? cand : t->list;
    json_t *results = json_array();
    long long total = 0;
    size_t i;
    json_t *rec;
    json_array_foreach(from, i, rec) {
        if (!record_matches(rec, groups, q))
            continue;
        if (total >= after && total < after + limit)
            json_array_append_new(results, public_view(t, rec, want));
        total++;
    }
    json_t *body = json_pack("{s:I,s:o}", "total", (json_int_t)total,
                             "results", results);
    if (after + limit < total) {
        char next[32];
        snprintf(next, sizeof(next), "%lld", after + limit);
        json_object_set_new(body, "paging",
                            json_pack("{s:{s:s,s:s+}}", "next", "after", next,
                                      "link", "?after=", next));
    }
    sb_resp_json(out, 200, body);
    json_decref(cand);
    json_decref(dflt);
    json_decref(req);
}

/* ---- Workflow enrolment ------------------------------------------------- */

static void enroll(struct sb *s, const struct sb_req *rq, const char *wid,
                   size_t wlen, const char *email_raw, struct sb_resp *out)
{
    char *email = sb_url_decode(email_raw, strlen(email_raw), false);
    json_t *c = find_by_email(&s->hs->types[T_CONTACTS], email);
    if (!c) {
        fail(out, 404, "OBJECT_NOT_FOUND", "Contact does not exist");
    } else {
        char *w = xstrndup(wid, wlen);
        json_array_append_new(
            s->hs->enrollments,
            json_pack("{s:s,s:s,s:O,s:I}", "workflow_id", w, "email", email,
                      "contact_id", json_object_get(c, "id"),
                      "received_at_ms", (json_int_t)rq->received_ms));
        free(w);
        out->status = 204;
    }
    free(email);
}

/* ---- Routing ------------------------------------------------------------ */

static void route(struct sb *s, const struct sb_req *rq, struct sb_resp *out)
{
    static const char objects[] = "/crm/v3/objects/";
    static const char wf[] = "/automation/v2/workflows/";
    static const char en[] = "/enrollments/contacts/";
    const char *p = rq->sub;
    if (strncmp(p, wf, sizeof(wf) - 1) == 0) {
        const char *id = p + sizeof(wf) - 1;
        const char *rest = strchr(id, '/');
        if (rest && rest > id && strncmp(rest, en, sizeof(en) - 1) == 0 &&
            rest[sizeof(en) - 1] && !strchr(rest + sizeof(en) - 1, '/')) {
            if (rq->method != HTTP_POST)
                fail(out, 405, "METHOD_NOT_ALLOWED", "Method Not Allowed");
            else
                enroll(s, rq, id, (size_t)(rest - id), rest + sizeof(en) - 1,
                       out);
            return;
        }
    } else if (strcmp(p, "/account-info/v3/details") == 0) {
        if (rq->method != HTTP_GET) {
            fail(out, 405, "METHOD_NOT_ALLOWED", "Method Not Allowed");
            return;
        }
        sb_resp_json(out, 200,
                     json_pack("{s:i,s:s,s:s,s:s,s:[],s:s,s:s,s:s,s:I}",
                               "portalId", 62515, "accountType", "STANDARD",
                               "timeZone", "US/Eastern", "companyCurrency",
                               "USD", "additionalCurrencies", "utcOffset",
                               "-05:00", "uiDomain", "app.hubspot.com",
                               "dataHostingLocation", "na1",
                               "utcOffsetMilliseconds",
                               (json_int_t)-18000000));
        return;
    } else if (strncmp(p, objects, sizeof(objects) - 1) == 0) {
        const char *name = p + sizeof(objects) - 1;
        size_t nlen = strcspn(name, "/");
        const char *rest = name + nlen;
        struct hs_type *t = NULL;
        for (int i = 0; i < T_COUNT; i++) {
            const struct hs_type *ti = &s->hs->types[i];
            if ((strlen(ti->name) == nlen &&
                 strncmp(name, ti->name, nlen) == 0) ||
                (strlen(ti->type_id) == nlen &&
                 strncmp(name, ti->type_id, nlen) == 0))
                t = &s->hs->types[i];
        }
        if (!t) {
            char *n = xstrndup(name, nlen);
            char *msg = xasprintf("Unable to infer object type from: %s", n);
            fail(out, 400, "VALIDATION_ERROR", msg);
            free(msg);
            free(n);
            return;
        }
        if (!*rest || strcmp(rest, "/") == 0) {
            if (rq->method == HTTP_POST)
                obj_create(s, t, rq, out);
            else if (rq->method == HTTP_GET)
                obj_list(t, rq, out);
            else
                fail(out, 405, "METHOD_NOT_ALLOWED", "Method Not Allowed");
            return;
        }
        if (strcmp(rest, "/search") == 0) {
            if (rq->method == HTTP_POST)
                obj_search(t, rq, out);
            else
                fail(out, 405, "METHOD_NOT_ALLOWED", "Method Not Allowed");
            return;
        }
        if (rest[1] && !strchr(rest + 1, '/')) {
            if (rq->method == HTTP_GET)
                obj_get(t, rq, rest + 1, out);
            else if (rq->method == HTTP_PATCH)
                obj_update(s, t, rq, rest + 1, out);
            else
                fail(out, 405, "METHOD_NOT_ALLOWED", "Method Not Allowed");
            return;
        }
    }
    fail(out, 404, "OBJECT_NOT_FOUND", "resource not found");
}

void hs_handle(struct sb *s, const struct sb_req *rq, struct sb_resp *out)
{
    json_t *refused = unauthorised(s, rq);
    if (refused) {
        sb_resp_json(out, 401, refused);
    } else if (!rate_take(s, cs_mono_ms())) {
        sb_resp_json(out, 429, rate_limit_body());
    } else {
        route(s, rq, out);
    }
    hs_rate_headers(s, out);
}
