/*
 * registry.c - the providers callsync implements, by integration type.
 */
#include "prov.h"

#include <string.h>

static const struct prov_ops *const providers[] = {
    &prov_hubspot,
    &prov_zapier,
    &prov_custom_rest,
    &prov_retell,
    &prov_gohighlevel,
    &prov_google_calendar,
    &prov_cal_com,
    &prov_calendly,
    &prov_outlook,
    &prov_stripe,
    &prov_twilio,
    &prov_sendgrid,
    &prov_pipedrive,
    &prov_zoho,
    &prov_salesforce,
    &prov_monday,
    &prov_housecall_pro,
    &prov_segment,
};

const struct prov_ops *prov_find(const char *name)
{
    for (size_t i = 0; i < CS_ARRAY_LEN(providers); i++)
        if (strcmp(providers[i]->name, name) == 0)
            return providers[i];
    return NULL;
}
