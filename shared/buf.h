/*
 * buf.h - a growable byte buffer with a hard cap (after curl's dynbuf).
 * Every buffer that grows from network input has a cap; appending past it
 * fails with -CS_E2BIG and leaves the buffer as it was.
 */
#ifndef CS_BUF_H
#define CS_BUF_H

#include "cs.h"

struct buf {
    char *data;  /* read-only: always NUL-terminated when non-NULL */
    size_t len;  /* read-only */
    size_t cap;  /* private */
    size_t max;  /* private: hard cap on len */
};

/* Initialise an empty buffer that may hold at most max bytes. */
void buf_init(struct buf *b, size_t max);
/* Free the contents; the buffer may be initialised again. */
void buf_release(struct buf *b);
/* Forget the contents but keep the memory. */
void buf_reset(struct buf *b);
/* Append n bytes. 0, or -CS_E2BIG past the cap (buffer unchanged). */
CS_MUST_CHECK int buf_add(struct buf *b, const void *p, size_t n);
CS_MUST_CHECK int buf_adds(struct buf *b, const char *s);
CS_MUST_CHECK int buf_addf(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Hand the contents out (caller frees); the buffer is left empty. */
char *buf_take(struct buf *b, size_t *len);

#endif
