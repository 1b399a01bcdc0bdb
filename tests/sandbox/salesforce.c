/*
 * salesforce.c - the Salesforce REST API part of the sandbox, under
 * /salesforce (an org's instance URL; the sandbox's OAuth endpoint answers
 * instance_url = http://HOST/salesforce):
 *
 *   GET    /services/data/                          the API versions
 *   GET    /services/data/vNN.N/query?q=<SOQL>       (soql.c)
 *   POST   /services/data/vNN.N/sobjects/{Object}
 *   GET    /services/data/vNN.N/sobjects/{Object}/{id}[?fields=a,b]
 *   PATCH  /services/data/vNN.N/sobjects/{Object}/{id}
 *   DELETE /services/data/vNN.N/sobjects/{Object}/{id}
 *   PATCH  /services/data/vNN.N/sobjects/{Object}/{Field__c}/{value}
 *
 * Objects: Lead, Contact, Account, Task, Event, Opportunity, with their
 * standard fields (the ones callsync and the tests use) and any custom
 * field whose name ends in "__c". Shapes follow the REST API Developer
 * Guide and the Object Reference: a create answers 201 {"id", "success",
 * "errors"}, an update 204, an upsert 201 or 200 {"id", "success",
 * "errors", "created"} (204 before API 46.0) or 300 with the matching
 * records' URLs; errors are 4xx with a JSON array of {"message",
 * "errorCode", "fields"}: INVALID_SESSION_ID (401, a missing token, or one
 * not given with --salesforce-token when some are), NOT_FOUND,
 * ENTITY_IS_DELETED, INVALID_FIELD, INVALID_FIELD_FOR_INSERT_UPDATE,
 * REQUIRED_FIELD_MISSING, STRING_TOO_LONG, INVALID_EMAIL_ADDRESS,
 * INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST, MALFORMED_ID,
 * INVALID_CROSS_REFERENCE_KEY, FIELD_INTEGRITY_EXCEPTION,
 * CANNOT_UPDATE_CONVERTED_LEAD, JSON_PARSER_ERROR, and the SOQL errors.
 * With --salesforce-duplicates block, a lead or contact whose email or
 * phone number another one of its kind has is refused with 400
 * DUPLICATES_DETECTED naming that record (a blocking duplicate rule; the
 * standard rules of a new org only alert, and the API ignores alerts).
 *
 * Limits: every answer carries "Sforce-Limit-Info: api-usage=<used>/
 * <limit>" with the requests counted since start or reset against
 * --salesforce-daily (100,000 by default); past it, 403
 * REQUEST_LIMIT_EXCEEDED "TotalRequests Limit exceeded.".
 */
#define _GNU_SOURCE /* vasprintf */
#include "sandbox.h"
#include "salesforce.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define SF_MIN_VERSION 31
#define SF_MAX_VERSION 68

struct sb_sf {
    /* options */
    const char *tokens[SB_MAX_TOKENS];
    size_t ntokens;
    long long daily;
    bool block_duplicates;
    /* state */
    json_t *all;      /* live records, creation order */
    json_t *byid;     /* id -> record */
    json_t *deleted;  /* id -> true */
    long long next_id;
    long long used;
};

/* ---- Objects ------------------------------------------------------------ */

#define C SF_CREATE
#define U SF_UPDATE
#define F SF_FILTER
#define R SF_REQUIRED
#define END {NULL, NULL, SF_T_STRING, 0, 0, NULL, NULL}

static const char *const lead_status[] = {
    "Open - Not Contacted", "Working - Contacted", "Closed - Converted",
    "Closed - Not Converted", NULL};
static const char *const task_status[] = {
    "Not Started", "In Progress", "Completed", "Waiting on someone else",
    "Deferred", NULL};
static const char *const priorities[] = {"High", "Normal", "Low", NULL};
static const char *const subtypes[] = {"Task", "Email", "ListEmail",
                                       "Cadence", "Call", "LinkedIn", NULL};
static const char *const call_types[] = {"Internal", "Inbound", "Outbound",
                                         NULL};
static const char *const show_as[] = {"Busy", "OutOfOffice", "Free", NULL};
static const char *const stages[] = {
    "Prospecting", "Qualification", "Needs Analysis", "Value Proposition",
    "Id. Decision Makers", "Perception Analysis", "Proposal/Price Quote",
    "Negotiation/Review", "Closed Won", "Closed Lost", NULL};

#define SYSTEM_FIELDS(label)                                                 \
    {"Id", label " ID", SF_T_ID, 18, F, NULL, NULL},                         \
        {"OwnerId", "Owner ID", SF_T_REF, 18, C | U | F, NULL, "005,00G"},   \
        {"CreatedDate", "Created Date", SF_T_DATETIME, 0, F, NULL, NULL},    \
        {"LastModifiedDate", "Last Modified Date", SF_T_DATETIME, 0, F,      \
         NULL, NULL}

static const struct sf_field lead_fields[] = {
    SYSTEM_FIELDS("Lead"),
    {"FirstName", "First Name", SF_T_STRING, 40, C | U | F, NULL, NULL},
    {"LastName", "Last Name", SF_T_STRING, 80, C | U | F | R, NULL, NULL},
    {"Company", "Company", SF_T_STRING, 255, C | U | F | R, NULL, NULL},
    {"Email", "Email", SF_T_EMAIL, 80, C | U | F, NULL, NULL},
    {"Phone", "Phone", SF_T_PHONE, 40, C | U | F, NULL, NULL},
    {"MobilePhone", "Mobile Phone", SF_T_PHONE, 40, C | U | F, NULL, NULL},
    {"Street", "Street", SF_T_STRING, 255, C | U | F, NULL, NULL},
    {"City", "City", SF_T_STRING, 40, C | U | F, NULL, NULL},
    {"State", "State/Province", SF_T_STRING, 80, C | U | F, NULL, NULL},
    {"PostalCode", "Zip/Postal Code", SF_T_STRING, 20, C | U | F, NULL,
     NULL},
    {"Country", "Country", SF_T_STRING, 80, C | U | F, NULL, NULL},
    {"Title", "Title", SF_T_STRING, 128, C | U | F, NULL, NULL},
    {"Website", "Website", SF_T_STRING, 255, C | U | F, NULL, NULL},
    {"Industry", "Industry", SF_T_PICK, 255, C | U | F, NULL, NULL},
    {"Rating", "Rating", SF_T_PICK, 255, C | U | F, NULL, NULL},
    {"LeadSource", "Lead Source", SF_T_PICK, 255, C | U | F, NULL, NULL},
    {"Status", "Status", SF_T_PICK, 255, C | U | F, lead_status, NULL},
    {"Description", "Description", SF_T_TEXTAREA, 32000, C | U, NULL, NULL},
    {"IsConverted", "Converted", SF_T_BOOL, 0, F, NULL, NULL},
    {"ConvertedContactId", "Converted Contact ID", SF_T_REF, 18, F, NULL,
     "003"},
    END};

static const struct sf_field contact_fields[] = {
    SYSTEM_FIELDS("Contact"),
    {"FirstName", "First Name", SF_T_STRING, 40, C | U | F, NULL, NULL},
    {"LastName", "Last Name", SF_T_STRING, 80, C | U | F | R, NULL, NULL},
    {"Email", "Email", SF_T_EMAIL, 80, C | U | F, NULL, NULL},
    {"Phone", "Business Phone", SF_T_PHONE, 40, C | U | F, NULL, NULL},
    {"MobilePhone", "Mobile Phone", SF_T_PHONE, 40, C | U | F, NULL, NULL},
    {"MailingStreet", "Mailing Street", SF_T_STRING, 255, C | U | F, NULL,
     NULL},
    {"MailingCity", "Mailing City", SF_T_STRING, 40, C | U | F, NULL, NULL},
    {"MailingState", "Mailing State/Province", SF_T_STRING, 80, C | U | F,
     NULL, NULL},
    {"MailingPostalCode", "Mailing Zip/Postal Code", SF_T_STRING, 20,
     C | U | F, NULL, NULL},
    {"MailingCountry", "Mailing Country", SF_T_STRING, 80, C | U | F, NULL,
     NULL},
    {"Title", "Title", SF_T_STRING, 128, C | U | F, NULL, NULL},
    {"LeadSource", "Lead Source", SF_T_PICK, 255, C | U | F, NULL, NULL},
    {"Description", "Contact Description", SF_T_TEXTAREA, 32000, C | U,
     NULL, NULL},
    {"AccountId", "Account ID", SF_T_REF, 18, C | U | F, NULL, "001"},
    END};

static const struct sf_field account_fields[] = {
    SYSTEM_FIELDS("Account"),
    {"Name", "Account Name", SF_T_STRING, 255, C | U | F | R, NULL, NULL},
    {"Phone", "Account Phone", SF_T_PHONE, 40, C | U | F, NULL, NULL},
    {"Website", "Website", SF_T_STRING, 255, C | U | F, NULL, NULL},
    {"Industry", "Industry", SF_T_PICK, 255, C | U | F, NULL, NULL},
    {"Description", "Account Description", SF_T_TEXTAREA, 32000, C | U, NULL,
     NULL},
    END};

static const struct sf_field task_fields[] = {
    SYSTEM_FIELDS("Activity"),
    {"Subject", "Subject", SF_T_STRING, 255, C | U | F, NULL, NULL},
    {"Description", "Comments", SF_T_TEXTAREA, 32000, C | U, NULL, NULL},
    {"WhoId", "Name ID", SF_T_REF, 18, C | U | F, NULL, "00Q,003"},
    {"WhatId", "Related To ID", SF_T_REF, 18, C | U | F, NULL, "001,006"},
    {"Status", "Status", SF_T_PICK, 40, C | U | F, task_status, NULL},
    {"Priority", "Priority", SF_T_PICK, 40, C | U | F, priorities, NULL},
    {"ActivityDate", "Due Date Only", SF_T_DATE, 0, C | U | F, NULL, NULL},
    {"TaskSubtype", "Task Subtype", SF_T_PICK, 40, C | F, subtypes, NULL},
    {"CallType", "Call Type", SF_T_PICK, 40, C | U | F, call_types, NULL},
    {"CallDurationInSeconds", "Call Duration", SF_T_INT, 0, C | U | F, NULL,
     NULL},
    {"CallDisposition", "Call Result", SF_T_STRING, 255, C | U | F, NULL,
     NULL},
    {"CallObject", "Call Object Identifier", SF_T_STRING, 255, C | U | F,
     NULL, NULL},
    {"IsClosed", "Closed", SF_T_BOOL, 0, F, NULL, NULL},
    END};

static const struct sf_field event_fields[] = {
    SYSTEM_FIELDS("Activity"),
    {"Subject", "Subject", SF_T_STRING, 255, C | U | F, NULL, NULL},
    {"Description", "Description", SF_T_TEXTAREA, 32000, C | U, NULL, NULL},
    {"WhoId", "Name ID", SF_T_REF, 18, C | U | F, NULL, "00Q,003"},
    {"WhatId", "Related To ID", SF_T_REF, 18, C | U | F, NULL, "001,006"},
    {"StartDateTime", "Start Date Time", SF_T_DATETIME, 0, C | U | F, NULL,
     NULL},
    {"EndDateTime", "End Date Time", SF_T_DATETIME, 0, C | U | F, NULL,
     NULL},
    {"ActivityDateTime", "Due Date Time", SF_T_DATETIME, 0, C | U | F, NULL,
     NULL},
    {"ActivityDate", "Due Date Only", SF_T_DATE, 0, C | U | F, NULL, NULL},
    {"DurationInMinutes", "Duration", SF_T_INT, 0, C | U | F, NULL, NULL},
    {"IsAllDayEvent", "All-Day Event", SF_T_BOOL, 0, C | U | F, NULL, NULL},
    {"Location", "Location", SF_T_STRING, 255, C | U | F, NULL, NULL},
    {"ShowAs", "Show Time As", SF_T_PICK, 40, C | U | F, show_as, NULL},
    END};

static const struct sf_field opportunity_fields[] = {
    SYSTEM_FIELDS("Opportunity"),
    {"Name", "Name", SF_T_STRING, 120, C | U | F | R, NULL, NULL},
    {"StageName", "Stage", SF_T_PICK, 255, C | U | F | R, stages, NULL},
    {"CloseDate", "Close Date", SF_T_DATE, 0, C | U | F | R, NULL, NULL},
    {"Amount", "Amount", SF_T_NUM, 0, C | U | F, NULL, NULL},
    {"Probability", "Probability (%)", SF_T_NUM, 0, C | U | F, NULL, NULL},
    {"Type", "Opportunity Type", SF_T_PICK, 255, C | U | F, NULL, NULL},
    {"LeadSource", "Lead Source", SF_T_PICK, 255, C | U | F, NULL, NULL},
    {"Description", "Description", SF_T_TEXTAREA, 32000, C | U, NULL, NULL},
    {"AccountId", "Account ID", SF_T_REF, 18, C | U | F, NULL, "001"},
    {"ContactId", "Contact ID", SF_T_REF, 18, C | F, NULL, "003"},
    {"IsClosed", "Closed", SF_T_BOOL, 0, F, NULL, NULL},
    {"IsWon", "Won", SF_T_BOOL, 0, F, NULL, NULL},
    END};

#undef C
#undef U
#undef F
#undef R

static const struct sf_object objects[] = {
    {"Lead", "00Q", "leads", lead_fields},
    {"Contact", "003", "contacts", contact_fields},
    {"Account", "001", "accounts", account_fields},
    {"Task", "00T", "tasks", task_fields},
    {"Event", "00U", "events", event_fields},
    {"Opportunity", "006", "opportunities", opportunity_fields},
};

static const struct sf_field custom_field = {
    "", "", SF_T_CUSTOM, 0, SF_CREATE | SF_UPDATE | SF_FILTER, NULL, NULL};

const struct sf_object *sf_object_find(const char *name)
{
    for (size_t i = 0; i < CS_ARRAY_LEN(objects); i++)
        if (strcasecmp(objects[i].name, name) == 0)
            return &objects[i];
    return NULL;
}

static bool custom_name(const char *name)
{
    size_t n = strlen(name);
    if (n < 4 || n > 80 || strcasecmp(name + n - 3, "__c") != 0 ||
        !isalpha((unsigned char)name[0]))
        return false;
    for (size_t i = 0; i < n - 3; i++)
        if (!isalnum((unsigned char)name[i]) && name[i] != '_')
            return false;
    return name[n - 4] != '_';
}

const struct sf_field *sf_field_find(const struct sf_object *o,
                                     const char *name)
{
    for (const struct sf_field *f = o->fields; f->name; f++)
        if (strcasecmp(f->name, name) == 0)
            return f;
    return custom_name(name) ? &custom_field : NULL;
}

json_t *sf_record_get(const json_t *rec, const char *name)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)rec, k, v) {
        if (strcasecmp(k, name) == 0)
            return v;
    }
    return NULL;
}

const char *sf_record_key(const json_t *rec, const char *name)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)rec, k, v) {
        if (strcasecmp(k, name) == 0)
            return k;
    }
    return name;
}

bool sf_parse_datetime(const char *s, int64_t *ms)
{
    if (!s)
        return false;
    size_t n = strlen(s);
    if (n > 5 && n < 60 && (s[n - 5] == '+' || s[n - 5] == '-') &&
        isdigit((unsigned char)s[n - 4]) && isdigit((unsigned char)s[n - 1])) {
        char t[64];
        snprintf(t, sizeof(t), "%.*s:%s", (int)(n - 2), s, s + n - 2);
        return cs_parse_rfc3339(t, ms);
    }
    return cs_parse_rfc3339(s, ms);
}

/* Salesforce's own datetime form: "2026-02-20T20:00:00.000+0000". */
static json_t *sf_time(int64_t ms)
{
    char t[32];
    cs_rfc3339_ms(ms, t); /* 2026-02-20T20:00:00.000Z */
    size_t n = strlen(t);
    if (n && t[n - 1] == 'Z')
        t[n - 1] = '\0';
    return json_sprintf("%s+0000", t);
}

/* ---- State and options -------------------------------------------------- */

static struct sb_sf *state(struct sb *s)
{
    if (!s->sf) {
        s->sf = xcalloc(1, sizeof(*s->sf));
        s->sf->daily = 100000;
        s->sf->all = json_array();
        s->sf->byid = json_object();
        s->sf->deleted = json_object();
        s->sf->next_id = 1;
    }
    return s->sf;
}

bool sf_option(struct sb *s, const char *flag, const char *val)
{
    struct sb_sf *g = state(s);
    if (strcmp(flag, "--salesforce-token") == 0) {
        if (!*val || g->ntokens == SB_MAX_TOKENS)
            return false;
        g->tokens[g->ntokens++] = val;
        return true;
    }
    if (strcmp(flag, "--salesforce-daily") == 0) {
        char *end;
        long long v = strtoll(val, &end, 10);
        if (!*val || *end || v < 1)
            return false;
        g->daily = v;
        return true;
    }
    if (strcmp(flag, "--salesforce-duplicates") == 0) {
        if (strcmp(val, "block") != 0 && strcmp(val, "allow") != 0)
            return false;
        g->block_duplicates = strcmp(val, "block") == 0;
        return true;
    }
    return false;
}

void sf_reset(struct sb *s)
{
    struct sb_sf *g = state(s);
    json_array_clear(g->all);
    json_object_clear(g->byid);
    json_object_clear(g->deleted);
    g->next_id = 1;
    g->used = 0;
}

void sf_free(struct sb *s)
{
    if (!s->sf)
        return;
    json_decref(s->sf->all);
    json_decref(s->sf->byid);
    json_decref(s->sf->deleted);
    free(s->sf);
    s->sf = NULL;
}

json_t *sf_records(struct sb *s, const char *type)
{
    const struct sf_object *o = NULL;
    for (size_t i = 0; i < CS_ARRAY_LEN(objects); i++)
        if (strcmp(objects[i].type, type) == 0)
            o = &objects[i];
    if (!o)
        return NULL;
    json_t *out = json_array();
    size_t i;
    json_t *r;
    json_array_foreach(state(s)->all, i, r) {
        const char *t = json_string_value(
            json_object_get(json_object_get(r, "attributes"), "type"));
        if (t && strcmp(t, o->name) == 0)
            json_array_append(out, r);
    }
    return out;
}

/* ---- Errors and limits -------------------------------------------------- */

static json_t *error_item(const char *code, json_t *fields, const char *msg)
{
    json_t *e = json_pack("{s:s,s:s}", "message", msg, "errorCode", code);
    if (fields)
        json_object_set_new(e, "fields", fields);
    return e;
}

/* Answer [{"message", "errorCode"[, "fields"]}]; fields is stolen. */
static void fail(struct sb_resp *out, int status, const char *code,
                 json_t *fields, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void fail(struct sb_resp *out, int status, const char *code,
                 json_t *fields, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = NULL;
    if (vasprintf(&msg, fmt, ap) < 0)
        abort();
    va_end(ap);
    sb_resp_json(out, status, json_pack("[o]", error_item(code, fields, msg)));
    free(msg);
}

static void not_found(struct sb_resp *out)
{
    fail(out, 404, "NOT_FOUND", NULL, "The requested resource does not exist");
}

json_t *sf_error_body(int status)
{
    const char *code = "UNKNOWN_EXCEPTION", *msg = sb_reason(status);
    switch (status) {
    case 400: code = "JSON_PARSER_ERROR"; msg = "Bad request"; break;
    case 401: code = "INVALID_SESSION_ID"; msg = "Session expired or invalid";
        break;
    case 403: code = "REQUEST_LIMIT_EXCEEDED";
        msg = "TotalRequests Limit exceeded."; break;
    case 404: code = "NOT_FOUND"; msg = "The requested resource does not exist";
        break;
    case 429: code = "REQUEST_LIMIT_EXCEEDED"; msg = "Too Many Requests";
        break;
    case 503: code = "SERVER_UNAVAILABLE";
        msg = "Server temporarily unavailable"; break;
    default:
        if (status >= 500)
            msg = "An unexpected error occurred. Please include this "
                  "ErrorId if you contact support: 0-sandbox";
    }
    return json_pack("[o]", error_item(code, NULL, msg));
}

void sf_limit_headers(struct sb *s, struct sb_resp *out)
{
    struct sb_sf *g = state(s);
    sb_resp_header(out, "Sforce-Limit-Info: api-usage=%lld/%lld", g->used,
                   g->daily);
}

static bool authorised(struct sb *s, const struct sb_req *rq)
{
    struct sb_sf *g = state(s);
    const char *a = sb_header(rq, "authorization");
    if (!a || strncasecmp(a, "Bearer ", 7) != 0)
        return false;
    const char *tok = a + 7;
    while (*tok == ' ')
        tok++;
    if (!*tok)
        return false;
    if (!g->ntokens)
        return true;
    for (size_t i = 0; i < g->ntokens; i++)
        if (strcmp(tok, g->tokens[i]) == 0)
            return true;
    return false;
}

/* ---- Field values ------------------------------------------------------- */

static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xc0) != 0x80;
    return n;
}

static bool id_ok(const char *s)
{
    size_t n = strlen(s);
    if (n != 15 && n != 18)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s))
            return false;
    return true;
}

static bool date_ok(const char *s)
{
    int64_t ms;
    char t[32];
    if (strlen(s) != 10)
        return false;
    snprintf(t, sizeof(t), "%sT00:00:00Z", s);
    return cs_parse_rfc3339(t, &ms);
}

static bool email_ok(const char *s)
{
    const char *at = strchr(s, '@');
    return at && at != s && !strchr(at + 1, '@') && strchr(at + 1, '.') &&
           !strchr(s, ' ') && at[strlen(at) - 1] != '.';
}

static bool in_values(const char *v, const char *const *values)
{
    for (; *values; values++)
        if (strcmp(v, *values) == 0)
            return true;
    return false;
}

static const char *type_word(enum sf_ftype t)
{
    switch (t) {
    case SF_T_BOOL: return "boolean";
    case SF_T_INT: return "int";
    case SF_T_NUM: return "double";
    case SF_T_DATE: return "date";
    case SF_T_DATETIME: return "datetime";
    default: return "string";
    }
}

static const char *json_word(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "START_OBJECT";
    case JSON_ARRAY: return "START_ARRAY";
    case JSON_STRING: return "VALUE_STRING";
    case JSON_INTEGER: return "VALUE_NUMBER_INT";
    case JSON_REAL: return "VALUE_NUMBER_FLOAT";
    case JSON_TRUE: return "VALUE_TRUE";
    case JSON_FALSE: return "VALUE_FALSE";
    default: return "VALUE_NULL";
    }
}

static void deserialize_error(struct sb_resp *out, const struct sf_field *f,
                              const json_t *v)
{
    char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    fail(out, 400, "JSON_PARSER_ERROR", NULL,
         "Cannot deserialize instance of %s from %s value %s or request may "
         "be missing a required field",
         type_word(f->type), json_word(v), text ? text : "");
    free(text);
}

/* Whether id names a live record of one of the prefixes in refs, "" for
 * users and queues (not kept); answers the error otherwise. */
static bool ref_ok(struct sb *s, const struct sf_field *f, const char *name,
                   const char *id, struct sb_resp *out)
{
    bool prefix = false;
    const char *p = f->refs ? f->refs : "";
    while (*p) {
        size_t n = strcspn(p, ",");
        if (n == 3 && strncmp(id, p, 3) == 0)
            prefix = true;
        p += n;
        if (*p == ',')
            p++;
    }
    if (!id_ok(id) || !prefix) {
        fail(out, 400, "MALFORMED_ID", json_pack("[s]", name),
             "%s: id value of incorrect type: %s", f->label, id);
        return false;
    }
    bool kept = false;
    for (size_t i = 0; i < CS_ARRAY_LEN(objects); i++)
        kept |= strncmp(id, objects[i].prefix, 3) == 0;
    if (!kept)
        return true;
    if (json_object_get(state(s)->deleted, id)) {
        fail(out, 400, "ENTITY_IS_DELETED", json_array(),
             "entity is deleted");
        return false;
    }
    if (!json_object_get(state(s)->byid, id)) {
        fail(out, 400, "INVALID_CROSS_REFERENCE_KEY", json_array(),
             "invalid cross reference id");
        return false;
    }
    return true;
}

/* v normalised for field f (a new value), or NULL after answering 400. */
static json_t *field_value(struct sb *s, const struct sf_field *f,
                           const char *name, const json_t *v,
                           struct sb_resp *out)
{
    char num[64];
    switch (f->type) {
    case SF_T_CUSTOM:
        if (json_is_object(v) || json_is_array(v))
            break;
        return json_incref((json_t *)v);
    case SF_T_BOOL:
        if (!json_is_boolean(v))
            break;
        return json_incref((json_t *)v);
    case SF_T_INT:
        if (json_is_integer(v))
            return json_incref((json_t *)v);
        if (json_is_real(v) && json_real_value(v) == (double)(long long)
                                                       json_real_value(v))
            return json_integer((json_int_t)json_real_value(v));
        break;
    case SF_T_NUM:
        if (json_is_number(v))
            return json_incref((json_t *)v);
        break;
    case SF_T_DATE:
        if (!json_is_string(v) || !date_ok(json_string_value(v)))
            break;
        return json_incref((json_t *)v);
    case SF_T_DATETIME: {
        int64_t ms;
        if (!json_is_string(v) || !sf_parse_datetime(json_string_value(v),
                                                     &ms))
            break;
        return sf_time(ms);
    }
    case SF_T_ID:
    case SF_T_REF:
        if (!json_is_string(v))
            break;
        if (!ref_ok(s, f, name, json_string_value(v), out))
            return NULL;
        return json_incref((json_t *)v);
    default: {
        const char *t = json_string_value(v);
        if (json_is_integer(v)) {
            snprintf(num, sizeof(num), "%lld",
                     (long long)json_integer_value(v));
            t = num;
        } else if (json_is_real(v)) {
            snprintf(num, sizeof(num), "%.15g", json_real_value(v));
            t = num;
        } else if (json_is_boolean(v)) {
            t = json_is_true(v) ? "true" : "false";
        }
        if (!t)
            break;
        if (f->len && utf8_chars(t) > (size_t)f->len) {
            fail(out, 400, "STRING_TOO_LONG", json_pack("[s]", name),
                 "%s: data value too large: %.80s (max length=%d)", f->label,
                 t, f->len);
            return NULL;
        }
        if (f->type == SF_T_EMAIL && *t && !email_ok(t)) {
            fail(out, 400, "INVALID_EMAIL_ADDRESS", json_pack("[s]", name),
                 "%s: invalid email address: %s", f->label, t);
            return NULL;
        }
        if (f->values && !in_values(t, f->values)) {
            fail(out, 400, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                 json_pack("[s]", name),
                 "%s: bad value for restricted picklist field: %s", f->label,
                 t);
            return NULL;
        }
        return json_string(t);
    }
    }
    deserialize_error(out, f, v);
    return NULL;
}

/*
 * The body's fields checked for a create (or an update) of o: a new object
 * of field name -> normalised value, or NULL after answering 400. Custom
 * fields keep the case the record already has them in.
 */
static json_t *checked_fields(struct sb *s, const struct sf_object *o,
                              const json_t *body, const json_t *rec,
                              bool update, struct sb_resp *out)
{
    json_t *in = json_object();
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)body, k, v) {
        if (strcmp(k, "attributes") == 0)
            continue;
        const struct sf_field *f = sf_field_find(o, k);
        if (!f) {
            fail(out, 400, "INVALID_FIELD", json_array(),
                 "No such column '%s' on sobject of type %s", k, o->name);
            json_decref(in);
            return NULL;
        }
        const char *name = f->type == SF_T_CUSTOM ? k : f->name;
        if (f->type == SF_T_CUSTOM && rec) {
            const char *rk;
            json_t *rv;
            json_object_foreach((json_t *)rec, rk, rv) {
                if (strcasecmp(rk, k) == 0)
                    name = rk;
            }
        }
        if (!(f->flags & (update ? SF_UPDATE : SF_CREATE))) {
            fail(out, 400, "INVALID_FIELD_FOR_INSERT_UPDATE",
                 json_pack("[s]", name),
                 "Unable to create/update fields: %s. Please check the "
                 "security settings of this field and verify that it is "
                 "read/write for your profile or permission set.", name);
            json_decref(in);
            return NULL;
        }
        if (json_is_null(v)) {
            json_object_set_new(in, name, json_null());
            continue;
        }
        json_t *nv = field_value(s, f, name, v, out);
        if (!nv) {
            json_decref(in);
            return NULL;
        }
        json_object_set_new(in, name, nv);
    }
    return in;
}

/* The required fields rec lacks: REQUIRED_FIELD_MISSING. */
static bool required_ok(const struct sf_object *o, const json_t *rec,
                        struct sb_resp *out)
{
    json_t *missing = json_array();
    struct buf b;
    buf_init(&b, 4096);
    for (const struct sf_field *f = o->fields; f->name; f++) {
        const json_t *v = json_object_get(rec, f->name);
        if (!(f->flags & SF_REQUIRED) ||
            (v && !json_is_null(v) &&
             !(json_is_string(v) && !json_string_length(v))))
            continue;
        json_array_append_new(missing, json_string(f->name));
        if ((b.len && buf_adds(&b, ", ") < 0) || buf_adds(&b, f->name) < 0)
            break;
    }
    char *names = buf_take(&b, NULL);
    bool ok = json_array_size(missing) == 0;
    if (!ok)
        fail(out, 400, "REQUIRED_FIELD_MISSING", json_incref(missing),
             "Required fields are missing: [%s]", names ? names : "");
    json_decref(missing);
    free(names);
    return ok;
}

static int64_t time_of(const json_t *rec, const char *field)
{
    int64_t ms;
    return sf_parse_datetime(json_string_value(json_object_get(rec, field)),
                             &ms)
               ? ms
               : -1;
}

/* Event times: a start (StartDateTime or ActivityDateTime), an end
 * (EndDateTime or DurationInMinutes), at most 14 days apart. */
static bool event_ok(json_t *rec, struct sb_resp *out)
{
    if (json_is_true(json_object_get(rec, "IsAllDayEvent")))
        return true;
    int64_t start = time_of(rec, "StartDateTime");
    if (start < 0)
        start = time_of(rec, "ActivityDateTime");
    if (start < 0) {
        fail(out, 400, "REQUIRED_FIELD_MISSING", json_pack("[s]",
                                                           "ActivityDateTime"),
             "Required fields are missing: [ActivityDateTime]");
        return false;
    }
    int64_t end = time_of(rec, "EndDateTime");
    const json_t *dur = json_object_get(rec, "DurationInMinutes");
    if (end < 0 && json_is_integer(dur))
        end = start + json_integer_value(dur) * 60000;
    if (end < 0) {
        fail(out, 400, "REQUIRED_FIELD_MISSING",
             json_pack("[s]", "DurationInMinutes"),
             "Required fields are missing: [DurationInMinutes]");
        return false;
    }
    if (json_is_integer(dur) &&
        end != start + json_integer_value(dur) * 60000) {
        fail(out, 400, "FIELD_INTEGRITY_EXCEPTION",
             json_pack("[s]", "DurationInMinutes"),
             "Duration: the duration doesn't match the start and end times");
        return false;
    }
    if (end < start) {
        fail(out, 400, "FIELD_INTEGRITY_EXCEPTION",
             json_pack("[s]", "EndDateTime"),
             "End Date Time: the end can't be before the start");
        return false;
    }
    if (end - start > 14LL * 24 * 3600 * 1000) {
        fail(out, 400, "FIELD_INTEGRITY_EXCEPTION",
             json_pack("[s]", "EndDateTime"),
             "Event duration can't exceed 14 days");
        return false;
    }
    json_object_set_new(rec, "StartDateTime", sf_time(start));
    json_object_set_new(rec, "ActivityDateTime", sf_time(start));
    json_object_set_new(rec, "EndDateTime", sf_time(end));
    json_object_set_new(rec, "DurationInMinutes",
                        json_integer((end - start) / 60000));
    char d[32];
    cs_rfc3339_s(start, d);
    d[10] = '\0';
    json_object_set_new(rec, "ActivityDate", json_string(d));
    return true;
}

/* ---- Duplicate rules ---------------------------------------------------- */

static void phone_digits(const char *s, char out[32])
{
    size_t k = 0;
    for (; s && *s && k < 31; s++)
        if (isdigit((unsigned char)*s))
            out[k++] = *s;
    out[k] = '\0';
}

/* The same number: the last ten digits agree (all of them when
 * shorter), as a fuzzy phone match does. */
static bool same_number(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la < 7 || lb < 7)
        return false;
    size_t n = la < lb ? la : lb;
    if (n > 10)
        n = 10;
    return strcmp(a + la - n, b + lb - n) == 0;
}

/* Another live lead (not converted) or contact with rec's email or
 * phone number. */
static const json_t *duplicate_of(struct sb *s, const struct sf_object *o,
                                  const json_t *rec)
{
    const char *email = json_string_value(json_object_get(rec, "Email"));
    char ph[32];
    phone_digits(json_string_value(json_object_get(rec, "Phone")), ph);
    const char *id = json_string_value(json_object_get(rec, "Id"));
    size_t i;
    const json_t *r;
    json_array_foreach(state(s)->all, i, r) {
        const char *t = json_string_value(
            json_object_get(json_object_get(r, "attributes"), "type"));
        const char *rid = json_string_value(json_object_get(r, "Id"));
        if (!t || strcmp(t, o->name) != 0 || (id && strcmp(id, rid) == 0) ||
            json_is_true(json_object_get(r, "IsConverted")))
            continue;
        const char *re = json_string_value(json_object_get(r, "Email"));
        char rp[32];
        phone_digits(json_string_value(json_object_get(r, "Phone")), rp);
        if ((email && *email && re && strcasecmp(email, re) == 0) ||
            same_number(ph, rp))
            return r;
    }
    return NULL;
}

static void duplicates_detected(struct sb_resp *out, const struct sf_object *o,
                                const json_t *dup, const char *version)
{
    const char *id = json_string_value(json_object_get(dup, "Id"));
    bool lead = strcmp(o->name, "Lead") == 0;
    json_t *record = json_pack(
        "{s:{s:s,s:o},s:s}", "attributes", "type", o->name, "url",
        json_sprintf("/services/data/v%s/sobjects/%s/%s", version, o->name,
                     id),
        "Id", id);
    json_t *match = json_pack(
        "{s:s,s:[],s:s,s:[{s:[],s:[],s:f,s:o}],s:s,s:i,s:b}", "entityType",
        o->name, "errors", "matchEngine", "FuzzyMatchEngine", "matchRecords",
        "additionalInformation", "fieldDiffs", "matchConfidence", 100.0,
        "record", record, "rule",
        lead ? "Standard_Lead_Match_Rule_v1_0"
             : "Standard_Contact_Match_Rule_v1_1",
        "size", 1, "success", 1);
    json_t *e = json_pack(
        "{s:{s:b,s:s,s:s,s:s,s:[o]},s:s,s:[],s:s}", "duplicateResult",
        "allowSave", 0, "duplicateRule",
        lead ? "Standard_Lead_Duplicate_Rule"
             : "Standard_Contact_Duplicate_Rule",
        "duplicateRuleEntityType", o->name, "errorMessage",
        "Use one of these records?", "matchResults", match, "errorCode",
        "DUPLICATES_DETECTED", "fields", "message",
        "Use one of these records?");
    sb_resp_json(out, 400, json_pack("[o]", e));
}

/* ---- Records ------------------------------------------------------------ */

static json_t *new_record(struct sb *s, const struct sf_object *o,
                          const char *version, int64_t now)
{
    struct sb_sf *g = state(s);
    char id[24];
    snprintf(id, sizeof(id), "%sSb%013lld", o->prefix, g->next_id++);
    json_t *r = json_pack("{s:{s:s,s:o},s:s,s:o,s:o}", "attributes", "type",
                          o->name, "url",
                          json_sprintf("/services/data/v%s/sobjects/%s/%s",
                                       version, o->name, id),
                          "Id", id, "CreatedDate", sf_time(now),
                          "LastModifiedDate", sf_time(now));
    if (strcmp(o->name, "Lead") == 0) {
        json_object_set_new(r, "Status", json_string("Open - Not Contacted"));
        json_object_set_new(r, "IsConverted", json_false());
    } else if (strcmp(o->name, "Task") == 0) {
        json_object_set_new(r, "Status", json_string("Not Started"));
        json_object_set_new(r, "Priority", json_string("Normal"));
        json_object_set_new(r, "TaskSubtype", json_string("Task"));
    } else if (strcmp(o->name, "Event") == 0) {
        json_object_set_new(r, "IsAllDayEvent", json_false());
        json_object_set_new(r, "ShowAs", json_string("Busy"));
    }
    return r;
}

/* Fields Salesforce derives from others. */
static void derive(const struct sf_object *o, json_t *rec)
{
    const char *st = json_string_value(json_object_get(rec, "Status"));
    const char *stage = json_string_value(json_object_get(rec, "StageName"));
    if (strcmp(o->name, "Task") == 0)
        json_object_set_new(rec, "IsClosed",
                            json_boolean(st && strcmp(st, "Completed") == 0));
    if (strcmp(o->name, "Opportunity") == 0) {
        bool won = stage && strcmp(stage, "Closed Won") == 0;
        json_object_set_new(rec, "IsWon", json_boolean(won));
        json_object_set_new(rec, "IsClosed",
                            json_boolean(won || (stage &&
                                                 strcmp(stage, "Closed Lost") ==
                                                     0)));
    }
}

/*
 * Apply body to rec (a fresh record for a create, a copy of the stored
 * one for an update) and check the result. True when rec may be stored;
 * otherwise the answer is made.
 */
static bool apply_body(struct sb *s, const struct sf_object *o,
                       const json_t *body, json_t *rec, bool update,
                       const char *version, int64_t now, struct sb_resp *out)
{
    json_t *in = checked_fields(s, o, body, rec, update, out);
    if (!in)
        return false;
    json_object_update(rec, in);
    json_decref(in);
    if (!required_ok(o, rec, out))
        return false;
    if (strcmp(o->name, "Event") == 0 && !event_ok(rec, out))
        return false;
    derive(o, rec);
    const json_t *dup;
    if (state(s)->block_duplicates &&
        (strcmp(o->name, "Lead") == 0 || strcmp(o->name, "Contact") == 0) &&
        (dup = duplicate_of(s, o, rec)) != NULL) {
        duplicates_detected(out, o, dup, version);
        return false;
    }
    json_object_set_new(rec, "LastModifiedDate", sf_time(now));
    return true;
}

static void store(struct sb *s, json_t *rec)
{
    struct sb_sf *g = state(s);
    json_array_append(g->all, rec);
    json_object_set(g->byid, json_string_value(json_object_get(rec, "Id")),
                    rec);
}

/* Replace the stored record with rec (same id), keeping its place. */
static void replace(struct sb *s, json_t *old, json_t *rec)
{
    struct sb_sf *g = state(s);
    size_t i;
    json_t *r;
    json_array_foreach(g->all, i, r) {
        if (r == old) {
            json_array_set(g->all, i, rec);
            break;
        }
    }
    json_object_set(g->byid, json_string_value(json_object_get(rec, "Id")),
                    rec);
}

static json_t *parse_body(const struct sb_req *rq, struct sb_resp *out)
{
    json_t *b = sb_body_json(rq);
    if (!json_is_object(b)) {
        json_decref(b);
        fail(out, 400, "JSON_PARSER_ERROR", NULL,
             "The request body is not a JSON object");
        return NULL;
    }
    return b;
}

static void create(struct sb *s, const struct sb_req *rq,
                   const struct sf_object *o, const char *version,
                   struct sb_resp *out)
{
    json_t *b = parse_body(rq, out);
    if (!b)
        return;
    json_t *rec = new_record(s, o, version, rq->received_ms);
    if (apply_body(s, o, b, rec, false, version, rq->received_ms, out)) {
        store(s, rec);
        sb_resp_json(out, 201,
                     json_pack("{s:O,s:b,s:[]}", "id",
                               json_object_get(rec, "Id"), "success", 1,
                               "errors"));
    } else {
        state(s)->next_id--; /* the id was never used */
    }
    json_decref(rec);
    json_decref(b);
}

/* The stored record of o with this id, or NULL after answering 404. */
static json_t *find(struct sb *s, const struct sf_object *o, const char *id,
                    struct sb_resp *out)
{
    struct sb_sf *g = state(s);
    json_t *r = json_object_get(g->byid, id);
    const char *t = json_string_value(
        json_object_get(json_object_get(r, "attributes"), "type"));
    if (r && t && strcmp(t, o->name) == 0)
        return r;
    if (json_object_get(g->deleted, id))
        fail(out, 404, "ENTITY_IS_DELETED", json_array(), "entity is deleted");
    else
        not_found(out);
    return NULL;
}

static bool update_record(struct sb *s, const struct sb_req *rq,
                          const struct sf_object *o, json_t *old,
                          const json_t *body, const char *version,
                          struct sb_resp *out)
{
    if (strcmp(o->name, "Lead") == 0 &&
        json_is_true(json_object_get(old, "IsConverted"))) {
        fail(out, 400, "CANNOT_UPDATE_CONVERTED_LEAD", json_array(),
             "cannot reference converted lead");
        return false;
    }
    json_t *rec = json_deep_copy(old);
    bool ok = apply_body(s, o, body, rec, true, version, rq->received_ms, out);
    if (ok)
        replace(s, old, rec);
    json_decref(rec);
    return ok;
}

static void update(struct sb *s, const struct sb_req *rq,
                   const struct sf_object *o, const char *id,
                   const char *version, struct sb_resp *out)
{
    json_t *old = find(s, o, id, out);
    if (!old)
        return;
    json_t *b = parse_body(rq, out);
    if (!b)
        return;
    if (update_record(s, rq, o, old, b, version, out)) {
        out->status = 204;
        free(out->body);
        out->body = NULL;
        out->len = 0;
    }
    json_decref(b);
}

static void delete_record(struct sb *s, const struct sf_object *o,
                          const char *id, struct sb_resp *out)
{
    struct sb_sf *g = state(s);
    json_t *old = find(s, o, id, out);
    if (!old)
        return;
    size_t i;
    json_t *r;
    json_array_foreach(g->all, i, r) {
        if (r == old) {
            json_array_remove(g->all, i);
            break;
        }
    }
    json_object_set_new(g->deleted, id, json_true());
    json_object_del(g->byid, id);
    out->status = 204;
}

static void get_record(struct sb *s, const struct sb_req *rq,
                       const struct sf_object *o, const char *id,
                       struct sb_resp *out)
{
    json_t *r = find(s, o, id, out);
    if (!r)
        return;
    char *fields = sb_query_param(rq->query, "fields");
    if (!fields || !*fields) {
        free(fields);
        sb_resp_json(out, 200, json_deep_copy(r));
        return;
    }
    json_t *o2 = json_pack("{s:O}", "attributes",
                           json_object_get(r, "attributes"));
    for (char *p = fields; *p;) {
        size_t n = strcspn(p, ",");
        char *name = xstrndup(p, n);
        const struct sf_field *f = sf_field_find(o, name);
        if (!f) {
            fail(out, 400, "INVALID_FIELD", NULL,
                 "No such column '%s' on entity '%s'. If you are attempting "
                 "to use a custom field, be sure to append the '__c' after "
                 "the custom field name. Please reference your WSDL or the "
                 "describe call for the appropriate names.", name, o->name);
            free(name);
            free(fields);
            json_decref(o2);
            return;
        }
        json_t *v = sf_record_get(r, name);
        json_object_set(o2,
                        f->type == SF_T_CUSTOM ? sf_record_key(r, name)
                                               : f->name,
                        v ? v : json_null());
        free(name);
        p += n;
        if (*p == ',')
            p++;
    }
    free(fields);
    sb_resp_json(out, 200, o2);
}

/* PATCH /sobjects/{Object}/{field}/{value}: create or update by an
 * external id. */
static void upsert(struct sb *s, const struct sb_req *rq,
                   const struct sf_object *o, const char *field,
                   const char *value, const char *version, int major,
                   struct sb_resp *out)
{
    const struct sf_field *f = sf_field_find(o, field);
    if (!f || f->type != SF_T_CUSTOM) {
        fail(out, 404, "NOT_FOUND", NULL,
             "Provided external ID field does not exist or is not "
             "accessible: %s", field);
        return;
    }
    json_t *b = parse_body(rq, out);
    if (!b)
        return;
    json_t *hits = json_array();
    size_t i;
    json_t *r;
    json_array_foreach(state(s)->all, i, r) {
        const char *t = json_string_value(
            json_object_get(json_object_get(r, "attributes"), "type"));
        json_t *v = sf_record_get(r, field);
        char *text = v ? json_dumps(v, JSON_ENCODE_ANY) : NULL;
        const char *vs = json_is_string(v) ? json_string_value(v) : text;
        if (t && strcmp(t, o->name) == 0 && vs && strcasecmp(vs, value) == 0)
            json_array_append(hits, r);
        free(text);
    }
    if (json_array_size(hits) > 1) {
        json_t *urls = json_array();
        json_array_foreach(hits, i, r)
            json_array_append_new(
                urls, json_sprintf("/services/data/v%s/sobjects/%s/%s",
                                   version, o->name,
                                   json_string_value(json_object_get(r,
                                                                     "Id"))));
        sb_resp_json(out, 300, urls);
    } else if (json_array_size(hits) == 1) {
        json_t *old = json_array_get(hits, 0);
        json_t *id = json_incref(json_object_get(old, "Id"));
        if (update_record(s, rq, o, old, b, version, out)) {
            if (major >= 46)
                sb_resp_json(out, 200,
                             json_pack("{s:O,s:b,s:[],s:b}", "id", id,
                                       "success", 1, "errors", "created", 0));
            else
                out->status = 204;
        }
        json_decref(id);
    } else {
        json_t *rec = new_record(s, o, version, rq->received_ms);
        json_object_set_new(rec, field, json_string(value));
        json_object_del(b, field);
        if (apply_body(s, o, b, rec, false, version, rq->received_ms, out)) {
            store(s, rec);
            json_t *ans = json_pack("{s:O,s:b,s:[]}", "id",
                                    json_object_get(rec, "Id"), "success", 1,
                                    "errors");
            if (major >= 46)
                json_object_set_new(ans, "created", json_true());
            sb_resp_json(out, 201, ans);
        } else {
            state(s)->next_id--;
        }
        json_decref(rec);
    }
    json_decref(hits);
    json_decref(b);
}

static void query(struct sb *s, const struct sb_req *rq, const char *version,
                  struct sb_resp *out)
{
    char *q = sb_query_param(rq->query, "q");
    if (!q || !*q) {
        free(q);
        fail(out, 400, "MALFORMED_QUERY", NULL,
             "A query string has to be specified");
        return;
    }
    char code[40];
    char *msg = NULL;
    struct soql *p = soql_parse(q, code, &msg);
    if (!p) {
        fail(out, 400, code, NULL, "%s", msg ? msg : "");
    } else {
        sb_resp_json(out, 200, soql_run(p, state(s)->all, version));
        soql_free(p);
    }
    free(msg);
    free(q);
}

/* ---- Routing ------------------------------------------------------------ */

/* Split p into at most 4 '/'-separated, decoded segments; -1 when there
 * are more or one is empty or too long. */
static int segments(const char *p, char seg[4][256])
{
    int n = 0;
    if (*p == '/')
        p++;
    while (*p) {
        size_t l = strcspn(p, "/");
        if (n == 4 || l == 0 || l >= 256)
            return -1;
        char *d = sb_url_decode(p, l, false);
        snprintf(seg[n++], 256, "%s", d);
        free(d);
        p += l;
        if (*p == '/') {
            p++;
            if (!*p)
                break; /* a trailing slash */
        }
    }
    return n;
}

/* "vNN.N" within the versions the sandbox serves: the major number. */
static int version_major(const char *v)
{
    if (v[0] != 'v' || !isdigit((unsigned char)v[1]) ||
        !isdigit((unsigned char)v[2]) || v[3] != '.' ||
        !isdigit((unsigned char)v[4]) || v[5])
        return -1;
    int major = (v[1] - '0') * 10 + (v[2] - '0');
    return major >= SF_MIN_VERSION && major <= SF_MAX_VERSION ? major : -1;
}

static void versions(struct sb_resp *out)
{
    json_t *a = json_array();
    for (int v = SF_MIN_VERSION; v <= SF_MAX_VERSION; v++)
        json_array_append_new(
            a, json_pack("{s:o,s:o,s:o}", "label", json_sprintf("v%d", v),
                         "url", json_sprintf("/services/data/v%d.0", v),
                         "version", json_sprintf("%d.0", v)));
    sb_resp_json(out, 200, a);
}

static void method_not_allowed(struct sb_resp *out, const char *allowed)
{
    fail(out, 405, "METHOD_NOT_ALLOWED", NULL,
         "HTTP Method not allowed. Allowed are %s", allowed);
}

static void route(struct sb *s, const struct sb_req *rq, const char *rest,
                  const char *version, int major, struct sb_resp *out)
{
    char seg[4][256];
    int n = segments(rest, seg);
    int m = rq->method;
    if (n >= 1 && strcmp(seg[0], "query") == 0 && n == 1) {
        if (m == HTTP_GET)
            query(s, rq, version, out);
        else
            method_not_allowed(out, "GET,HEAD");
        return;
    }
    if (n < 2 || strcmp(seg[0], "sobjects") != 0) {
        not_found(out);
        return;
    }
    const struct sf_object *o = sf_object_find(seg[1]);
    if (!o) {
        not_found(out);
        return;
    }
    if (n == 2) {
        if (m == HTTP_POST)
            create(s, rq, o, version, out);
        else
            method_not_allowed(out, "POST");
    } else if (n == 3) {
        if (m == HTTP_GET)
            get_record(s, rq, o, seg[2], out);
        else if (m == HTTP_PATCH)
            update(s, rq, o, seg[2], version, out);
        else if (m == HTTP_DELETE)
            delete_record(s, o, seg[2], out);
        else
            method_not_allowed(out, "GET,PATCH,DELETE,HEAD");
    } else if (n == 4 && m == HTTP_PATCH) {
        upsert(s, rq, o, seg[2], seg[3], version, major, out);
    } else if (n == 4) {
        method_not_allowed(out, "GET,PATCH,DELETE,HEAD");
    } else {
        not_found(out);
    }
}

void sf_handle(struct sb *s, const struct sb_req *rq, struct sb_resp *out)
{
    struct sb_sf *g = state(s);
    static const char data[] = "/services/data";
    const char *p = rq->sub;
    if (!authorised(s, rq)) {
        sb_resp_json(out, 401, sf_error_body(401));
        return;
    }
    if (strncmp(p, data, sizeof(data) - 1) != 0) {
        not_found(out);
        sf_limit_headers(s, out);
        return;
    }
    p += sizeof(data) - 1;
    if ((strcmp(p, "") == 0 || strcmp(p, "/") == 0) &&
        rq->method == HTTP_GET) {
        /* The versions resource does not count towards the limit. */
        versions(out);
        sf_limit_headers(s, out);
        return;
    }
    if (g->used >= g->daily) {
        sb_resp_json(out, 403, sf_error_body(403));
        sf_limit_headers(s, out);
        return;
    }
    g->used++;
    char version[8] = "";
    size_t vl = strcspn(p + 1, "/");
    int major = -1;
    if (*p == '/' && vl < sizeof(version)) {
        snprintf(version, sizeof(version), "%.*s", (int)vl, p + 1);
        major = version_major(version);
    }
    if (major < 0)
        not_found(out);
    else
        route(s, rq, p + 1 + vl, version + 1, major, out);
    sf_limit_headers(s, out);
}
