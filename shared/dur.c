/*
 * dur.c - text durations; see dur.h.
 */
#include "dur.h"

#include <string.h>

int dur_parse_ms(const char *s, size_t n, int64_t *ms)
{
    size_t i = 0;
    int64_t v = 0;
    while (i < n && s[i] >= '0' && s[i] <= '9') {
        int d = s[i] - '0';
        if (v > (INT64_MAX - d) / 10)
            return CS_EINVAL;
        v = v * 10 + d;
        i++;
    }
    if (i == 0)
        return CS_EINVAL;
    const char *u = s + i;
    size_t ul = n - i;
    int64_t mul;
    if (ul == 0 && v == 0)
        mul = 1;
    else if (ul == 2 && memcmp(u, "ms", 2) == 0)
        mul = 1;
    else if (ul == 1 && *u == 's')
        mul = 1000;
    else if (ul == 1 && *u == 'm')
        mul = 60 * 1000;
    else if (ul == 1 && *u == 'h')
        mul = 3600 * 1000;
    else if (ul == 1 && *u == 'd')
        mul = 24 * 3600 * 1000;
    else
        return CS_EINVAL;
    if (v > INT64_MAX / mul)
        return CS_EINVAL;
    *ms = v * mul;
    return 0;
}
