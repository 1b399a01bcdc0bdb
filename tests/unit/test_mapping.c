/*
 * test_mapping.c - dotted paths, "{{path}}" templates and field mappings:
 * every mapping kind, every error with the exact field named, and seed
 * 003's examples.
 */
#include "mapping.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

static json_t *J(const char *text)
{
    json_error_t je;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &je);
    cr_assert_not_null(v, "bad test json at %d: %s", je.position, je.text);
    return v;
}

/* Assert a value equals the JSON text. */
static void expect_json(const json_t *got, const char *want)
{
    json_t *w = J(want);
    char *g = got ? json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS |
                                        JSON_ENCODE_ANY)
                  : strdup("(null)");
    char *ws = json_dumps(w, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    cr_expect(got && json_equal((json_t *)got, w), "got %s, want %s", g, ws);
    free(g);
    free(ws);
    json_decref(w);
}

/* A source document shaped like custom REST's root. */
static json_t *sample_root(void)
{
    return J("{\"customer_name\": \"Jane Smith\","
             " \"customer_name_first\": \"Jane\","
             " \"customer_name_last\": \"Smith\","
             " \"customer_phone\": \"+14079780655\","
             " \"customer_email\": null,"
             " \"customer_city\": \"Orlando\", \"customer_state\": \"FL\","
             " \"recording_url\": \"https://rec.example/1.mp3\","
             " \"source\": \"retell\", \"call_id\": \"call_abc123\","
             " \"duration_seconds\": 300,"
             " \"ai_analysis\": {\"intent\": \"quote_request\","
             "   \"project_type\": \"kitchen\", \"timeline\": \"immediate\","
             "   \"budget\": \"high\", \"urgency\": \"high\","
             "   \"lead_score\": 87},"
             " \"tags\": [\"roof\", \"urgent\"],"
             " \"score_text\": \"42\", \"ratio_text\": \"4.5\","
             " \"flag_text\": \"Yes\", \"bad_number\": \"12abc\","
             " \"one\": 1, \"t\": true}");
}

/* ---- map_path ---------------------------------------------------------- */

Test(map_path, walks_objects_and_arrays)
{
    json_t *r = sample_root();
    cr_expect_str_eq(json_string_value(map_path(r, "customer_city")),
                     "Orlando");
    cr_expect_eq(json_integer_value(map_path(r, "ai_analysis.lead_score")),
                 87);
    cr_expect_str_eq(json_string_value(map_path(r, "tags.1")), "urgent");
    json_t *deep = J("{\"a\": {\"b\": {\"c\": \"x\"}}}");
    cr_expect_str_eq(json_string_value(map_path(deep, "a.b.c")), "x");
    json_decref(deep);
    json_decref(r);
}

Test(map_path, missing_is_null)
{
    json_t *r = sample_root();
    cr_expect_null(map_path(r, "nope"));
    cr_expect_null(map_path(r, "ai_analysis.nope"));
    cr_expect_null(map_path(r, "customer_city.x"));  /* through a string */
    cr_expect_null(map_path(r, "tags.2"));           /* out of range */
    cr_expect_null(map_path(r, "tags.x"));
    cr_expect_null(map_path(r, ""));
    cr_expect_null(map_path(r, "ai_analysis..lead_score"));
    cr_expect_null(map_path(r, "ai_analysis."));
    cr_expect_null(map_path(NULL, "a"));
    /* A present null is found (and is JSON null). */
    cr_expect(json_is_null(map_path(r, "customer_email")));
    json_decref(r);
}

/* ---- map_render -------------------------------------------------------- */

Test(map_render, whole_placeholder_keeps_type)
{
    json_t *r = sample_root();
    struct cs_err err = {0};
    json_t *t = J("{\"score\": \"{{ai_analysis.lead_score}}\","
                  " \"analysis\": \"{{ ai_analysis }}\","
                  " \"tags\": \"{{tags}}\", \"flag\": \"{{t}}\","
                  " \"missing\": \"{{nope.nothing}}\","
                  " \"n\": 5, \"b\": false, \"z\": null,"
                  " \"list\": [\"{{customer_city}}\", 2]}");
    json_t *out = map_render(t, r, &err);
    cr_assert_not_null(out, "%s: %s", err.field, err.msg);
    expect_json(out,
                "{\"score\": 87, \"analysis\": {\"intent\": "
                "\"quote_request\", \"project_type\": \"kitchen\", "
                "\"timeline\": \"immediate\", \"budget\": \"high\", "
                "\"urgency\": \"high\", \"lead_score\": 87},"
                " \"tags\": [\"roof\", \"urgent\"], \"flag\": true,"
                " \"missing\": null, \"n\": 5, \"b\": false, \"z\": null,"
                " \"list\": [\"Orlando\", 2]}");
    json_decref(out);
    json_decref(t);
    json_decref(r);
}

Test(map_render, embedded_placeholders_become_text)
{
    json_t *r = sample_root();
    struct cs_err err = {0};
    json_t *t = J("{\"title\": \"{{customer_name}} - "
                  "{{ai_analysis.project_type}} Project\","
                  " \"s\": \"score={{ai_analysis.lead_score}};"
                  " tags={{tags}}; hot={{t}}; none=[{{nope}}]\","
                  " \"two\": \"{{customer_name_first}}{{customer_name_last}}\","
                  " \"plain\": \"no placeholders } {\"}");
    json_t *out = map_render(t, r, &err);
    cr_assert_not_null(out, "%s: %s", err.field, err.msg);
    expect_json(out,
                "{\"title\": \"Jane Smith - kitchen Project\","
                " \"s\": \"score=87; tags=[\\\"roof\\\",\\\"urgent\\\"];"
                " hot=true; none=[]\", \"two\": \"JaneSmith\","
                " \"plain\": \"no placeholders } {\"}");
    json_decref(out);
    json_decref(t);
    json_decref(r);
}

Test(map_render, seed_003_contact_template)
{
    json_t *r = sample_root();
    struct cs_err err = {0};
    json_t *t = J("{\"first_name\": \"{{customer_name_first}}\","
                  " \"last_name\": \"{{customer_name_last}}\","
                  " \"phone\": \"{{customer_phone}}\","
                  " \"email\": \"{{customer_email}}\","
                  " \"address\": {\"city\": \"{{customer_city}}\","
                  "   \"state\": \"{{customer_state}}\"},"
                  " \"custom_fields\": {\"lead_source\": \"phone_call\","
                  "   \"call_recording\": \"{{recording_url}}\","
                  "   \"ai_score\": \"{{ai_analysis.lead_score}}\"}}");
    json_t *out = map_render(t, r, &err);
    cr_assert_not_null(out, "%s: %s", err.field, err.msg);
    expect_json(out,
                "{\"first_name\": \"Jane\", \"last_name\": \"Smith\","
                " \"phone\": \"+14079780655\", \"email\": null,"
                " \"address\": {\"city\": \"Orlando\", \"state\": \"FL\"},"
                " \"custom_fields\": {\"lead_source\": \"phone_call\","
                "   \"call_recording\": \"https://rec.example/1.mp3\","
                "   \"ai_score\": 87}}");
    json_decref(out);
    json_decref(t);
    json_decref(r);
}

static void expect_render_error(const char *tmpl, const char *field,
                                const char *msg_part)
{
    json_t *r = sample_root();
    json_t *t = J(tmpl);
    struct cs_err err = {0};
    json_t *out = map_render(t, r, &err);
    cr_expect_null(out, "template %s rendered", tmpl);
    json_decref(out);
    cr_expect_eq(err.code, CS_EINVAL);
    cr_expect_str_eq(err.field, field);
    cr_expect(strstr(err.msg, msg_part) != NULL, "msg '%s' lacks '%s'",
              err.msg, msg_part);
    json_decref(t);
    json_decref(r);
}

Test(map_render, errors_name_the_position)
{
    expect_render_error("{\"address\": {\"city\": \"{{customer_city\"}}",
                        "address.city", "unterminated '{{'");
    expect_render_error("{\"a\": \"x {{customer_city}} {{oops\"}", "a",
                        "unterminated '{{'");
    expect_render_error("{\"items\": [\"ok\", \"{{}}\"]}", "items[1]",
                        "empty");
    expect_render_error("{\"items\": [1, {\"k\": \"a {{  }} b\"}]}",
                        "items[1].k", "empty");
    expect_render_error("\"{{\"", "", "unterminated");
}

/* ---- map_apply --------------------------------------------------------- */

/* Apply mappings (JSON text) to sample_root; require success; compare. */
static void expect_apply(const char *mappings, const char *want)
{
    json_t *r = sample_root();
    json_t *m = J(mappings);
    json_t *out = json_object();
    struct cs_err err = {0};
    int rc = map_apply(m, r, out, &err);
    cr_expect_eq(rc, 0, "rc %d field '%s': %s", rc, err.field, err.msg);
    expect_json(out, want);
    json_decref(out);
    json_decref(m);
    json_decref(r);
}

static void expect_apply_error(const char *mappings, const char *field,
                               const char *msg_part)
{
    json_t *r = sample_root();
    json_t *m = J(mappings);
    json_t *out = json_object();
    struct cs_err err = {0};
    int rc = map_apply(m, r, out, &err);
    cr_expect_eq(rc, CS_EINVAL, "mappings %s: rc %d", mappings, rc);
    cr_expect_eq(err.code, CS_EINVAL);
    cr_expect_str_eq(err.field, field, "mappings %s: field '%s' want '%s'",
                     mappings, err.field, field);
    cr_expect(strstr(err.msg, msg_part) != NULL, "msg '%s' lacks '%s'",
              err.msg, msg_part);
    json_decref(out);
    json_decref(m);
    json_decref(r);
}

Test(map_apply, plain_and_missing)
{
    expect_apply("[{\"target\": \"phone\", \"source\": \"customer_phone\"},"
                 " {\"target\": \"lead_score\","
                 "  \"source\": \"ai_analysis.lead_score\"},"
                 " {\"target\": \"email\", \"source\": \"customer_email\"},"
                 " {\"target\": \"gone\", \"source\": \"nope.x\"},"
                 " {\"target\": \"address.city\","
                 "  \"source\": \"customer_city\"},"
                 " {\"target\": \"address.state\","
                 "  \"source\": \"customer_state\"}]",
                 "{\"phone\": \"+14079780655\", \"lead_score\": 87,"
                 " \"address\": {\"city\": \"Orlando\", \"state\": \"FL\"}}");
    expect_apply("null", "{}");
    expect_apply("[]", "{}");
}

Test(map_apply, keeps_what_is_in_out)
{
    json_t *r = sample_root();
    json_t *out = J("{\"first_name\": \"Jane\", \"address\": {\"zip\": "
                    "\"32801\"}}");
    json_t *m = J("[{\"target\": \"address.city\","
                  " \"source\": \"customer_city\"}]");
    struct cs_err err = {0};
    cr_assert_eq(map_apply(m, r, out, &err), 0);
    expect_json(out, "{\"first_name\": \"Jane\", \"address\": "
                     "{\"zip\": \"32801\", \"city\": \"Orlando\"}}");
    json_decref(m);
    json_decref(out);
    json_decref(r);
}

Test(map_apply, typed)
{
    expect_apply("[{\"target\": \"a\", \"source\": \"ai_analysis.lead_score\","
                 "  \"type\": \"string\"},"
                 " {\"target\": \"b\", \"source\": \"score_text\","
                 "  \"type\": \"number\"},"
                 " {\"target\": \"c\", \"source\": \"ratio_text\","
                 "  \"type\": \"number\"},"
                 " {\"target\": \"d\", \"source\": \"flag_text\","
                 "  \"type\": \"boolean\"},"
                 " {\"target\": \"e\", \"source\": \"one\","
                 "  \"type\": \"boolean\"},"
                 " {\"target\": \"f\", \"source\": \"t\", \"type\": \"string\"},"
                 " {\"target\": \"g\", \"source\": \"ai_analysis.timeline\","
                 "  \"type\": \"enumeration\","
                 "  \"options\": [\"immediate\", \"1-3_months\"]},"
                 " {\"target\": \"h\", \"source\": \"ai_analysis.budget\","
                 "  \"type\": \"enumeration\"},"
                 " {\"target\": \"i\", \"source\": \"nope\","
                 "  \"type\": \"number\"}]",
                 "{\"a\": \"87\", \"b\": 42, \"c\": 4.5, \"d\": true,"
                 " \"e\": true, \"f\": \"true\", \"g\": \"immediate\","
                 " \"h\": \"high\"}");
}

Test(map_apply, seed_003_custom_properties)
{
    expect_apply("[{\"name\": \"call_recording_url\","
                 "  \"value\": \"recording_url\", \"type\": \"string\"},"
                 " {\"name\": \"ai_project_type\","
                 "  \"value\": \"ai_analysis.project_type\","
                 "  \"type\": \"enumeration\"},"
                 " {\"name\": \"ai_lead_score\","
                 "  \"value\": \"ai_analysis.lead_score\","
                 "  \"type\": \"number\"},"
                 " {\"name\": \"call_duration\","
                 "  \"value\": \"call_details.duration\","
                 "  \"type\": \"number\"}]",
                 "{\"call_recording_url\": \"https://rec.example/1.mp3\","
                 " \"ai_project_type\": \"kitchen\", \"ai_lead_score\": 87}");
}

Test(map_apply, template_and_lookup)
{
    expect_apply("[{\"target\": \"title\", \"template\":"
                 "  \"{{customer_name}} - {{ai_analysis.project_type}}"
                 " Project\"},"
                 " {\"target\": \"score\","
                 "  \"template\": \"{{ai_analysis.lead_score}}\"},"
                 " {\"target\": \"gone\", \"template\": \"{{nope}}\"},"
                 " {\"target\": \"value\","
                 "  \"source\": \"ai_analysis.project_type\","
                 "  \"map\": {\"kitchen\": 25000, \"bathroom\": 15000},"
                 "  \"default\": 20000},"
                 " {\"target\": \"value2\", \"source\": \"ai_analysis.intent\","
                 "  \"map\": {\"kitchen\": 25000}, \"default\": 20000},"
                 " {\"target\": \"value3\", \"source\": \"ai_analysis.intent\","
                 "  \"map\": {\"kitchen\": 25000}}]",
                 "{\"title\": \"Jane Smith - kitchen Project\","
                 " \"score\": 87, \"value\": 25000, \"value2\": 20000}");
}

/* Seed 003's conditional mapping, object form, against three roots. */
Test(map_apply, seed_003_conditional)
{
    const char *m = "{\"priority\": {\"type\": \"conditional\","
                    " \"conditions\": ["
                    "  {\"if\": \"ai_analysis.lead_score > 80\","
                    "   \"then\": \"High\"},"
                    "  {\"if\": \"ai_analysis.urgency == 'high'\","
                    "   \"then\": \"High\"},"
                    "  {\"default\": \"Normal\"}]}}";
    const char *roots[] = {
        "{\"ai_analysis\": {\"lead_score\": 85, \"urgency\": \"low\"}}",
        "{\"ai_analysis\": {\"lead_score\": 80, \"urgency\": \"high\"}}",
        "{\"ai_analysis\": {\"lead_score\": 80, \"urgency\": \"low\"}}",
        "{\"ai_analysis\": null}",
    };
    const char *want[] = {"High", "High", "Normal", "Normal"};
    json_t *mj = J(m);
    for (size_t i = 0; i < 4; i++) {
        json_t *r = J(roots[i]);
        json_t *out = json_object();
        struct cs_err err = {0};
        cr_expect_eq(map_apply(mj, r, out, &err), 0, "%s", err.msg);
        cr_expect_str_eq(json_string_value(json_object_get(out, "priority")),
                         want[i], "root %zu", i);
        json_decref(out);
        json_decref(r);
    }
    json_decref(mj);
}

Test(map_apply, conditional_operators)
{
    expect_apply("[{\"target\": \"a\", \"conditions\": ["
                 "  {\"if\": \"ai_analysis.lead_score >= 87\", \"then\": 1}]},"
                 " {\"target\": \"b\", \"conditions\": ["
                 "  {\"if\": \"ai_analysis.lead_score < 87\", \"then\": 1},"
                 "  {\"if\": \"ai_analysis.lead_score <= 87\", \"then\": 2}]},"
                 " {\"target\": \"c\", \"conditions\": ["
                 "  {\"if\": \"customer_state != \\\"FL\\\"\", \"then\": 1},"
                 "  {\"if\": \"customer_state == \\\"FL\\\"\","
                 "   \"then\": {\"x\": [1]}}]},"
                 " {\"target\": \"d\", \"conditions\": ["
                 "  {\"if\": \"nope > 1\", \"then\": 1},"
                 "  {\"if\": \"customer_city > 1\", \"then\": 2}]},"
                 " {\"target\": \"e\", \"conditions\": ["
                 "  {\"if\": \"score_text==42\", \"then\": \"numeric\"}]},"
                 " {\"target\": \"f\", \"conditions\": ["
                 "  {\"if\": \"t == true\", \"then\": \"yes\"}]},"
                 " {\"target\": \"g\", \"conditions\": ["
                 "  {\"if\": \"nope == null\", \"then\": \"absent\"}]},"
                 " {\"target\": \"h\", \"conditions\": ["
                 "  {\"if\": \"ai_analysis.lead_score > -1.5e1\","
                 "   \"then\": \"neg\"}]}]",
                 "{\"a\": 1, \"b\": 2, \"c\": {\"x\": [1]}, \"e\": \"numeric\","
                 " \"f\": \"yes\", \"g\": \"absent\", \"h\": \"neg\"}");
}

Test(map_apply, seed_002_object_form)
{
    /* {"source path": "target"} */
    expect_apply("{\"customer_name\": \"firstName\","
                 " \"customer_phone\": \"phone\","
                 " \"customer_email\": \"email\","
                 " \"call_outcome\": \"custom_field_call_result\"}",
                 "{\"firstName\": \"Jane Smith\", \"phone\": \"+14079780655\"}");
}

Test(map_apply, errors_name_the_target)
{
    expect_apply_error("[{\"target\": \"x\", \"source\": \"one\","
                       "  \"type\": \"datetime\"}]",
                       "x", "unknown type 'datetime'");
    /* Unknown types are found even without data. */
    expect_apply_error("[{\"target\": \"x\", \"source\": \"nope\","
                       "  \"type\": \"integer\"}]",
                       "x", "unknown type 'integer'");
    expect_apply_error("[{\"target\": \"x\", \"source\": \"one\","
                       "  \"type\": 3}]", "x", "type is not a string");
    expect_apply_error("[{\"target\": \"ok\", \"source\": \"one\"}, 7]",
                       "mappings[1]", "not an object");
    expect_apply_error("[{\"source\": \"one\"}]", "mappings[0]",
                       "no 'target'");
    expect_apply_error("[{\"target\": \"x\"}]", "x", "no 'source'");
    expect_apply_error("[{\"target\": \"\", \"source\": \"one\"}]", "",
                       "target is empty");
    expect_apply_error("\"phone\"", "mappings", "neither a list");
    expect_apply_error("{\"priority\": 5}", "priority",
                       "neither a target name nor an object");
}

Test(map_apply, errors_for_unconvertible_values)
{
    expect_apply_error("[{\"target\": \"n\", \"source\": \"bad_number\","
                       "  \"type\": \"number\"}]",
                       "n", "'12abc' is not a number");
    expect_apply_error("[{\"target\": \"n\", \"source\": \"t\","
                       "  \"type\": \"number\"}]",
                       "n", "a boolean is not a number");
    expect_apply_error("[{\"target\": \"b\", \"source\": \"customer_city\","
                       "  \"type\": \"boolean\"}]",
                       "b", "'Orlando' is not a boolean");
    expect_apply_error("[{\"target\": \"b\","
                       "  \"source\": \"ai_analysis.lead_score\","
                       "  \"type\": \"boolean\"}]",
                       "b", "'87' is not a boolean");
    expect_apply_error("[{\"target\": \"s\", \"source\": \"ai_analysis\","
                       "  \"type\": \"string\"}]",
                       "s", "an object cannot be a string");
    expect_apply_error("[{\"target\": \"s\", \"source\": \"tags\","
                       "  \"type\": \"enumeration\"}]",
                       "s", "an array cannot be a enumeration");
    expect_apply_error("[{\"target\": \"e\", \"source\": \"ai_analysis.budget\","
                       "  \"type\": \"enumeration\","
                       "  \"options\": [\"low\", \"medium\"]}]",
                       "e", "'high' is not one of the options");
    expect_apply_error("[{\"target\": \"n\", \"template\": \"x{{one}}\","
                       "  \"type\": \"number\"}]",
                       "n", "'x1' is not a number");
}

Test(map_apply, errors_in_conditions)
{
    expect_apply_error("[{\"target\": \"p\", \"conditions\": ["
                       "  {\"if\": \"ai_analysis.lead_score 80\","
                       "   \"then\": 1}]}]",
                       "p", "bad condition 'ai_analysis.lead_score 80'");
    expect_apply_error("[{\"target\": \"p\", \"conditions\": ["
                       "  {\"if\": \"urgency == 'high\", \"then\": 1}]}]",
                       "p", "bad condition");
    expect_apply_error("[{\"target\": \"p\", \"conditions\": ["
                       "  {\"if\": \"score > 80 extra\", \"then\": 1}]}]",
                       "p", "bad condition");
    expect_apply_error("[{\"target\": \"p\", \"conditions\": ["
                       "  {\"if\": \"> 80\", \"then\": 1}]}]",
                       "p", "bad condition");
    expect_apply_error("[{\"target\": \"p\", \"conditions\": ["
                       "  {\"if\": \"score => 80\", \"then\": 1}]}]",
                       "p", "bad condition");
    expect_apply_error("[{\"target\": \"p\", \"conditions\": ["
                       "  {\"if\": \"score > high\", \"then\": 1}]}]",
                       "p", "bad condition");
    /* Syntax is checked after the first match too. */
    expect_apply_error("[{\"target\": \"p\", \"conditions\": ["
                       "  {\"if\": \"one == 1\", \"then\": 1},"
                       "  {\"if\": \"one ~ 1\", \"then\": 2}]}]",
                       "p", "bad condition 'one ~ 1'");
    expect_apply_error("[{\"target\": \"p\", \"conditions\": ["
                       "  {\"if\": \"one == 1\"}]}]",
                       "p", "has 'if' but no 'then'");
    expect_apply_error("[{\"target\": \"p\", \"conditions\": ["
                       "  {\"then\": 1}]}]",
                       "p", "neither 'if' nor 'default'");
    expect_apply_error("[{\"target\": \"p\", \"conditions\": [\"one > 1\"]}]",
                       "p", "condition 0 is not an object");
    expect_apply_error("[{\"target\": \"p\", \"type\": \"conditional\"}]",
                       "p", "needs a 'conditions' list");
    expect_apply_error("{\"follow_up_date\": {\"type\": \"computed\","
                       " \"formula\": \"addDays(today(), 1)\"}}",
                       "follow_up_date", "computed formulas are not "
                       "supported");
}

Test(map_apply, error_for_target_through_a_value)
{
    json_t *r = sample_root();
    json_t *out = J("{\"address\": \"a string\"}");
    json_t *m = J("[{\"target\": \"address.city\","
                  " \"source\": \"customer_city\"}]");
    struct cs_err err = {0};
    cr_expect_eq(map_apply(m, r, out, &err), CS_EINVAL);
    cr_expect_str_eq(err.field, "address.city");
    cr_expect_str_eq(err.msg, "target crosses a value that is not an object");
    json_decref(m);
    json_decref(out);
    json_decref(r);
}

Test(map_apply, template_error_names_target)
{
    expect_apply_error("[{\"target\": \"title\","
                       "  \"template\": \"{{customer_name\"}]",
                       "title", "unterminated '{{'");
}
