/*
 * norm.h - turning each source's webhook into callsync's call document
 * (DESIGN.md, "Data model"), and the job model built on it.
 *
 * Normalisers take the raw body (already signature-checked), validate it,
 * and fill a struct cs_event. A bad body returns CS_EINVAL with err->field
 * naming the offending field (dotted path from the body's root, e.g.
 * "call.start_timestamp") and err->msg saying what is wrong with it.
 * Events that are valid but need no sync (call_started, an unsubscribed
 * Stripe event type, ...) return 0 with ev->syncable false and
 * ev->ignore_reason set.
 */
#ifndef CS_NORM_H
#define CS_NORM_H

#include "cs.h"

#include <jansson.h>

struct cs_norm_opts {
    const char *default_country_code; /* "1": national numbers get +1 */
};

struct cs_event {
    const char *source;        /* "retell", "callrail", "calcom", "stripe",
                                  "standard" (static strings) */
    char *event_type;          /* the source's own event name */
    char *event_id;            /* de-dup id, unique within the source */
    char *agent_ref;           /* the source's agent key (Retell agent_id,
                                  CallRail company_resource_id, our agent
                                  UUID for Standard Webhooks); NULL when the
                                  route names a connection (calcom, stripe) */
    bool syncable;             /* false: acknowledge, make no jobs */
    const char *ignore_reason; /* static string when !syncable */
    json_t *call;              /* the normalised call (owned), or NULL */
};

void cs_event_release(struct cs_event *ev);

/*
 * Retell: {"event"|"event_type": ..., "call": {...}}. call_ended and
 * call_analyzed are syncable (the agent's config picks which one makes
 * jobs); every other event is not. event_id = "<call_id>:<event>".
 */
CS_MUST_CHECK int cs_norm_retell(const char *body, size_t n,
                                 const struct cs_norm_opts *o,
                                 struct cs_event *ev, struct cs_err *err);
/* CallRail post-call webhook. event_id = "<resource_id>:post_call". */
CS_MUST_CHECK int cs_norm_callrail(const char *body, size_t n,
                                   const struct cs_norm_opts *o,
                                   struct cs_event *ev, struct cs_err *err);
/* Cal.com {"triggerEvent","createdAt","payload":{...}}: BOOKING_CREATED,
 * BOOKING_RESCHEDULED and BOOKING_CANCELLED are syncable. */
CS_MUST_CHECK int cs_norm_calcom(const char *body, size_t n,
                                 const struct cs_norm_opts *o,
                                 struct cs_event *ev, struct cs_err *err);
/* Stripe event object: checkout.session.completed, payment_intent.succeeded,
 * invoice.paid and invoice.payment_failed are syncable. event_id = evt id. */
CS_MUST_CHECK int cs_norm_stripe(const char *body, size_t n,
                                 const struct cs_norm_opts *o,
                                 struct cs_event *ev, struct cs_err *err);
/* Standard Webhooks {"type","timestamp","data":{call document}}: types
 * "call.ended", "call.analyzed", "call.completed" are syncable.
 * event_id = the webhook-id header value. */
CS_MUST_CHECK int cs_norm_standard(const char *webhook_id, const char *body,
                                   size_t n, const struct cs_norm_opts *o,
                                   struct cs_event *ev, struct cs_err *err);

/*
 * Outbound-call request from a CRM (seed 002):
 * {"phone": E.164 (required), "contact_name"?, "contact_data"?: {...},
 *  "metadata"?: {...}}. Returns the validated request (owned) or NULL with
 * *err filled.
 */
json_t *cs_norm_outbound(const char *body, size_t n,
                         const struct cs_norm_opts *o, struct cs_err *err);

/*
 * Normalise a phone number to E.164 into out[17]: strips spaces, dots,
 * dashes and parentheses; "00" becomes "+"; a national number gets the
 * default country code. Returns false if it cannot be E.164.
 */
bool cs_phone_e164(const char *in, const char *country_code, char out[17]);
/* Strict: "+" then 8 to 15 digits, first digit not 0. */
bool cs_phone_is_e164(const char *s);

/* Deterministic job id: hex of the first 16 bytes of
 * SHA-256(call_id "\n" connection_id), into out[33]. */
void cs_job_id(const char *call_id, const char *connection_id, char out[33]);
/* Shard of an agent: FNV-1a 32 of the agent id, mod nshards. */
unsigned cs_shard_of(const char *agent_id, unsigned nshards);

/*
 * Seed 002's sync conditions, from a connection's config.sync_conditions:
 * {"call_outcome": [...], "min_duration_seconds": N}. NULL or {} matches
 * everything. On no match, *why (if given) names the failed condition.
 */
bool cs_sync_conditions_match(const json_t *conditions, const json_t *call,
                              const char **why);

#endif
