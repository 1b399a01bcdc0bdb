/*
 * when.h - the time of an appointment a call booked, for the providers
 * that write one (HubSpot meetings, GoHighLevel appointments, ...).
 *
 * A call's appointment is local wall-clock time: appointment.date
 * ("YYYY-MM-DD"), appointment.time ("HH:MM", optionally ":SS", ignored)
 * and appointment.timezone (IANA), else the connection's
 * config.timezone, else UTC; appointment.duration_min (an integer or a
 * numeric string) gives the end, 60 minutes when absent.
 *
 * The C library converts between local time and UTC only through the TZ
 * environment variable, which is process-wide. These functions swap TZ
 * under one mutex and restore it before unlocking, so concurrent callers
 * are safe. Other threads reading local time meanwhile could see the
 * swapped zone; callsync's workers are single-threaded (one event loop per
 * process) and nothing else in them uses local time.
 */
#ifndef CS_WHEN_H
#define CS_WHEN_H

#include "cs.h"

#include <jansson.h>

struct when_appt {
    int64_t start_ms;          /* ms since the epoch, UTC */
    int64_t end_ms;
    char tz[72];               /* the IANA zone the time was given in */
};

/* Whether the call names an appointment date and time. */
bool when_has_appointment(const json_t *call);

/*
 * The call's appointment into *out. Returns 0, or CS_EINVAL with err
 * filled ("mapping_error: ...", field "call.appointment" or
 * "call.appointment.timezone") for a malformed date or time or an
 * unknown time zone.
 */
CS_MUST_CHECK int when_appointment(const json_t *call, const json_t *config,
                                   struct when_appt *out, struct cs_err *err);

/* Whether tz is "UTC" or a zone in the system's zoneinfo. */
bool when_tz_known(const char *tz);

/*
 * ms as local time in tz with that instant's UTC offset, whole seconds:
 * "2026-02-20T14:00:00-05:00" (UTC gives "+00:00"). Returns false for an
 * unknown zone.
 */
bool when_local_rfc3339(const char *tz, int64_t ms, char out[40]);

/*
 * Local wall-clock time in tz to ms since the epoch: the date y-mo-d and
 * minute of the day (0 to 1440; 1440 is the next midnight). A time in a
 * DST gap moves forward by the gap, as in when_appointment. Returns false
 * for an unknown zone.
 */
bool when_local_to_ms(const char *tz, int y, int mo, int d, int minute,
                      int64_t *out);

/* The local calendar date, weekday and minute of the day of an instant. */
struct when_local {
    int year, month, day;      /* month 1-12 */
    int wday;                  /* 0 Sunday ... 6 Saturday */
    int minute;                /* minutes since local midnight */
    long utc_offset_s;         /* the zone's offset at that instant */
};

/* ms as local time in tz into *out; false for an unknown zone. */
bool when_local_parts(const char *tz, int64_t ms, struct when_local *out);

#endif
