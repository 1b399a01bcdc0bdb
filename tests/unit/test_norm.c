/*
 * test_norm.c - call normalisation: every fixture with its expected call
 * document, bad inputs with the exact field named, phone numbers, job ids,
 * shards and sync conditions.
 */
#include "norm.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct cs_norm_opts us = {.default_country_code = "1"};

static char *load_fixture(const char *rel, size_t *n)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/tests/fixtures/%s", CS_SOURCE_DIR, rel);
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open fixture '%s'", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    cr_assert_gt(len, 0);
    char *buf = malloc((size_t)len + 1);
    cr_assert_eq(fread(buf, 1, (size_t)len, f), (size_t)len);
    buf[len] = '\0';
    fclose(f);
    *n = (size_t)len;
    return buf;
}

typedef int norm_fn(const char *body, size_t n, const struct cs_norm_opts *o,
                    struct cs_event *ev, struct cs_err *err);

static int norm_standard_msg(const char *body, size_t n,
                             const struct cs_norm_opts *o, struct cs_event *ev,
                             struct cs_err *err)
{
    return cs_norm_standard("msg_2Lr4", body, n, o, ev, err);
}

/* Normalise a fixture and require success. */
static void norm_fixture(norm_fn *fn, const char *rel, struct cs_event *ev)
{
    size_t n;
    char *body = load_fixture(rel, &n);
    struct cs_err err = {0};
    int rc = fn(body, n, &us, ev, &err);
    free(body);
    cr_assert_eq(rc, 0, "%s: rc %d field '%s': %s", rel, rc, err.field,
                 err.msg);
}

/* Normalise a string and require CS_EINVAL naming field. */
static void expect_einval(norm_fn *fn, const char *body, const char *field)
{
    struct cs_event ev;
    struct cs_err err = {0};
    int rc = fn(body, strlen(body), &us, &ev, &err);
    cr_expect_eq(rc, CS_EINVAL, "body %s: rc %d", body, rc);
    cr_expect_eq(err.code, CS_EINVAL);
    cr_expect_str_eq(err.field, field, "body %s: field '%s' msg '%s'", body,
                     err.field, err.msg);
    cr_expect_neq(err.msg[0], '\0');
    cr_expect_null(ev.call);
    cr_expect_null(ev.event_id);
    if (rc == 0)
        cs_event_release(&ev);
}

static const char *str_at(json_t *o, const char *path)
{
    char buf[128];
    snprintf(buf, sizeof(buf), "%s", path);
    json_t *cur = o;
    for (char *save = NULL, *tok = strtok_r(buf, ".", &save); tok;
         tok = strtok_r(NULL, ".", &save))
        cur = json_object_get(cur, tok);
    cr_assert(json_is_string(cur), "'%s' is not a string", path);
    return json_string_value(cur);
}

static json_t *at(json_t *o, const char *path)
{
    char buf[128];
    snprintf(buf, sizeof(buf), "%s", path);
    json_t *cur = o;
    for (char *save = NULL, *tok = strtok_r(buf, ".", &save); tok;
         tok = strtok_r(NULL, ".", &save))
        cur = json_object_get(cur, tok);
    return cur;
}

#define EXPECT_STR(call, path, want)                                         \
    cr_expect_str_eq(str_at(call, path), want, "%s", path)
#define EXPECT_NULL(call, path)                                              \
    cr_expect(json_is_null(at(call, path)), "%s is not null", path)
#define EXPECT_INT(call, path, want)                                         \
    do {                                                                     \
        json_t *v_ = at(call, path);                                         \
        cr_expect(json_is_integer(v_), "%s is not an integer", path);        \
        cr_expect_eq(json_integer_value(v_), (json_int_t)(want), "%s", path);\
    } while (0)

/* Every call document has exactly the documented keys. */
static void expect_shape(json_t *call)
{
    static const char *const keys[] = {
        "call_id",    "source",        "agent_id",   "org_id",
        "customer",   "direction",     "outcome",    "summary",
        "sentiment",  "transcript",    "recording_url", "started_at",
        "ended_at",   "duration_s",    "appointment", "analysis",
        "custom"};
    cr_assert(json_is_object(call));
    cr_expect_eq(json_object_size(call), CS_ARRAY_LEN(keys));
    for (size_t i = 0; i < CS_ARRAY_LEN(keys); i++)
        cr_expect_not_null(json_object_get(call, keys[i]), "missing '%s'",
                           keys[i]);
    cr_expect_eq(json_object_size(json_object_get(call, "customer")), 8);
    cr_expect(json_is_string(json_object_get(call, "outcome")));
    cr_expect(json_is_object(json_object_get(call, "custom")));
    EXPECT_NULL(call, "agent_id");
    EXPECT_NULL(call, "org_id");
}

/* ---------------------------------------------------------------- Retell */

Test(retell, call_analyzed)
{
    struct cs_event ev;
    norm_fixture(cs_norm_retell, "retell/call_analyzed.json", &ev);
    json_t *c = ev.call;
    cr_assert(ev.syncable);
    cr_expect_str_eq(ev.source, "retell");
    cr_expect_str_eq(ev.event_type, "call_analyzed");
    cr_expect_str_eq(ev.event_id, "call_2f8a4c1e9b7d4e2a8c5f01:call_analyzed");
    cr_expect_str_eq(ev.agent_ref, "agent_d8a1c0ffee");
    expect_shape(c);
    EXPECT_STR(c, "call_id", "call_2f8a4c1e9b7d4e2a8c5f01");
    EXPECT_STR(c, "source", "retell");
    EXPECT_STR(c, "customer.phone", "+14155550132");
    EXPECT_STR(c, "customer.name", "Dana Whitfield");
    EXPECT_STR(c, "customer.first_name", "Dana");
    EXPECT_STR(c, "customer.last_name", "Whitfield");
    EXPECT_STR(c, "customer.email", "dana.whitfield@example.com");
    EXPECT_NULL(c, "customer.city");
    EXPECT_STR(c, "direction", "inbound");
    EXPECT_STR(c, "outcome", "completed");
    EXPECT_STR(c, "sentiment", "positive");
    cr_expect(strncmp(str_at(c, "summary"), "Dana called about a roof leak",
                      29) == 0);
    cr_expect(strncmp(str_at(c, "transcript"), "Agent: Thanks for calling",
                      25) == 0);
    EXPECT_STR(c, "recording_url",
               "https://dxc03zgurdly9.cloudfront.net/"
               "call_2f8a4c1e9b7d4e2a8c5f01/recording.wav");
    EXPECT_STR(c, "started_at", "2026-02-15T14:30:00Z");
    EXPECT_STR(c, "ended_at", "2026-02-15T14:35:02Z");
    EXPECT_INT(c, "duration_s", 302);
    EXPECT_NULL(c, "appointment");
    EXPECT_STR(c, "analysis.intent", "quote_request");
    EXPECT_STR(c, "analysis.project_type", "roof_repair");
    EXPECT_STR(c, "analysis.timeline", "immediate");
    EXPECT_STR(c, "analysis.budget", "medium");
    EXPECT_STR(c, "analysis.urgency", "high");
    EXPECT_INT(c, "analysis.lead_score", 82);
    /* Unmapped fields are kept. */
    EXPECT_STR(c, "custom.disconnection_reason", "user_hangup");
    EXPECT_STR(c, "custom.metadata.crm_contact_id", "c_8812");
    EXPECT_STR(c, "custom.metadata.campaign", "spring-roofing");
    EXPECT_STR(c, "custom.to_number", "+14155550100");
    EXPECT_STR(c, "custom.call_type", "phone_call");
    EXPECT_INT(c, "custom.agent_version", 3);
    EXPECT_STR(c, "custom.retell_llm_dynamic_variables.business_name",
               "Summit Roofing");
    EXPECT_STR(c, "custom.call_analysis.custom_analysis_data."
                  "preferred_contact_time",
               "afternoon");
    cr_expect(json_is_true(at(c, "custom.call_analysis.call_successful")));
    cr_expect(json_is_array(at(c, "custom.transcript_object")));
    cr_expect(json_is_object(at(c, "custom.call_cost")));
    /* Mapped fields are not duplicated. */
    cr_expect_null(at(c, "custom.call_id"));
    cr_expect_null(at(c, "custom.from_number"));
    cr_expect_null(at(c, "custom.call_analysis.call_summary"));
    cr_expect_null(at(c, "custom.call_analysis.custom_analysis_data."
                         "customer_name"));
    cs_event_release(&ev);
    cr_expect_null(ev.call);
}

Test(retell, call_ended_has_no_analysis)
{
    struct cs_event ev;
    norm_fixture(cs_norm_retell, "retell/call_ended.json", &ev);
    json_t *c = ev.call;
    cr_assert(ev.syncable);
    cr_expect_str_eq(ev.event_id, "call_2f8a4c1e9b7d4e2a8c5f01:call_ended");
    expect_shape(c);
    EXPECT_STR(c, "outcome", "completed");
    EXPECT_NULL(c, "sentiment");
    EXPECT_NULL(c, "summary");
    EXPECT_NULL(c, "analysis");
    EXPECT_NULL(c, "customer.name");
    EXPECT_STR(c, "customer.phone", "+14155550132");
    EXPECT_INT(c, "duration_s", 302);
    EXPECT_STR(c, "custom.telephony_identifier.twilio_call_sid",
               "CA5f0e1d2c3b4a59687766554433221100");
    cs_event_release(&ev);
}

Test(retell, call_started_not_synced)
{
    struct cs_event ev;
    norm_fixture(cs_norm_retell, "retell/call_started.json", &ev);
    cr_expect_not(ev.syncable);
    cr_expect_str_eq(ev.ignore_reason, "event_not_synced");
    cr_expect_str_eq(ev.event_type, "call_started");
    cr_expect_null(ev.call);
    cs_event_release(&ev);
}

Test(retell, event_type_key_and_voicemail)
{
    struct cs_event ev;
    norm_fixture(cs_norm_retell, "retell/call_analyzed_event_type.json", &ev);
    json_t *c = ev.call;
    cr_assert(ev.syncable);
    cr_expect_str_eq(ev.event_type, "call_analyzed");
    cr_expect_str_eq(ev.event_id, "call_7c1d0e5a3b9f4d6e8a2b44:call_analyzed");
    expect_shape(c);
    EXPECT_STR(c, "outcome", "voicemail");
    EXPECT_STR(c, "sentiment", "neutral");
    EXPECT_STR(c, "customer.phone", "+16175550143");
    EXPECT_STR(c, "started_at", "2026-02-16T09:05:00Z");
    EXPECT_STR(c, "ended_at", "2026-02-16T09:05:45Z");
    EXPECT_INT(c, "duration_s", 45); /* from end - start */
    EXPECT_STR(c, "custom.disconnection_reason", "voicemail_reached");
    cs_event_release(&ev);
}

Test(retell, appointment_from_custom_analysis)
{
    struct cs_event ev;
    norm_fixture(cs_norm_retell, "retell/call_analyzed_appointment.json", &ev);
    json_t *c = ev.call;
    cr_assert(ev.syncable);
    expect_shape(c);
    EXPECT_STR(c, "call_id", "call_9e3b7a2d5c1f4e8b9a0d17");
    /* "(312) 555-0187" normalised with the default country code. */
    EXPECT_STR(c, "customer.phone", "+13125550187");
    EXPECT_STR(c, "customer.name", "Marcus Bell");
    EXPECT_STR(c, "customer.first_name", "Marcus");
    EXPECT_STR(c, "customer.last_name", "Bell");
    EXPECT_STR(c, "customer.email", "marcus.bell@example.org");
    EXPECT_STR(c, "customer.address", "1820 Ridge Ave");
    EXPECT_STR(c, "customer.city", "Evanston"); /* dynamic variables */
    EXPECT_STR(c, "customer.state", "IL");
    EXPECT_STR(c, "outcome", "appointment_booked");
    EXPECT_STR(c, "sentiment", "positive");
    EXPECT_STR(c, "started_at", "2026-02-17T18:00:00Z");
    EXPECT_STR(c, "ended_at", "2026-02-17T18:04:01Z");
    EXPECT_INT(c, "duration_s", 241);
    EXPECT_STR(c, "appointment.date", "2026-02-20");
    EXPECT_STR(c, "appointment.time", "14:00");
    EXPECT_STR(c, "appointment.timezone", "America/Chicago");
    EXPECT_INT(c, "appointment.duration_min", 60);
    EXPECT_STR(c, "appointment.service_type", "roof_inspection");
    EXPECT_NULL(c, "appointment.title");
    EXPECT_STR(c, "analysis.intent", "appointment_booking");
    EXPECT_INT(c, "analysis.lead_score", 91); /* from the string "91" */
    EXPECT_NULL(c, "analysis.budget");
    EXPECT_INT(c, "custom.call_analysis.custom_analysis_data.roof_age_years",
               18);
    EXPECT_STR(c, "custom.collected_dynamic_variables.current_node",
               "booking_confirmed");
    EXPECT_STR(c, "custom.metadata.source", "google_ads");
    EXPECT_STR(c, "custom.disconnection_reason", "agent_hangup");
    cs_event_release(&ev);
}

Test(retell, outbound_no_answer)
{
    struct cs_event ev;
    norm_fixture(cs_norm_retell, "retell/outbound_call_analyzed.json", &ev);
    json_t *c = ev.call;
    cr_assert(ev.syncable);
    expect_shape(c);
    EXPECT_STR(c, "direction", "outbound");
    EXPECT_STR(c, "customer.phone", "+12125550199"); /* to_number */
    EXPECT_STR(c, "custom.from_number", "+14155550100");
    EXPECT_STR(c, "customer.name", "Priya Raman");
    EXPECT_STR(c, "outcome", "no_answer");
    EXPECT_STR(c, "sentiment", "unknown");
    EXPECT_STR(c, "started_at", "2026-02-16T11:06:40Z");
    EXPECT_INT(c, "duration_s", 30);
    EXPECT_NULL(c, "transcript");
    EXPECT_NULL(c, "recording_url");
    EXPECT_STR(c, "custom.metadata.ghl_contact_id", "ghl_55201");
    cs_event_release(&ev);
}

struct outcome_case {
    const char *analysis;
    const char *reason;
    const char *want;
};

static const struct outcome_case retell_derived_outcome_cases[] = {
    {"{\"in_voicemail\":true}", "user_hangup", "voicemail"},
    {"{}", "dial_no_answer", "no_answer"},
    {"{}", "dial_busy", "busy"},
    {"{}", "dial_failed", "failed"},
    {"{}", "invalid_destination", "failed"},
    {"{}", "error_llm_websocket_open", "failed"},
    {"{}", "agent_hangup", "completed"},
    {"{\"custom_analysis_data\":{\"call_outcome\":\"message_taken\"}}",
     "dial_busy", "message_taken"},
    {"{\"custom_analysis_data\":{\"appointment\":{\"date\":\"2026-03-01\","
     "\"time\":\"09:30\",\"timezone\":\"America/New_York\"}}}",
     "user_hangup", "appointment_booked"},
};

static void retell_derived_outcome_one(const struct outcome_case *tc)
{
    char body[1024];
    snprintf(body, sizeof(body),
             "{\"event\":\"call_analyzed\",\"call\":{\"call_id\":\"call_x\","
             "\"agent_id\":\"agent_d8a1c0ffee\",\"direction\":\"inbound\","
             "\"from_number\":\"+14155550132\",\"disconnection_reason\":"
             "\"%s\",\"call_analysis\":%s}}",
             tc->reason, tc->analysis);
    struct cs_event ev;
    struct cs_err err = {0};
    int rc = cs_norm_retell(body, strlen(body), &us, &ev, &err);
    cr_assert_eq(rc, 0, "%s: %s", err.field, err.msg);
    EXPECT_STR(ev.call, "outcome", tc->want);
    EXPECT_INT(ev.call, "duration_s", 0);
    EXPECT_NULL(ev.call, "started_at");
    cs_event_release(&ev);
}

Test(retell, derived_outcome)
{
    for (size_t i = 0; i < CS_ARRAY_LEN(retell_derived_outcome_cases); i++)
        retell_derived_outcome_one(&retell_derived_outcome_cases[i]);
}

Test(retell, appointment_object)
{
    const char *body =
        "{\"event\":\"call_analyzed\",\"call\":{\"call_id\":\"call_y\","
        "\"agent_id\":\"agent_d8a1c0ffee\",\"call_analysis\":{"
        "\"custom_analysis_data\":{\"appointment\":{\"date\":"
        "\"2026-03-01T09:30:00-05:00\",\"timezone\":\"America/New_York\","
        "\"durationMinutes\":90,\"title\":\"Estimate\",\"crew\":\"B\"}}}}}";
    struct cs_event ev;
    struct cs_err err = {0};
    cr_assert_eq(cs_norm_retell(body, strlen(body), &us, &ev, &err), 0, "%s",
                 err.msg);
    EXPECT_STR(ev.call, "appointment.date", "2026-03-01");
    EXPECT_STR(ev.call, "appointment.time", "09:30");
    EXPECT_STR(ev.call, "appointment.timezone", "America/New_York");
    EXPECT_STR(ev.call, "appointment.title", "Estimate");
    EXPECT_INT(ev.call, "appointment.duration_min", 90);
    EXPECT_STR(ev.call,
               "custom.call_analysis.custom_analysis_data.appointment.crew",
               "B");
    EXPECT_NULL(ev.call, "direction");
    EXPECT_NULL(ev.call, "customer.phone");
    cs_event_release(&ev);
}

Test(retell, unusable_appointment_date_is_kept_in_custom)
{
    const char *body =
        "{\"event\":\"call_analyzed\",\"call\":{\"call_id\":\"call_y\","
        "\"agent_id\":\"agent_d8a1c0ffee\",\"call_analysis\":{"
        "\"custom_analysis_data\":{\"appointment_date\":\"next tuesday\"}}}}";
    struct cs_event ev;
    struct cs_err err = {0};
    cr_assert_eq(cs_norm_retell(body, strlen(body), &us, &ev, &err), 0);
    EXPECT_NULL(ev.call, "appointment");
    EXPECT_STR(ev.call, "outcome", "completed");
    EXPECT_STR(ev.call,
               "custom.call_analysis.custom_analysis_data.appointment_date",
               "next tuesday");
    cs_event_release(&ev);
}

Test(retell, unknown_events_not_synced)
{
    static const char *const bodies[] = {
        "{\"event\":\"transcript_updated\",\"call\":{\"call_id\":\"c1\"}}",
        "{\"event\":\"transfer_started\",\"call\":{}}",
        "{\"event_type\":\"call_exploded\"}",
    };
    for (size_t i = 0; i < CS_ARRAY_LEN(bodies); i++) {
        struct cs_event ev;
        struct cs_err err = {0};
        int rc = cs_norm_retell(bodies[i], strlen(bodies[i]), &us, &ev, &err);
        cr_expect_eq(rc, 0, "%s: %s", bodies[i], err.msg);
        cr_expect_not(ev.syncable);
        cr_expect_str_eq(ev.ignore_reason, "event_not_synced");
        cr_expect_null(ev.call);
        cs_event_release(&ev);
    }
}

struct bad_case {
    const char *body;
    const char *field;
};

#define CALL_OK                                                              \
    "\"call_id\":\"call_1\",\"agent_id\":\"agent_d8a1c0ffee\""

static const struct bad_case retell_bad_input_cases[] = {
    {"{\"call\":{" CALL_OK "}}", "event"},
    {"{\"event\":\"\",\"call\":{" CALL_OK "}}", "event"},
    {"{\"event\":7,\"call\":{" CALL_OK "}}", "event"},
    {"{\"event\":\"call_ended\",\"event_type\":\"call_analyzed\","
     "\"call\":{" CALL_OK "}}",
     "event"},
    {"{\"event\":\"call_ended\"}", "call"},
    {"{\"event\":\"call_ended\",\"call\":[]}", "call"},
    {"{\"event\":\"call_ended\",\"call\":{\"agent_id\":\"a\"}}",
     "call.call_id"},
    {"{\"event\":\"call_ended\",\"call\":{\"call_id\":\"\","
     "\"agent_id\":\"a\"}}",
     "call.call_id"},
    {"{\"event\":\"call_ended\",\"call\":{\"call_id\":42,"
     "\"agent_id\":\"a\"}}",
     "call.call_id"},
    {"{\"event\":\"call_ended\",\"call\":{\"call_id\":\"c\"}}",
     "call.agent_id"},
    {"{\"event\":\"call_ended\",\"call\":{" CALL_OK
     ",\"start_timestamp\":\"1771165800000\"}}",
     "call.start_timestamp"},
    {"{\"event\":\"call_ended\",\"call\":{" CALL_OK
     ",\"end_timestamp\":1.5}}",
     "call.end_timestamp"},
    {"{\"event\":\"call_ended\",\"call\":{" CALL_OK
     ",\"start_timestamp\":2000,\"end_timestamp\":1000}}",
     "call.end_timestamp"},
    {"{\"event\":\"call_ended\",\"call\":{" CALL_OK
     ",\"duration_ms\":-5}}",
     "call.duration_ms"},
    {"{\"event\":\"call_ended\",\"call\":{" CALL_OK
     ",\"direction\":\"inbound\",\"from_number\":\"call me maybe\"}}",
     "call.from_number"},
    {"{\"event\":\"call_ended\",\"call\":{" CALL_OK
     ",\"direction\":\"outbound\",\"to_number\":\"+1415\"}}",
     "call.to_number"},
    {"{\"event\":\"call_ended\",\"call\":{" CALL_OK
     ",\"direction\":\"sideways\"}}",
     "call.direction"},
    {"{\"event\":\"call_ended\",\"call\":{" CALL_OK
     ",\"transcript\":[\"a\"]}}",
     "call.transcript"},
    {"{\"event\":\"call_analyzed\",\"call\":{" CALL_OK
     ",\"call_analysis\":\"good\"}}",
     "call.call_analysis"},
    {"{\"event\":\"call_analyzed\",\"call\":{" CALL_OK
     ",\"call_analysis\":{\"custom_analysis_data\":{\"lead_score\":"
     "150}}}}",
     "call.call_analysis.custom_analysis_data.lead_score"},
    {"{\"event\":\"call_analyzed\",\"call\":{" CALL_OK
     ",\"retell_llm_dynamic_variables\":{\"lead_score\":\"high\"}}}",
     "call.retell_llm_dynamic_variables.lead_score"},
    {"{\"event\":\"call_analyzed\",\"call\":{" CALL_OK
     ",\"call_analysis\":{\"in_voicemail\":\"no\"}}}",
     "call.call_analysis.in_voicemail"},
    /* Parse errors name no field. */
    {"{\"event\":\"call_ended\",", ""},
    {"[{\"event\":\"call_ended\"}]", ""},
    {"\"call_ended\"", ""},
    {"", ""},
    {"{\"event\":\"call_ended\",\"event\":\"call_analyzed\"}", ""},
    {"{\"event\":\"call_ended\",\"call\":{\"call_id\":\"a\","
     "\"call_id\":\"b\",\"agent_id\":\"x\"}}",
     ""},
    {"{\"event\":\"call_\xff\xfe\"}", ""},
    {"{\"event\":\"call_\xc3\"}", ""},
    {"{\"event\":\"call_ended\",\"call\":{" CALL_OK
     ",\"duration_ms\":1e999}}",
     ""},
};

static void retell_bad_input_one(const struct bad_case *tc)
{
    expect_einval(cs_norm_retell, tc->body, tc->field);
}

Test(retell, bad_input)
{
    for (size_t i = 0; i < CS_ARRAY_LEN(retell_bad_input_cases); i++)
        retell_bad_input_one(&retell_bad_input_cases[i]);
}

Test(parse, error_message_has_position)
{
    const char *body = "{\n  \"event\": \"call_ended\",\n  oops\n}";
    struct cs_event ev;
    struct cs_err err = {0};
    cr_assert_eq(cs_norm_retell(body, strlen(body), &us, &ev, &err),
                 CS_EINVAL);
    cr_expect_str_eq(err.field, "");
    cr_expect(strstr(err.msg, "invalid json") == err.msg, "%s", err.msg);
    cr_expect(strstr(err.msg, "line 3") != NULL, "%s", err.msg);
    cr_expect(strstr(err.msg, "column") != NULL, "%s", err.msg);
}

Test(parse, duplicate_key_message)
{
    const char *body = "{\"type\":\"a\",\"type\":\"b\"}";
    struct cs_event ev;
    struct cs_err err = {0};
    cr_assert_eq(cs_norm_stripe(body, strlen(body), &us, &ev, &err),
                 CS_EINVAL);
    cr_expect(strstr(err.msg, "duplicate") != NULL, "%s", err.msg);
}

Test(parse, messages_are_lower_case_without_period)
{
    const char *body = "{\"event\":\"call_ended\",\"call\":{}}";
    struct cs_event ev;
    struct cs_err err = {0};
    cr_assert_eq(cs_norm_retell(body, strlen(body), &us, &ev, &err),
                 CS_EINVAL);
    cr_expect_str_eq(err.field, "call.call_id");
    cr_expect_str_eq(err.msg, "is required");
}

Test(parse, null_body)
{
    struct cs_event ev;
    struct cs_err err = {0};
    cr_expect_eq(cs_norm_callrail(NULL, 0, &us, &ev, &err), CS_EINVAL);
    cr_expect_str_eq(err.field, "");
}

/* -------------------------------------------------------------- CallRail */

Test(callrail, post_call)
{
    struct cs_event ev;
    norm_fixture(cs_norm_callrail, "callrail/post_call.json", &ev);
    json_t *c = ev.call;
    cr_assert(ev.syncable);
    cr_expect_str_eq(ev.source, "callrail");
    cr_expect_str_eq(ev.event_type, "post_call");
    cr_expect_str_eq(ev.event_id,
                     "CAL8f1e2d3c4b5a69788796a5b4c3d2e1f0:post_call");
    cr_expect_str_eq(ev.agent_ref, "COM8154748ae6bd4e278a7cddd38a662f4f");
    expect_shape(c);
    EXPECT_STR(c, "call_id", "CAL8f1e2d3c4b5a69788796a5b4c3d2e1f0");
    EXPECT_STR(c, "source", "callrail");
    EXPECT_STR(c, "customer.phone", "+14045550163");
    EXPECT_STR(c, "customer.name", "LINDA OKAFOR");
    EXPECT_STR(c, "customer.city", "Decatur");
    EXPECT_STR(c, "customer.state", "GA");
    EXPECT_STR(c, "direction", "inbound");
    EXPECT_STR(c, "outcome", "completed");
    EXPECT_INT(c, "duration_s", 146); /* from the string "146" */
    EXPECT_STR(c, "started_at", "2026-02-16T15:11:41Z");
    EXPECT_STR(c, "ended_at", "2026-02-16T15:14:07Z");
    EXPECT_STR(c, "recording_url",
               "https://app.callrail.com/calls/"
               "CAL8f1e2d3c4b5a69788796a5b4c3d2e1f0/recording/redirect?"
               "access_key=3b9d51c0a7e24f68");
    cr_expect(strncmp(str_at(c, "transcript"), "Caller: Hi, I saw", 17) == 0);
    EXPECT_NULL(c, "sentiment");
    EXPECT_NULL(c, "appointment");
    EXPECT_STR(c, "custom.source_name", "Google Ads - Roofing");
    EXPECT_STR(c, "custom.tracker_resource_id",
               "TRK77c6b5a4d3e2f1a0b9c8d7e6f5a4b3c2d1");
    EXPECT_INT(c, "custom.company_id", 154748);
    EXPECT_STR(c, "custom.keywords", "roof repair atlanta");
    cr_expect(json_is_true(at(c, "custom.answered")));
    cr_expect(json_is_array(at(c, "custom.tags")));
    cr_expect_null(at(c, "custom.resource_id"));
    cr_expect_null(at(c, "custom.customer_number"));
    cs_event_release(&ev);
}

struct cr_outcome {
    const char *flags;
    const char *want;
};

static const struct cr_outcome callrail_outcome_cases[] = {
    {"\"answered\":true,\"voicemail\":false", "completed"},
    {"\"answered\":false,\"voicemail\":false", "missed"},
    {"\"answered\":false,\"voicemail\":true", "voicemail"},
    {"\"answered\":false", "missed"},
};

static void callrail_outcome_one(const struct cr_outcome *tc)
{
    char body[512];
    snprintf(body, sizeof(body),
             "{\"resource_id\":\"CAL1\",\"company_id\":154748,"
             "\"duration\":12,%s}",
             tc->flags);
    struct cs_event ev;
    struct cs_err err = {0};
    cr_assert_eq(cs_norm_callrail(body, strlen(body), &us, &ev, &err), 0,
                 "%s: %s", err.field, err.msg);
    EXPECT_STR(ev.call, "outcome", tc->want);
    EXPECT_INT(ev.call, "duration_s", 12);
    cr_expect_str_eq(ev.agent_ref, "154748"); /* company_id fallback */
    cs_event_release(&ev);
}

Test(callrail, outcome)
{
    for (size_t i = 0; i < CS_ARRAY_LEN(callrail_outcome_cases); i++)
        callrail_outcome_one(&callrail_outcome_cases[i]);
}

static const struct bad_case callrail_bad_input_cases[] = {
    {"{\"company_resource_id\":\"COM1\"}", "resource_id"},
    {"{\"resource_id\":17,\"company_resource_id\":\"COM1\"}",
     "resource_id"},
    {"{\"resource_id\":\"CAL1\"}", "company_resource_id"},
    {"{\"resource_id\":\"CAL1\",\"company_resource_id\":[]}",
     "company_resource_id"},
    {"{\"resource_id\":\"CAL1\",\"company_resource_id\":\"COM1\","
     "\"duration\":\"2m\"}",
     "duration"},
    {"{\"resource_id\":\"CAL1\",\"company_resource_id\":\"COM1\","
     "\"duration\":-3}",
     "duration"},
    {"{\"resource_id\":\"CAL1\",\"company_resource_id\":\"COM1\","
     "\"start_time\":\"yesterday\"}",
     "start_time"},
    {"{\"resource_id\":\"CAL1\",\"company_resource_id\":\"COM1\","
     "\"customer_number\":\"12\"}",
     "customer_number"},
    {"{\"resource_id\":\"CAL1\",\"company_resource_id\":\"COM1\","
     "\"answered\":\"yes\"}",
     "answered"},
    {"[]", ""},
};

static void callrail_bad_input_one(const struct bad_case *tc)
{
    expect_einval(cs_norm_callrail, tc->body, tc->field);
}

Test(callrail, bad_input)
{
    for (size_t i = 0; i < CS_ARRAY_LEN(callrail_bad_input_cases); i++)
        callrail_bad_input_one(&callrail_bad_input_cases[i]);
}

/* --------------------------------------------------------------- Cal.com */

Test(calcom, booking_created)
{
    struct cs_event ev;
    norm_fixture(cs_norm_calcom, "calcom/booking_created.json", &ev);
    json_t *c = ev.call;
    cr_assert(ev.syncable);
    cr_expect_str_eq(ev.source, "calcom");
    cr_expect_str_eq(ev.event_type, "BOOKING_CREATED");
    cr_expect_str_eq(ev.event_id, "BOOKING_CREATED:bFJeNb2uX8ANpT3JL5EfXw");
    cr_expect_null(ev.agent_ref);
    expect_shape(c);
    EXPECT_STR(c, "call_id", "calcom_bFJeNb2uX8ANpT3JL5EfXw");
    EXPECT_STR(c, "outcome", "appointment_booked");
    EXPECT_STR(c, "customer.name", "Tom Alvarez");
    EXPECT_STR(c, "customer.first_name", "Tom");
    EXPECT_STR(c, "customer.last_name", "Alvarez");
    EXPECT_STR(c, "customer.email", "tom.alvarez@example.net");
    EXPECT_STR(c, "customer.phone", "+17205550148");
    EXPECT_STR(c, "appointment.title",
               "Roof inspection between Summit Roofing and Tom Alvarez");
    EXPECT_STR(c, "appointment.date", "2026-02-19");
    EXPECT_STR(c, "appointment.time", "16:30");
    EXPECT_STR(c, "appointment.timezone", "UTC");
    EXPECT_INT(c, "appointment.duration_min", 45);
    EXPECT_STR(c, "appointment.service_type", "roof-inspection");
    EXPECT_STR(c, "summary", "Back gate code is 4412. Dog in the yard.");
    EXPECT_NULL(c, "direction");
    EXPECT_NULL(c, "started_at");
    EXPECT_INT(c, "duration_s", 0);
    EXPECT_STR(c, "custom.attendee.timeZone", "America/Denver");
    EXPECT_STR(c, "custom.organizer.timeZone", "America/Denver");
    EXPECT_STR(c, "custom.responses.roof_type.value", "asphalt shingle");
    EXPECT_STR(c, "custom.location", "4410 Larimer St, Denver, CO");
    EXPECT_STR(c, "custom.createdAt", "2026-02-16T15:02:11.538Z");
    EXPECT_INT(c, "custom.bookingId", 3381902);
    cr_expect_null(at(c, "custom.uid"));
    cr_expect_null(at(c, "custom.attendees"));
    cs_event_release(&ev);
}

Test(calcom, booking_cancelled)
{
    struct cs_event ev;
    norm_fixture(cs_norm_calcom, "calcom/booking_cancelled.json", &ev);
    json_t *c = ev.call;
    cr_assert(ev.syncable);
    cr_expect_str_eq(ev.event_id, "BOOKING_CANCELLED:bFJeNb2uX8ANpT3JL5EfXw");
    expect_shape(c);
    EXPECT_STR(c, "call_id", "calcom_bFJeNb2uX8ANpT3JL5EfXw_cancelled");
    EXPECT_STR(c, "outcome", "appointment_cancelled");
    EXPECT_STR(c, "customer.email", "tom.alvarez@example.net");
    EXPECT_NULL(c, "customer.phone");
    EXPECT_STR(c, "appointment.date", "2026-02-19");
    EXPECT_STR(c, "custom.cancellationReason", "Found another contractor");
    EXPECT_STR(c, "custom.status", "CANCELLED");
    cs_event_release(&ev);
}

Test(calcom, rescheduled_from_responses)
{
    const char *body =
        "{\"triggerEvent\":\"BOOKING_RESCHEDULED\",\"payload\":{\"uid\":\"u9\","
        "\"startTime\":\"2026-03-02T23:45:00-07:00\",\"endTime\":"
        "\"2026-03-03T00:15:00-07:00\",\"responses\":{\"name\":{\"value\":"
        "\"Ana Ruiz\"},\"email\":{\"value\":\"ana@example.com\"},"
        "\"attendeePhoneNumber\":{\"value\":\"303-555-0110\"}}}}";
    struct cs_event ev;
    struct cs_err err = {0};
    cr_assert_eq(cs_norm_calcom(body, strlen(body), &us, &ev, &err), 0, "%s",
                 err.msg);
    EXPECT_STR(ev.call, "call_id", "calcom_u9");
    EXPECT_STR(ev.call, "outcome", "appointment_rescheduled");
    EXPECT_STR(ev.call, "customer.name", "Ana Ruiz");
    EXPECT_STR(ev.call, "customer.email", "ana@example.com");
    EXPECT_STR(ev.call, "customer.phone", "+13035550110");
    EXPECT_STR(ev.call, "appointment.date", "2026-03-03"); /* UTC */
    EXPECT_STR(ev.call, "appointment.time", "06:45");
    EXPECT_INT(ev.call, "appointment.duration_min", 30);
    cs_event_release(&ev);
}

Test(calcom, not_synced)
{
    struct cs_event ev;
    norm_fixture(cs_norm_calcom, "calcom/meeting_ended.json", &ev);
    cr_expect_not(ev.syncable);
    cr_expect_str_eq(ev.ignore_reason, "event_not_synced");
    cr_expect_str_eq(ev.event_type, "MEETING_ENDED");
    cr_expect_null(ev.call);
    cs_event_release(&ev);

    const char *ping = "{\"triggerEvent\":\"PING\",\"payload\":{}}";
    struct cs_err err = {0};
    cr_assert_eq(cs_norm_calcom(ping, strlen(ping), &us, &ev, &err), 0);
    cr_expect_not(ev.syncable);
    cs_event_release(&ev);
}

static const struct bad_case calcom_bad_input_cases[] = {
    {"{\"payload\":{\"uid\":\"u\"}}", "triggerEvent"},
    {"{\"triggerEvent\":1}", "triggerEvent"},
    {"{\"triggerEvent\":\"BOOKING_CREATED\"}", "payload"},
    {"{\"triggerEvent\":\"BOOKING_CREATED\",\"payload\":{"
     "\"startTime\":\"2026-02-19T16:30:00Z\"}}",
     "payload.uid"},
    {"{\"triggerEvent\":\"BOOKING_CREATED\",\"payload\":{\"uid\":\"u\"}}",
     "payload.startTime"},
    {"{\"triggerEvent\":\"BOOKING_CREATED\",\"payload\":{\"uid\":\"u\","
     "\"startTime\":\"2026-02-19 at 4pm\"}}",
     "payload.startTime"},
    {"{\"triggerEvent\":\"BOOKING_CREATED\",\"payload\":{\"uid\":\"u\","
     "\"startTime\":\"2026-02-19T16:30:00Z\",\"endTime\":"
     "\"2026-02-19T16:00:00Z\"}}",
     "payload.endTime"},
    {"{\"triggerEvent\":\"BOOKING_CREATED\",\"payload\":{\"uid\":\"u\","
     "\"startTime\":\"2026-02-19T16:30:00Z\",\"attendees\":[{\"name\":"
     "\"A\",\"phoneNumber\":\"+12\"}]}}",
     "payload.attendees[0].phoneNumber"},
    {"{\"triggerEvent\":\"BOOKING_CREATED\",\"payload\":{\"uid\":\"u\","
     "\"startTime\":\"2026-02-19T16:30:00Z\",\"attendees\":{}}}",
     "payload.attendees"},
};

static void calcom_bad_input_one(const struct bad_case *tc)
{
    expect_einval(cs_norm_calcom, tc->body, tc->field);
}

Test(calcom, bad_input)
{
    for (size_t i = 0; i < CS_ARRAY_LEN(calcom_bad_input_cases); i++)
        calcom_bad_input_one(&calcom_bad_input_cases[i]);
}

/* ---------------------------------------------------------------- Stripe */

Test(stripe, checkout_session_completed)
{
    struct cs_event ev;
    norm_fixture(cs_norm_stripe, "stripe/checkout_session_completed.json",
                 &ev);
    json_t *c = ev.call;
    cr_assert(ev.syncable);
    cr_expect_str_eq(ev.source, "stripe");
    cr_expect_str_eq(ev.event_type, "checkout.session.completed");
    cr_expect_str_eq(ev.event_id, "evt_1QxR4sLkdIwHu7ix0Pp9aB3c");
    cr_expect_null(ev.agent_ref);
    expect_shape(c);
    EXPECT_STR(c, "call_id", "stripe_evt_1QxR4sLkdIwHu7ix0Pp9aB3c");
    EXPECT_STR(c, "outcome", "payment_received");
    EXPECT_STR(c, "customer.name", "Dana Whitfield");
    EXPECT_STR(c, "customer.email", "dana.whitfield@example.com");
    EXPECT_STR(c, "customer.phone", "+14155550132");
    EXPECT_STR(c, "customer.address", "742 Alabama St");
    EXPECT_STR(c, "customer.city", "San Francisco");
    EXPECT_STR(c, "customer.state", "CA");
    EXPECT_STR(c, "started_at", "2026-02-16T12:32:03Z");
    EXPECT_INT(c, "custom.amount", 25000);
    EXPECT_STR(c, "custom.currency", "usd");
    EXPECT_STR(c, "custom.id", "cs_live_a1Zb2Yc3Xd4We5Vf6Ug7Th8Si9Rj0Qk");
    EXPECT_STR(c, "custom.object", "checkout.session");
    EXPECT_STR(c, "custom.customer", "cus_RqT8vW2xY4zA6b");
    EXPECT_STR(c, "custom.metadata.call_id", "call_2f8a4c1e9b7d4e2a8c5f01");
    EXPECT_STR(c, "custom.customer_details.address.postal_code", "94110");
    EXPECT_STR(c, "custom.event.api_version", "2024-06-20");
    cs_event_release(&ev);
}

Test(stripe, payment_intent_and_invoices)
{
    const char *pi =
        "{\"id\":\"evt_pi1\",\"type\":\"payment_intent.succeeded\","
        "\"data\":{\"object\":{\"id\":\"pi_1\",\"object\":\"payment_intent\","
        "\"amount\":5000,\"amount_received\":5000,\"currency\":\"usd\","
        "\"receipt_email\":\"pay@example.com\"}}}";
    const char *inv =
        "{\"id\":\"evt_in1\",\"type\":\"invoice.payment_failed\","
        "\"data\":{\"object\":{\"id\":\"in_1\",\"object\":\"invoice\","
        "\"amount_due\":9900,\"amount_paid\":0,\"currency\":\"eur\","
        "\"customer_name\":\"Lena Vogel\",\"customer_email\":"
        "\"lena@example.de\",\"customer_phone\":\"0049 30 901820\"}}}";
    struct cs_event ev;
    struct cs_err err = {0};
    cr_assert_eq(cs_norm_stripe(pi, strlen(pi), &us, &ev, &err), 0, "%s",
                 err.msg);
    EXPECT_STR(ev.call, "call_id", "stripe_evt_pi1");
    EXPECT_STR(ev.call, "customer.email", "pay@example.com");
    EXPECT_STR(ev.call, "outcome", "payment_received");
    EXPECT_INT(ev.call, "custom.amount", 5000);
    EXPECT_STR(ev.call, "custom.id", "pi_1");
    cs_event_release(&ev);

    cr_assert_eq(cs_norm_stripe(inv, strlen(inv), &us, &ev, &err), 0, "%s",
                 err.msg);
    EXPECT_STR(ev.call, "outcome", "payment_failed");
    EXPECT_STR(ev.call, "customer.name", "Lena Vogel");
    EXPECT_STR(ev.call, "customer.email", "lena@example.de");
    EXPECT_STR(ev.call, "customer.phone", "+4930901820");
    EXPECT_INT(ev.call, "custom.amount", 0); /* amount_paid */
    EXPECT_STR(ev.call, "custom.currency", "eur");
    cs_event_release(&ev);
}

Test(stripe, customer_created_not_synced)
{
    struct cs_event ev;
    norm_fixture(cs_norm_stripe, "stripe/customer_created.json", &ev);
    cr_expect_not(ev.syncable);
    cr_expect_str_eq(ev.ignore_reason, "event_type_not_synced");
    cr_expect_str_eq(ev.event_type, "customer.created");
    cr_expect_str_eq(ev.event_id, "evt_1QxR4tLkdIwHu7ixCustNew1");
    cr_expect_null(ev.call);
    cs_event_release(&ev);
}

static const struct bad_case stripe_bad_input_cases[] = {
    {"{\"type\":\"invoice.paid\"}", "id"},
    {"{\"id\":\"evt_1\"}", "type"},
    {"{\"id\":\"evt_1\",\"type\":[]}", "type"},
    {"{\"id\":\"evt_1\",\"type\":\"invoice.paid\"}", "data"},
    {"{\"id\":\"evt_1\",\"type\":\"invoice.paid\",\"data\":{}}",
     "data.object"},
    {"{\"id\":\"evt_1\",\"type\":\"invoice.paid\",\"data\":{\"object\":"
     "{\"object\":\"invoice\"}}}",
     "data.object.id"},
    {"{\"id\":\"evt_1\",\"type\":\"invoice.paid\",\"data\":{\"object\":"
     "{\"id\":\"in_1\",\"amount_paid\":\"12\"}}}",
     "data.object.amount_paid"},
    {"{\"id\":\"evt_1\",\"type\":\"checkout.session.completed\",\"data\":"
     "{\"object\":{\"id\":\"cs_1\",\"customer_details\":{\"phone\":"
     "\"ask reception\"}}}}",
     "data.object.customer_details.phone"},
    {"{\"id\":\"evt_1\",\"type\":\"invoice.paid\",\"created\":\"now\","
     "\"data\":{\"object\":{\"id\":\"in_1\"}}}",
     "created"},
};

static void stripe_bad_input_one(const struct bad_case *tc)
{
    expect_einval(cs_norm_stripe, tc->body, tc->field);
}

Test(stripe, bad_input)
{
    for (size_t i = 0; i < CS_ARRAY_LEN(stripe_bad_input_cases); i++)
        stripe_bad_input_one(&stripe_bad_input_cases[i]);
}

/* ------------------------------------------------------ Standard Webhooks */

Test(standard, call_completed)
{
    struct cs_event ev;
    norm_fixture(norm_standard_msg, "standard/call_completed.json", &ev);
    json_t *c = ev.call;
    cr_assert(ev.syncable);
    cr_expect_str_eq(ev.source, "standard");
    cr_expect_str_eq(ev.event_type, "call.completed");
    cr_expect_str_eq(ev.event_id, "msg_2Lr4");
    cr_expect_str_eq(ev.agent_ref, "4f9a3c2e-7b1d-4e8f-9a6c-5d2e1f0b3a47");
    expect_shape(c);
    EXPECT_STR(c, "call_id", "vapi_9d2c4b6a-1e3f-4a5b-8c7d-0e9f1a2b3c4d");
    EXPECT_STR(c, "source", "standard");
    EXPECT_STR(c, "customer.name", "Grace Kim");
    EXPECT_STR(c, "customer.first_name", "Grace");
    EXPECT_STR(c, "customer.phone", "+15035550121");
    EXPECT_STR(c, "customer.city", "Portland");
    EXPECT_STR(c, "direction", "inbound");
    EXPECT_STR(c, "outcome", "qualified_lead");
    EXPECT_STR(c, "sentiment", "positive");
    EXPECT_STR(c, "started_at", "2026-02-18T20:58:30Z");
    EXPECT_STR(c, "ended_at", "2026-02-18T21:03:45Z");
    EXPECT_INT(c, "duration_s", 315);
    EXPECT_NULL(c, "appointment");
    EXPECT_STR(c, "analysis.project_type", "whole_home");
    EXPECT_INT(c, "analysis.lead_score", 88);
    EXPECT_STR(c, "custom.ad_campaign", "winter-reroof");
    EXPECT_STR(c, "custom.ended_reason", "customer-ended-call");
    EXPECT_STR(c, "custom.source", "vapi");
    EXPECT_STR(c, "custom.customer.preferred_language", "ko");
    EXPECT_STR(c, "custom.timestamp", "2026-02-18T21:04:09.118Z");
    cs_event_release(&ev);
}

Test(standard, appointment_and_derived_values)
{
    const char *body =
        "{\"type\":\"call.ended\",\"data\":{\"call_id\":\"c1\",\"agent_id\":"
        "\"a1\",\"started_at\":\"2026-02-18T10:00:00Z\",\"ended_at\":"
        "\"2026-02-18T10:01:30.400Z\",\"appointment\":{\"date\":\"2026-02-25\","
        "\"time\":\"09:15\",\"timezone\":\"Europe/Berlin\",\"duration_min\":30}"
        "}}";
    struct cs_event ev;
    struct cs_err err = {0};
    cr_assert_eq(norm_standard_msg(body, strlen(body), &us, &ev, &err), 0,
                 "%s: %s", err.field, err.msg);
    EXPECT_STR(ev.call, "outcome", "appointment_booked");
    EXPECT_INT(ev.call, "duration_s", 90);
    EXPECT_STR(ev.call, "appointment.date", "2026-02-25");
    EXPECT_STR(ev.call, "appointment.time", "09:15");
    EXPECT_STR(ev.call, "appointment.timezone", "Europe/Berlin");
    EXPECT_INT(ev.call, "appointment.duration_min", 30);
    EXPECT_NULL(ev.call, "appointment.title");
    EXPECT_NULL(ev.call, "analysis");
    EXPECT_NULL(ev.call, "sentiment");
    cs_event_release(&ev);
}

Test(standard, other_types_and_missing_id)
{
    const char *body = "{\"type\":\"call.started\",\"data\":{}}";
    struct cs_event ev;
    struct cs_err err = {0};
    cr_assert_eq(norm_standard_msg(body, strlen(body), &us, &ev, &err), 0);
    cr_expect_not(ev.syncable);
    cr_expect_str_eq(ev.ignore_reason, "event_type_not_synced");
    cs_event_release(&ev);

    cr_expect_eq(cs_norm_standard(NULL, body, strlen(body), &us, &ev, &err),
                 CS_EINVAL);
    cr_expect_str_eq(err.field, "webhook-id");
}

#define STD_OK "\"call_id\":\"c1\",\"agent_id\":\"a1\""

static const struct bad_case standard_bad_input_cases[] = {
    {"{\"data\":{" STD_OK "}}", "type"},
    {"{\"type\":\"call.ended\"}", "data"},
    {"{\"type\":\"call.ended\",\"data\":[]}", "data"},
    {"{\"type\":\"call.ended\",\"data\":{\"agent_id\":\"a1\"}}",
     "data.call_id"},
    {"{\"type\":\"call.ended\",\"data\":{\"call_id\":\"c1\"}}",
     "data.agent_id"},
    {"{\"type\":\"call.ended\",\"data\":{" STD_OK ",\"duration_s\":-1}}",
     "data.duration_s"},
    {"{\"type\":\"call.ended\",\"data\":{" STD_OK ",\"duration_s\":\"9\"}}",
     "data.duration_s"},
    {"{\"type\":\"call.ended\",\"data\":{" STD_OK
     ",\"started_at\":\"2026-02-18 10:00\"}}",
     "data.started_at"},
    {"{\"type\":\"call.ended\",\"data\":{" STD_OK
     ",\"started_at\":\"2026-02-18T10:00:00Z\",\"ended_at\":"
     "\"2026-02-18T09:00:00Z\"}}",
     "data.ended_at"},
    {"{\"type\":\"call.ended\",\"data\":{" STD_OK
     ",\"customer\":{\"phone\":\"555\"}}}",
     "data.customer.phone"},
    {"{\"type\":\"call.ended\",\"data\":{" STD_OK
     ",\"customer\":{\"name\":5}}}",
     "data.customer.name"},
    {"{\"type\":\"call.ended\",\"data\":{" STD_OK ",\"customer\":\"x\"}}",
     "data.customer"},
    {"{\"type\":\"call.ended\",\"data\":{" STD_OK
     ",\"sentiment\":\"ecstatic\"}}",
     "data.sentiment"},
    {"{\"type\":\"call.ended\",\"data\":{" STD_OK
     ",\"direction\":\"in\"}}",
     "data.direction"},
    {"{\"type\":\"call.ended\",\"data\":{" STD_OK
     ",\"appointment\":{\"date\":\"25/02/2026\"}}}",
     "data.appointment.date"},
    {"{\"type\":\"call.ended\",\"data\":{" STD_OK
     ",\"appointment\":{\"date\":\"2026-02-25\",\"time\":\"9am\"}}}",
     "data.appointment.time"},
    {"{\"type\":\"call.ended\",\"data\":{" STD_OK
     ",\"analysis\":{\"lead_score\":101}}}",
     "data.analysis.lead_score"},
    {"{\"type\":\"call.ended\",\"data\":{" STD_OK
     ",\"analysis\":{\"lead_score\":\"50\"}}}",
     "data.analysis.lead_score"},
    {"{\"type\":\"call.ended\",\"data\":{" STD_OK ",\"custom\":[1]}}",
     "data.custom"},
};

static void standard_bad_input_one(const struct bad_case *tc)
{
    expect_einval(norm_standard_msg, tc->body, tc->field);
}

Test(standard, bad_input)
{
    for (size_t i = 0; i < CS_ARRAY_LEN(standard_bad_input_cases); i++)
        standard_bad_input_one(&standard_bad_input_cases[i]);
}

/* -------------------------------------------------------------- Outbound */

Test(outbound, request)
{
    size_t n;
    char *body = load_fixture("outbound/request.json", &n);
    struct cs_err err = {0};
    json_t *r = cs_norm_outbound(body, n, &us, &err);
    free(body);
    cr_assert_not_null(r, "%s: %s", err.field, err.msg);
    EXPECT_STR(r, "phone", "+12125550199");
    EXPECT_STR(r, "contact_name", "Priya Raman");
    EXPECT_STR(r, "contact_data.ghl_contact_id", "ghl_55201");
    EXPECT_INT(r, "metadata.attempt", 2);
    EXPECT_STR(r, "extra.callback_url",
               "https://services.leadconnectorhq.com/hooks/abc123/"
               "webhook-trigger/def456");
    cr_expect_null(at(r, "extra.phone"));
    json_decref(r);
}

Test(outbound, minimal)
{
    const char *body = "{\"phone\":\"+447911123456\"}";
    struct cs_err err = {0};
    json_t *r = cs_norm_outbound(body, strlen(body), &us, &err);
    cr_assert_not_null(r, "%s", err.msg);
    EXPECT_STR(r, "phone", "+447911123456");
    EXPECT_NULL(r, "contact_name");
    EXPECT_NULL(r, "contact_data");
    EXPECT_NULL(r, "metadata");
    cr_expect_eq(json_object_size(json_object_get(r, "extra")), 0);
    json_decref(r);
}

static const struct bad_case outbound_bad_input_cases[] = {
    {"{}", "phone"},
    {"{\"phone\":14155550100}", "phone"},
    {"{\"phone\":\"(415) 555-0100\"}", "phone"},
    {"{\"phone\":\"4155550100\"}", "phone"},
    {"{\"phone\":\"+1 415 555 0100\"}", "phone"},
    {"{\"phone\":\"+0123456789\"}", "phone"},
    {"{\"phone\":\"+14155550100\",\"contact_name\":7}", "contact_name"},
    {"{\"phone\":\"+14155550100\",\"contact_data\":\"x\"}",
     "contact_data"},
    {"{\"phone\":\"+14155550100\",\"metadata\":[]}", "metadata"},
    {"[\"+14155550100\"]", ""},
    {"{\"phone\":\"+14155550100\",\"phone\":\"+14155550101\"}", ""},
};

static void outbound_bad_input_one(const struct bad_case *tc)
{
    struct cs_err err = {0};
    json_t *r = cs_norm_outbound(tc->body, strlen(tc->body), &us, &err);
    cr_expect_null(r, "%s", tc->body);
    cr_expect_eq(err.code, CS_EINVAL);
    cr_expect_str_eq(err.field, tc->field, "%s: '%s' %s", tc->body,
                     err.field, err.msg);
    json_decref(r);
}

Test(outbound, bad_input)
{
    for (size_t i = 0; i < CS_ARRAY_LEN(outbound_bad_input_cases); i++)
        outbound_bad_input_one(&outbound_bad_input_cases[i]);
}

Test(outbound, contact_name_length)
{
    char body[1024];
    char name[202];
    memset(name, 'a', 200);
    name[200] = '\0';
    snprintf(body, sizeof(body),
             "{\"phone\":\"+14155550100\",\"contact_name\":\"%s\"}", name);
    struct cs_err err = {0};
    json_t *r = cs_norm_outbound(body, strlen(body), &us, &err);
    cr_expect_not_null(r);
    json_decref(r);
    name[200] = 'a';
    name[201] = '\0';
    snprintf(body, sizeof(body),
             "{\"phone\":\"+14155550100\",\"contact_name\":\"%s\"}", name);
    r = cs_norm_outbound(body, strlen(body), &us, &err);
    cr_expect_null(r);
    cr_expect_str_eq(err.field, "contact_name");
    /* 200 two-byte characters are 200 characters, not 400. */
    char *wide = malloc(1024);
    size_t k = (size_t)snprintf(wide, 1024,
                                "{\"phone\":\"+14155550100\",\"contact_name\":"
                                "\"");
    for (int i = 0; i < 200; i++) {
        wide[k++] = '\xc3';
        wide[k++] = '\xa9';
    }
    memcpy(wide + k, "\"}", 3);
    r = cs_norm_outbound(wide, strlen(wide), &us, &err);
    cr_expect_not_null(r, "%s", err.msg);
    json_decref(r);
    free(wide);
}

/* ----------------------------------------------------------------- Phone */

struct phone_case {
    const char *in;
    const char *cc;
    const char *want; /* NULL: not a valid number */
};

static const struct phone_case phone_e164_cases[] = {
    {"+14155550100", "1", "+14155550100"},
    {"(415) 555-0100", "1", "+14155550100"},
    {"415.555.0100", "1", "+14155550100"},
    {"1-415-555-0100", "1", "+14155550100"},
    {" +1 (415) 555 0100 ", "1", "+14155550100"},
    {"0044 20 7946 0018", "1", "+442079460018"},
    {"00442079460018", NULL, "+442079460018"},
    {"020 7946 0018", "44", "+442079460018"},
    {"030 901820", "49", "+4930901820"},
    {"+44 (0)20", "44", NULL},
    {"4155550100", NULL, NULL},
    {"4155550100", "", NULL},
    {"555-0100", "1", NULL},           /* too short for NANP */
    {"0155550100", "1", NULL},         /* bad NANP area code */
    {"+1415", "1", NULL},              /* too short */
    {"+1234567890123456", "1", NULL}, /* 16 digits: too long */
    {"12345678901234567890", "44", NULL},
    {"415-555-CALL", "1", NULL},
    {"+1 415 555 0100 ext 12", "1", NULL},
    {"+1+4155550100", "1", NULL},
    {"+0415550100", "1", NULL},
    {"", "1", NULL},
    {"+", "1", NULL},
};

static void phone_e164_one(const struct phone_case *tc)
{
    char out[17];
    bool ok = cs_phone_e164(tc->in, tc->cc, out);
    if (tc->want) {
        cr_assert(ok, "'%s' should normalise", tc->in);
        cr_expect_str_eq(out, tc->want, "'%s'", tc->in);
        cr_expect(cs_phone_is_e164(out));
    } else {
        cr_expect_not(ok, "'%s' should fail, got '%s'", tc->in, out);
    }
}

Test(phone, e164)
{
    for (size_t i = 0; i < CS_ARRAY_LEN(phone_e164_cases); i++)
        phone_e164_one(&phone_e164_cases[i]);
}

Test(phone, strict_check)
{
    cr_expect(cs_phone_is_e164("+14155550100"));
    cr_expect(cs_phone_is_e164("+4930901820"));
    cr_expect(cs_phone_is_e164("+123456789012345"));
    cr_expect_not(cs_phone_is_e164("+1234567890123456"));
    cr_expect_not(cs_phone_is_e164("+1234567"));
    cr_expect_not(cs_phone_is_e164("14155550100"));
    cr_expect_not(cs_phone_is_e164("+04155550100"));
    cr_expect_not(cs_phone_is_e164("+1 4155550100"));
    cr_expect_not(cs_phone_is_e164("+1415555010a"));
    cr_expect_not(cs_phone_is_e164(""));
    cr_expect_not(cs_phone_is_e164(NULL));
}

/* ----------------------------------------------------- Job ids and shards */

Test(job, id_is_stable)
{
    char id[33];
    /* printf 'call_1\nconn_1' | sha256sum, first 16 bytes */
    cs_job_id("call_1", "conn_1", id);
    cr_expect_str_eq(id, "43c3d9337881c08184123fe8b0299061");
    char again[33];
    cs_job_id("call_1", "conn_1", again);
    cr_expect_str_eq(again, id);
    cs_job_id("call_1", "conn_2", again);
    cr_expect_str_neq(again, id);
    /* The separator keeps ("ab", "c") apart from ("a", "bc"). */
    char x[33], y[33];
    cs_job_id("ab", "c", x);
    cs_job_id("a", "bc", y);
    cr_expect_str_neq(x, y);
    cr_expect_eq(strlen(id), 32);
    cr_expect_eq(strspn(id, "0123456789abcdef"), 32);
}

Test(shard, fnv1a_and_distribution)
{
    /* FNV-1a 32 of "" is the offset basis; of "a" is 0xe40c292c. */
    cr_expect_eq(cs_shard_of("", 0xffffffffu), 2166136261u % 0xffffffffu);
    cr_expect_eq(cs_shard_of("a", 0xffffffffu), 0xe40c292cu % 0xffffffffu);
    cr_expect_eq(cs_shard_of("agent_d8a1c0ffee", 0), 0);
    cr_expect_eq(cs_shard_of("agent_d8a1c0ffee", 1), 0);
    cr_expect_eq(cs_shard_of("agent_d8a1c0ffee", 16),
                 cs_shard_of("agent_d8a1c0ffee", 16));
    enum { N = 8, IDS = 8000 };
    unsigned count[N] = {0};
    for (int i = 0; i < IDS; i++) {
        char id[48];
        snprintf(id, sizeof(id), "agent_%08x-%d", (unsigned)i * 2654435761u,
                 i);
        unsigned s = cs_shard_of(id, N);
        cr_assert_lt(s, N);
        count[s]++;
    }
    for (int s = 0; s < N; s++)
        cr_expect(count[s] > IDS / N * 8 / 10 && count[s] < IDS / N * 12 / 10,
                  "shard %d has %u of %d", s, count[s], IDS);
}

/* ------------------------------------------------------- Sync conditions */

struct cond_case {
    const char *conditions; /* NULL: no conditions */
    const char *outcome;
    int duration;
    bool want;
    const char *why;
};

static const struct cond_case sync_conditions_cases[] = {
    {NULL, "completed", 0, true, NULL},
    {"{}", "completed", 0, true, NULL},
    {"{\"call_outcome\":[\"appointment_booked\",\"qualified_lead\"],"
     "\"min_duration_seconds\":60}",
     "appointment_booked", 61, true, NULL},
    {"{\"call_outcome\":[\"appointment_booked\",\"qualified_lead\"],"
     "\"min_duration_seconds\":60}",
     "appointment_booked", 60, true, NULL},
    {"{\"call_outcome\":[\"appointment_booked\",\"qualified_lead\"],"
     "\"min_duration_seconds\":60}",
     "appointment_booked", 59, false, "min_duration_seconds"},
    {"{\"call_outcome\":[\"appointment_booked\",\"qualified_lead\"],"
     "\"min_duration_seconds\":60}",
     "voicemail", 300, false, "call_outcome"},
    {"{\"call_outcome\":[]}", "completed", 10, false, "call_outcome"},
    {"{\"call_outcome\":\"completed\"}", "completed", 10, true, NULL},
    {"{\"call_outcome\":[3]}", "completed", 10, false,
     "invalid_condition"},
    {"{\"call_outcome\":{}}", "completed", 10, false, "invalid_condition"},
    {"{\"min_duration_seconds\":\"60\"}", "completed", 100, false,
     "invalid_condition"},
    {"{\"min_duration_seconds\":null}", "completed", 0, true, NULL},
    {"{\"min_duration_seconds\":0}", "completed", 0, true, NULL},
    {"{\"only_business_hours\":true}", "completed", 100, false,
     "unknown_condition"},
    {"{\"call_outcome\":[\"completed\"],\"tags\":[\"vip\"]}",
     "completed", 100, false, "unknown_condition"},
    {"[\"completed\"]", "completed", 100, false, "invalid_conditions"},
    {"\"all\"", "completed", 100, false, "invalid_conditions"},
};

static void sync_conditions_one(const struct cond_case *tc)
{
    json_t *cond = NULL;
    if (tc->conditions) {
        cond = json_loads(tc->conditions, JSON_DECODE_ANY, NULL);
        cr_assert_not_null(cond);
    }
    json_t *call = json_pack("{s:s, s:i}", "outcome", tc->outcome,
                             "duration_s", tc->duration);
    const char *why = "unset";
    bool got = cs_sync_conditions_match(cond, call, &why);
    cr_expect_eq(got, tc->want, "%s with %s/%d", tc->conditions, tc->outcome,
                 tc->duration);
    if (tc->why)
        cr_expect_str_eq(why, tc->why);
    else
        cr_expect_null(why);
    cr_expect_eq(cs_sync_conditions_match(cond, call, NULL), tc->want);
    json_decref(call);
    json_decref(cond);
}

Test(sync, conditions)
{
    for (size_t i = 0; i < CS_ARRAY_LEN(sync_conditions_cases); i++)
        sync_conditions_one(&sync_conditions_cases[i]);
}

/* Fixtures normalise the same way every time and leave nothing behind. */
Test(fixtures, all_normalise_repeatably)
{
    static const struct {
        norm_fn *fn;
        const char *rel;
        bool syncable;
    } all[] = {
        {cs_norm_retell, "retell/call_analyzed.json", true},
        {cs_norm_retell, "retell/call_ended.json", true},
        {cs_norm_retell, "retell/call_started.json", false},
        {cs_norm_retell, "retell/call_analyzed_event_type.json", true},
        {cs_norm_retell, "retell/call_analyzed_appointment.json", true},
        {cs_norm_retell, "retell/outbound_call_analyzed.json", true},
        {cs_norm_callrail, "callrail/post_call.json", true},
        {cs_norm_calcom, "calcom/booking_created.json", true},
        {cs_norm_calcom, "calcom/booking_cancelled.json", true},
        {cs_norm_calcom, "calcom/meeting_ended.json", false},
        {cs_norm_stripe, "stripe/checkout_session_completed.json", true},
        {cs_norm_stripe, "stripe/customer_created.json", false},
        {norm_standard_msg, "standard/call_completed.json", true},
    };
    for (size_t i = 0; i < CS_ARRAY_LEN(all); i++) {
        struct cs_event a, b;
        norm_fixture(all[i].fn, all[i].rel, &a);
        norm_fixture(all[i].fn, all[i].rel, &b);
        cr_expect_eq(a.syncable, all[i].syncable, "%s", all[i].rel);
        cr_expect_eq(a.call != NULL, all[i].syncable, "%s", all[i].rel);
        if (a.call) {
            expect_shape(a.call);
            cr_expect(json_equal(a.call, b.call), "%s", all[i].rel);
            cr_expect_not_null(a.event_id, "%s", all[i].rel);
        }
        cs_event_release(&a);
        cs_event_release(&b);
    }
}
