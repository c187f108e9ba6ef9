/* gateway_metrics.c - the gateway's own metric set and its /healthz answer (see
 * cg_metrics_gw.h). Kafka-free: the pipeline hands in topic, spec, stage and code strings, and
 * the producer's queue length through a callback, so this file builds without librdkafka. */
#include "cg_metrics_gw.h"

#include "cg_log.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef CG_VERSION
#define CG_VERSION "unknown"
#endif

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

enum { GW_RUNNING = 0, GW_STOPPING, GW_FATAL };

struct cg_metrics_gw {
    cg_metrics_t *reg;
    cg_metric_t *in, *rows, *dlq, *quality, *inputs, *latency, *lag, *tx, *reloads;
    cg_metric_t *released, *withheld, *agreement;
    cg_metric_series_t *s_latency, *s_outq, *s_paused, *s_assigned, *s_rss, *s_reload_ok,
        *s_reload_failed;
    /* set before the endpoint's thread starts, so that thread sees them */
    cg_metrics_gw_queue_fn *queue_len;
    void *queue_opaque;
    cg_metrics_gw_busy_fn *busy;
    void *busy_opaque;
    int stuck_ms;
    cg_metrics_server_t *server;
    int grace_ms;
    atomic_int state;
    atomic_int fatal_claimed; /* the first fatal error writes the reason, once */
    char fatal_reason[256];
    atomic_int assigned;
    _Atomic int64_t unassigned_since_ms;
};

/* decode + map takes tens of microseconds to a few milliseconds */
static const double cg_metrics_latency_bounds[] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5};

static long statm_resident_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size, resident = -1;
    if (f) {
        if (fscanf(f, "%ld %ld", &size, &resident) != 2)
            resident = -1;
        fclose(f);
    }
    return resident < 0 ? -1 : resident * sysconf(_SC_PAGESIZE);
}

/* Process start in seconds since the epoch: boot time plus /proc/self/stat's starttime. */
static double process_start_time(void)
{
    char buf[1024];
    double btime = -1, start = -1;
    FILE *f = fopen("/proc/stat", "r");
    while (f && fgets(buf, sizeof(buf), f))
        if (!strncmp(buf, "btime ", 6))
            btime = strtod(buf + 6, NULL);
    if (f)
        fclose(f);
    f = fopen("/proc/self/stat", "r");
    if (f && fgets(buf, sizeof(buf), f)) {
        char *p = strrchr(buf, ')'); /* the command name may hold spaces and parentheses */
        for (int field = 2; p && field < 22; field++)
            p = strchr(p + 1, ' ');
        if (p)
            start = strtod(p + 1, NULL) / (double)sysconf(_SC_CLK_TCK);
    }
    if (f)
        fclose(f);
    return btime >= 0 && start >= 0 ? btime + start : 0;
}

static void gw_collect(void *opaque)
{
    cg_metrics_gw_t *g = opaque;
    if (g->queue_len)
        cg_metric_set(g->s_outq, g->queue_len(g->queue_opaque));
    long rss = statm_resident_bytes();
    if (rss >= 0)
        cg_metric_set(g->s_rss, (double)rss);
}

cg_metrics_gw_t *cg_metrics_gw_new(size_t max_series, int health_grace_ms)
{
    cg_metrics_gw_t *g = calloc(1, sizeof(*g));
    if (!g || !(g->reg = cg_metrics_new(max_series))) {
        free(g);
        return NULL;
    }
    cg_metrics_t *m = g->reg;
    g->grace_ms = health_grace_ms;
    atomic_init(&g->state, GW_RUNNING);
    atomic_init(&g->fatal_claimed, 0);
    atomic_init(&g->assigned, 0);
    atomic_init(&g->unassigned_since_ms, now_ms());
    g->in = cg_metrics_counter(m, "cohortgate_messages_in_total",
                               "Input messages taken from Kafka, by input topic.", "topic");
    g->rows = cg_metrics_counter(m, "cohortgate_rows_out_total",
                                 "Records delivered (acknowledged by the broker), by output topic "
                                 "and mapping spec.",
                                 "topic,spec");
    g->dlq = cg_metrics_counter(m, "cohortgate_dead_letter_total",
                                "Input messages delivered to the dead-letter topic, by stage and "
                                "error code.",
                                "stage,code");
    g->quality = cg_metrics_counter(m, "cohortgate_quality_records_total",
                                    "Quality records delivered: entries of documents left out "
                                    "(on_error \"entry\"), by mapping spec and reason.",
                                    "spec,reason");
    g->released = cg_metrics_counter(m, "cohortgate_release_records_total",
                                     "Records released to a subscriber (handed to its topic), by "
                                     "subscriber and the record's level (1-5).",
                                     "subscriber,level");
    g->withheld = cg_metrics_counter(m, "cohortgate_release_withheld_total",
                                     "Rows not released to a subscriber, by subscriber and reason "
                                     "(table_not_granted, not_in_cohort, above_level, "
                                     "agreement_expired).",
                                     "subscriber,reason");
    g->agreement = cg_metrics_gauge(m, "cohortgate_release_agreement_in_force",
                                    "1 while a subscriber's data-use agreement is in force, 0 "
                                    "once it has expired (its feed stops).",
                                    "subscriber");
    g->inputs = cg_metrics_counter(m, "cohortgate_inputs_total",
                                   "Input messages mapped, by outcome (records, no_rows, "
                                   "no_research_content, dead_letter) and message type as the "
                                   "selecting spec declares it.",
                                   "outcome,type");
    g->latency = cg_metrics_histogram(
        m, "cohortgate_mapping_latency_seconds", "Time to decode and map one input message.", NULL,
        cg_metrics_latency_bounds,
        sizeof(cg_metrics_latency_bounds) / sizeof(cg_metrics_latency_bounds[0]));
    g->lag = cg_metrics_gauge(m, "cohortgate_consumer_lag",
                              "Messages between an assigned input partition's end and the "
                              "group's committed offset (librdkafka statistics).",
                              "topic,partition");
    cg_metric_t *outq =
        cg_metrics_gauge(m, "cohortgate_producer_queue_messages",
                         "Records and requests waiting in the producer's queue.", NULL);
    g->tx = cg_metrics_counter(m, "cohortgate_transactions_total",
                               "Kafka transactions (exactly-once delivery), by result.", "result");
    g->reloads = cg_metrics_counter(m, "cohortgate_reloads_total",
                                    "Reloads (SIGHUP) of specs, cohorts and release policies, or "
                                    "of the listener's TLS files, by result.",
                                    "result");
    cg_metric_t *paused = cg_metrics_gauge(
        m, "cohortgate_paused",
        "1 while input partitions are paused because the output side lags (backpressure).", NULL);
    cg_metric_t *assigned = cg_metrics_gauge(m, "cohortgate_assigned_partitions",
                                             "Input partitions assigned to this instance.", NULL);
    cg_metric_t *up = cg_metrics_gauge(m, "cohortgate_up", "1 while the gateway runs.", NULL);
    cg_metric_t *build = cg_metrics_gauge(m, "cohortgate_build_info",
                                          "The running build; the value is always 1.", "version");
    cg_metric_t *rss = cg_metrics_gauge(m, "process_resident_memory_bytes",
                                        "Resident memory size in bytes.", NULL);
    cg_metric_t *start =
        cg_metrics_gauge(m, "process_start_time_seconds",
                         "Start time of the process since the epoch, in seconds.", NULL);
    if (!g->in || !g->rows || !g->dlq || !g->latency || !g->lag || !outq || !g->tx || !g->reloads ||
        !paused || !assigned || !up || !build || !rss || !start ||
        cg_metrics_on_collect(m, gw_collect, g)) {
        cg_metrics_gw_destroy(g);
        return NULL;
    }
    g->s_latency = cg_metric_get(g->latency, NULL);
    g->s_outq = cg_metric_get(outq, NULL);
    g->s_paused = cg_metric_get(paused, NULL);
    g->s_assigned = cg_metric_get(assigned, NULL);
    g->s_rss = cg_metric_get(rss, NULL);
    g->s_reload_ok = cg_metric_get1(g->reloads, "ok");
    g->s_reload_failed = cg_metric_get1(g->reloads, "failed");
    /* zero from the start, so rate() and alerts see them before the first event */
    cg_metric_get1(g->tx, "committed");
    cg_metric_get1(g->tx, "aborted");
    cg_metric_set(cg_metric_get(up, NULL), 1);
    cg_metric_set(cg_metric_get1(build, CG_VERSION), 1);
    cg_metric_set(cg_metric_get(start, NULL), process_start_time());
    return g;
}

void cg_metrics_gw_destroy(cg_metrics_gw_t *g)
{
    if (!g)
        return;
    cg_metrics_server_stop(g->server); /* its thread reads the registry and the queue */
    cg_metrics_destroy(g->reg);
    free(g);
}

cg_metrics_t *cg_metrics_gw_registry(cg_metrics_gw_t *g)
{
    return g ? g->reg : NULL;
}

int cg_metrics_gw_serve(cg_metrics_gw_t *g, const char *listen, cg_metrics_gw_queue_fn *queue_len,
                        void *queue_opaque)
{
    if (!g)
        return -1;
    g->queue_len = queue_len;
    g->queue_opaque = queue_opaque;
    if (cg_metrics_listen_off(listen)) {
        cg_log(CG_LOG_INFO, "metrics.off", "metrics.listen is off: no /metrics or /healthz");
        return 0;
    }
    char errstr[512];
    g->server = cg_metrics_server_start(listen, g->reg, cg_metrics_gw_health, g, NULL, errstr,
                                        sizeof(errstr));
    if (!g->server) {
        cg_log(CG_LOG_ERROR, "metrics.failed",
               "cannot serve /metrics and /healthz on %s; running without them", errstr);
        return -1;
    }
    cg_log(CG_LOG_INFO, "metrics.listening", "serving http://%s/metrics and /healthz",
           cg_metrics_server_address(g->server));
    return 0;
}

int cg_metrics_gw_port(const cg_metrics_gw_t *g)
{
    return g && g->server ? cg_metrics_server_port(g->server) : -1;
}

void cg_metrics_gw_message_in(cg_metrics_gw_t *g, const char *topic)
{
    if (g)
        cg_metric_inc(cg_metric_get1(g->in, topic), 1);
}

void cg_metrics_gw_latency(cg_metrics_gw_t *g, double seconds)
{
    if (g)
        cg_metric_observe(g->s_latency, seconds);
}

void cg_metrics_gw_row_out(cg_metrics_gw_t *g, const char *topic, const char *spec)
{
    if (g)
        cg_metric_inc(cg_metric_get2(g->rows, topic, spec), 1);
}

void cg_metrics_gw_input(cg_metrics_gw_t *g, const char *outcome, const char *type)
{
    if (g)
        cg_metric_inc(cg_metric_get2(g->inputs, outcome, type), 1);
}

void cg_metrics_gw_dead_letter(cg_metrics_gw_t *g, const char *stage, const char *code)
{
    if (g)
        cg_metric_inc(cg_metric_get2(g->dlq, stage, code), 1);
}

void cg_metrics_gw_quality(cg_metrics_gw_t *g, const char *spec, const char *reason)
{
    if (g)
        cg_metric_inc(cg_metric_get2(g->quality, spec, reason), 1);
}

cg_metric_series_t *cg_metrics_gw_released_series(cg_metrics_gw_t *g, const char *subscriber,
                                                  int level)
{
    if (!g)
        return NULL;
    char l[16];
    snprintf(l, sizeof(l), "%d", level);
    return cg_metric_get2(g->released, subscriber, l);
}

void cg_metrics_gw_released(cg_metrics_gw_t *g, const char *subscriber, int level, uint64_t n)
{
    if (g && n)
        cg_metric_inc(cg_metrics_gw_released_series(g, subscriber, level), n);
}

void cg_metrics_gw_withheld(cg_metrics_gw_t *g, const char *subscriber, const char *reason,
                            uint64_t n)
{
    if (g && n)
        cg_metric_inc(cg_metric_get2(g->withheld, subscriber, reason), n);
}

void cg_metrics_gw_agreement(cg_metrics_gw_t *g, const char *subscriber, int in_force)
{
    if (g)
        cg_metric_set(cg_metric_get1(g->agreement, subscriber), in_force ? 1 : 0);
}

void cg_metrics_gw_transaction(cg_metrics_gw_t *g, const char *result)
{
    if (g)
        cg_metric_inc(cg_metric_get1(g->tx, result), 1);
}

void cg_metrics_gw_reload(cg_metrics_gw_t *g, int ok)
{
    if (g)
        cg_metric_inc(ok ? g->s_reload_ok : g->s_reload_failed, 1);
}

void cg_metrics_gw_paused(cg_metrics_gw_t *g, int paused)
{
    if (g)
        cg_metric_set(g->s_paused, paused ? 1 : 0);
}

void cg_metrics_gw_assigned(cg_metrics_gw_t *g, int n)
{
    if (!g)
        return;
    if (n <= 0 && atomic_exchange(&g->assigned, 0) > 0) /* the grace starts again */
        atomic_store(&g->unassigned_since_ms, now_ms());
    else if (n > 0)
        atomic_store(&g->assigned, n);
    cg_metric_set(g->s_assigned, n > 0 ? n : 0);
}

int cg_metrics_gw_kafka_stats(cg_metrics_gw_t *g, const char *json, size_t len)
{
    if (!g)
        return 0;
    json_error_t e;
    json_t *root = json_loadb(json, len, 0, &e);
    if (!root)
        return -1;
    /* a partition revoked since the last statistics must not keep its last lag */
    cg_metric_hide_all(g->lag);
    const char *topic, *key;
    json_t *t, *p;
    json_object_foreach(json_object_get(root, "topics"), topic, t)
    {
        json_object_foreach(json_object_get(t, "partitions"), key, p)
        {
            json_int_t partition = json_integer_value(json_object_get(p, "partition"));
            json_t *lag = json_object_get(p, "consumer_lag");
            /* -1 is librdkafka's internal unassigned partition; lag -1 means unknown */
            if (partition < 0 || !json_is_integer(lag) || json_integer_value(lag) < 0 ||
                json_is_false(json_object_get(p, "desired")))
                continue;
            char part[24];
            snprintf(part, sizeof(part), "%" JSON_INTEGER_FORMAT, partition);
            cg_metric_set(cg_metric_get2(g->lag, topic, part), (double)json_integer_value(lag));
        }
    }
    json_decref(root);
    return 0;
}

void cg_metrics_gw_stopping(cg_metrics_gw_t *g)
{
    int running = GW_RUNNING;
    if (g)
        atomic_compare_exchange_strong(&g->state, &running, GW_STOPPING);
}

void cg_metrics_gw_fatal(cg_metrics_gw_t *g, const char *reason)
{
    if (!g || atomic_exchange(&g->fatal_claimed, 1))
        return;
    snprintf(g->fatal_reason, sizeof(g->fatal_reason), "%s", reason ? reason : "");
    atomic_store_explicit(&g->state, GW_FATAL, memory_order_release); /* publishes the reason */
}

void cg_metrics_gw_set_stuck(cg_metrics_gw_t *g, int stuck_ms, cg_metrics_gw_busy_fn *busy,
                             void *opaque)
{
    g->stuck_ms = stuck_ms;
    g->busy = busy;
    g->busy_opaque = opaque;
}

int cg_metrics_gw_health(void *opaque, char *reason, size_t n)
{
    cg_metrics_gw_t *g = opaque;
    int state = atomic_load_explicit(&g->state, memory_order_acquire);
    if (state == GW_FATAL) {
        snprintf(reason, n, "fatal: %s", g->fatal_reason);
        return 503;
    }
    if (state == GW_STOPPING) {
        snprintf(reason, n, "stopping");
        return 503;
    }
    char what[160];
    int64_t busy = g->busy && g->stuck_ms > 0 ? g->busy(g->busy_opaque, what, sizeof(what)) : 0;
    if (busy >= g->stuck_ms && busy > 0) {
        snprintf(reason, n, "stuck: %s for %" PRId64 " s (metrics.stuck_worker_ms %d)", what,
                 busy / 1000, g->stuck_ms);
        return 503;
    }
    if (atomic_load(&g->assigned) > 0) {
        snprintf(reason, n, "ok");
        return 200;
    }
    int64_t waited = now_ms() - atomic_load(&g->unassigned_since_ms);
    if (waited < g->grace_ms) {
        snprintf(reason, n, "ok (no partition assigned yet)");
        return 200;
    }
    snprintf(reason, n, "no partition assigned for %" PRId64 " s", waited / 1000);
    return 503;
}
