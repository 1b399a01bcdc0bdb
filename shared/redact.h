/*
 * redact.h - take secrets out of text and JSON before it is stored or
 * shown: what the worker records of a failed request, and what
 * callsyncctl prints of dead letters and traces.
 *
 * Three rules, applied together:
 *   - a JSON member or a "name=value" / "name: value" pair whose name
 *     looks secret (authorization, token, secret, password, api_key,
 *     apikey, hapikey, signature, cookie, credential, private_key) keeps
 *     its name and loses its value;
 *   - credentials of known shapes lose their body wherever they appear:
 *     "Bearer <x>", "Basic <x>", HubSpot private-app tokens (pat-...),
 *     Stripe keys (sk_live_, sk_test_, rk_live_, rk_test_), webhook
 *     secrets (whsec_);
 *   - any of a caller's list of known secrets (a connection's opened
 *     tokens) is replaced wherever it appears.
 * The replacement is always REDACT_MARK.
 */
#ifndef CS_REDACT_H
#define CS_REDACT_H

#include "cs.h"

#include <jansson.h>

#define REDACT_MARK "[redacted]"

/* Known secrets to remove as well; NULL-terminated, may be NULL. */
struct redact_ctx {
    const char *const *known;
};

/* Whether a field, header or parameter name looks like it holds a
 * secret ("Authorization", "api_key", "X-Api-Key", "refresh_token"). */
bool redact_is_secret_name(const char *name, size_t len);

/* A redacted copy of s (xmalloc'd). ctx may be NULL. */
char *redact_text(const struct redact_ctx *ctx, const char *s);

/* Redact v in place: secret-named members, and every string by
 * redact_text. ctx may be NULL. */
void redact_json(const struct redact_ctx *ctx, json_t *v);

#endif
