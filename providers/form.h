/*
 * form.h - application/x-www-form-urlencoded bodies and query strings,
 * for the providers whose APIs take forms (Stripe, Twilio).
 *
 * Values are encoded as the WHATWG URL standard's form serializer does:
 * ASCII letters, digits and "*-._" stay, a space becomes "+", every other
 * byte is %XX. Names are encoded the same way except that "[" and "]"
 * stay literal, so Stripe's bracket notation for nested parameters reads
 * as it does in Stripe's own documentation ("metadata[call_id]=...",
 * "line_items[0][price]=...").
 *
 * form_add_json() flattens a JSON value into that notation: an object's
 * members become name[key], an array's elements name[0], name[1], ...;
 * strings are sent as they are, integers and reals as JSON writes them,
 * booleans as "true" / "false"; null and empty containers add nothing.
 */
#ifndef CS_FORM_H
#define CS_FORM_H

#include "cs.h"
#include "buf.h"
#include "prov.h"

#include <jansson.h>

/* Bytes a form body may grow to. */
#define FORM_MAX (1024 * 1024)

struct form {
    struct buf b; /* private */
};

void form_init(struct form *f);
void form_release(struct form *f);
/* Append name=value (both encoded). */
void form_add(struct form *f, const char *name, const char *value);
/* Append a JSON value under name, flattened as described above. A NULL
 * or empty name flattens an object's members at the top level. */
void form_add_json(struct form *f, const char *name, const json_t *v);
/* The encoded text so far ("" when empty); borrowed. */
const char *form_text(const struct form *f);
/*
 * Hand the body to rq (the form is left empty) with
 * "Content-Type: application/x-www-form-urlencoded".
 */
void prov_request_form(struct prov_request *rq, struct form *f);

/* One value encoded as a form value (xmalloc'd). */
char *form_escape(const char *s);

#endif
