/*
 * mapping.h - paths, templates and field mappings over JSON documents,
 * for the providers whose payloads a connection's config shapes (custom
 * REST, and any provider that honours config.field_mappings).
 *
 * Paths are dotted: "customer.first_name", "ai_analysis.lead_score". A
 * segment of digits indexes an array ("tags.0"). A path that walks off the
 * document (missing key, wrong type, index out of range) finds nothing.
 *
 * Templates are JSON values whose strings may hold "{{path}}" placeholders
 * (spaces inside the braces are ignored). A string that is exactly one
 * placeholder becomes the value at the path with its JSON type (a number
 * stays a number, an object an object), or null when nothing is there. A
 * placeholder inside a longer string is replaced by the value's text:
 * strings as they are, numbers and booleans as JSON writes them, objects
 * and arrays as compact JSON, nothing (and null) as "". Object keys are
 * copied as they are.
 *
 * Field mappings set targets in an output object from a source document.
 * A target is a dotted path too; missing intermediate objects are created.
 * The mappings are a list of objects, one of:
 *
 *   plain        {"target": "phone", "source": "customer_phone"}
 *   typed        {"target": "score", "source": "ai_analysis.lead_score",
 *                 "type": "string" | "number" | "boolean" | "enumeration",
 *                 "options": [...]}        (options: enumeration only,
 *                                           optional allowed values)
 *   custom prop  {"name": "score", "value": "ai_analysis.lead_score",
 *                 "type": ...}             (seed 003's custom_properties:
 *                                           name = target, value = source)
 *   template     {"target": "title",
 *                 "template": "{{customer_name}} - {{ai_analysis.intent}}"}
 *   lookup       {"target": "amount", "source": "ai_analysis.project_type",
 *                 "map": {"kitchen": 25000, "bathroom": 15000},
 *                 "default": 20000}        (the source's text is the key)
 *   conditional  {"target": "priority", "type": "conditional",
 *                 "conditions": [
 *                   {"if": "ai_analysis.lead_score > 80", "then": "High"},
 *                   {"if": "ai_analysis.urgency == 'high'", "then": "High"},
 *                   {"default": "Normal"}]}
 *
 * A condition is "path OP literal" with OP one of > >= < <= == != and the
 * literal a number, a 'single' or "double"-quoted string, true, false or
 * null. Numbers compare numerically (a numeric string source counts as a
 * number), strings byte-wise, booleans and null only with == and !=. A
 * missing source or a type mismatch makes the condition false. The first
 * true condition sets the target to its "then" value; else "default" if
 * given; else the target stays unset. Every condition is checked for
 * syntax, even those after the first match.
 *
 * Instead of a list, the mappings may be an object (seeds 002 and 003):
 * a string value is a plain mapping from the key (the source path) to the
 * value (the target), {"customer_phone": "phone"}; an object value is one
 * of the mappings above with the key as its target,
 * {"priority": {"type": "conditional", "conditions": [...]}}.
 *
 * A source that is missing or null leaves the target unset (a mapping
 * never writes null unless a template, "then", "map" or "default" value
 * says so). Type conversions: "string" writes numbers and booleans as
 * text; "number" accepts numbers and numeric strings; "boolean" accepts
 * booleans, 0 and 1, and "true", "false", "yes", "no", "1", "0" in any
 * case; "enumeration" is a string (numbers and booleans as text) that must
 * be one of "options" when they are given. Seed 003's "computed" formulas
 * are not evaluated: they are rejected, and a lookup or conditional
 * mapping does the same work.
 */
#ifndef CS_MAPPING_H
#define CS_MAPPING_H

#include "cs.h"

#include <jansson.h>

/* The value at a dotted path under root (borrowed), or NULL when there is
 * none. An empty path, or an empty segment ("a..b"), finds nothing. */
const json_t *map_path(const json_t *root, const char *dotted);

/*
 * Deep-copy tmpl with every placeholder replaced (see above). Returns the
 * new value (owned by the caller), or NULL with *err filled: CS_EINVAL for
 * an unterminated "{{" or an empty path, err->field naming the position in
 * the template ("address.city", "items[2]"; "" for the root).
 */
json_t *map_render(const json_t *tmpl, const json_t *root,
                   struct cs_err *err);

/* The text a placeholder inside a longer string becomes (see above);
 * xmalloc'd. */
char *map_text(const json_t *v);

/*
 * Apply mappings (a list, an object, or NULL for none) reading from root
 * and setting targets in out (an object). Returns 0, or CS_EINVAL with
 * err->field the mapping's target (or "mappings[i]" / the object key when
 * there is no target) and err->msg saying what cannot apply. Targets set
 * before an error stay set.
 */
CS_MUST_CHECK int map_apply(const json_t *mappings, const json_t *root,
                            json_t *out, struct cs_err *err);

#endif
