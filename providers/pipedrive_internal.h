/*
 * pipedrive_internal.h - what the two halves of the Pipedrive provider
 * share: pipedrive.c (the steps, requests and answers) and
 * pipedrive_fields.c (field mappings, matching emails and phones, and the
 * text written into notes and activities).
 */
#ifndef CS_PIPEDRIVE_INTERNAL_H
#define CS_PIPEDRIVE_INTERNAL_H

#include "prov.h"
#include "buf.h"

/* Caps on the text we write, bytes. */
#define PD_NOTE_MAX 40000
#define PD_SUMMARY_MAX 4000
#define PD_TRANSCRIPT_MAX 3000
#define PD_SHORT_MAX 300
#define PD_URL_MAX 2000

enum pd__fkind { F_STRING, F_INT, F_INTS, F_NUMBER, F_DATE, F_ENUM };

/* A property a field mapping may set, and the kind of value it takes. */
struct pd__field {
    const char *name;
    enum pd__fkind kind;
    const char *const *options; /* F_ENUM */
};

/* AddPersonRequest and AddDealRequest properties (NULL-terminated). */
extern const struct pd__field pd__person_fields[];
extern const struct pd__field pd__deal_fields[];

/* A non-empty string at a dotted path, else NULL. */
const char *pd__str_at(const json_t *root, const char *path);
/* A positive id (an integer, or a string of digits) into *out. */
bool pd__json_id(const json_t *v, long long *out);

/*
 * Apply the mappings at config[key] (and, with seed_custom, seed 003's
 * config.custom_fields) over prov_data_root into *out (a new object):
 * converted fields of table plus "custom_fields" {key: value}, possibly
 * empty. Returns 0, or CS_EINVAL with err naming the target when a
 * target is not a field, a custom key is not a 40-character hash, or a
 * value has the wrong type ("mapping_error: ...").
 */
CS_MUST_CHECK int pd__apply_mappings(const struct prov_ctx *ctx,
                                     const char *key, bool seed_custom,
                                     const char *what,
                                     const struct pd__field *table,
                                     json_t **out, struct cs_err *err);
/* Two values the same for Pipedrive: JSON-equal, or equal numbers. */
bool pd__same_value(const json_t *a, const json_t *b);

/* The text of an email or phone entry: a string or {"value"}. */
const char *pd__entry_value(const json_t *e);
/* Whether list (emails or phones) holds want: emails in any case, phones
 * by their digits (with or without the country code). */
bool pd__list_has(const json_t *list, const char *want, bool phone);
/* Whether a person (or a search item) has the email or the phone. */
bool pd__person_matches(const json_t *p, const char *email,
                        const char *phone);

/* Text: appended to b, capped by b's cap (see buf.h). */
void pd__puts(struct buf *b, const char *s);
/* The length of s cut to at most max bytes on a UTF-8 boundary. */
size_t pd__utf8_cut(const char *s, size_t max);
/* n bytes of s as HTML text (newlines as <br> when br). */
void pd__put_html(struct buf *b, const char *s, size_t n, bool br);
/* "<b>Label:</b> value<br>", value cut to max bytes. */
void pd__put_line(struct buf *b, const char *label, const char *value,
                  size_t max);
/* The job marker in a paragraph of its own. */
void pd__put_marker(struct buf *b, const struct prov_ctx *ctx);
/* Whether text holds this job's marker. */
bool pd__has_marker(const struct prov_ctx *ctx, const char *text);
/* The call note's HTML (xmalloc'd). */
char *pd__note_text(const struct prov_ctx *ctx);

#endif
