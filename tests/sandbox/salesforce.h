/*
 * salesforce.h - what the Salesforce emulation (salesforce.c) and its SOQL
 * engine (soql.c) share: the objects the sandbox knows, their fields and
 * the query interface. Internal to the sandbox.
 */
#ifndef CS_SANDBOX_SALESFORCE_H
#define CS_SANDBOX_SALESFORCE_H

#include "cs.h"

#include <jansson.h>

enum sf_ftype {
    SF_T_ID,       /* the record id */
    SF_T_REF,      /* a reference (18-character id) */
    SF_T_STRING,
    SF_T_TEXTAREA, /* long text: not filterable */
    SF_T_EMAIL,
    SF_T_PHONE,
    SF_T_PICK,     /* picklist; restricted when values are given */
    SF_T_BOOL,
    SF_T_INT,
    SF_T_NUM,
    SF_T_DATE,
    SF_T_DATETIME,
    SF_T_CUSTOM,   /* a custom field (__c): any scalar */
};

enum {
    SF_CREATE = 1,
    SF_UPDATE = 2,
    SF_FILTER = 4,
    SF_REQUIRED = 8,
};

struct sf_field {
    const char *name;
    const char *label;
    enum sf_ftype type;
    int len;                   /* strings: maximum characters */
    unsigned flags;
    const char *const *values; /* restricted picklist values, or NULL */
    const char *refs;          /* references: allowed id prefixes "00Q,003" */
};

struct sf_object {
    const char *name;          /* "Lead" */
    const char *prefix;        /* id key prefix, "00Q" */
    const char *type;          /* /_sandbox/records type, "leads" */
    const struct sf_field *fields; /* ends with a NULL name */
};

/* The object called name (case-insensitive), or NULL. */
const struct sf_object *sf_object_find(const char *name);
/* The field of o called name (case-insensitive); a custom field name
 * ("Score__c") gets a shared SF_T_CUSTOM descriptor; NULL for none. */
const struct sf_field *sf_field_find(const struct sf_object *o,
                                     const char *name);
/* A record's value of field name (case-insensitive key), or NULL. */
json_t *sf_record_get(const json_t *rec, const char *name);
/* The record's own spelling of field name, else name. */
const char *sf_record_key(const json_t *rec, const char *name);
/* ms since the epoch of a Salesforce datetime ("2026-02-20T20:00:00Z",
 * "...000+0000", "+00:00"). */
bool sf_parse_datetime(const char *s, int64_t *ms);

struct soql;

/*
 * Parse a SOQL query of the shapes the sandbox supports: SELECT fields
 * FROM object [WHERE conditions] [ORDER BY field [ASC|DESC] [NULLS
 * FIRST|LAST]] [LIMIT n], a condition being "field op literal" (op one of
 * = != <> < <= > >=), "field [NOT] IN (literals)", NOT, or a parenthesised
 * list joined by AND or by OR. Anything else is refused as Salesforce
 * refuses it: NULL, with code (MALFORMED_QUERY, INVALID_TYPE,
 * INVALID_FIELD) and *msg (xmalloc'd) filled.
 */
struct soql *soql_parse(const char *text, char code[40], char **msg);
void soql_free(struct soql *q);
/* The answer {"totalSize","done","records"} for the matching records of
 * all (records of any object; only the query's are read). */
json_t *soql_run(const struct soql *q, const json_t *all,
                 const char *version);

#endif
