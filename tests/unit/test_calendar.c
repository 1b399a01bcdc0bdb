/*
 * test_calendar.c - what the calendar providers share (calendar.h):
 * business hours from config, free slots around busy intervals across
 * days, weekends and time zones (including both DST changes), slot
 * rounding, the notice, filtering of offered slots, the window checks,
 * the booking a call asks for, and base32hex.
 */
#include "calendar.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

static int64_t ms(const char *s)
{
    int64_t v = 0;
    cr_assert(cs_parse_rfc3339(s, &v), "bad time %s", s);
    return v;
}

static struct cal_hours hours(const char *config_json)
{
    json_error_t je;
    json_t *c = json_loads(config_json, 0, &je);
    cr_assert(c, "bad config: %s", je.text);
    struct cal_hours h;
    struct cs_err err = {0};
    int rc = cal_hours_from_config(c, &h, &err);
    cr_assert_eq(rc, 0, "config rejected: %s", err.msg);
    json_decref(c);
    return h;
}

static const char *hours_error(const char *config_json)
{
    static struct cs_err err;
    memset(&err, 0, sizeof(err));
    json_t *c = json_loads(config_json, 0, NULL);
    cr_assert(c);
    struct cal_hours h;
    int rc = cal_hours_from_config(c, &h, &err);
    json_decref(c);
    cr_assert_eq(rc, CS_EINVAL, "config accepted: %s", config_json);
    return err.field;
}

/* Slot i's start as "YYYY-MM-DDTHH:MM:SSZ". */
static const char *at(const struct cal_slots *s, size_t i)
{
    static char buf[8][32];
    static int k;
    cr_assert_lt(i, s->n, "slot %zu of %zu", i, s->n);
    char *b = buf[k++ % 8];
    cs_rfc3339_s(s->v[i].start_ms, b);
    return b;
}

/* ---- Business hours from config ----------------------------------------- */

Test(cal_hours, defaults_are_nine_to_five_weekdays_hour_slots_utc)
{
    struct cal_hours h = hours("{}");
    cr_expect_eq(h.open_min, 540);
    cr_expect_eq(h.close_min, 1020);
    cr_expect_eq(h.days, 0x3eu);
    cr_expect_eq(h.slot_min, 60);
    cr_expect_eq(h.notice_min, 0);
    cr_expect_not(h.explicit_hours);
    cr_expect_str_eq(h.tz, "UTC");
}

Test(cal_hours, seed_config_and_text_forms)
{
    struct cal_hours h = hours(
        "{\"timezone\":\"America/Chicago\",\"business_hours_start\":8,"
        "\"business_hours_end\":\"18:30\",\"slot_duration_minutes\":\"45\","
        "\"business_days\":[\"mon\",\"Wednesday\",6,0],"
        "\"min_notice_minutes\":120}");
    cr_expect_eq(h.open_min, 480);
    cr_expect_eq(h.close_min, 1110);
    cr_expect_eq(h.slot_min, 45);
    cr_expect_eq(h.notice_min, 120);
    cr_expect_eq(h.days, (1u << 1) | (1u << 3) | (1u << 6) | 1u);
    cr_expect(h.explicit_hours);
    cr_expect_str_eq(h.tz, "America/Chicago");
    h = hours("{\"business_hours_start\":0,\"business_hours_end\":24}");
    cr_expect_eq(h.open_min, 0);
    cr_expect_eq(h.close_min, 1440);
}

Test(cal_hours, bad_values_name_their_key)
{
    cr_expect_str_eq(hours_error("{\"timezone\":\"Mars/Olympus\"}"),
                     "config.timezone");
    cr_expect_str_eq(hours_error("{\"business_hours_start\":25}"),
                     "config.business_hours_start");
    cr_expect_str_eq(hours_error("{\"business_hours_start\":\"9am\"}"),
                     "config.business_hours_start");
    cr_expect_str_eq(hours_error("{\"business_hours_end\":\"24:30\"}"),
                     "config.business_hours_end");
    cr_expect_str_eq(hours_error("{\"business_hours_start\":17,"
                                 "\"business_hours_end\":9}"),
                     "config.business_hours_end");
    cr_expect_str_eq(hours_error("{\"business_days\":[\"funday\"]}"),
                     "config.business_days");
    cr_expect_str_eq(hours_error("{\"business_days\":[7]}"),
                     "config.business_days");
    cr_expect_str_eq(hours_error("{\"business_days\":\"mon\"}"),
                     "config.business_days");
    cr_expect_str_eq(hours_error("{\"slot_duration_minutes\":0}"),
                     "config.slot_duration_minutes");
    cr_expect_str_eq(hours_error("{\"min_notice_minutes\":-5}"),
                     "config.min_notice_minutes");
}

/* ---- Free slots ---------------------------------------------------------- */

Test(cal_free, one_weekday_in_utc_gives_eight_hour_slots)
{
    struct cal_hours h = hours("{}");
    struct cal_slots s = {0};
    /* Monday 4 March 2030. */
    cal_free_slots(&h, ms("2030-03-04T00:00:00Z"), ms("2030-03-05T00:00:00Z"),
                   0, NULL, 0, &s);
    cr_assert_eq(s.n, 8);
    cr_expect_str_eq(at(&s, 0), "2030-03-04T09:00:00Z");
    cr_expect_str_eq(at(&s, 7), "2030-03-04T16:00:00Z");
    cr_expect_eq(s.v[7].end_ms, ms("2030-03-04T17:00:00Z"));
    cal_slots_release(&s);
}

Test(cal_free, business_hours_across_days_skip_the_weekend)
{
    struct cal_hours h = hours("{\"business_hours_start\":9,"
                               "\"business_hours_end\":12}");
    struct cal_slots s = {0};
    /* Friday 8 March 10:30 to Tuesday 12 March 10:00 (UTC). */
    cal_free_slots(&h, ms("2030-03-08T10:30:00Z"), ms("2030-03-12T10:00:00Z"),
                   0, NULL, 0, &s);
    /* Friday 11:00; Monday 9, 10, 11; Tuesday 9. */
    cr_assert_eq(s.n, 5, "%zu slots", s.n);
    cr_expect_str_eq(at(&s, 0), "2030-03-08T11:00:00Z");
    cr_expect_str_eq(at(&s, 1), "2030-03-11T09:00:00Z");
    cr_expect_str_eq(at(&s, 3), "2030-03-11T11:00:00Z");
    cr_expect_str_eq(at(&s, 4), "2030-03-12T09:00:00Z");
    cal_slots_release(&s);
}

Test(cal_free, local_days_of_a_zone_ahead_of_utc)
{
    /* Auckland (UTC+13 in March): Monday 09:00-12:00 local is Sunday
     * 20:00-23:00 UTC; a window that is all Sunday in UTC holds Monday's
     * morning, and Sunday's local hours (closed) are not offered. */
    struct cal_hours h = hours("{\"timezone\":\"Pacific/Auckland\","
                               "\"business_hours_end\":12}");
    struct cal_slots s = {0};
    cal_free_slots(&h, ms("2030-03-03T00:00:00Z"), ms("2030-03-04T00:00:00Z"),
                   0, NULL, 0, &s);
    cr_assert_eq(s.n, 3, "%zu slots", s.n);
    cr_expect_str_eq(at(&s, 0), "2030-03-03T20:00:00Z");
    cr_expect_str_eq(at(&s, 2), "2030-03-03T22:00:00Z");
    cal_slots_release(&s);
}

Test(cal_free, local_hours_follow_the_spring_dst_change)
{
    /* New York moves from UTC-5 to UTC-4 on Sunday 10 March 2030. */
    struct cal_hours h = hours("{\"timezone\":\"America/New_York\","
                               "\"business_days\":[0,1,2,3,4,5,6],"
                               "\"business_hours_end\":10}");
    struct cal_slots s = {0};
    cal_free_slots(&h, ms("2030-03-09T00:00:00Z"), ms("2030-03-12T00:00:00Z"),
                   0, NULL, 0, &s);
    cr_assert_eq(s.n, 3);
    cr_expect_str_eq(at(&s, 0), "2030-03-09T14:00:00Z"); /* 09:00 EST */
    cr_expect_str_eq(at(&s, 1), "2030-03-10T13:00:00Z"); /* 09:00 EDT */
    cr_expect_str_eq(at(&s, 2), "2030-03-11T13:00:00Z");
    cal_slots_release(&s);
}

Test(cal_free, a_day_that_loses_an_hour_has_23_hourly_slots)
{
    struct cal_hours h = hours("{\"timezone\":\"America/New_York\","
                               "\"business_days\":[\"sun\"],"
                               "\"business_hours_start\":0,"
                               "\"business_hours_end\":24}");
    struct cal_slots s = {0};
    /* Local midnight to midnight of Sunday 10 March 2030. */
    cal_free_slots(&h, ms("2030-03-10T05:00:00Z"), ms("2030-03-11T04:00:00Z"),
                   0, NULL, 0, &s);
    cr_assert_eq(s.n, 23, "%zu slots", s.n);
    cr_expect_str_eq(at(&s, 0), "2030-03-10T05:00:00Z"); /* 00:00 EST */
    cr_expect_str_eq(at(&s, 1), "2030-03-10T06:00:00Z"); /* 01:00 EST */
    cr_expect_str_eq(at(&s, 2), "2030-03-10T07:00:00Z"); /* 03:00 EDT */
    char local[40];
    for (size_t i = 0; i < s.n; i++) {
        cr_assert(when_local_rfc3339("America/New_York", s.v[i].start_ms,
                                     local));
        cr_expect(strncmp(local + 13, ":00:00", 6) == 0, "slot %zu at %s", i,
                  local);
        cr_expect(strncmp(local + 11, "02", 2) != 0, "02:xx does not exist");
    }
    cal_slots_release(&s);
}

Test(cal_free, a_day_that_gains_an_hour_has_25_hourly_slots)
{
    struct cal_hours h = hours("{\"timezone\":\"America/New_York\","
                               "\"business_days\":[\"sun\"],"
                               "\"business_hours_start\":0,"
                               "\"business_hours_end\":24}");
    struct cal_slots s = {0};
    cal_free_slots(&h, ms("2030-11-03T04:00:00Z"), ms("2030-11-04T05:00:00Z"),
                   0, NULL, 0, &s);
    cr_assert_eq(s.n, 25, "%zu slots", s.n);
    cr_expect_str_eq(at(&s, 1), "2030-11-03T05:00:00Z"); /* 01:00 EDT */
    cr_expect_str_eq(at(&s, 2), "2030-11-03T06:00:00Z"); /* 01:00 EST */
    cr_expect_str_eq(at(&s, 24), "2030-11-04T04:00:00Z"); /* 23:00 EST */
    cal_slots_release(&s);
}

Test(cal_free, a_day_closing_at_midnight_reaches_into_the_next_date)
{
    /* Friday 20:00-24:00 in UTC, asked from Saturday 00:00: nothing of
     * Friday is left; asked from Friday 22:30: 23:00 only. */
    struct cal_hours h = hours("{\"business_hours_start\":20,"
                               "\"business_hours_end\":24}");
    struct cal_slots s = {0};
    cal_free_slots(&h, ms("2030-03-09T00:00:00Z"), ms("2030-03-10T00:00:00Z"),
                   0, NULL, 0, &s);
    cr_expect_eq(s.n, 0);
    cal_free_slots(&h, ms("2030-03-08T22:30:00Z"), ms("2030-03-09T06:00:00Z"),
                   0, NULL, 0, &s);
    cr_assert_eq(s.n, 1);
    cr_expect_str_eq(at(&s, 0), "2030-03-08T23:00:00Z");
    cr_expect_eq(s.v[0].end_ms, ms("2030-03-09T00:00:00Z"));
    cr_expect(cal_slot_ok(&h, ms("2030-03-08T23:00:00Z"),
                          ms("2030-03-09T00:00:00Z"), 0, INT64_MAX, 0));
    cr_expect_not(cal_slot_ok(&h, ms("2030-03-08T23:30:00Z"),
                              ms("2030-03-09T00:30:00Z"), 0, INT64_MAX, 0));
    cal_slots_release(&s);
}

Test(cal_free, overlapping_busy_intervals_remove_every_slot_they_touch)
{
    struct cal_hours h = hours("{}");
    struct cal_slot busy[] = {
        {ms("2030-03-04T11:00:00Z"), ms("2030-03-04T12:00:00Z")},
        {ms("2030-03-04T10:30:00Z"), ms("2030-03-04T11:15:00Z")},
        /* touches 13:00-14:00 at both ends only */
        {ms("2030-03-04T12:00:00Z"), ms("2030-03-04T13:00:00Z")},
        /* from before the window into the first slot */
        {ms("2030-03-03T20:00:00Z"), ms("2030-03-04T09:01:00Z")},
        /* a busy interval on another day changes nothing here */
        {ms("2030-03-05T09:00:00Z"), ms("2030-03-05T17:00:00Z")},
    };
    struct cal_slots s = {0};
    cal_free_slots(&h, ms("2030-03-04T00:00:00Z"), ms("2030-03-05T00:00:00Z"),
                   0, busy, CS_ARRAY_LEN(busy), &s);
    /* 9 (busy until 09:01), 10 and 11 (10:30-12:00), 12 (12-13) gone. */
    cr_assert_eq(s.n, 4, "%zu slots", s.n);
    cr_expect_str_eq(at(&s, 0), "2030-03-04T13:00:00Z");
    cr_expect_str_eq(at(&s, 3), "2030-03-04T16:00:00Z");
    cal_slots_release(&s);
}

Test(cal_free, a_window_inside_a_slot_starts_at_the_next_whole_one)
{
    struct cal_hours h = hours("{\"slot_duration_minutes\":30}");
    struct cal_slots s = {0};
    cal_free_slots(&h, ms("2030-03-04T09:20:00Z"), ms("2030-03-04T11:10:00Z"),
                   0, NULL, 0, &s);
    /* 09:30, 10:00, 10:30; 11:00-11:30 ends after the window. */
    cr_assert_eq(s.n, 3, "%zu slots", s.n);
    cr_expect_str_eq(at(&s, 0), "2030-03-04T09:30:00Z");
    cr_expect_str_eq(at(&s, 2), "2030-03-04T10:30:00Z");
    cal_slots_release(&s);
    /* 45-minute slots keep the grid from the opening: 9:00, 9:45, ... */
    h = hours("{\"slot_duration_minutes\":45,\"business_hours_end\":12}");
    cal_free_slots(&h, ms("2030-03-04T09:10:00Z"), ms("2030-03-04T12:00:00Z"),
                   0, NULL, 0, &s);
    cr_assert_eq(s.n, 3, "%zu slots", s.n);
    cr_expect_str_eq(at(&s, 0), "2030-03-04T09:45:00Z");
    cr_expect_str_eq(at(&s, 1), "2030-03-04T10:30:00Z");
    cr_expect_str_eq(at(&s, 2), "2030-03-04T11:15:00Z");
    cal_slots_release(&s);
}

Test(cal_free, the_notice_moves_the_first_slot_later)
{
    struct cal_hours h = hours("{\"min_notice_minutes\":60}");
    struct cal_slots s = {0};
    cal_free_slots(&h, ms("2030-03-04T00:00:00Z"), ms("2030-03-04T13:00:00Z"),
                   ms("2030-03-04T09:05:00Z"), NULL, 0, &s);
    /* now 09:05 + 60 min: 11:00 is the first grid slot after 10:05. */
    cr_assert_eq(s.n, 2, "%zu slots", s.n);
    cr_expect_str_eq(at(&s, 0), "2030-03-04T11:00:00Z");
    cal_slots_release(&s);
}

Test(cal_free, a_slot_longer_than_the_day_or_an_empty_window_gives_none)
{
    struct cal_hours h = hours("{\"slot_duration_minutes\":600}");
    struct cal_slots s = {0};
    cal_free_slots(&h, ms("2030-03-04T00:00:00Z"), ms("2030-03-08T00:00:00Z"),
                   0, NULL, 0, &s);
    cr_expect_eq(s.n, 0);
    h = hours("{}");
    cal_free_slots(&h, ms("2030-03-04T12:00:00Z"), ms("2030-03-04T12:00:00Z"),
                   0, NULL, 0, &s);
    cr_expect_eq(s.n, 0);
    cal_slots_release(&s);
}

/* ---- Offered slots ------------------------------------------------------- */

Test(cal_offered, without_explicit_hours_only_window_and_notice_apply)
{
    struct cal_hours h = hours("{\"min_notice_minutes\":30}");
    int64_t from = ms("2030-03-09T00:00:00Z"), to = ms("2030-03-10T00:00:00Z");
    int64_t now = ms("2030-03-09T07:45:00Z");
    /* A Saturday at 08:00: outside the default days, still offered. */
    cr_expect(cal_slot_ok(&h, ms("2030-03-09T08:30:00Z"),
                          ms("2030-03-09T09:00:00Z"), from, to, now));
    cr_expect_not(cal_slot_ok(&h, ms("2030-03-09T08:00:00Z"),
                              ms("2030-03-09T08:30:00Z"), from, to, now));
    cr_expect_not(cal_slot_ok(&h, ms("2030-03-09T23:45:00Z"),
                              ms("2030-03-10T00:15:00Z"), from, to, now));
}

Test(cal_offered, explicit_hours_filter_by_the_local_day)
{
    struct cal_hours h = hours("{\"timezone\":\"America/Chicago\","
                               "\"business_hours_start\":9,"
                               "\"business_hours_end\":17}");
    int64_t from = ms("2030-03-01T00:00:00Z"), to = ms("2030-03-31T00:00:00Z");
    /* Friday 15 March, 14:00-15:00 CDT = 19:00-20:00 UTC. */
    cr_expect(cal_slot_ok(&h, ms("2030-03-15T19:00:00Z"),
                          ms("2030-03-15T20:00:00Z"), from, to, 0));
    /* 16:30-17:30 local runs past closing. */
    cr_expect_not(cal_slot_ok(&h, ms("2030-03-15T21:30:00Z"),
                              ms("2030-03-15T22:30:00Z"), from, to, 0));
    /* 08:00 local is before opening though 13:00 UTC. */
    cr_expect_not(cal_slot_ok(&h, ms("2030-03-15T13:00:00Z"),
                              ms("2030-03-15T14:00:00Z"), from, to, 0));
    /* Saturday 16 March 10:00 local. */
    cr_expect_not(cal_slot_ok(&h, ms("2030-03-16T15:00:00Z"),
                              ms("2030-03-16T16:00:00Z"), from, to, 0));
}

Test(cal_offered, sort_unique_orders_and_drops_repeats)
{
    struct cal_slots s = {0};
    cal_slots_add(&s, 300, 400);
    cal_slots_add(&s, 100, 200);
    cal_slots_add(&s, 300, 400);
    cal_slots_add(&s, 200, 300);
    cal_slots_sort_unique(&s);
    cr_assert_eq(s.n, 3);
    cr_expect_eq(s.v[0].start_ms, 100);
    cr_expect_eq(s.v[1].start_ms, 200);
    cr_expect_eq(s.v[2].start_ms, 300);
    cal_slots_release(&s);
}

/* ---- Windows ------------------------------------------------------------- */

Test(cal_query, window_checks)
{
    int64_t now = ms("2030-03-04T12:00:00Z"), f = 0, t = 0;
    struct cs_err err = {0};
    struct cal_query q = {ms("2030-03-04T08:00:00Z"),
                          ms("2030-03-05T08:00:00Z")};
    cr_assert_eq(cal_query_check(&q, now, &f, &t, &err), 0);
    cr_expect_eq(f, now, "a past start moves up to now");
    cr_expect_eq(t, q.to_ms);
    q.to_ms = q.from_ms;
    cr_expect_eq(cal_query_check(&q, now, &f, &t, &err), CS_EINVAL);
    q.to_ms = q.from_ms + CAL_WINDOW_MAX_MS + 1;
    cr_expect_eq(cal_query_check(&q, now, &f, &t, &err), CS_EINVAL);
    cr_expect(strstr(err.msg, "31 days"));
    q.from_ms = ms("2030-03-01T00:00:00Z");
    q.to_ms = ms("2030-03-02T00:00:00Z");
    cr_expect_eq(cal_query_check(&q, now, &f, &t, &err), CS_EINVAL);
    cr_expect(strstr(err.msg, "past"));
}

/* ---- Bookings and keys --------------------------------------------------- */

Test(cal_booking, from_a_call_with_an_appointment)
{
    json_t *job = json_pack(
        "{s:s,s:{s:s,s:s,s:{s:s,s:s,s:s},s:{s:s,s:s,s:s,s:i,s:s}}}",
        "job_id", "0123456789abcdef0123456789abcdef", "call", "call_id",
        "call_1", "summary", "Wants a roof inspection.", "customer", "name",
        "Marcus Bell", "email", "marcus@example.org", "phone",
        "+13125550187", "appointment", "date", "2030-03-15", "time", "14:00",
        "timezone", "America/Chicago", "duration_min", 90, "service_type",
        "roof_inspection");
    json_t *config = json_object();
    struct prov_ctx ctx = {.job = job, .call = json_object_get(job, "call"),
                           .config = config};
    struct cal_booking b;
    struct cs_err err = {0};
    cr_assert_eq(cal_booking_from_call(&ctx, &b, &err), 0, "%s", err.msg);
    cr_expect_eq(b.start_ms, ms("2030-03-15T19:00:00Z"));
    cr_expect_eq(b.end_ms, ms("2030-03-15T20:30:00Z"));
    cr_expect_str_eq(b.tz, "America/Chicago");
    cr_expect_str_eq(b.title, "roof_inspection - Marcus Bell");
    cr_expect_str_eq(b.key, "0123456789abcdef0123456789abcdef");
    cr_expect_str_eq(b.email, "marcus@example.org");
    cr_expect(strstr(b.description, "Call summary: Wants a roof"));
    cr_expect(strstr(b.description,
                     "Sync reference: callsync:0123456789abcdef0123456789ab"
                     "cdef"));
    cal_booking_release(&b);

    /* No appointment time: a mapping error, nothing allocated. */
    json_object_del(json_object_get(json_object_get(job, "call"),
                                    "appointment"),
                    "time");
    cr_expect_eq(cal_booking_from_call(&ctx, &b, &err), CS_EINVAL);
    cr_expect_str_eq(err.field, "call.appointment");
    cr_expect_null(b.title);
    json_decref(job);
    json_decref(config);
}

Test(cal_key, base32hex_follows_rfc_4648_in_lower_case)
{
    static const char *const v[][2] = {
        {"", ""},           {"f", "co"},         {"fo", "cpng"},
        {"foo", "cpnmu"},   {"foob", "cpnmuog"}, {"fooba", "cpnmuoj1"},
        {"foobar", "cpnmuoj1e8"},
    };
    for (size_t i = 0; i < CS_ARRAY_LEN(v); i++) {
        char *e = cal_base32hex(v[i][0]);
        cr_expect_str_eq(e, v[i][1], "'%s'", v[i][0]);
        free(e);
    }
    /* A job id gives a valid Google event id: 5-1024 of a-v, 0-9. */
    char *id = cal_base32hex("0123456789abcdef0123456789abcdef");
    cr_expect_eq(strlen(id), 52);
    cr_expect_eq(strspn(id, "0123456789abcdefghijklmnopqrstuv"), 52);
    free(id);
}

Test(cal_key, until_midnight_uses_the_zone)
{
    /* 22:00 in Los Angeles (PDT, UTC-7) is 05:00 UTC: two hours left. */
    cr_expect_eq(cal_until_midnight("America/Los_Angeles",
                                    ms("2030-06-01T05:00:00Z")),
                 2 * 3600000);
    cr_expect_eq(cal_until_midnight("UTC", ms("2030-06-01T23:59:30Z")),
                 60000, "never less than a minute");
}

Test(cal_registry, the_four_calendar_providers)
{
    static const char *const names[] = {"google_calendar", "cal_com",
                                        "calendly", "outlook"};
    for (size_t i = 0; i < CS_ARRAY_LEN(names); i++) {
        const struct cal_ops *c = cal_find(names[i]);
        cr_assert(c, "%s", names[i]);
        cr_expect(c->avail_build && c->avail_parse && c->book_build &&
                  c->book_parse);
        const struct prov_ops *p = prov_find(names[i]);
        cr_assert(p, "%s registered", names[i]);
        cr_expect_str_eq(p->steps[0].name, "appointment");
        cr_expect_gt(p->rate.requests, 0);
    }
    cr_expect_null(cal_find("hubspot"));
}
