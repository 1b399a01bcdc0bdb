/*
 * when.c - appointment times in the caller's time zone. See when.h.
 */
#define _GNU_SOURCE /* tm_gmtoff */
#include "when.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t tz_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *str_at(const json_t *o, const char *k1, const char *k2)
{
    const json_t *v = json_object_get(o, k1);
    if (k2)
        v = json_object_get(v, k2);
    const char *s = json_string_value(v);
    return s && *s ? s : NULL;
}

static bool is_utc(const char *tz)
{
    return strcmp(tz, "UTC") == 0 || strcmp(tz, "Etc/UTC") == 0;
}

bool when_tz_known(const char *tz)
{
    if (!tz || !*tz || strlen(tz) > 64 || tz[0] == '/' || strstr(tz, ".."))
        return false;
    if (is_utc(tz))
        return true;
    for (const char *p = tz; *p; p++)
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
              (*p >= '0' && *p <= '9') || *p == '/' || *p == '_' ||
              *p == '-' || *p == '+'))
            return false;
    char path[128];
    snprintf(path, sizeof(path), "/usr/share/zoneinfo/%s", tz);
    return access(path, R_OK) == 0;
}

/* Run with TZ set to tz (known) and restore it; under tz_lock. */
struct tz_swap {
    char *saved;
    bool had;
};

static void tz_enter(const char *tz, struct tz_swap *s)
{
    pthread_mutex_lock(&tz_lock);
    const char *old = getenv("TZ");
    s->had = old != NULL;
    s->saved = old ? xstrdup(old) : NULL;
    setenv("TZ", tz, 1);
    tzset();
}

static void tz_leave(struct tz_swap *s)
{
    if (s->had)
        setenv("TZ", s->saved, 1);
    else
        unsetenv("TZ");
    tzset();
    pthread_mutex_unlock(&tz_lock);
    free(s->saved);
}

/*
 * Local wall-clock time in tz to ms since the epoch. A time in a DST gap
 * is moved forward by the gap (mktime's normalisation); an ambiguous one
 * takes the offset the C library chooses for the first occurrence.
 */
static bool local_to_utc_ms(const char *tz, int y, int mo, int d, int h,
                            int mi, int64_t *out)
{
    if (is_utc(tz)) {
        struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d,
                        .tm_hour = h, .tm_min = mi};
        *out = (int64_t)timegm(&tm) * 1000;
        return true;
    }
    if (!when_tz_known(tz))
        return false;
    struct tz_swap s;
    tz_enter(tz, &s);
    struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d,
                    .tm_hour = h, .tm_min = mi, .tm_isdst = -1};
    time_t t = mktime(&tm);
    tz_leave(&s);
    if (t == (time_t)-1)
        return false;
    *out = (int64_t)t * 1000;
    return true;
}

bool when_local_rfc3339(const char *tz, int64_t ms, char out[40])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    long off = 0;
    if (!tz || is_utc(tz)) {
        gmtime_r(&t, &tm);
    } else {
        if (!when_tz_known(tz))
            return false;
        struct tz_swap s;
        tz_enter(tz, &s);
        localtime_r(&t, &tm);
        off = tm.tm_gmtoff;
        tz_leave(&s);
    }
    long a = off < 0 ? -off : off;
    char tmp[128];
    snprintf(tmp, sizeof(tmp), "%04d-%02d-%02dT%02d:%02d:%02d%c%02ld:%02ld",
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
             tm.tm_min, tm.tm_sec, off < 0 ? '-' : '+', a / 3600,
             (a % 3600) / 60);
    snprintf(out, 40, "%.39s", tmp);
    return true;
}

static bool two_digits(const char *s, int *v)
{
    if (s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9')
        return false;
    *v = (s[0] - '0') * 10 + (s[1] - '0');
    return true;
}

/* "YYYY-MM-DD" and "HH:MM" (optionally ":SS", ignored). */
static bool parse_date_time(const char *date, const char *time_s, int *y,
                            int *mo, int *d, int *h, int *mi)
{
    int c1, c2;
    if (strlen(date) != 10 || date[4] != '-' || date[7] != '-' ||
        !two_digits(date, &c1) || !two_digits(date + 2, &c2) ||
        !two_digits(date + 5, mo) || !two_digits(date + 8, d))
        return false;
    *y = c1 * 100 + c2;
    size_t tl = strlen(time_s);
    if ((tl != 5 && tl != 8) || time_s[2] != ':' ||
        !two_digits(time_s, h) || !two_digits(time_s + 3, mi))
        return false;
    return *mo >= 1 && *mo <= 12 && *d >= 1 && *d <= 31 && *h <= 23 &&
           *mi <= 59;
}

bool when_has_appointment(const json_t *call)
{
    return str_at(call, "appointment", "date") &&
           str_at(call, "appointment", "time");
}

int when_appointment(const json_t *call, const json_t *config,
                     struct when_appt *out, struct cs_err *err)
{
    memset(out, 0, sizeof(*out));
    const char *date = str_at(call, "appointment", "date");
    const char *tm = str_at(call, "appointment", "time");
    int y, mo, d, h, mi;
    if (!date || !tm || !parse_date_time(date, tm, &y, &mo, &d, &h, &mi))
        return cs_err_set(err, CS_EINVAL, "call.appointment",
                          "mapping_error: appointment date '%s' and time "
                          "'%s' must be YYYY-MM-DD and HH:MM",
                          date ? date : "", tm ? tm : "");
    const char *tz = str_at(call, "appointment", "timezone");
    if (!tz)
        tz = str_at(config, "timezone", NULL);
    if (!tz)
        tz = "UTC";
    if (strlen(tz) >= sizeof(out->tz) ||
        !local_to_utc_ms(tz, y, mo, d, h, mi, &out->start_ms))
        return cs_err_set(err, CS_EINVAL, "call.appointment.timezone",
                          "mapping_error: unknown time zone '%.64s'", tz);
    snprintf(out->tz, sizeof(out->tz), "%s", tz);
    const json_t *dm =
        json_object_get(json_object_get(call, "appointment"), "duration_min");
    int64_t mins = 60;
    long text_mins = json_is_string(dm)
                         ? strtol(json_string_value(dm), NULL, 10)
                         : 0;
    if (json_is_integer(dm) && json_integer_value(dm) > 0)
        mins = json_integer_value(dm);
    else if (text_mins > 0)
        mins = text_mins;
    out->end_ms = out->start_ms + mins * 60000;
    return 0;
}

bool when_local_to_ms(const char *tz, int y, int mo, int d, int minute,
                      int64_t *out)
{
    if (!tz || minute < 0 || minute > 1440)
        return false;
    return local_to_utc_ms(tz, y, mo, d, minute / 60, minute % 60, out);
}

bool when_local_parts(const char *tz, int64_t ms, struct when_local *out)
{
    time_t t = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
    struct tm tm;
    long off = 0;
    if (!tz || is_utc(tz)) {
        gmtime_r(&t, &tm);
    } else {
        if (!when_tz_known(tz))
            return false;
        struct tz_swap s;
        tz_enter(tz, &s);
        localtime_r(&t, &tm);
        off = tm.tm_gmtoff;
        tz_leave(&s);
    }
    out->year = tm.tm_year + 1900;
    out->month = tm.tm_mon + 1;
    out->day = tm.tm_mday;
    out->wday = tm.tm_wday;
    out->minute = tm.tm_hour * 60 + tm.tm_min;
    out->utc_offset_s = off;
    return true;
}
