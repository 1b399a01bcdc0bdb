/*
 * dur.h - durations written as text in configuration: "250ms", "2s",
 * "20m", "1h", "48h", "7d". Used by the rate limits ("100/10s") and the
 * retry policy ("base=2s,cap=1h").
 */
#ifndef CS_DUR_H
#define CS_DUR_H

#include "cs.h"

/*
 * Parse the n bytes at s as <digits><unit>, unit one of ms, s, m, h, d, into
 * milliseconds. "0" alone (no unit) is zero. No sign, no spaces, no
 * fraction. Returns 0, or CS_EINVAL if malformed or above INT64_MAX ms.
 */
CS_MUST_CHECK int dur_parse_ms(const char *s, size_t n, int64_t *ms);

#endif
