/*
 * cal_e2e_support.h - the end-to-end checks every calendar provider runs
 * (tests/e2e_support.h underneath): a connection made with `callsyncctl
 * connections add`, a signed Retell webhook whose call booked Friday 15
 * March 2030 at 14:00 in Chicago, the job through Redis and the real
 * worker into the sandbox. One call gives exactly one event (booking),
 * also when the write's answer is lost after the write, and through a
 * storm of 429s. Header-only; include from one test file each, after
 * defining the provider below.
 *
 *   struct cal_e2e { provider, ctl_args, secret, record_type,
 *                    write_method, write_path };
 */
#ifndef CS_TESTS_CAL_E2E_SUPPORT_H
#define CS_TESTS_CAL_E2E_SUPPORT_H

#include "e2e_support.h"

#define CAL_E2E_FIXTURE "call_analyzed_appointment_2030.json"

struct cal_e2e {
    const char *provider;      /* integration type and sandbox prefix */
    const char *ctl_args;      /* for callsyncctl connections add */
    const char *secret;        /* into CS_E2E_SECRET */
    const char *record_type;   /* the sandbox records to count */
    const char *write_method;  /* the write whose answer gets lost */
    const char *write_path;    /* its path under the prefix */
};

static const struct cal_e2e *cal_e2e_cur;
static char *cal_e2e_conn;

static inline void cal_e2e_setup(const struct cal_e2e *p)
{
    cal_e2e_cur = p;
    e2e_setup(p->provider, 0);
    cal_e2e_conn = ctl_add_conn(p->ctl_args, p->secret);
    start_ingest();
}

static inline void cal_e2e_teardown(void)
{
    e2e_teardown();
    free(cal_e2e_conn);
    cal_e2e_conn = NULL;
    worker_request_timeout_ms = 0;
}

static inline int cal_e2e_records(void)
{
    return records(cal_e2e_cur->provider, cal_e2e_cur->record_type);
}

/* The provider's stream is empty and nothing waits in the delayed set. */
static inline bool cal_e2e_drained(void)
{
    char key[96];
    snprintf(key, sizeof(key), "cs:{0}:q:%s", cal_e2e_cur->provider);
    return rint_("XLEN %s", key) == 0 &&
           it_redis_int(rc, "ZCARD cs:{0}:delayed") == 0;
}

static inline bool cal_e2e_booked(void)
{
    return cal_e2e_records() >= 1 && cal_e2e_drained();
}

static inline json_t *cal_e2e_records_json(const char *type)
{
    char path[160];
    snprintf(path, sizeof(path), "/_sandbox/records?provider=%s&type=%s",
             cal_e2e_cur->provider, type);
    struct it_resp r = it_get(sandbox_port, path);
    cr_assert_eq(r.status, 200);
    json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
    cr_assert(j);
    json_t *recs = json_incref(json_object_get(j, "records"));
    json_decref(j);
    return recs;
}

/* Requests of method to the write path the sandbox saw. */
static inline int cal_e2e_requests(const char *method, const char *path)
{
    char q[96];
    snprintf(q, sizeof(q), "/_sandbox/requests?provider=%s",
             cal_e2e_cur->provider);
    struct it_resp r = it_get(sandbox_port, q);
    json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
    cr_assert(j);
    char full[256];
    snprintf(full, sizeof(full), "/%s%s", cal_e2e_cur->provider, path);
    int n = 0;
    size_t i;
    json_t *x;
    json_array_foreach(json_object_get(j, "requests"), i, x) {
        n += strcmp(json_string_value(json_object_get(x, "method")),
                    method) == 0 &&
             strcmp(json_string_value(json_object_get(x, "path")), full) == 0;
    }
    json_decref(j);
    return n;
}

static inline void cal_e2e_expect_one(void)
{
    cr_expect_eq(cal_e2e_records(), 1, "%s %s: %d", cal_e2e_cur->provider,
                 cal_e2e_cur->record_type, cal_e2e_records());
    cr_expect_eq(dead_count(), 0, "dead letters: %lld", dead_count());
}

/* One call, one event; the step logged once as a success. */
static inline void cal_e2e_one_call(void)
{
    start_worker(16);
    post_fixture_calls(CAL_E2E_FIXTURE, 0, 1);
    wait_until(cal_e2e_booked, 30000, "the booking");
    cal_e2e_expect_one();
    cr_expect_eq(cal_e2e_requests(cal_e2e_cur->write_method,
                                  cal_e2e_cur->write_path),
                 1, "one write");
    usleep(1500000);
    char *n = it_sql(&db,
                     "SELECT count(*) FROM integration_sync_logs WHERE "
                     "status = 'success' AND operation_type = 'appointment'",
                     0, NULL);
    cr_expect_str_eq(n, "1");
    free(n);
}

/* The write happens, its answer is withheld: the worker times out, the
 * retry reconciles (key or lookup) and writes nothing more. */
static inline void cal_e2e_lost_answer(void)
{
    char *rule = xasprintf("[{\"provider\":\"%s\",\"method\":\"%s\","
                           "\"path_prefix\":\"%s\",\"hang\":true,"
                           "\"process\":true,\"hang_ms\":20000,"
                           "\"count\":1}]",
                           cal_e2e_cur->provider, cal_e2e_cur->write_method,
                           cal_e2e_cur->write_path);
    set_faults(rule);
    free(rule);
    worker_request_timeout_ms = 1500;
    start_worker(16);
    post_fixture_calls(CAL_E2E_FIXTURE, 0, 1);
    wait_until(cal_e2e_booked, 60000, "the booking");
    cal_e2e_expect_one();
    struct it_resp r = it_get(sandbox_port, "/_sandbox/faults");
    json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
    cr_expect_eq(json_integer_value(json_object_get(
                     json_array_get(json_object_get(j, "rules"), 0), "fired")),
                 1, "the hang rule fired once");
    json_decref(j);
}

static inline void cal_e2e_storm(void)
{
    /* The first three requests are refused, whichever they are. */
    char *rule = xasprintf("[{\"provider\":\"%s\",\"status\":429,"
                           "\"retry_after_s\":1,\"count\":3}]",
                           cal_e2e_cur->provider);
    set_faults(rule);
    free(rule);
    start_worker(16);
    post_fixture_calls(CAL_E2E_FIXTURE, 0, 1);
    wait_until(cal_e2e_booked, 60000, "the booking");
    cal_e2e_expect_one();
    struct it_resp r = it_get(sandbox_port, "/_sandbox/faults");
    json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
    cr_expect_eq(json_integer_value(json_object_get(
                     json_array_get(json_object_get(j, "rules"), 0), "fired")),
                 3, "three 429s");
    json_decref(j);
}

#endif
