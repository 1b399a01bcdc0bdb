/* log.c - JSON-lines logging; see log.h. */
#include "log.h"
#include "cs.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

int log_level_cur = LOG_INFO;
static char log_svc[32] = "callsync";

/* Set once at start and cleared at stop, read by every logging thread. */
static log_hook_fn *hook_fn;
static void *hook_arg;
static int hook_min = LOG_OFF;

void log_set_hook(int min_level, log_hook_fn *fn, void *arg)
{
    __atomic_store_n(&hook_fn, NULL, __ATOMIC_SEQ_CST);
    hook_arg = arg;
    hook_min = min_level;
    __atomic_store_n(&hook_fn, fn, __ATOMIC_SEQ_CST);
}

const char *log_service(void)
{
    return log_svc;
}

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int log_level_parse(const char *name)
{
    for (size_t i = 0; i < CS_ARRAY_LEN(level_names); i++)
        if (name && strcasecmp(name, level_names[i]) == 0)
            return (int)i;
    if (name && strcasecmp(name, "off") == 0)
        return LOG_OFF;
    return -1;
}

void log_init(const char *svc, const char *level)
{
    if (svc) {
        strncpy(log_svc, svc, sizeof(log_svc) - 1);
        log_svc[sizeof(log_svc) - 1] = '\0';
    }
    int l = log_level_parse(level);
    if (l >= 0)
        log_level_cur = l;
}

void log_emit(int level, const char *event, const struct log_kv *kv)
{
    char ts[32];
    cs_rfc3339_ms(cs_now_ms(), ts);
    json_t *o = json_object();
    json_object_set_new(o, "ts", json_string(ts));
    json_object_set_new(o, "level",
                        json_string(level >= 0 && level < 4
                                        ? level_names[level]
                                        : "fatal"));
    json_object_set_new(o, "svc", json_string(log_svc));
    json_object_set_new(o, "pid", json_integer(getpid()));
    json_object_set_new(o, "event", json_string(event));
    for (; kv && kv->type != LOG_KV_END; kv++) {
        switch (kv->type) {
        case LOG_KV_STR:
            if (kv->s)
                json_object_set_new(o, kv->key, json_string(kv->s));
            break;
        case LOG_KV_INT:
            json_object_set_new(o, kv->key, json_integer(kv->i));
            break;
        case LOG_KV_DBL:
            json_object_set_new(o, kv->key, json_real(kv->d));
            break;
        }
    }
    char *line = json_dumps(o, JSON_COMPACT);
    if (line) {
        size_t n = strlen(line);
        line[n] = '\n'; /* replaces the NUL; we write n + 1 bytes */
        (void)!write(2, line, n + 1);
        free(line);
    }
    log_hook_fn *fn = __atomic_load_n(&hook_fn, __ATOMIC_SEQ_CST);
    if (fn && level >= hook_min)
        fn(level, event, o, hook_arg);
    json_decref(o);
}
