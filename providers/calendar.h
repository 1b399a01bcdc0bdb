/*
 * calendar.h - what the calendar providers (Google Calendar, Cal.com,
 * Calendly, Outlook through Microsoft Graph) share, and the two pure
 * functions each of them offers to the live-call tools besides its
 * post-call "appointment" step:
 *
 *   availability  the request(s) that ask the provider for free/busy
 *                 times or bookable slots in a window, and the reading of
 *                 the answers into a list of free slots that respects the
 *                 connection's business hours, slot length and time zone;
 *   booking       the request(s) that book one slot, the same ones the
 *                 post-call step sends, carrying our own key where the
 *                 API takes one.
 *
 * Both follow the step protocol of prov.h: build a request, parse its
 * answer into a prov_result (PROV_NEXT: build again, with the state kept
 * in ctx->scratch, which starts as {}). No I/O happens here.
 *
 * The booking key is the job id. A job id is cs_job_id(call_id,
 * connection_id), so a tool that books during the call can compute the
 * same key the post-call step will use, and the two write one event:
 * Google Calendar takes it as the event id (base32hex), Outlook as the
 * event's transactionId, Cal.com finds it in the booking's metadata;
 * Calendly has no place for it and is looked up by invitee and start.
 *
 * Business hours come from the connection's config (seeds 001 and 002):
 *
 *   timezone               IANA zone of the business (default UTC)
 *   business_hours_start   hour (9) or "HH:MM" ("08:30"); default 9
 *   business_hours_end     hour (17) or "HH:MM"; 24 or "24:00" is
 *                          midnight; default 17
 *   business_days          list of weekdays, 0-6 (0 Sunday) or names
 *                          ("mon", "Tuesday", ...); default Monday-Friday
 *   slot_duration_minutes  slot length, 5-1440; default 60
 *   min_notice_minutes     no slot starts sooner than this after now;
 *                          default 0
 *
 * Slots lie on a grid that starts at the business day's opening and
 * steps by the slot length in elapsed time, so a DST change inside the
 * business day shortens or lengthens that day by the change, and the
 * slots after it stay on the same local minutes. A window that starts
 * inside a slot begins with the next whole one. For the providers that
 * answer with their own bookable slots (Cal.com, Calendly) the event
 * type's availability already applies; business hours filter those slots
 * only when the config sets business_hours_start or business_hours_end.
 */
#ifndef CS_CALENDAR_H
#define CS_CALENDAR_H

#include "prov.h"
#include "when.h"

/* The longest availability window one query may ask for. */
#define CAL_WINDOW_MAX_MS (31LL * 86400000)

struct cal_hours {
    int open_min;              /* minutes after local midnight */
    int close_min;             /* 1..1440, after open_min */
    unsigned days;             /* bit d: weekday d (0 Sunday) is open */
    int slot_min;
    int notice_min;
    bool explicit_hours;       /* the config set the opening or closing */
    char tz[72];
};

/* The connection's business hours into *h. Returns 0, or CS_EINVAL with
 * err naming the config key ("config_error: ..."). */
CS_MUST_CHECK int cal_hours_from_config(const json_t *config,
                                        struct cal_hours *h,
                                        struct cs_err *err);

struct cal_slot {
    int64_t start_ms;
    int64_t end_ms;
};

/* A growable list of slots (or busy intervals). */
struct cal_slots {
    struct cal_slot *v;
    size_t n, cap;
};

void cal_slots_add(struct cal_slots *s, int64_t start_ms, int64_t end_ms);
void cal_slots_release(struct cal_slots *s);

/*
 * The free slots of [from_ms, to_ms) given busy intervals (any order,
 * overlapping or not): every grid slot of an open business day that lies
 * inside the window, starts no sooner than now_ms plus the notice, and
 * overlaps no busy interval (touching is not overlapping). Appended to
 * out in time order.
 */
void cal_free_slots(const struct cal_hours *h, int64_t from_ms,
                    int64_t to_ms, int64_t now_ms,
                    const struct cal_slot *busy, size_t nbusy,
                    struct cal_slots *out);

/*
 * Whether a slot a provider offered may be offered to the caller: inside
 * the window, not sooner than now plus the notice, and, when the hours
 * are explicit, within the opening hours of an open day (its local day).
 */
bool cal_slot_ok(const struct cal_hours *h, int64_t start_ms,
                 int64_t end_ms, int64_t from_ms, int64_t to_ms,
                 int64_t now_ms);

/* Sort by start and drop repeated starts. */
void cal_slots_sort_unique(struct cal_slots *s);

/* An availability question: the window, ms since the epoch. */
struct cal_query {
    int64_t from_ms;
    int64_t to_ms;
};

/* A booking: one slot for one person. Strings are owned. */
struct cal_booking {
    int64_t start_ms;
    int64_t end_ms;
    char tz[72];               /* the attendee's zone */
    char *title;
    char *description;         /* ends with the job marker */
    char *name;                /* may be NULL */
    char *email;               /* may be NULL */
    char *phone;               /* E.164, may be NULL */
    char *key;                 /* our id: the job id */
};

/*
 * The booking a call asks for: its appointment (when.h: date, time, zone,
 * duration), the customer, a title ("<title or service> - <name>") and a
 * description with the summary and the job marker; key = job_id.
 * Returns 0, or CS_EINVAL with err filled (a mapping error).
 */
CS_MUST_CHECK int cal_booking_from_call(const struct prov_ctx *ctx,
                                        struct cal_booking *b,
                                        struct cs_err *err);
void cal_booking_release(struct cal_booking *b);

/* The two pure functions of one calendar provider. */
struct cal_ops {
    const char *name;               /* integration type */
    /* Build the next availability request for q (ctx->scratch carries
     * the state). Returns 0 or CS_EINVAL (err filled: the window or the
     * config is wrong). */
    int (*avail_build)(struct prov_ctx *ctx, const struct cal_query *q,
                       struct prov_request *rq, struct cs_err *err);
    /* Read its answer. PROV_DONE fills out (appended, time order). */
    void (*avail_parse)(struct prov_ctx *ctx, const struct cal_query *q,
                        const struct prov_response *rsp,
                        struct prov_result *res, struct cal_slots *out);
    /* Build the next booking request. */
    int (*book_build)(struct prov_ctx *ctx, const struct cal_booking *b,
                      struct prov_request *rq, struct cs_err *err);
    /* Read its answer; PROV_DONE: res->value is the booking's ids. */
    void (*book_parse)(struct prov_ctx *ctx, const struct cal_booking *b,
                       const struct prov_response *rsp,
                       struct prov_result *res);
};

extern const struct cal_ops cal_google_calendar;
extern const struct cal_ops cal_cal_com;
extern const struct cal_ops cal_calendly;
extern const struct cal_ops cal_outlook;

/* The calendar functions of an integration type, or NULL. */
const struct cal_ops *cal_find(const char *name);

/*
 * The query's window checked and clamped for an availability request:
 * from moves up to now (a window wholly past is an error), and the window
 * may not exceed CAL_WINDOW_MAX_MS. Returns 0 or CS_EINVAL.
 */
CS_MUST_CHECK int cal_query_check(const struct cal_query *q, int64_t now_ms,
                                  int64_t *from_ms, int64_t *to_ms,
                                  struct cs_err *err);

/* ---- helpers for the provider modules ---------------------------------- */

/* The post-call step's build and parse: the call's booking
 * (cal_booking_from_call) through ops->book_build / book_parse. */
CS_MUST_CHECK int cal_step_build(const struct cal_ops *ops,
                                 struct prov_ctx *ctx,
                                 struct prov_request *rq,
                                 struct cs_err *err);
void cal_step_parse(const struct cal_ops *ops, struct prov_ctx *ctx,
                    const struct prov_response *rsp,
                    struct prov_result *res);
/* The step's phase in ctx->scratch ("" at first), and setting it. */
const char *cal_phase(const struct prov_ctx *ctx);
void cal_next(struct prov_ctx *ctx, struct prov_result *res,
              const char *phase);
/* A non-negative integer header, or -1. */
long long cal_header_int(const struct prov_response *rsp, const char *name);

/* The bearer token of the connection (access token, else API key). */
const char *cal_token(const struct prov_ctx *ctx);
/*
 * Start rq: method, base (ctx->base_url or dflt, trailing '/' dropped)
 * + path, "Authorization: Bearer" and "Accept: application/json". Fails
 * with "no_credentials: ..." when the connection has no token.
 */
CS_MUST_CHECK int cal_begin(const struct prov_ctx *ctx,
                            struct prov_request *rq, const char *method,
                            const char *dflt_base, const char *path,
                            struct cs_err *err);
/* The answer's body as JSON, or NULL. */
json_t *cal_body(const struct prov_response *rsp);
void cal_fail(struct prov_result *res, enum prov_outcome o, const char *code,
              const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void cal_done(struct prov_result *res, json_t *value);
/* A 2xx whose body cannot be read: retried, the retry finds the write. */
void cal_bad_body(const struct prov_response *rsp, struct prov_result *res);
/* "&name=value" (or "?" first) with the value percent-encoded. */
void cal_query_add(char **url, const char *name, const char *value);
/* The base32hex text (RFC 4648, lower case, no padding) of s; xmalloc'd. */
char *cal_base32hex(const char *s);
/* ms as "2026-02-20T20:00:00Z". */
void cal_utc(int64_t ms, char out[32]);
/* ms until the next midnight of tz after now_ms (at least one minute). */
int64_t cal_until_midnight(const char *tz, int64_t now_ms);

#endif
