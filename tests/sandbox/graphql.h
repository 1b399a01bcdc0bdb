/*
 * graphql.h - a reader of GraphQL documents for the sandbox's GraphQL
 * providers (monday.com): enough of the language to check what clients
 * send and to answer their root fields, not an executor.
 */
#ifndef CS_SANDBOX_GRAPHQL_H
#define CS_SANDBOX_GRAPHQL_H

#include <jansson.h>
#include <stdbool.h>

struct gql_doc {
    bool mutation;
    json_t *fields;    /* root fields: [{"name", "alias", "args",
                          "fields"}], the arguments' variables replaced by
                          their values (null when not given), "fields" the
                          field's own selection in the same form */
    json_t *declared;  /* variable name -> its type as written ("ID!",
                          "[ItemsPageByColumnValuesQuery!]") */
};

/*
 * Read query with vars (an object, or NULL) into *doc. Returns 0, or -1
 * with err filled ("Parse error on ... at [line, col]"; also for a
 * variable used but not declared). doc is filled either way and is
 * released with gql_doc_release.
 */
int gql_read(const char *query, const json_t *vars, struct gql_doc *doc,
             char err[200]);
void gql_doc_release(struct gql_doc *doc);

#endif
