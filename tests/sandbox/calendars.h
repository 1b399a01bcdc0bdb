/*
 * calendars.h - what the sandbox's calendar providers share (internal to
 * calendars.c, google_calendar.c, cal_com.c, calendly.c, outlook.c):
 * their state, bearer-token checks, a sliding-window request counter and
 * small helpers. The sandbox's public entry points are in sandbox.h.
 */
#ifndef CS_SB_CALENDARS_H
#define CS_SB_CALENDARS_H

#include "sandbox.h"

enum sb_cal_which { SBC_GOOGLE, SBC_CALCOM, SBC_CALENDLY, SBC_OUTLOOK,
                    SBC_COUNT };

/* Accepted request times in a sliding window (a ring). */
struct sbc_window {
    int64_t *t;
    size_t cap, head, len;
};

struct sb_cal {
    /* configuration, kept by a reset */
    const char *tokens[SBC_COUNT][SB_MAX_TOKENS];
    size_t ntokens[SBC_COUNT];
    int rate[SBC_COUNT];            /* accepted requests per window */
    /* state */
    struct sbc_window win[SBC_COUNT];
    json_t *gcal_events;            /* Google events, every calendar */
    json_t *calcom_bookings;
    json_t *calendly_events;        /* scheduled events */
    json_t *calendly_invitees;
    json_t *outlook_events;
    long long next_id;
};

/* The window of each provider's limit, ms. */
int64_t sbc_window_ms(enum sb_cal_which w);
/* Count this request if the window has room (true), else refuse. */
bool sbc_rate_take(struct sb *s, enum sb_cal_which w);
/* Requests left in the window, and ms until the oldest leaves it. */
long sbc_rate_left(struct sb *s, enum sb_cal_which w);
int64_t sbc_rate_reset_ms(struct sb *s, enum sb_cal_which w);
/* "Authorization: Bearer <token>", a token given on the command line
 * when any was given for this provider. */
bool sbc_authorised(struct sb *s, enum sb_cal_which w,
                    const struct sb_req *rq);
/* A fresh id number. */
long long sbc_next_id(struct sb *s);
/* ms as "2030-03-04T09:00:00Z" or with ".000Z" (frac). */
void sbc_time(int64_t ms, bool frac, char out[32]);
/* A query parameter parsed as RFC 3339 (or a date "YYYY-MM-DD" when
 * date_ok, as its midnight UTC, or its end of day with end_of_day). */
bool sbc_query_time(const struct sb_req *rq, const char *name, bool date_ok,
                    bool end_of_day, int64_t *out);

void gcal_sb_handle(struct sb *s, const struct sb_req *rq,
                    struct sb_resp *out);
void calcom_sb_handle(struct sb *s, const struct sb_req *rq,
                      struct sb_resp *out);
void calendly_sb_handle(struct sb *s, const struct sb_req *rq,
                        struct sb_resp *out);
void outlook_sb_handle(struct sb *s, const struct sb_req *rq,
                       struct sb_resp *out);
json_t *gcal_sb_error(int status, const char *reason, const char *message);
json_t *calcom_sb_error(const struct sb_req *rq, int status,
                        const char *code, const char *message);
json_t *calendly_sb_error(int status, const char *title,
                          const char *message);
json_t *outlook_sb_error(int status, const char *code, const char *message);
void calcom_sb_rate_headers(struct sb *s, struct sb_resp *out);
void calendly_sb_rate_headers(struct sb *s, struct sb_resp *out);

#endif
