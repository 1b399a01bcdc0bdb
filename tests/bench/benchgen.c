/*
 * benchgen.c - writes N signed Retell webhook requests for the ingest
 * benchmark, each a distinct call (so each one really makes jobs), as raw
 * HTTP/1.1 requests separated by NUL bytes for tests/bench/ingest.lua.
 *
 *   callsync-benchgen FIXTURE API_KEY COUNT OUT
 *
 * Signatures carry the time of generation; Retell's tolerance is five
 * minutes, so the file must be used within that.
 */
#include "cs.h"
#include "crypto.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: callsync-benchgen FIXTURE API_KEY COUNT OUT\n");
        return 2;
    }
    json_error_t je;
    json_t *doc = json_load_file(argv[1], 0, &je);
    if (!doc) {
        fprintf(stderr, "benchgen: cannot read '%s': %s\n", argv[1], je.text);
        return 1;
    }
    const char *key = argv[2];
    long count = strtol(argv[3], NULL, 10);
    FILE *out = fopen(argv[4], "wb");
    if (!out || count <= 0) {
        fprintf(stderr, "benchgen: bad count or output '%s'\n", argv[4]);
        return 1;
    }
    json_t *call = json_object_get(doc, "call");
    char run[16];
    snprintf(run, sizeof(run), "%lld", (long long)(cs_now_ms() % 100000000));
    for (long i = 0; i < count; i++) {
        char id[64];
        snprintf(id, sizeof(id), "call_bench_%s_%ld", run, i);
        json_object_set_new(call, "call_id", json_string(id));
        char *body = json_dumps(doc, JSON_COMPACT);
        size_t n = strlen(body);
        char ts[24];
        snprintf(ts, sizeof(ts), "%lld", (long long)cs_now_ms());
        unsigned char mac[CS_SHA256_LEN];
        cs_hmac_sha256(key, strlen(key), body, n, ts, strlen(ts), NULL, 0,
                       mac);
        char hex[65];
        cs_hex_encode(mac, sizeof(mac), hex);
        fprintf(out,
                "POST /webhooks/retell HTTP/1.1\r\nHost: bench\r\n"
                "Content-Type: application/json\r\n"
                "X-Retell-Signature: v=%s,d=%s\r\n"
                "Content-Length: %zu\r\n\r\n%s",
                ts, hex, n, body);
        fputc('\0', out);
        free(body);
    }
    fclose(out);
    json_decref(doc);
    return 0;
}
