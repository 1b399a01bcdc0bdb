/*
 * log.h - one JSON object per line on stderr, written with one write(2).
 *
 *   log_info("job_enqueued", LOG_S("job_id", id), LOG_I("jobs", n));
 *
 * The level is checked before any argument is evaluated. Fields: ts, level,
 * svc, pid, event, then the given ones. Log sizes and ids, never secrets or
 * bodies.
 */
#ifndef CS_LOG_H
#define CS_LOG_H

#include <stdint.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_OFF };

enum log_kv_type { LOG_KV_END = 0, LOG_KV_STR, LOG_KV_INT, LOG_KV_DBL };

struct log_kv {
    const char *key;
    int type;
    const char *s;
    long long i;
    double d;
};

#define LOG_S(k, v) ((struct log_kv){(k), LOG_KV_STR, (v), 0, 0})
#define LOG_I(k, v) ((struct log_kv){(k), LOG_KV_INT, NULL, (long long)(v), 0})
#define LOG_D(k, v) ((struct log_kv){(k), LOG_KV_DBL, NULL, 0, (double)(v)})
#define LOG_END ((struct log_kv){NULL, LOG_KV_END, NULL, 0, 0})

extern int log_level_cur;

/* Set the service name and level ("debug", "info", "warn", "error"). */
void log_init(const char *svc, const char *level);
/* Parse a level name; -1 if unknown. */
int log_level_parse(const char *name);
void log_emit(int level, const char *event, const struct log_kv *kv);

/*
 * One observer of log lines at min_level and above (the error reporter):
 * called from whichever thread logs, after the line is written, with the
 * line as a JSON object (borrowed). NULL fn removes it.
 */
struct json_t;
typedef void log_hook_fn(int level, const char *event,
                         const struct json_t *line, void *arg);
void log_set_hook(int min_level, log_hook_fn *fn, void *arg);
/* The service name given to log_init. */
const char *log_service(void);

#define log_at_(lvl, ev, ...)                                                \
    do {                                                                     \
        if ((lvl) >= log_level_cur)                                          \
            log_emit((lvl), (ev), (const struct log_kv[]){__VA_ARGS__});     \
    } while (0)
#define log_debug(...) log_at_(LOG_DEBUG, __VA_ARGS__, LOG_END)
#define log_info(...) log_at_(LOG_INFO, __VA_ARGS__, LOG_END)
#define log_warn(...) log_at_(LOG_WARN, __VA_ARGS__, LOG_END)
#define log_error(...) log_at_(LOG_ERROR, __VA_ARGS__, LOG_END)

#endif
