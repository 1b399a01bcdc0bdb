/*
 * cs.h - the few definitions every callsync module shares: error codes,
 * the caller-allocated error struct, allocation helpers that abort on
 * out-of-memory, assertions and clocks.
 */
#ifndef CS_H
#define CS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>

#define CS_MUST_CHECK __attribute__((warn_unused_result))
#define CS_UNUSED(x) ((void)(x))
#define CS_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Error codes: negative errno values where one fits, else our own. */
enum {
    CS_OK = 0,
    CS_EINVAL = -EINVAL,       /* bad input: a field is missing or wrong */
    CS_ENOMEM = -ENOMEM,
    CS_ENOENT = -ENOENT,       /* unknown agent, connection, key */
    CS_EIO = -EIO,             /* a dependency (Redis, PostgreSQL) failed */
    CS_ETIMEDOUT = -ETIMEDOUT,
    CS_ECANCELED = -ECANCELED, /* shutdown */
    CS_E2BIG = -E2BIG,         /* over a size cap */
    CS_EAUTH = -1000,          /* signature or secret did not verify */
    CS_ESTALE = -1001,         /* signature timestamp outside tolerance */
    CS_EDUP = -1002,           /* already seen */
};

/*
 * A caller-allocated error, filled by constructors and parsers (like
 * jansson's json_error_t). `field` names the offending input field when
 * there is one (dotted path, e.g. "call.call_id"), else is empty.
 */
struct cs_err {
    int code;
    char field[64];
    char msg[160];
};

/* Fill *err (may be NULL) and return code. Message: lower case, no period. */
int cs_err_set(struct cs_err *err, int code, const char *field,
               const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void cs_err_clear(struct cs_err *err);

/* Allocation that never returns NULL: logs and aborts on exhaustion. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t sz);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* printf into a fresh xmalloc'd string. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Programmer errors only; stays on in release builds and aborts. */
#define CS_ASSERT(e)                                                         \
    ((e) ? (void)0 : cs_assert_fail(#e, __FILE__, __LINE__))
void cs_assert_fail(const char *expr, const char *file, int line)
    __attribute__((noreturn));

/* Clocks. Wall clock for timestamps, monotonic for durations. */
int64_t cs_now_ms(void);
int64_t cs_mono_ms(void);
uint64_t cs_mono_ns(void);
/* Format ms since epoch as RFC 3339 UTC with milliseconds into out[32]. */
void cs_rfc3339_ms(int64_t ms, char out[32]);
/* Same, whole seconds ("2026-02-15T14:30:00Z"). */
void cs_rfc3339_s(int64_t ms, char out[32]);
/* Parse RFC 3339 (Z or +hh:mm offset, optional fraction) to ms since epoch. */
bool cs_parse_rfc3339(const char *s, int64_t *ms);

#endif
