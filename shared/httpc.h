/*
 * httpc.h - HTTP requests on a libev loop with libcurl's multi interface
 * (CURLMOPT_SOCKETFUNCTION / TIMERFUNCTION): thousands in flight, none
 * blocking the loop. Shared by the worker (provider requests) and the
 * scheduler (token requests); requests and responses are prov.h's types.
 */
#ifndef CS_HTTPC_H
#define CS_HTTPC_H

#include "prov.h"

#include <ev.h>

struct httpc;

struct httpc_opts {
    int connect_timeout_ms;
    int timeout_ms;            /* whole request, unless the request says */
    int max_host_conns;        /* per host */
    size_t max_body;           /* response bodies are cut here */
};

/*
 * Called once per request. rsp->status is 0 when there was no HTTP answer
 * (connect failure, timeout, reset); err then says why. rsp is borrowed.
 * dur_ms is the request's wall time.
 */
typedef void httpc_cb(const struct prov_response *rsp, const char *err,
                      int64_t dur_ms, void *arg);

struct httpc *httpc_new(struct ev_loop *loop, const struct httpc_opts *o);
/* Abort every transfer (callbacks run with status 0, "canceled"). */
void httpc_free(struct httpc *h);
size_t httpc_inflight(const struct httpc *h);
/* Send rq (borrowed: copied as needed). The callback never runs before
 * this returns. */
void httpc_send(struct httpc *h, const struct prov_request *rq, httpc_cb *cb,
                void *arg);

#endif
