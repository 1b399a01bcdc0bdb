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

#endif
