/*
 * it_support.h - helpers for integration tests: a fresh migrated database
 * per test (support_pg.h), the real callsync binaries started as child processes, raw
 * HTTP over a socket, and a blocking Redis connection. Header-only:
 * CMake builds each test from one .c file.
 *
 * Tests read CALLSYNC_DATABASE_URL and CALLSYNC_REDIS_URL from the
 * environment that scripts/test sets from the local stack.
 */
#ifndef CS_IT_SUPPORT_H
#define CS_IT_SUPPORT_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif

#include "buf.h"
#include "cs.h"
#include "crypto.h"
#include "support_pg.h"

#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static inline const char *it_env(const char *name)
{
    const char *v = getenv(name);
    cr_assert(v && *v, "%s must be set (run the tests through scripts/test)",
              name);
    return v;
}

/* ---- PostgreSQL (fresh databases come from support_pg.h) ------------- */

/* Run SQL with text parameters and return the first column of row 0
 * (xmalloc'd), or NULL for no rows. */
static inline char *it_sql(struct tpg *db, const char *sql, int n,
                           const char *const *params)
{
    PGresult *r = tpg_query(db, sql, n, params);
    char *v = NULL;
    if (PQntuples(r) > 0 && PQnfields(r) > 0 && !PQgetisnull(r, 0, 0))
        v = xstrdup(PQgetvalue(r, 0, 0));
    PQclear(r);
    return v;
}

/* ---- Processes --------------------------------------------------------- */

static inline int it_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
    socklen_t len = sizeof(a);
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

/* Start argv[0] with extra "NAME=value" variables on top of environ.
 * stderr goes to log_path (appended) when given, and stdout with it unless
 * keep_stdout is set (for a caller that reads what the child prints). */
static inline pid_t it_spawn_ex(char *const argv[], char *const extra_env[],
                                const char *log_path, bool keep_stdout)
{
    size_t n = 0, m = 0;
    while (environ[n])
        n++;
    while (extra_env && extra_env[m])
        m++;
    char **envp = xcalloc(n + m + 1, sizeof(char *));
    size_t k = 0;
    for (size_t i = 0; i < m; i++)
        envp[k++] = extra_env[i];
    for (size_t i = 0; i < n; i++) {
        bool overridden = false;
        for (size_t j = 0; j < m; j++) {
            size_t len = strcspn(extra_env[j], "=");
            if (strncmp(environ[i], extra_env[j], len + 1) == 0)
                overridden = true;
        }
        if (!overridden)
            envp[k++] = environ[i];
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    if (log_path) {
        posix_spawn_file_actions_addopen(&fa, 2, log_path,
                                         O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (!keep_stdout)
            posix_spawn_file_actions_adddup2(&fa, 2, 1);
    }
    pid_t pid;
    int rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    free(envp);
    cr_assert(rc == 0, "cannot start %s: %d", argv[0], rc);
    return pid;
}

static inline pid_t it_spawn(char *const argv[], char *const extra_env[],
                             const char *log_path)
{
    return it_spawn_ex(argv, extra_env, log_path, false);
}

/* SIGTERM, then wait up to timeout_ms; returns the exit status (or -1 if it
 * had to be killed). */
static inline int it_stop(pid_t pid, int sig, int timeout_ms)
{
    if (pid <= 0)
        return -1;
    kill(pid, sig);
    for (int i = 0; i < timeout_ms / 10; i++) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        usleep(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

/* Assert that a child's log holds no sanitizer report, then remove it. */
static inline void it_expect_clean_log(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return;
    char line[4096];
    while (fgets(line, sizeof(line), f))
        cr_expect(!strstr(line, "Sanitizer") && !strstr(line, "runtime error"),
                  "sanitizer report in %s: %s", path, line);
    fclose(f);
    unlink(path);
}

/* ---- HTTP -------------------------------------------------------------- */

struct it_resp {
    int status;
    char headers[4096];
    char body[65536];
    size_t body_len;
    bool closed;               /* server closed after answering */
};

static inline int it_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static inline void it_send(int fd, const void *data, size_t n)
{
    const char *p = data;
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return; /* the server may refuse early and close */
        p += w;
        n -= (size_t)w;
    }
}

/* Read one response from fd (waiting up to timeout_ms). Returns false on
 * timeout or if the connection closed before a full response. */
static inline bool it_read_resp(int fd, struct it_resp *r, int timeout_ms)
{
    memset(r, 0, sizeof(*r));
    static char buf[1 << 17];
    static size_t have;
    static int have_fd = -1;
    if (have_fd != fd)
        have = 0;
    have_fd = fd;
    int64_t deadline = cs_mono_ms() + timeout_ms;
    for (;;) {
        char *end = memmem(buf, have, "\r\n\r\n", 4);
        if (end) {
            size_t hl = (size_t)(end - buf) + 4;
            size_t cl = 0;
            char *h = memmem(buf, hl, "Content-Length:", 15);
            if (h)
                cl = (size_t)strtoul(h + 15, NULL, 10);
            if (have >= hl + cl) {
                sscanf(buf, "HTTP/1.1 %d", &r->status);
                size_t copy = hl < sizeof(r->headers) - 1
                                  ? hl
                                  : sizeof(r->headers) - 1;
                memcpy(r->headers, buf, copy);
                size_t bl = cl < sizeof(r->body) - 1 ? cl
                                                     : sizeof(r->body) - 1;
                memcpy(r->body, buf + hl, bl);
                r->body_len = bl;
                memmove(buf, buf + hl + cl, have - hl - cl);
                have -= hl + cl;
                if (r->status == 100) /* interim answer: read the next */
                    return it_read_resp(fd, r, timeout_ms);
                r->closed = strstr(r->headers, "Connection: close") != NULL;
                return true;
            }
        }
        int left = (int)(deadline - cs_mono_ms());
        if (left <= 0)
            return false;
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, left) <= 0)
            return false;
        ssize_t n = recv(fd, buf + have, sizeof(buf) - have, 0);
        if (n <= 0)
            return false;
        have += (size_t)n;
    }
}

/* One request on a fresh connection. */
static inline bool it_raw(int port, const void *req, size_t n,
                          struct it_resp *r)
{
    int fd = it_connect(port);
    cr_assert(fd >= 0, "cannot connect to port %d", port);
    it_send(fd, req, n);
    bool ok = it_read_resp(fd, r, 10000);
    close(fd);
    return ok;
}

/* POST path with JSON body and extra header lines ("Name: v\r\n..."). */
static inline struct it_resp it_post(int port, const char *path,
                                     const char *headers, const char *body,
                                     size_t len)
{
    char *req = xasprintf("POST %s HTTP/1.1\r\nHost: t\r\n"
                          "Content-Type: application/json\r\n"
                          "Content-Length: %zu\r\n%s\r\n",
                          path, len, headers ? headers : "");
    size_t hl = strlen(req);
    req = xrealloc(req, hl + len + 1);
    memcpy(req + hl, body, len);
    struct it_resp r;
    bool ok = it_raw(port, req, hl + len, &r);
    free(req);
    cr_assert(ok, "no answer to POST %s", path);
    return r;
}

static inline struct it_resp it_get(int port, const char *path)
{
    char req[512];
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: t\r\n\r\n",
                     path);
    struct it_resp r;
    cr_assert(it_raw(port, req, (size_t)n, &r), "no answer to GET %s", path);
    return r;
}

/* Wait until GET /readyz answers 200. */
static inline void it_wait_ready(int port, int timeout_ms)
{
    int64_t deadline = cs_mono_ms() + timeout_ms;
    while (cs_mono_ms() < deadline) {
        int fd = it_connect(port);
        if (fd >= 0) {
            static const char req[] = "GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n";
            it_send(fd, req, sizeof(req) - 1);
            struct it_resp r;
            bool ok = it_read_resp(fd, &r, 1000);
            close(fd);
            if (ok && r.status == 200)
                return;
        }
        usleep(20000);
    }
    cr_assert_fail("server on port %d not ready in %d ms", port, timeout_ms);
}

/* ---- Redis ------------------------------------------------------------- */

/* Connect to CALLSYNC_REDIS_URL's host and port, selecting db. */
static inline redisContext *it_redis(int db)
{
    const char *url = it_env("CALLSYNC_REDIS_URL");
    char host[128] = "127.0.0.1";
    int port = 6379;
    sscanf(url, "redis://%127[^:]:%d", host, &port);
    struct timeval tv = {2, 0};
    redisContext *rc = redisConnectWithTimeout(host, port, tv);
    cr_assert(rc && !rc->err, "cannot connect to Redis");
    redisReply *r = redisCommand(rc, "SELECT %d", db);
    freeReplyObject(r);
    return rc;
}

static inline long long it_redis_int(redisContext *rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(rc, fmt, ap);
    va_end(ap);
    cr_assert(r, "redis command failed");
    long long v = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    freeReplyObject(r);
    return v;
}

/* "redis://host:port/db" for the test's database number. */
static inline char *it_redis_url(int db)
{
    const char *url = it_env("CALLSYNC_REDIS_URL");
    char host[128] = "127.0.0.1";
    int port = 6379;
    sscanf(url, "redis://%127[^:]:%d", host, &port);
    return xasprintf("redis://%s:%d/%d", host, port, db);
}

/* ---- Files ------------------------------------------------------------- */

static inline char *it_read_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    cr_assert(f, "cannot open '%s'", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *data = xmalloc((size_t)len + 1);
    size_t got = fread(data, 1, (size_t)len, f);
    fclose(f);
    data[got] = '\0';
    if (n)
        *n = got;
    return data;
}

#endif
