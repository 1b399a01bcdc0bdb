/*
 * main.c - callsync-ingest: configuration, one event loop per thread with
 * its own SO_REUSEPORT listener, and a graceful stop.
 *
 * SIGTERM or SIGINT: every loop stops accepting, closes idle keep-alive
 * connections, answers the requests it is working on (their jobs are
 * enqueued or refused with 503 as usual) and ends when none is left, or
 * after the grace period.
 */
#include "ingest.h"
#include "log.h"
#include "sentry.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define GRACE_S 10.0

static char **split_list(const char *spec, size_t *n)
{
    char **out = NULL;
    *n = 0;
    const char *p = spec ? spec : "";
    while (*p) {
        size_t len = strcspn(p, ",");
        const char *s = p, *e = p + len;
        while (s < e && (*s == ' ' || *s == '\t' || *s == '\n'))
            s++;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n'))
            e--;
        if (e > s) {
            out = xrealloc(out, (*n + 1) * sizeof(*out));
            out[(*n)++] = xstrndup(s, (size_t)(e - s));
        }
        p += len;
        if (*p == ',')
            p++;
    }
    return out;
}

static int parse_secrets(const struct cfg *cfg, struct cs_err *err)
{
    ing_secrets.retell = split_list(cfg->retell_api_keys,
                                    &ing_secrets.nretell);
    ing_secrets.callrail = split_list(cfg->callrail_secrets,
                                      &ing_secrets.ncallrail);
    size_t n;
    char **pairs = split_list(cfg->standard_secrets, &n);
    ing_secrets.std_sources = xcalloc(n ? n : 1, sizeof(char *));
    ing_secrets.std_secrets = xcalloc(n ? n : 1, sizeof(char *));
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        char *eq = strchr(pairs[i], '=');
        if (!eq || eq == pairs[i] || !eq[1]) {
            rc = cs_err_set(err, CS_EINVAL, "standard_secrets",
                            "CALLSYNC_STANDARD_WEBHOOK_SECRETS entry %zu must "
                            "be source=secret",
                            i + 1);
        } else {
            ing_secrets.std_sources[ing_secrets.nstd] =
                xstrndup(pairs[i], (size_t)(eq - pairs[i]));
            ing_secrets.std_secrets[ing_secrets.nstd++] = xstrdup(eq + 1);
        }
        free(pairs[i]);
    }
    free(pairs);
    return rc;
}

static void free_list(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static void free_secrets(void)
{
    free_list(ing_secrets.retell, ing_secrets.nretell);
    free_list(ing_secrets.callrail, ing_secrets.ncallrail);
    free_list(ing_secrets.std_sources, ing_secrets.nstd);
    free_list(ing_secrets.std_secrets, ing_secrets.nstd);
    memset(&ing_secrets, 0, sizeof(ing_secrets));
}

static int open_listener(const struct cfg *cfg, struct cs_err *err)
{
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char port[8];
    snprintf(port, sizeof(port), "%d", cfg->ingest_port);
    int gai = getaddrinfo(cfg->ingest_host, port, &hints, &ai);
    if (gai)
        return cs_err_set(err, CS_EINVAL, "ingest_host",
                          "cannot resolve '%s': %s", cfg->ingest_host,
                          gai_strerror(gai));
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    0);
    if (fd < 0) {
        freeaddrinfo(ai);
        return cs_err_set(err, CS_EIO, NULL, "cannot create socket: errno %d",
                          errno);
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, 4096)) {
        int e = errno;
        close(fd);
        freeaddrinfo(ai);
        return cs_err_set(err, CS_EIO, "ingest_port",
                          "cannot listen on %s:%d: errno %d",
                          cfg->ingest_host, cfg->ingest_port, e);
    }
    freeaddrinfo(ai);
    return fd;
}

static void on_drain_tick(EV_P_ ev_timer *w, int revents)
{
    CS_UNUSED(revents);
    struct ing_loop *l = w->data;
    ing_close_idle(l);
    bool idle = l->nconns == 0 && store_idle(l->store);
    if (idle || ev_now(EV_A) - l->drain_started > GRACE_S)
        ev_break(EV_A_ EVBREAK_ALL);
}

static void on_stop(EV_P_ ev_async *w, int revents)
{
    CS_UNUSED(revents);
    struct ing_loop *l = w->data;
    if (l->draining)
        return;
    log_info("loop_draining", LOG_I("connections", l->nconns));
    l->draining = true;
    ev_io_stop(EV_A_ & l->accept_w);
    close(l->listen_fd);
    l->listen_fd = -1;
    ing_close_idle(l);
    ev_timer_init(&l->drain_w, on_drain_tick, 0.0, 0.05);
    l->drain_w.data = l;
    l->drain_started = ev_now(EV_A);
    ev_timer_start(EV_A_ & l->drain_w);
}

static void *loop_main(void *arg)
{
    struct ing_loop *l = arg;
    ev_run(l->loop, 0);
    ev_timer_stop(l->loop, &l->drain_w);
    ev_async_stop(l->loop, &l->stop_w);
    ing_close_idle(l);
    ing_close_all(l);
    live_free(l->live);
    l->live = NULL;
    store_free(l->store);
    l->store = NULL;
    ev_loop_destroy(l->loop);
    return NULL;
}

static void usage(void)
{
    printf("usage: callsync-ingest [--help] [--config-reference]\n\n"
           "Receives call webhooks, verifies and normalises them, and "
           "enqueues one job per\nconnected integration into Redis. "
           "Configured by CALLSYNC_* environment\nvariables (and "
           "CALLSYNC_CONFIG_FILE); --config-reference lists them.\n");
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage();
            return 0;
        }
        if (strcmp(argv[i], "--config-reference") == 0) {
            cfg_print_reference(stdout);
            return 0;
        }
        fprintf(stderr, "callsync-ingest: unknown argument '%s'\n", argv[i]);
        usage();
        return 2;
    }
    struct cfg cfg;
    struct cs_err err = {0};
    if (cfg_load(&cfg, &err)) {
        fprintf(stderr, "callsync-ingest: %s\n", err.msg);
        cfg_release(&cfg);
        return 2;
    }
    log_init("ingest", cfg.log_level);
    cfg_log(&cfg);
    struct cs_keyring *kr = NULL;
    if (cfg.encryption_keys && *cfg.encryption_keys) {
        kr = cs_keyring_new(cfg.encryption_keys, &err);
        if (!kr) {
            fprintf(stderr, "callsync-ingest: CALLSYNC_ENCRYPTION_KEYS: %s\n",
                    err.msg);
            cfg_release(&cfg);
            return 2;
        }
    } else {
        log_warn("no_encryption_keys",
                 LOG_S("msg", "connection and outbound secrets cannot be "
                              "opened; Cal.com, Stripe and outbound routes "
                              "will refuse requests"));
    }
    if (parse_secrets(&cfg, &err)) {
        fprintf(stderr, "callsync-ingest: %s\n", err.msg);
        return 2;
    }
    int nthreads = cfg.ingest_threads;
    if (nthreads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        nthreads = n > 0 ? (int)n : 1;
    }

    /* An ignored signal is discarded before sigwait could see it, and a
     * parent may have left SIGTERM ignored. */
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* After the mask: the reporter's thread must not take SIGTERM. */
    if (sentry_start_cfg(&cfg, "ingest", &err)) {
        fprintf(stderr, "callsync-ingest: CALLSYNC_SENTRY_DSN: %s\n",
                err.msg);
        return 2;
    }

    struct ing_loop *loops = xcalloc((size_t)nthreads, sizeof(*loops));
    pthread_t *tids = xcalloc((size_t)nthreads, sizeof(*tids));
    int rc = 0;
    for (int i = 0; i < nthreads; i++) {
        struct ing_loop *l = &loops[i];
        l->cfg = &cfg;
        l->kr = kr;
        l->listen_fd = open_listener(&cfg, &err);
        if (l->listen_fd < 0) {
            fprintf(stderr, "callsync-ingest: %s\n", err.msg);
            return 1;
        }
        l->loop = ev_loop_new(EVFLAG_AUTO);
        l->store = store_new(l, l->loop, &cfg, kr);
        if (!l->store) {
            fprintf(stderr, "callsync-ingest: CALLSYNC_REDIS_URL is not "
                            "redis://[:password@]host:port[/db]\n");
            return 2;
        }
        l->live = live_new(l->loop, &cfg);
        if (!l->live) {
            fprintf(stderr, "callsync-ingest: CALLSYNC_REDIS_URL is not "
                            "redis://[:password@]host:port[/db]\n");
            return 2;
        }
        ev_io_init(&l->accept_w, ing_accept_cb, l->listen_fd, EV_READ);
        ev_io_start(l->loop, &l->accept_w);
        ev_async_init(&l->stop_w, on_stop);
        l->stop_w.data = l;
        ev_async_start(l->loop, &l->stop_w);
    }
    for (int i = 0; i < nthreads; i++)
        if (pthread_create(&tids[i], NULL, loop_main, &loops[i])) {
            fprintf(stderr, "callsync-ingest: cannot start thread %d\n", i);
            return 1;
        }
    log_info("ingest_started", LOG_S("host", cfg.ingest_host),
             LOG_I("port", cfg.ingest_port), LOG_I("loops", nthreads));

    int sig = 0;
    sigwait(&set, &sig);
    log_info("ingest_stopping", LOG_I("signal", sig));
    for (int i = 0; i < nthreads; i++)
        ev_async_send(loops[i].loop, &loops[i].stop_w);
    for (int i = 0; i < nthreads; i++)
        pthread_join(tids[i], NULL);
    log_info("ingest_stopped");
    sentry_stop(SENTRY_FLUSH_MS);
    free(loops);
    free(tids);
    free_secrets();
    cs_keyring_free(kr);
    cfg_release(&cfg);
    return rc;
}
