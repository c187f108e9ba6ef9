/* metrics.c - the metrics registry, its Prometheus text renderer, the HTTP endpoint and the
 * gateway's metric set (see cg_metrics.h). */
#include "cg_metrics.h"

#include "cg_log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef CG_VERSION
#define CG_VERSION "unknown"
#endif

#define CG_METRICS_MAX_COLLECT 4

typedef enum metric_type {
    METRIC_COUNTER,
    METRIC_GAUGE,
    METRIC_HISTOGRAM,
} metric_type_t;

struct cg_metric_series {
    const cg_metric_t *metric;
    uint64_t hash;
    const char *values[CG_METRICS_MAX_LABELS]; /* point into this allocation */
    size_t lens[CG_METRICS_MAX_LABELS];
    _Atomic uint64_t value;     /* a counter's count, or a gauge's double as bits */
    atomic_int hidden;          /* gauges: not rendered until set again */
    _Atomic uint64_t sum;       /* histograms: the sum as double bits */
    _Atomic uint64_t buckets[]; /* histograms: one per bound, then +Inf (not cumulative) */
};

struct cg_metric {
    cg_metric_t *next;
    metric_type_t type;
    char *name, *help;
    size_t n_labels;
    char *label_names[CG_METRICS_MAX_LABELS];
    double *bounds;
    size_t n_bounds;
    size_t cap;
    /* Append-only: slots[i] is written before n is released past i and never again, so a
     * reader that acquired n reads slots[0..n) without a lock. */
    cg_metric_series_t **slots;
    atomic_size_t n;
    pthread_mutex_t lock; /* creating series */
    cg_metric_series_t *overflow;
    atomic_int overflow_used;
    _Atomic uint64_t refused;
};

struct cg_metrics {
    size_t max_series;
    pthread_mutex_t lock; /* the list of metrics, collectors, and renders */
    cg_metric_t *head, *tail;
    struct {
        void (*fn)(void *opaque);
        void *opaque;
    } collect[CG_METRICS_MAX_COLLECT];
    size_t n_collect;
};

/* ---- doubles in atomics ---- */

static uint64_t dbits(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof(u));
    return u;
}

static double bitsd(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof(d));
    return d;
}

static void atomic_add_double(_Atomic uint64_t *a, double x)
{
    uint64_t old = atomic_load_explicit(a, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(a, &old, dbits(bitsd(old) + x),
                                                  memory_order_relaxed, memory_order_relaxed))
        ;
}

double cg_metrics_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- registry ---- */

cg_metrics_t *cg_metrics_new(size_t max_series)
{
    cg_metrics_t *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    m->max_series = max_series ? max_series : 1000;
    pthread_mutex_init(&m->lock, NULL);
    return m;
}

static void metric_free(cg_metric_t *f)
{
    size_t n = atomic_load(&f->n);
    for (size_t i = 0; i < n; i++)
        free(f->slots[i]);
    free(f->slots);
    free(f->overflow);
    for (size_t i = 0; i < f->n_labels; i++)
        free(f->label_names[i]);
    free(f->bounds);
    free(f->name);
    free(f->help);
    pthread_mutex_destroy(&f->lock);
    free(f);
}

void cg_metrics_destroy(cg_metrics_t *m)
{
    if (!m)
        return;
    for (cg_metric_t *f = m->head, *next; f; f = next) {
        next = f->next;
        metric_free(f);
    }
    pthread_mutex_destroy(&m->lock);
    free(m);
}

static int valid_name(const char *s, size_t n, int colons)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                 (colons && c == ':') || (i > 0 && c >= '0' && c <= '9');
        if (!ok)
            return 0;
    }
    return 1;
}

static uint64_t hash_values(const char *const *v, const size_t *len, size_t n)
{
    uint64_t h = 1469598103934665603u; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < len[i]; k++)
            h = (h ^ (unsigned char)v[i][k]) * 1099511628211u;
        h = (h ^ 0xff) * 1099511628211u; /* a separator: ("ab","") and ("a","b") differ */
    }
    return h;
}

static cg_metric_series_t *series_new(const cg_metric_t *f, const char *const *v, const size_t *len,
                                      uint64_t hash)
{
    size_t nb = f->type == METRIC_HISTOGRAM ? f->n_bounds + 1 : 0;
    size_t head = sizeof(cg_metric_series_t) + nb * sizeof(_Atomic uint64_t), text = 0;
    for (size_t i = 0; i < f->n_labels; i++)
        text += len[i] + 1;
    cg_metric_series_t *s = malloc(head + text);
    if (!s)
        return NULL;
    s->metric = f;
    s->hash = hash;
    char *o = (char *)s + head;
    for (size_t i = 0; i < f->n_labels; i++) {
        memcpy(o, v[i], len[i]);
        o[len[i]] = '\0';
        s->values[i] = o;
        s->lens[i] = len[i];
        o += len[i] + 1;
    }
    atomic_init(&s->value, f->type == METRIC_GAUGE ? dbits(0.0) : 0);
    atomic_init(&s->hidden, 0);
    atomic_init(&s->sum, dbits(0.0));
    for (size_t i = 0; i < nb; i++)
        atomic_init(&s->buckets[i], 0);
    return s;
}

static cg_metric_t *metric_add(cg_metrics_t *m, metric_type_t type, const char *name,
                               const char *help, const char *labels, const double *bounds,
                               size_t n_bounds)
{
    if (!m || !name || !valid_name(name, strlen(name), 1))
        return NULL;
    for (cg_metric_t *g = m->head; g; g = g->next)
        if (!strcmp(g->name, name))
            return NULL;
    for (size_t i = 1; i < n_bounds; i++)
        if (!(bounds[i] > bounds[i - 1]))
            return NULL;
    cg_metric_t *f = calloc(1, sizeof(*f));
    if (!f)
        return NULL;
    f->type = type;
    f->name = strdup(name);
    f->help = strdup(help ? help : "");
    pthread_mutex_init(&f->lock, NULL);
    atomic_init(&f->n, 0);
    atomic_init(&f->overflow_used, 0);
    atomic_init(&f->refused, 0);
    int ok = f->name && f->help;
    for (const char *p = labels ? labels : ""; ok && *p;) {
        const char *comma = strchr(p, ',');
        size_t l = comma ? (size_t)(comma - p) : strlen(p);
        /* "__" names are Prometheus's own; le is the histograms' bucket label */
        ok = f->n_labels < CG_METRICS_MAX_LABELS && valid_name(p, l, 0) &&
             !(l >= 2 && p[0] == '_' && p[1] == '_') &&
             !(type == METRIC_HISTOGRAM && l == 2 && !strncmp(p, "le", 2)) &&
             (f->label_names[f->n_labels++] = strndup(p, l)) != NULL;
        p += l + (comma ? 1 : 0);
    }
    if (ok && n_bounds) {
        ok = (f->bounds = malloc(n_bounds * sizeof(double))) != NULL;
        if (ok)
            memcpy(f->bounds, bounds, n_bounds * sizeof(double));
        f->n_bounds = n_bounds;
    }
    /* a metric without labels has exactly one series */
    f->cap = f->n_labels ? m->max_series : 1;
    ok = ok && (f->slots = calloc(f->cap, sizeof(*f->slots))) != NULL;
    if (ok && f->n_labels) {
        const char *v[CG_METRICS_MAX_LABELS];
        size_t len[CG_METRICS_MAX_LABELS];
        for (size_t i = 0; i < f->n_labels; i++) {
            v[i] = "__overflow__";
            len[i] = strlen(v[i]);
        }
        ok = (f->overflow = series_new(f, v, len, 0)) != NULL;
    } else if (ok) {
        ok = (f->slots[0] = series_new(f, NULL, NULL, hash_values(NULL, NULL, 0))) != NULL;
        atomic_store(&f->n, ok ? 1 : 0);
    }
    if (!ok) {
        metric_free(f);
        return NULL;
    }
    pthread_mutex_lock(&m->lock);
    if (m->tail)
        m->tail->next = f;
    else
        m->head = f;
    m->tail = f;
    pthread_mutex_unlock(&m->lock);
    return f;
}

cg_metric_t *cg_metrics_counter(cg_metrics_t *m, const char *name, const char *help,
                                const char *labels)
{
    return metric_add(m, METRIC_COUNTER, name, help, labels, NULL, 0);
}

cg_metric_t *cg_metrics_gauge(cg_metrics_t *m, const char *name, const char *help,
                              const char *labels)
{
    return metric_add(m, METRIC_GAUGE, name, help, labels, NULL, 0);
}

cg_metric_t *cg_metrics_histogram(cg_metrics_t *m, const char *name, const char *help,
                                  const char *labels, const double *bounds, size_t n_bounds)
{
    return metric_add(m, METRIC_HISTOGRAM, name, help, labels, bounds, n_bounds);
}

static cg_metric_series_t *find(cg_metric_t *f, size_t from, size_t to, uint64_t hash,
                                const char *const *v, const size_t *len)
{
    for (size_t i = from; i < to; i++) {
        cg_metric_series_t *s = f->slots[i];
        if (s->hash != hash)
            continue;
        size_t k = 0;
        while (k < f->n_labels && s->lens[k] == len[k] && !memcmp(s->values[k], v[k], len[k]))
            k++;
        if (k == f->n_labels)
            return s;
    }
    return NULL;
}

cg_metric_series_t *cg_metric_get(cg_metric_t *f, const char *const *values)
{
    if (!f)
        return NULL;
    const char *v[CG_METRICS_MAX_LABELS];
    size_t len[CG_METRICS_MAX_LABELS];
    for (size_t i = 0; i < f->n_labels; i++) {
        v[i] = values && values[i] ? values[i] : "";
        len[i] = strnlen(v[i], CG_METRICS_MAX_VALUE);
    }
    uint64_t hash = hash_values(v, len, f->n_labels);
    size_t n = atomic_load_explicit(&f->n, memory_order_acquire);
    cg_metric_series_t *s = find(f, 0, n, hash, v, len);
    if (s)
        return s;
    if (n < f->cap) { /* a full metric never needs the lock again */
        pthread_mutex_lock(&f->lock);
        size_t n2 = atomic_load_explicit(&f->n, memory_order_relaxed);
        s = find(f, n, n2, hash, v, len); /* another thread may have just created it */
        if (!s && n2 < f->cap && (s = series_new(f, v, len, hash)) != NULL) {
            f->slots[n2] = s;
            atomic_store_explicit(&f->n, n2 + 1, memory_order_release);
        }
        pthread_mutex_unlock(&f->lock);
        if (s)
            return s;
    }
    atomic_fetch_add_explicit(&f->refused, 1, memory_order_relaxed);
    atomic_store_explicit(&f->overflow_used, 1, memory_order_relaxed);
    return f->overflow ? f->overflow : f->slots[0];
}

cg_metric_series_t *cg_metric_get1(cg_metric_t *f, const char *v1)
{
    const char *v[] = {v1};
    return cg_metric_get(f, v);
}

cg_metric_series_t *cg_metric_get2(cg_metric_t *f, const char *v1, const char *v2)
{
    const char *v[] = {v1, v2};
    return cg_metric_get(f, v);
}

void cg_metric_inc(cg_metric_series_t *s, uint64_t n)
{
    if (s)
        atomic_fetch_add_explicit(&s->value, n, memory_order_relaxed);
}

void cg_metric_set(cg_metric_series_t *s, double v)
{
    if (!s)
        return;
    atomic_store_explicit(&s->value, dbits(v), memory_order_relaxed);
    atomic_store_explicit(&s->hidden, 0, memory_order_relaxed);
}

void cg_metric_add(cg_metric_series_t *s, double d)
{
    if (s)
        atomic_add_double(&s->value, d);
}

void cg_metric_observe(cg_metric_series_t *s, double v)
{
    if (!s || v != v) /* NaN fits no bucket */
        return;
    const cg_metric_t *f = s->metric;
    size_t i = 0;
    while (i < f->n_bounds && v > f->bounds[i])
        i++;
    atomic_fetch_add_explicit(&s->buckets[i], 1, memory_order_relaxed);
    atomic_add_double(&s->sum, v);
}

void cg_metric_hide_all(cg_metric_t *f)
{
    if (!f)
        return;
    size_t n = atomic_load_explicit(&f->n, memory_order_acquire);
    for (size_t i = 0; i < n; i++)
        atomic_store_explicit(&f->slots[i]->hidden, 1, memory_order_relaxed);
    if (f->overflow)
        atomic_store_explicit(&f->overflow->hidden, 1, memory_order_relaxed);
}

uint64_t cg_metric_count(const cg_metric_series_t *s)
{
    if (!s)
        return 0;
    const cg_metric_t *f = s->metric;
    if (f->type != METRIC_HISTOGRAM)
        return atomic_load_explicit(&s->value, memory_order_relaxed);
    uint64_t n = 0;
    for (size_t i = 0; i <= f->n_bounds; i++)
        n += atomic_load_explicit(&s->buckets[i], memory_order_relaxed);
    return n;
}

double cg_metric_value(const cg_metric_series_t *s)
{
    if (!s)
        return 0;
    const cg_metric_t *f = s->metric;
    if (f->type == METRIC_GAUGE)
        return bitsd(atomic_load_explicit(&s->value, memory_order_relaxed));
    if (f->type == METRIC_HISTOGRAM)
        return bitsd(atomic_load_explicit(&s->sum, memory_order_relaxed));
    return (double)atomic_load_explicit(&s->value, memory_order_relaxed);
}

size_t cg_metric_series_count(const cg_metric_t *f)
{
    return f ? atomic_load_explicit(&((cg_metric_t *)f)->n, memory_order_acquire) : 0;
}

uint64_t cg_metric_refused(const cg_metric_t *f)
{
    return f ? atomic_load_explicit(&((cg_metric_t *)f)->refused, memory_order_relaxed) : 0;
}

int cg_metrics_on_collect(cg_metrics_t *m, void (*fn)(void *opaque), void *opaque)
{
    pthread_mutex_lock(&m->lock);
    int rc = -1;
    if (m->n_collect < CG_METRICS_MAX_COLLECT) {
        m->collect[m->n_collect].fn = fn;
        m->collect[m->n_collect++].opaque = opaque;
        rc = 0;
    }
    pthread_mutex_unlock(&m->lock);
    return rc;
}

/* ---- the text format, version 0.0.4 ---- */

/* Shortest text that reads back as v (Prometheus parses values with Go's ParseFloat); t holds
 * at least 32 bytes. */
static const char *fmt_double(char *t, size_t n, double v)
{
    if (v != v)
        return "NaN";
    if (v > 1.7976931348623157e308 || v < -1.7976931348623157e308)
        return v > 0 ? "+Inf" : "-Inf";
    if (v == (double)(int64_t)v && v < 1e15 && v > -1e15) {
        snprintf(t, n, "%" PRId64, (int64_t)v);
    } else {
        snprintf(t, n, "%.15g", v);
        if (strtod(t, NULL) != v)
            snprintf(t, n, "%.17g", v);
    }
    return t;
}

static void put_double(cg_buf_t *b, double v)
{
    char t[40];
    cg_buf_puts(b, fmt_double(t, sizeof(t), v));
}

/* Label values escape \, " and line feed; HELP text escapes \ and line feed. Bytes that are
 * not UTF-8 become U+FFFD, since the format is UTF-8. */
static void put_escaped(cg_buf_t *b, const char *s, size_t n, int quote)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    while (p < end) {
        size_t run = 0;
        while (p + run < end && p[run] < 0x80 && p[run] != '\\' && p[run] != '\n' &&
               !(quote && p[run] == '"'))
            run++;
        cg_buf_append(b, p, run);
        p += run;
        if (p >= end)
            break;
        if (*p >= 0x80) {
            size_t l = cg_utf8_seq_len(p, (size_t)(end - p));
            if (l)
                cg_buf_append(b, p, l);
            else
                cg_buf_puts(b, "\xEF\xBF\xBD");
            p += l ? l : 1;
            continue;
        }
        cg_buf_puts(b, *p == '\\' ? "\\\\" : *p == '\n' ? "\\n" : "\\\"");
        p++;
    }
}

/* {a="x",b="y"} with an optional le="..." last; nothing for no labels at all. */
static void put_labels(cg_buf_t *b, const cg_metric_t *f, const cg_metric_series_t *s,
                       const char *le)
{
    if (!f->n_labels && !le)
        return;
    cg_buf_putc(b, '{');
    for (size_t i = 0; i < f->n_labels; i++) {
        cg_buf_printf(b, "%s%s=\"", i ? "," : "", f->label_names[i]);
        put_escaped(b, s->values[i], s->lens[i], 1);
        cg_buf_putc(b, '"');
    }
    if (le)
        cg_buf_printf(b, "%sle=\"%s\"", f->n_labels ? "," : "", le);
    cg_buf_putc(b, '}');
}

static void render_series(cg_buf_t *b, const cg_metric_t *f, const cg_metric_series_t *s)
{
    if (f->type == METRIC_COUNTER) {
        cg_buf_puts(b, f->name);
        put_labels(b, f, s, NULL);
        cg_buf_printf(b, " %" PRIu64 "\n", atomic_load_explicit(&s->value, memory_order_relaxed));
        return;
    }
    if (f->type == METRIC_GAUGE) {
        if (atomic_load_explicit(&s->hidden, memory_order_relaxed))
            return;
        cg_buf_puts(b, f->name);
        put_labels(b, f, s, NULL);
        cg_buf_putc(b, ' ');
        put_double(b, bitsd(atomic_load_explicit(&s->value, memory_order_relaxed)));
        cg_buf_putc(b, '\n');
        return;
    }
    /* histogram: cumulative buckets; _count is the +Inf bucket of the same snapshot */
    uint64_t cum = 0;
    for (size_t i = 0; i <= f->n_bounds; i++) {
        cum += atomic_load_explicit(&s->buckets[i], memory_order_relaxed);
        char le[40];
        cg_buf_printf(b, "%s_bucket", f->name);
        put_labels(b, f, s, i < f->n_bounds ? fmt_double(le, sizeof(le), f->bounds[i]) : "+Inf");
        cg_buf_printf(b, " %" PRIu64 "\n", cum);
    }
    cg_buf_printf(b, "%s_sum", f->name);
    put_labels(b, f, s, NULL);
    cg_buf_putc(b, ' ');
    put_double(b, bitsd(atomic_load_explicit(&s->sum, memory_order_relaxed)));
    cg_buf_printf(b, "\n%s_count", f->name);
    put_labels(b, f, s, NULL);
    cg_buf_printf(b, " %" PRIu64 "\n", cum);
}

cg_err_t cg_metrics_render(cg_metrics_t *m, cg_buf_t *b)
{
    static const char *const types[] = {"counter", "gauge", "histogram"};
    pthread_mutex_lock(&m->lock);
    for (size_t i = 0; i < m->n_collect; i++)
        m->collect[i].fn(m->collect[i].opaque);
    int any_labels = 0;
    for (const cg_metric_t *f = m->head; f; f = f->next) {
        cg_buf_printf(b, "# HELP %s ", f->name);
        put_escaped(b, f->help, strlen(f->help), 0);
        cg_buf_printf(b, "\n# TYPE %s %s\n", f->name, types[f->type]);
        size_t n = atomic_load_explicit(&((cg_metric_t *)f)->n, memory_order_acquire);
        for (size_t i = 0; i < n; i++)
            render_series(b, f, f->slots[i]);
        if (f->overflow &&
            atomic_load_explicit(&((cg_metric_t *)f)->overflow_used, memory_order_relaxed))
            render_series(b, f, f->overflow);
        any_labels |= f->n_labels > 0;
    }
    if (any_labels) {
        cg_buf_puts(b, "# HELP cohortgate_metrics_series_refused_total Updates whose label set "
                       "was refused because the metric reached its series cap (they went to the "
                       "__overflow__ series).\n"
                       "# TYPE cohortgate_metrics_series_refused_total counter\n");
        for (const cg_metric_t *f = m->head; f; f = f->next)
            if (f->n_labels)
                cg_buf_printf(
                    b, "cohortgate_metrics_series_refused_total{metric=\"%s\"} %" PRIu64 "\n",
                    f->name,
                    atomic_load_explicit(&((cg_metric_t *)f)->refused, memory_order_relaxed));
    }
    pthread_mutex_unlock(&m->lock);
    return b->failed ? CG_ERR_NOMEM : CG_OK;
}

/* ---- the HTTP endpoint ---- */

struct cg_metrics_server {
    int fd;
    int wake[2]; /* a byte on wake[1] stops the thread, whatever it waits on */
    pthread_t thread;
    int port;
    char address[80];
    cg_metrics_t *metrics;
    cg_metrics_health_fn *health;
    void *opaque;
    cg_metrics_server_opts_t opts;
    char *req;     /* max_request bytes */
    cg_buf_t body; /* reused per response */
};

int cg_metrics_listen_off(const char *listen)
{
    return !listen || !*listen || !strcmp(listen, "off");
}

int cg_metrics_listen_parse(const char *listen, char *host, size_t host_size, char *port,
                            size_t port_size, char *errstr, size_t errstr_size)
{
    const char *h = listen, *h_end, *p;
    if (listen[0] == '[') { /* [IPv6]:PORT */
        h = listen + 1;
        h_end = strchr(h, ']');
        if (!h_end || h_end[1] != ':') {
            snprintf(errstr, errstr_size, "'%s' is not [IPV6]:PORT", listen);
            return -1;
        }
        p = h_end + 2;
    } else {
        h_end = strrchr(listen, ':');
        if (!h_end) {
            snprintf(errstr, errstr_size, "'%s' is not HOST:PORT (for example 127.0.0.1:9464)",
                     listen);
            return -1;
        }
        if (memchr(listen, ':', (size_t)(h_end - listen))) {
            snprintf(errstr, errstr_size, "'%s': an IPv6 address goes in brackets ([::1]:9464)",
                     listen);
            return -1;
        }
        p = h_end + 1;
    }
    size_t hl = (size_t)(h_end - h), pl = strlen(p);
    long pv = 0;
    for (size_t i = 0; i < pl && pv <= 65535; i++)
        pv = p[i] >= '0' && p[i] <= '9' ? pv * 10 + (p[i] - '0') : 65536;
    if (hl == 0 || hl >= host_size) {
        snprintf(errstr, errstr_size,
                 "'%s' names no host (127.0.0.1 for this machine only, 0.0.0.0 for every "
                 "interface)",
                 listen);
        return -1;
    }
    if (pl == 0 || pl > 5 || pv > 65535 || pl >= port_size) {
        snprintf(errstr, errstr_size, "'%s': the port must be a number from 0 to 65535", listen);
        return -1;
    }
    memcpy(host, h, hl);
    host[hl] = '\0';
    memcpy(port, p, pl + 1);
    return 0;
}

/* 1 when fd is ready, 0 on timeout, -1 when the server is stopping or poll fails. */
static int wait_fd(cg_metrics_server_t *s, int fd, short events, int timeout_ms)
{
    struct pollfd p[2] = {{fd, events, 0}, {s->wake[0], POLLIN, 0}};
    int r = poll(p, 2, timeout_ms < 0 ? 0 : timeout_ms);
    if (r < 0)
        return errno == EINTR ? 0 : -1;
    if (p[1].revents)
        return -1;
    return r > 0 ? 1 : 0;
}

/* Sends all of p before the deadline; -1 when the client does not take it in time. */
static int send_all(cg_metrics_server_t *s, int c, const char *p, size_t n, int64_t deadline)
{
    while (n > 0) {
        ssize_t w = send(c, p, n, MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return -1;
        int64_t left = deadline - now_ms();
        if (left <= 0 || wait_fd(s, c, POLLOUT, (int)left) < 0)
            return -1;
    }
    return 0;
}

static void respond(cg_metrics_server_t *s, int c, int status, const char *ctype, const char *body,
                    size_t body_len, int head_only)
{
    const char *phrase = status == 200   ? "OK"
                         : status == 400 ? "Bad Request"
                         : status == 404 ? "Not Found"
                         : status == 405 ? "Method Not Allowed"
                         : status == 408 ? "Request Timeout"
                         : status == 431 ? "Request Header Fields Too Large"
                         : status == 500 ? "Internal Server Error"
                                         : "Service Unavailable";
    char head[512];
    int hl = snprintf(head, sizeof(head),
                      "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
                      "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
                      status, phrase, ctype, body_len, status == 405 ? "Allow: GET, HEAD\r\n" : "");
    int64_t deadline = now_ms() + s->opts.write_timeout_ms;
    if (send_all(s, c, head, (size_t)hl, deadline) == 0 && !head_only)
        send_all(s, c, body, body_len, deadline);
    /* Close gracefully: closing with unread input would reset the connection and could take
     * the response with it, so stop sending, then read what the client still sends, briefly. */
    shutdown(c, SHUT_WR);
    char scratch[4096];
    int64_t until = now_ms() + 200;
    for (size_t drained = 0; drained < (1u << 20);) {
        int64_t left = until - now_ms();
        if (left <= 0 || wait_fd(s, c, POLLIN, (int)left) <= 0)
            break;
        ssize_t r = recv(c, scratch, sizeof(scratch), 0);
        if (r <= 0 && !(r < 0 && (errno == EAGAIN || errno == EINTR)))
            break;
        drained += r > 0 ? (size_t)r : 0;
    }
}

static void respond_text(cg_metrics_server_t *s, int c, int status, const char *text, int head_only)
{
    respond(s, c, status, "text/plain; charset=utf-8", text, strlen(text), head_only);
}

/* Where the request head ends (just past the blank line), or 0 while it has not. */
static size_t head_end(const char *r, size_t len, size_t from)
{
    for (size_t i = from; i < len; i++) {
        if (r[i] != '\n')
            continue;
        if (i + 1 < len && r[i + 1] == '\n')
            return i + 2;
        if (i + 2 < len && r[i + 1] == '\r' && r[i + 2] == '\n')
            return i + 3;
    }
    return 0;
}

static void handle(cg_metrics_server_t *s, int c)
{
    char *r = s->req;
    size_t len = 0, end = 0, scanned = 0;
    int64_t deadline = now_ms() + s->opts.read_timeout_ms;
    /* each pass looks only at the new bytes (and the 2 before: a blank line may straddle) */
    while (!(end = head_end(r, len, scanned > 2 ? scanned - 2 : 0))) {
        scanned = len;
        if (len >= s->opts.max_request) {
            respond_text(s, c, 431, "request head too large\n", 0);
            return;
        }
        int64_t left = deadline - now_ms();
        if (left <= 0) { /* a slow or silent client must not hold the endpoint */
            respond_text(s, c, 408, "request not received in time\n", 0);
            return;
        }
        int w = wait_fd(s, c, POLLIN, (int)left);
        if (w < 0)
            return;
        if (w == 0)
            continue;
        ssize_t n = recv(c, r + len, s->opts.max_request - len, 0);
        if (n == 0)
            return; /* gone before a whole request */
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                continue;
            return;
        }
        len += (size_t)n;
    }
    /* the request line: METHOD SP TARGET SP HTTP/1.x */
    char *line_end = memchr(r, '\n', end);
    *line_end = '\0';
    if (line_end > r && line_end[-1] == '\r')
        line_end[-1] = '\0';
    char *sp1 = strchr(r, ' '), *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    if (!sp1 || !sp2 || sp1 == r || sp2 == sp1 + 1 || strncmp(sp2 + 1, "HTTP/1.", 7)) {
        respond_text(s, c, 400, "bad request\n", 0);
        return;
    }
    *sp1 = *sp2 = '\0';
    int head_only = !strcmp(r, "HEAD");
    if (strcmp(r, "GET") && !head_only) {
        respond_text(s, c, 405, "only GET and HEAD\n", 0);
        return;
    }
    char *target = sp1 + 1;
    target[strcspn(target, "?#")] = '\0'; /* a query string changes nothing */
    if (!strcmp(target, "/metrics")) {
        cg_buf_reset(&s->body);
        if (cg_metrics_render(s->metrics, &s->body) != CG_OK) {
            respond_text(s, c, 500, "out of memory\n", head_only);
            return;
        }
        respond(s, c, 200, "text/plain; version=0.0.4; charset=utf-8", s->body.data, s->body.len,
                head_only);
    } else if (!strcmp(target, "/healthz")) {
        char reason[300] = "ok";
        int status = s->health ? s->health(s->opaque, reason, sizeof(reason) - 1) : 200;
        strcat(reason, "\n");
        respond_text(s, c, status, reason, head_only);
    } else {
        respond_text(s, c, 404, "not found: try /metrics or /healthz\n", head_only);
    }
}

static void *serve(void *arg)
{
    cg_metrics_server_t *s = arg;
    for (;;) {
        struct pollfd p[2] = {{s->fd, POLLIN, 0}, {s->wake[0], POLLIN, 0}};
        if (poll(p, 2, -1) < 0 && errno != EINTR)
            break;
        if (p[1].revents)
            break;
        if (!(p[0].revents & POLLIN))
            continue;
        int c = accept4(s->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (c < 0) {
            /* out of descriptors: the listener stays readable, so back off instead of spinning */
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                poll(&p[1], 1, 100);
            continue;
        }
        handle(s, c);
        close(c);
    }
    return NULL;
}

cg_metrics_server_t *cg_metrics_server_start(const char *addr, cg_metrics_t *m,
                                             cg_metrics_health_fn *health, void *opaque,
                                             const cg_metrics_server_opts_t *opts, char *errstr,
                                             size_t errstr_size)
{
    char host[256], port[8];
    if (cg_metrics_listen_off(addr)) {
        snprintf(errstr, errstr_size, "metrics.addr is off");
        return NULL;
    }
    if (cg_metrics_listen_parse(addr, host, sizeof(host), port, sizeof(port), errstr, errstr_size))
        return NULL;
    cg_metrics_server_t *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    s->fd = s->wake[0] = s->wake[1] = -1;
    s->metrics = m;
    s->health = health;
    s->opaque = opaque;
    if (opts)
        s->opts = *opts;
    if (s->opts.read_timeout_ms <= 0)
        s->opts.read_timeout_ms = 5000;
    if (s->opts.write_timeout_ms <= 0)
        s->opts.write_timeout_ms = 10000;
    if (s->opts.max_request < 64)
        s->opts.max_request = 8192;
    cg_buf_init(&s->body);
    if (!(s->req = malloc(s->opts.max_request))) {
        snprintf(errstr, errstr_size, "out of memory");
        goto fail;
    }

    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int gai = getaddrinfo(host, port, &hints, &res);
    if (gai) {
        snprintf(errstr, errstr_size, "%s: %s", addr, gai_strerror(gai));
        goto fail;
    }
    int err = 0;
    for (struct addrinfo *ai = res; ai && s->fd < 0; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) {
            err = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, 16)) {
            err = errno;
            close(fd);
            continue;
        }
        s->fd = fd;
    }
    freeaddrinfo(res);
    if (s->fd < 0) {
        snprintf(errstr, errstr_size, "%s: %s", addr, strerror(err));
        goto fail;
    }
    struct sockaddr_storage sa;
    socklen_t sl = sizeof(sa);
    char ip[INET6_ADDRSTRLEN] = "?";
    if (getsockname(s->fd, (struct sockaddr *)&sa, &sl) == 0) {
        if (sa.ss_family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&sa;
            inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof(ip));
            s->port = ntohs(a->sin6_port);
            snprintf(s->address, sizeof(s->address), "[%s]:%d", ip, s->port);
        } else {
            struct sockaddr_in *a = (struct sockaddr_in *)&sa;
            inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
            s->port = ntohs(a->sin_port);
            snprintf(s->address, sizeof(s->address), "%s:%d", ip, s->port);
        }
    }
    if (pipe2(s->wake, O_CLOEXEC | O_NONBLOCK)) {
        snprintf(errstr, errstr_size, "pipe: %s", strerror(errno));
        goto fail;
    }
    /* signals (SIGTERM, SIGHUP) belong to the main thread: this one inherits a full mask */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&s->thread, NULL, serve, s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc) {
        snprintf(errstr, errstr_size, "cannot start a thread: %s", strerror(rc));
        goto fail;
    }
    return s;
fail:
    if (s->fd >= 0)
        close(s->fd);
    if (s->wake[0] >= 0) {
        close(s->wake[0]);
        close(s->wake[1]);
    }
    cg_buf_free(&s->body);
    free(s->req);
    free(s);
    return NULL;
}

int cg_metrics_server_port(const cg_metrics_server_t *s)
{
    return s ? s->port : -1;
}

const char *cg_metrics_server_address(const cg_metrics_server_t *s)
{
    return s ? s->address : "";
}

void cg_metrics_server_stop(cg_metrics_server_t *s)
{
    if (!s)
        return;
    char one = 1;
    while (write(s->wake[1], &one, 1) < 0 && errno == EINTR)
        ;
    pthread_join(s->thread, NULL);
    close(s->fd);
    close(s->wake[0]);
    close(s->wake[1]);
    cg_buf_free(&s->body);
    free(s->req);
    free(s);
}

/* ---- the gateway's metric set ---- */

enum { GW_RUNNING = 0, GW_STOPPING, GW_FATAL };

struct cg_metrics_gw {
    cg_metrics_t *reg;
    cg_metric_t *in, *rows, *dlq, *latency, *lag, *tx, *reloads;
    cg_metric_series_t *s_latency, *s_outq, *s_paused, *s_assigned, *s_rss, *s_reload_ok,
        *s_reload_failed;
    rd_kafka_t *producer; /* set before the endpoint's thread starts, so it sees it */
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
    if (g->producer)
        cg_metric_set(g->s_outq, rd_kafka_outq_len(g->producer));
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
                                    "Reloads of specs and cohorts (SIGHUP), by result.", "result");
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
    cg_metrics_server_stop(g->server); /* its thread reads the registry and the producer */
    cg_metrics_destroy(g->reg);
    free(g);
}

cg_metrics_t *cg_metrics_gw_registry(cg_metrics_gw_t *g)
{
    return g ? g->reg : NULL;
}

int cg_metrics_gw_serve(cg_metrics_gw_t *g, const char *listen, rd_kafka_t *producer)
{
    if (!g)
        return -1;
    g->producer = producer;
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

void cg_metrics_gw_dead_letter(cg_metrics_gw_t *g, const char *stage, const char *code)
{
    if (g)
        cg_metric_inc(cg_metric_get2(g->dlq, stage, code), 1);
}

/* A header's value as a C string (cut to the buffer); "" when absent. */
static const char *header(rd_kafka_headers_t *h, const char *name, char *buf, size_t n)
{
    const void *v;
    size_t len;
    buf[0] = '\0';
    if (h && rd_kafka_header_get_last(h, name, &v, &len) == RD_KAFKA_RESP_ERR_NO_ERROR && v) {
        len = len < n - 1 ? len : n - 1;
        memcpy(buf, v, len);
        buf[len] = '\0';
    }
    return buf;
}

void cg_metrics_gw_delivered(cg_metrics_gw_t *g, const rd_kafka_message_t *m, int dead_letter)
{
    if (!g)
        return;
    rd_kafka_headers_t *h = NULL;
    if (rd_kafka_message_headers(m, &h) != RD_KAFKA_RESP_ERR_NO_ERROR)
        h = NULL;
    char a[CG_METRICS_MAX_VALUE + 1], b[CG_METRICS_MAX_VALUE + 1];
    if (dead_letter)
        cg_metrics_gw_dead_letter(g, header(h, "cg.error.stage", a, sizeof(a)),
                                  header(h, "cg.error.code", b, sizeof(b)));
    else
        cg_metrics_gw_row_out(g, m->rkt ? rd_kafka_topic_name(m->rkt) : "",
                              header(h, "cg.spec", a, sizeof(a)));
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
