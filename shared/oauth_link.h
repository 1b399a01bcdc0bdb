/*
 * oauth_link.h - the signatures that keep the OAuth connection flow
 * (callsync-connect) to the agent an operator meant:
 *
 *   authorize link  <public>/oauth/<provider>/authorize?agent=<uuid>
 *                   [&connection=<uuid>][&return=<url>][&scope=...]
 *                   [&login_url=...][&dc=...][&tenant=...]&exp=<unix s>
 *                   &sig=<hex HMAC-SHA256(key, "authorize\n" provider
 *                   "\n" everything before "&sig=")>
 *                   sig is the last parameter; made by callsyncctl
 *                   connections authorize-url.
 *   state           <id>.<hex HMAC-SHA256(key, "state\n" id)>: the state
 *                   sent to the provider; id names the Redis record
 *                   cs:oauth:state:{<id>}.
 *
 * The key is CALLSYNC_CONNECT_STATE_KEY (at least 32 characters).
 */
#ifndef CS_OAUTH_LINK_H
#define CS_OAUTH_LINK_H

#include "cs.h"

#define OAUTH_LINK_MIN_KEY 32
#define OAUTH_STATE_PREFIX "cs:oauth:state:"
#define OAUTH_STATE_USED_PREFIX "cs:oauth:used:"

/* The key is long enough; else CS_EINVAL with err filled. */
CS_MUST_CHECK int oauth_link_check_key(const char *key, struct cs_err *err);

/*
 * A signed authorize link (xmalloc'd): public_url + /oauth/<provider>/
 * authorize?agent=..., optional parameters given as NULL-terminated
 * name/value pairs in extra (NULL values skipped), exp and sig.
 */
char *oauth_link_make(const char *key, const char *public_url,
                      const char *provider, const char *agent,
                      const char *const *extra, int64_t exp_s);

/*
 * Check the signature of a query string received on /oauth/<provider>/
 * authorize: "sig" must be its last parameter and match. Expiry is the
 * caller's (after parsing exp).
 */
bool oauth_link_verify(const char *key, const char *provider,
                       const char *query);

/* A fresh state: id (32 hex characters) into id[33] and the signed state
 * into state[100]. 0 or -CS_EIO. */
CS_MUST_CHECK int oauth_state_new(const char *key, char id[33],
                                  char state[100]);
/* The id of a signed state into id[33] when the signature holds. */
bool oauth_state_verify(const char *key, const char *state, char id[33]);

#endif
