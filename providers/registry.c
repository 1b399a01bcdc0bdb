/*
 * registry.c - the providers callsync implements, by integration type.
 */
#include "prov.h"

#include <string.h>

static const struct prov_ops *const providers[] = {
    NULL,
};

const struct prov_ops *prov_find(const char *name)
{
    for (size_t i = 0; i < CS_ARRAY_LEN(providers); i++)
        if (providers[i] && strcmp(providers[i]->name, name) == 0)
            return providers[i];
    return NULL;
}
