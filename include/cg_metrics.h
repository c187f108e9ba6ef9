/* cg_metrics.h - Prometheus metrics: a small registry, its text renderer (exposition format
 * 0.0.4) and its HTTP endpoint (/metrics, /healthz, served by libmicrohttpd). Nothing here knows
 * the gateway or Kafka: the gateway's own metric set is cg_metrics_gw.h.
 *
 * Registry. A metric (family) is a counter, a gauge or a histogram with fixed buckets, and up to
 * CG_METRICS_MAX_LABELS label names fixed when it is registered. A series (one set of label
 * values) is created at first use and lives as long as the registry. Updating a series is a
 * C11 atomic operation, safe from any thread without locks; finding a series scans the
 * published ones without locks too, and only creating one takes the metric's mutex.
 *
 * Bounded: a metric holds at most max_series series, so label values from outside (topic names
 * of a regex subscription, spec names) cannot grow memory without end. Beyond the cap, updates
 * land in one overflow series whose every label value is "__overflow__" (totals stay right),
 * and cohortgate_metrics_series_refused_total{metric} counts the updates sent there. Label
 * values are cut to CG_METRICS_MAX_VALUE bytes; bytes that are not UTF-8 render as U+FFFD.
 *
 * Every update function is NULL-safe (a NULL series or metric is a no-op), so a caller whose
 * metrics are off needs no checks.
 */
#ifndef CG_METRICS_H
#define CG_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "cg_buf.h"
#include "cg_err.h"

#define CG_METRICS_MAX_LABELS 4
#define CG_METRICS_MAX_VALUE  256

typedef struct cg_metrics cg_metrics_t;
typedef struct cg_metric cg_metric_t;
typedef struct cg_metric_series cg_metric_series_t;

/* A registry whose metrics hold at most max_series series each (0 picks 1000). */
cg_metrics_t *cg_metrics_new(size_t max_series);
/* NULL-safe. No thread may use the registry or its series any more. */
void cg_metrics_destroy(cg_metrics_t *m);

/* Registers a metric. name must match [a-zA-Z_:][a-zA-Z0-9_:]*; labels is a comma-separated list
 * of label names ("topic,spec"), "" or NULL for none. A metric without labels has its one series
 * from the start, so it renders as 0 before any update. Returns NULL on a bad name, a duplicate
 * name or no memory. Register at setup, before the registry is shared between threads. */
cg_metric_t *cg_metrics_counter(cg_metrics_t *m, const char *name, const char *help,
                                const char *labels);
cg_metric_t *cg_metrics_gauge(cg_metrics_t *m, const char *name, const char *help,
                              const char *labels);
/* bounds: the buckets' upper bounds, strictly increasing, without +Inf (always added). */
cg_metric_t *cg_metrics_histogram(cg_metrics_t *m, const char *name, const char *help,
                                  const char *labels, const double *bounds, size_t n_bounds);

/* The series of a metric for one label value per label name (NULL counts as ""), created on
 * first use; the overflow series when the metric is full. NULL only when metric is NULL. */
cg_metric_series_t *cg_metric_get(cg_metric_t *metric, const char *const *values);
/* Shorthands for metrics with one and two labels (a metric with none: cg_metric_get(m, NULL)). */
cg_metric_series_t *cg_metric_get1(cg_metric_t *metric, const char *v1);
cg_metric_series_t *cg_metric_get2(cg_metric_t *metric, const char *v1, const char *v2);

void cg_metric_inc(cg_metric_series_t *s, uint64_t n);   /* counters */
void cg_metric_set(cg_metric_series_t *s, double v);     /* gauges: set, and show it again */
void cg_metric_add(cg_metric_series_t *s, double d);     /* gauges */
void cg_metric_observe(cg_metric_series_t *s, double v); /* histograms */
/* Hides every series of a gauge until it is set again: for values that stop existing (the lag
 * of a partition no longer assigned). */
void cg_metric_hide_all(cg_metric_t *metric);

/* Readers, for tests: a counter's count, a gauge's value, a histogram's observation count. */
uint64_t cg_metric_count(const cg_metric_series_t *s);
double cg_metric_value(const cg_metric_series_t *s);
/* Series created so far (the overflow series not counted), and label sets refused. */
size_t cg_metric_series_count(const cg_metric_t *metric);
uint64_t cg_metric_refused(const cg_metric_t *metric);

/* Called (on the rendering thread) at the start of every render, to refresh gauges read from
 * elsewhere; up to 4 per registry. Returns -1 when there is no room. */
int cg_metrics_on_collect(cg_metrics_t *m, void (*fn)(void *opaque), void *opaque);
/* Appends the whole registry in the Prometheus text format, version 0.0.4. Renders are
 * serialized with each other but not with updates: a scrape is a snapshot per value. */
cg_err_t cg_metrics_render(cg_metrics_t *m, cg_buf_t *out);

/* Monotonic seconds, for latencies. */
double cg_metrics_now(void);

/* ---- the HTTP endpoint ---- */

typedef struct cg_metrics_server cg_metrics_server_t;

/* Fills reason and returns an HTTP status: 200 for healthy, 503 otherwise. Runs on the
 * server's thread. */
typedef int(cg_metrics_health_fn)(void *opaque, char *reason, size_t reason_size);

typedef struct cg_metrics_server_opts {
    /* A connection idle this long (no request bytes in, no response bytes taken) is closed
     * without an answer; rounded up to whole seconds (libmicrohttpd's unit). 0 picks 5000. */
    int read_timeout_ms;
    size_t max_request;  /* bytes of request head; 0 picks 8192 */
    int max_connections; /* connections open at once, beyond it new ones are closed; 0: 64 */
} cg_metrics_server_opts_t;

/* Whether a metrics.listen value turns the endpoint off ("off", "" or NULL). */
int cg_metrics_listen_off(const char *listen);
/* Checks the form of a metrics.listen value: "HOST:PORT" or "[IPV6]:PORT", PORT 0 to 65535
 * (0 picks a free one). Fills host and port; -1 with the reason in errstr. */
int cg_metrics_listen_parse(const char *listen, char *host, size_t host_size, char *port,
                            size_t port_size, char *errstr, size_t errstr_size);
/* Binds addr (a metrics.listen value) and serves it with libmicrohttpd on one polling thread of
 * its own (epoll), every signal blocked: connections are served side by side, so clients that
 * send half a request cannot hold off a scrape or /healthz. GET (or HEAD) /metrics renders m,
 * /healthz asks health (NULL: always 200), another path is 404, another method 405. A request
 * head larger than max_request gets 431 (414 when its request line alone overflows the
 * connection's memory), a connection idle for read_timeout_ms is closed; every response closes
 * its connection. Returns NULL with the reason in errstr (also when addr is off). */
cg_metrics_server_t *cg_metrics_server_start(const char *addr, cg_metrics_t *m,
                                             cg_metrics_health_fn *health, void *opaque,
                                             const cg_metrics_server_opts_t *opts, char *errstr,
                                             size_t errstr_size);
/* The bound port (useful with port 0) and the address as "HOST:PORT" ("[::1]:PORT" for IPv6). */
int cg_metrics_server_port(const cg_metrics_server_t *s);
const char *cg_metrics_server_address(const cg_metrics_server_t *s);
/* Stops the thread (promptly, even with clients connected), closing every connection and the
 * socket. NULL-safe. */
void cg_metrics_server_stop(cg_metrics_server_t *s);

#endif
