/*
 * sig.h - inbound webhook signature schemes, each exactly as its sender's
 * official SDK verifies it (see shared/providers.md, table 0.1). Every
 * function works on the raw body bytes, compares in constant time, and
 * returns 0 when the signature is valid, else:
 *   CS_ENOENT  the signature header is missing or empty
 *   CS_EINVAL  the header is malformed
 *   CS_ESTALE  the signed timestamp is outside the tolerance
 *   CS_EAUTH   no signature matches
 * `now_s` / `now_ms` are passed in so tests can pin the clock.
 */
#ifndef CS_SIG_H
#define CS_SIG_H

#include "cs.h"

/*
 * Retell: "x-retell-signature: v=<ms>,d=<hex>", d = hex HMAC-SHA256 keyed
 * with the API key over body followed by the decimal timestamp; accepted
 * when |now_ms - v| <= tolerance_ms. Tries every key (rotation, several
 * accounts).
 */
CS_MUST_CHECK int cs_sig_retell(const char *header, const void *body,
                                size_t n, const char *const *keys,
                                size_t nkeys, int64_t now_ms,
                                int64_t tolerance_ms);

/*
 * Stripe: "Stripe-Signature: t=<s>,v1=<hex>[,v1=...][,v0=...]", v1 = hex
 * HMAC-SHA256 keyed with the whole "whsec_..." secret as-is over
 * "<t>.<body>"; accepted when any v1 matches and now_s - t <= tolerance_s.
 */
CS_MUST_CHECK int cs_sig_stripe(const char *header, const void *body, size_t n,
                                const char *secret, int64_t now_s,
                                int64_t tolerance_s);

/*
 * Standard Webhooks: headers webhook-id, webhook-timestamp (s) and
 * webhook-signature (space-separated "v1,<base64>"), v1 = base64
 * HMAC-SHA256 over "<id>.<timestamp>.<body>" keyed with the base64-decoded
 * secret after an optional "whsec_" prefix; accepted when any v1 matches
 * any secret and |now_s - timestamp| <= tolerance_s (too old and too new
 * are both rejected). "v1a" (Ed25519) entries are ignored.
 */
CS_MUST_CHECK int cs_sig_standard(const char *id, const char *timestamp,
                                  const char *signatures, const void *body,
                                  size_t n, const char *const *secrets,
                                  size_t nsecrets, int64_t now_s,
                                  int64_t tolerance_s);

/*
 * Cal.com: "X-Cal-Signature-256: <hex>" = hex HMAC-SHA256 of the body keyed
 * with the webhook's secret. Cal.com signs no timestamp.
 */
CS_MUST_CHECK int cs_sig_calcom(const char *header, const void *body, size_t n,
                                const char *secret);

/*
 * CallRail: "Signature: <base64>" = base64 HMAC-SHA1 of the body keyed with
 * the company's signing token. Tries every token.
 */
CS_MUST_CHECK int cs_sig_callrail(const char *header, const void *body,
                                  size_t n, const char *const *secrets,
                                  size_t nsecrets);

/*
 * Outbound-call trigger from a CRM: either "X-Webhook-Secret: <secret>"
 * (compared in constant time) or "X-Callsync-Signature: t=<s>,v1=<hex>"
 * with v1 = hex HMAC-SHA256 over "<t>.<body>" keyed with the secret and
 * |now_s - t| <= tolerance_s. Pass NULL for a header that is absent; when
 * both are present the signature is the one checked.
 */
CS_MUST_CHECK int cs_sig_outbound(const char *secret_header,
                                  const char *signature_header,
                                  const void *body, size_t n,
                                  const char *secret, int64_t now_s,
                                  int64_t tolerance_s);

/* Short stable reason for metrics and error bodies: "missing_signature",
 * "malformed_signature", "stale_timestamp", "bad_signature". */
const char *cs_sig_reason(int rc);

#endif
