/*
 * metrics.c - the scheduler's /metrics page (Prometheus text 0.0.4). The
 * counters live in struct sch_metrics and are only touched by the loop.
 */
#include "sched.h"
#include "oauth_ev.h"

static const double buckets[SCH_TICK_BUCKETS] = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10,
};

void sch_metrics_tick(struct sch *s, double seconds)
{
    size_t b = 0;
    while (b < SCH_TICK_BUCKETS && seconds > buckets[b])
        b++;
    s->m.tick_bucket[b]++;
    s->m.tick_sum_s += seconds;
    s->m.ticks++;
}

static int counter(struct buf *b, const char *name, const char *help,
                   unsigned long long v)
{
    return buf_addf(b, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name,
                    help, name, name, v);
}

int sch_metrics_render(struct buf *b, void *arg)
{
    struct sch *s = arg;
    const struct sch_metrics *m = &s->m;
    int rc = 0;
    rc |= buf_addf(b,
                   "# HELP callsync_scheduler_leader 1 while this scheduler "
                   "holds the lease and acts, else 0.\n"
                   "# TYPE callsync_scheduler_leader gauge\n"
                   "callsync_scheduler_leader %d\n"
                   "# HELP callsync_scheduler_lease_fencing_token Fencing "
                   "token of the lease this scheduler holds or last held "
                   "(0: never held).\n"
                   "# TYPE callsync_scheduler_lease_fencing_token gauge\n"
                   "callsync_scheduler_lease_fencing_token %lld\n",
                   sch_is_leader(s) ? 1 : 0, s->fence);
    rc |= buf_addf(b,
                   "# HELP callsync_scheduler_lease_changes_total Leases "
                   "taken and lost by this scheduler.\n"
                   "# TYPE callsync_scheduler_lease_changes_total counter\n"
                   "callsync_scheduler_lease_changes_total{event=\"acquired\"} "
                   "%llu\n"
                   "callsync_scheduler_lease_changes_total{event=\"lost\"} "
                   "%llu\n",
                   (unsigned long long)m->lease_acquired,
                   (unsigned long long)m->lease_lost);
    rc |= counter(b, "callsync_scheduler_promoted_total",
                  "Due retries moved from the delayed sets into their "
                  "streams.",
                  m->promoted);
    rc |= counter(b, "callsync_scheduler_reclaimed_total",
                  "Stream entries of dead consumers re-queued as fresh "
                  "entries.",
                  m->reclaimed);
    rc |= counter(b, "callsync_scheduler_reclaim_orphans_total",
                  "Pending ids of dead consumers whose stream entry no "
                  "longer existed (acknowledged).",
                  m->reclaim_orphans);
    rc |= counter(b, "callsync_scheduler_consumers_removed_total",
                  "Long-idle stream consumers with nothing pending removed "
                  "from the group.",
                  m->consumers_removed);
    rc |= buf_addf(
        b,
        "# HELP callsync_scheduler_parked_replayed_total Parked jobs put "
        "back into their streams, by why.\n"
        "# TYPE callsync_scheduler_parked_replayed_total counter\n"
        "callsync_scheduler_parked_replayed_total{reason=\"connected\"} "
        "%llu\n"
        "callsync_scheduler_parked_replayed_total{reason="
        "\"connection_removed\"} %llu\n",
        (unsigned long long)m->replayed_healthy,
        (unsigned long long)m->replayed_removed);
    rc |= counter(b, "callsync_scheduler_parked_malformed_total",
                  "Parked entries that were not jobs, moved to the dead "
                  "letters.",
                  m->replay_malformed);
    rc |= buf_addf(
        b,
        "# HELP callsync_scheduler_trimmed_total Items removed by "
        "retention, by kind.\n"
        "# TYPE callsync_scheduler_trimmed_total counter\n"
        "callsync_scheduler_trimmed_total{kind=\"dead_letters_age\"} %llu\n"
        "callsync_scheduler_trimmed_total{kind=\"dead_letters_count\"} "
        "%llu\n"
        "callsync_scheduler_trimmed_total{kind=\"sync_logs\"} %llu\n",
        (unsigned long long)m->trimmed_dead_age,
        (unsigned long long)m->trimmed_dead_count,
        (unsigned long long)m->trimmed_sync_logs);
    rc |= counter(b, "callsync_scheduler_oauth_due_total",
                  "Connections found with a token expiring within "
                  "CALLSYNC_OAUTH_REFRESH_MARGIN_S (each is then "
                  "refreshed, or skipped while in backoff).",
                  m->oauth_due);
    if (s->oauth)
        rc |= oev_metrics_render(s->oauth, b, "callsync_scheduler");
    rc |= counter(b, "callsync_scheduler_ticks_skipped_total",
                  "Ticks skipped because the previous one was still "
                  "waiting for replies.",
                  m->ticks_skipped);
    rc |= buf_addf(
        b,
        "# HELP callsync_scheduler_errors_total Failed commands, by "
        "dependency.\n"
        "# TYPE callsync_scheduler_errors_total counter\n"
        "callsync_scheduler_errors_total{dependency=\"redis\"} %llu\n"
        "callsync_scheduler_errors_total{dependency=\"postgres\"} %llu\n",
        (unsigned long long)m->errors_redis,
        (unsigned long long)m->errors_postgres);
    rc |= buf_adds(b, "# HELP callsync_scheduler_tick_duration_seconds Time "
                      "from a leader's tick to the last reply of its work.\n"
                      "# TYPE callsync_scheduler_tick_duration_seconds "
                      "histogram\n");
    unsigned long long cum = 0;
    for (size_t i = 0; i < SCH_TICK_BUCKETS; i++) {
        cum += m->tick_bucket[i];
        rc |= buf_addf(b,
                       "callsync_scheduler_tick_duration_seconds_bucket{le="
                       "\"%g\"} %llu\n",
                       buckets[i], cum);
    }
    cum += m->tick_bucket[SCH_TICK_BUCKETS];
    rc |= buf_addf(b,
                   "callsync_scheduler_tick_duration_seconds_bucket{le="
                   "\"+Inf\"} %llu\n"
                   "callsync_scheduler_tick_duration_seconds_sum %.6f\n"
                   "callsync_scheduler_tick_duration_seconds_count %llu\n",
                   cum, m->tick_sum_s, cum);
    return rc ? CS_E2BIG : 0;
}
