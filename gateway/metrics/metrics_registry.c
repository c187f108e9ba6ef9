/* metrics_registry.c - the metrics registry and its Prometheus text renderer (see cg_metrics.h).
 * The renderer lives beside the registry because it walks the same lock-free series slots. */
#include "cg_metrics.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
    uint64_t uid; /* never reused: tells a freed metric from one made at its address */
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
    static _Atomic uint64_t uids;
    f->uid = atomic_fetch_add(&uids, 1) + 1;
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

/* A thread's recent look-ups. Callers ask with the same label strings again and again (a topic's
 * name, a spec's, per record), so a hit by the strings' addresses skips the length, the hash and
 * the search; the text is still compared, so that another string written at a freed one's
 * address never finds the wrong series, and the metric's uid tells a freed metric from one made
 * at its address before the memo's series is looked at. */
#define GET_MEMO 16
typedef struct get_memo {
    uint64_t uid;
    const char *v[CG_METRICS_MAX_LABELS];
    cg_metric_series_t *s;
} get_memo_t;
static _Thread_local get_memo_t get_memo[GET_MEMO];

static get_memo_t *memo_slot(const cg_metric_t *f, const char *const *v)
{
    uintptr_t h = (uintptr_t)f->uid * 0x9E3779B1u;
    for (size_t i = 0; i < f->n_labels; i++)
        h ^= (uintptr_t)v[i] >> 3 ^ (uintptr_t)v[i] >> 9;
    return &get_memo[h % GET_MEMO];
}

static int memo_hit(const get_memo_t *g, const cg_metric_t *f, const char *const *v)
{
    if (g->uid != f->uid)
        return 0;
    for (size_t i = 0; i < f->n_labels; i++)
        if (g->v[i] != v[i] || strncmp(g->s->values[i], v[i], g->s->lens[i]) ||
            v[i][g->s->lens[i]] != '\0')
            return 0;
    return 1;
}

cg_metric_series_t *cg_metric_get(cg_metric_t *f, const char *const *values)
{
    if (!f)
        return NULL;
    const char *v[CG_METRICS_MAX_LABELS] = {NULL};
    size_t len[CG_METRICS_MAX_LABELS];
    for (size_t i = 0; i < f->n_labels; i++)
        v[i] = values && values[i] ? values[i] : "";
    get_memo_t *g = memo_slot(f, v);
    if (memo_hit(g, f, v))
        return g->s;
    for (size_t i = 0; i < f->n_labels; i++)
        len[i] = strnlen(v[i], CG_METRICS_MAX_VALUE);
    uint64_t hash = hash_values(v, len, f->n_labels);
    size_t n = atomic_load_explicit(&f->n, memory_order_acquire);
    cg_metric_series_t *s = find(f, 0, n, hash, v, len);
    if (s) {
        g->uid = f->uid;
        memcpy(g->v, v, sizeof(g->v));
        g->s = s;
        return s;
    }
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
