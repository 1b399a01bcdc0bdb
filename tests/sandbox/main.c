/*
 * main.c - callsync-sandbox: the command line, the listening socket, and
 * the event loop until SIGTERM or SIGINT (exit 0).
 *
 *   callsync-sandbox --port N [--host 127.0.0.1] [--latency-ms N]
 *                    [--hubspot-token T]... [--hubspot-rate N] [--seed N]
 *                    [--gohighlevel-token T]... [--gohighlevel-rate N]
 *                    [--gohighlevel-daily N]
 *                    [--pipedrive-token T]... [--pipedrive-rate N]
 *                    [--pipedrive-daily N]
 *                    [--zoho-token T]... [--zoho-credits N] [--zoho-rate N]
 *                    [--oauth-client PROVIDER=ID:SECRET]...
 *                    [--oauth-rotate PROVIDER]... [--salesforce-jwt-key PEM]
 *                    [--google-calendar-token T]... [--cal-com-token T]...
 *                    [--calendly-token T]... [--outlook-token T]...
 *                    [--google-calendar-rate N] [--cal-com-rate N]
 *                    [--calendly-rate N] [--outlook-rate N]
 *                    [--stripe-key K]... [--stripe-rate N]
 *                    [--stripe-search-lag-ms N]
 *                    [--twilio-auth SID:SECRET]... [--twilio-rate N]
 *                    [--twilio-send-delay-ms N]
 *                    [--sendgrid-key K]... [--sendgrid-rate N]
 *                    [--sendgrid-sender EMAIL]...
 *                    [--sentry-key K]
 *                    [--salesforce-token T]... [--salesforce-daily N]
 *                    [--salesforce-duplicates block|allow]
 *                    [--monday-token T]... [--monday-board ID]...
 *                    [--monday-rate N] [--monday-budget N] [--monday-daily N]
 *                    [--housecall-pro-token T]... [--housecall-pro-rate N]
 *                    [--segment-write-key K]... [--segment-rate N]
 *                    [--log-level warn]
 *
 * Once it listens it prints "listening on http://HOST:PORT" on stdout
 * (with the real port when --port 0 asked for a free one).
 */
#include "sandbox.h"
#include "log.h"

#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: callsync-sandbox --port N [--host 127.0.0.1] "
               "[--latency-ms N] [--hubspot-token T]... [--hubspot-rate N] "
               "[--seed N] [--gohighlevel-token T]... [--gohighlevel-rate N] "
               "[--gohighlevel-daily N] "
               "[--pipedrive-token T]... [--pipedrive-rate N] "
               "[--pipedrive-daily N] "
               "[--zoho-token T]... [--zoho-credits N] [--zoho-rate N] "
               "[--oauth-client PROVIDER=ID:SECRET]... "
               "[--oauth-rotate PROVIDER]... [--salesforce-jwt-key PEM] "
               "[--google-calendar-token T]... [--cal-com-token T]... "
               "[--calendly-token T]... [--outlook-token T]... "
               "[--google-calendar-rate N] [--cal-com-rate N] "
               "[--calendly-rate N] [--outlook-rate N] "
               "[--stripe-key K]... [--stripe-rate N] "
               "[--stripe-search-lag-ms N] [--twilio-auth SID:SECRET]... "
               "[--twilio-rate N] [--twilio-send-delay-ms N] "
               "[--sendgrid-key K]... [--sendgrid-rate N] "
               "[--sendgrid-sender EMAIL]... "
               "[--salesforce-token T]... [--salesforce-daily N] "
               "[--salesforce-duplicates block|allow] "
               "[--monday-token T]... [--monday-board ID]... "
               "[--monday-rate N] [--monday-budget N] [--monday-daily N] "
               "[--housecall-pro-token T]... [--housecall-pro-rate N] "
               "[--segment-write-key K]... [--segment-rate N] "
               "[--log-level debug|info|warn|error]\n");
}

static bool parse_ll(const char *s, long long lo, long long hi,
                     long long *out)
{
    char *end;
    if (!s || !*s)
        return false;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

struct opts {
    const char *host;
    long long port;
    const char *log_level;
};

/* Fill s and o from argv; returns 0, or 2 after printing a message. */
static int parse_args(int argc, char **argv, struct sb *s, struct opts *o)
{
    long long v;
    bool have_port = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        }
        if (!val) {
            fprintf(stderr, "callsync-sandbox: '%s' needs a value\n", a);
            return 2;
        }
        i++;
        if (strcmp(a, "--port") == 0 && parse_ll(val, 0, 65535, &v)) {
            o->port = v;
            have_port = true;
        } else if (strcmp(a, "--host") == 0) {
            o->host = val;
        } else if (strcmp(a, "--latency-ms") == 0 &&
                   parse_ll(val, 0, 600000, &v)) {
            s->latency_ms = (int)v;
        } else if (strcmp(a, "--hubspot-token") == 0 && *val &&
                   s->ntokens < SB_MAX_TOKENS) {
            s->tokens[s->ntokens++] = val;
        } else if (strcmp(a, "--hubspot-rate") == 0 &&
                   parse_ll(val, 1, 10000000, &v)) {
            s->hubspot_rate = (int)v;
        } else if (strcmp(a, "--gohighlevel-token") == 0 && *val &&
                   s->nghl_tokens < SB_MAX_TOKENS) {
            s->ghl_tokens[s->nghl_tokens++] = val;
        } else if (strcmp(a, "--gohighlevel-rate") == 0 &&
                   parse_ll(val, 1, 10000000, &v)) {
            s->ghl_rate = (int)v;
        } else if (strcmp(a, "--gohighlevel-daily") == 0 &&
                   parse_ll(val, 1, INT64_MAX, &v)) {
            s->ghl_daily = v;
        } else if (strcmp(a, "--pipedrive-token") == 0 && *val &&
                   s->npd_tokens < SB_MAX_TOKENS) {
            s->pd_tokens[s->npd_tokens++] = val;
        } else if (strcmp(a, "--pipedrive-rate") == 0 &&
                   parse_ll(val, 1, 10000000, &v)) {
            s->pd_rate = (int)v;
        } else if (strcmp(a, "--pipedrive-daily") == 0 &&
                   parse_ll(val, 1, INT64_MAX, &v)) {
            s->pd_daily = v;
        } else if (strcmp(a, "--zoho-token") == 0 && *val &&
                   s->nzoho_tokens < SB_MAX_TOKENS) {
            s->zoho_tokens[s->nzoho_tokens++] = val;
        } else if (strcmp(a, "--zoho-credits") == 0 &&
                   parse_ll(val, 1, INT64_MAX, &v)) {
            s->zoho_credits = v;
        } else if (strcmp(a, "--zoho-rate") == 0 &&
                   parse_ll(val, 0, 10000000, &v)) {
            s->zoho_rate = v;
        } else if (strcmp(a, "--seed") == 0 &&
                   parse_ll(val, 0, INT64_MAX, &v)) {
            s->seed = (uint64_t)v;
        } else if (strcmp(a, "--sentry-key") == 0 && *val) {
            s->sentry_key = val;
        } else if (oauth_option(s, a, val)) {
            /* token endpoints: clients, rotation, JWT key */
        } else if (cal_sb_option(s, a, val)) {
            /* calendar providers: tokens and rates */
        } else if (stripe_option(s, a, val) || twilio_option(s, a, val) ||
                   sendgrid_option(s, a, val)) {
            /* keys, rates and behaviour of the payment and messaging
             * providers */
        } else if (sf_option(s, a, val)) {
            /* Salesforce: tokens, daily allocation, duplicate rules */
        } else if (monday_option(s, a, val) || hcp_option(s, a, val) ||
                   segment_option(s, a, val)) {
            /* monday.com, Housecall Pro, Segment */
        } else if (strcmp(a, "--log-level") == 0 &&
                   log_level_parse(val) >= 0) {
            o->log_level = val;
        } else {
            fprintf(stderr, "callsync-sandbox: invalid option '%s %s'\n", a,
                    val);
            usage(stderr);
            return 2;
        }
    }
    if (!have_port) {
        fprintf(stderr, "callsync-sandbox: --port is required\n");
        usage(stderr);
        return 2;
    }
    return 0;
}

static int open_listener(const char *host, int port, int *bound_port)
{
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char ps[8];
    snprintf(ps, sizeof(ps), "%d", port);
    if (getaddrinfo(host, ps, &hints, &ai) || !ai) {
        log_error("sandbox_bad_host", LOG_S("host", host));
        return -1;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    0);
    int one = 1;
    if (fd >= 0)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) ||
        listen(fd, 65535)) {
        log_error("sandbox_listen_failed", LOG_S("host", host),
                  LOG_I("port", port), LOG_I("errno", errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        return -1;
    }
    freeaddrinfo(ai);
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    getsockname(fd, (struct sockaddr *)&ss, &len);
    if (ss.ss_family == AF_INET6)
        *bound_port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    else
        *bound_port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}

static void on_signal(EV_P_ ev_signal *w, int revents)
{
    CS_UNUSED(revents);
    log_info("sandbox_stopping", LOG_I("signal", w->signum));
    ev_break(EV_A_ EVBREAK_ALL);
}

/* Thousands of connections: lift the soft descriptor limit to the hard. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int main(int argc, char **argv)
{
    struct sb s = {0};
    struct opts o = {"127.0.0.1", -1, "warn"};
    s.hubspot_rate = 100;
    s.ghl_rate = 100;
    s.ghl_daily = 200000;
    s.pd_rate = 20;
    s.pd_daily = 30000;
    s.zoho_credits = 5000;
    s.seed = 1;
    s.cal = cal_sb_new();
    int rc = parse_args(argc, argv, &s, &o);
    if (rc) {
        cal_sb_free(s.cal);
        return rc;
    }
    log_init("sandbox", o.log_level);
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();

    s.prng = s.seed;
    s.hs = hs_new();
    s.ghl = ghl_new();
    s.pd = pd_new();
    s.zoho = zoho_new();
    s.zapier_hooks = json_array();
    s.sentry_events = json_array();
    s.retell_calls = json_array();
    s.custom = json_array();
    s.idem = json_object();
    s.custom_next = 1;

    int port = 0;
    int fd = open_listener(o.host, (int)o.port, &port);
    if (fd < 0) {
        sb_free(&s);
        return 1;
    }
    s.loop = ev_default_loop(EVFLAG_AUTO);
    ev_signal sig_term, sig_int;
    ev_signal_init(&sig_term, on_signal, SIGTERM);
    ev_signal_init(&sig_int, on_signal, SIGINT);
    ev_signal_start(s.loop, &sig_term);
    ev_signal_start(s.loop, &sig_int);
    sb_server_start(&s, fd);

    bool v6 = strchr(o.host, ':') != NULL;
    printf("listening on http://%s%s%s:%d\n", v6 ? "[" : "", o.host,
           v6 ? "]" : "", port);
    fflush(stdout);
    log_info("sandbox_listening", LOG_S("host", o.host), LOG_I("port", port));

    ev_run(s.loop, 0);

    sb_server_stop();
    ev_signal_stop(s.loop, &sig_term);
    ev_signal_stop(s.loop, &sig_int);
    ev_loop_destroy(s.loop);
    sb_free(&s);
    return 0;
}
