/* release.c - graded release's bookkeeping in the engine: the subscribers loaded, what was
 * released and withheld counted (on the engine thread, as the records are handed to the sink)
 * and the audit records' text (produce.c writes them every release.audit_interval_ms as
 * outputs of the input that completed the interval, so that they commit with it). The rows
 * themselves are released on the workers (jobs.c). */
#include "engine.h"

#include "cg_log.h"
#include "cg_metrics_gw.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

typedef struct audit_table {
    const char *table; /* the target's static name */
    uint64_t by_level[CG_RELEASE_LEVEL_MAX + 1];
} audit_table_t;

typedef struct release_audit {
    audit_table_t *tables;
    size_t n, cap;
    uint64_t released;
    uint64_t withheld[CG_RELEASE__COUNT];
    int64_t since_ms; /* wall clock: the interval's start */
    int expired_logged;
    /* the released records' metric series by level, found once (not by labels per record) */
    cg_metric_series_t *series[CG_RELEASE_LEVEL_MAX + 1];
} release_audit_t;

static int64_t wall_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static void iso(int64_t ms, char out[32])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03dZ", (int)(ms % 1000));
}

struct release_audit *cg_engine_release_audit_new(size_t n)
{
    return calloc(n ? n : 1, sizeof(release_audit_t));
}

void cg_engine_release_audit_free(struct release_audit *a, size_t n)
{
    for (size_t i = 0; a && i < n; i++)
        free(a[i].tables);
    free(a);
}

void cg_engine_release_expired_logged(cg_engine_t *gw, size_t s)
{
    gw->audit[s].expired_logged = 1;
}

void cg_engine_release_policy_replaced(cg_engine_t *gw, size_t s)
{
    gw->audit[s].expired_logged = 0; /* an agreement the new policy has expired is said again */
    memset(gw->audit[s].series, 0, sizeof(gw->audit[s].series)); /* found again by name */
}

void cg_engine_release_count(cg_engine_t *gw, const job_t *j)
{
    if (!j->withheld)
        return;
    for (size_t s = 0; s < gw->subs->n; s++) {
        release_audit_t *a = &gw->audit[s];
        const char *name = gw->subs->v[s].name;
        for (int why = 1; why < CG_RELEASE__COUNT; why++) {
            uint32_t n = j->withheld[s * CG_RELEASE__COUNT + why];
            if (!n)
                continue;
            a->withheld[why] += n;
            cg_metrics_gw_withheld(gw->metrics, name,
                                   cg_release_outcome_name((cg_release_outcome_t)why), n);
            if (why == CG_RELEASE_EXPIRED && !a->expired_logged) {
                /* once: the feed stops, the others go on */
                cg_log(CG_LOG_ERROR, "release.agreement_expired",
                       "%s: agreement %s has expired: its feed stops (rows are counted in "
                       "cohortgate_release_withheld_total)",
                       name, cg_policy_agreement(gw->subs->v[s].policy));
                cg_metrics_gw_agreement(gw->metrics, name, 0);
                a->expired_logged = 1;
            }
        }
    }
}

void cg_engine_release_counted(cg_engine_t *gw, const job_rec_t *r)
{
    release_audit_t *a = &gw->audit[r->sub - 1];
    audit_table_t *t = NULL;
    for (size_t i = 0; i < a->n && !t; i++)
        if (a->tables[i].table == r->table)
            t = &a->tables[i];
    if (!t) {
        if (a->n == a->cap) {
            size_t cap = a->cap ? a->cap * 2 : 8;
            audit_table_t *g = realloc(a->tables, cap * sizeof(*g));
            if (!g)
                return; /* the metric below still counts it */
            a->tables = g;
            a->cap = cap;
        }
        t = &a->tables[a->n++];
        memset(t, 0, sizeof(*t));
        t->table = r->table;
    }
    a->released++;
    const char *name = gw->subs->v[r->sub - 1].name;
    if (r->level > CG_RELEASE_LEVEL_MAX) {
        cg_metrics_gw_released(gw->metrics, name, r->level, 1);
        return;
    }
    t->by_level[r->level]++;
    if (!a->series[r->level])
        a->series[r->level] = cg_metrics_gw_released_series(gw->metrics, name, r->level);
    cg_metric_inc(a->series[r->level], 1);
}

/* The audit record of subscriber s since its last one (a new string). */
static char *audit_json(cg_engine_t *gw, size_t s, int64_t to_ms)
{
    const cg_subscriber_t *sub = &gw->subs->v[s];
    release_audit_t *a = &gw->audit[s];
    char from[32], to[32];
    iso(a->since_ms, from);
    iso(to_ms, to);
    json_t *released = json_object(), *withheld = json_object();
    for (size_t i = 0; i < a->n; i++) {
        json_t *levels = json_object();
        for (int l = 1; l <= CG_RELEASE_LEVEL_MAX; l++)
            if (a->tables[i].by_level[l]) {
                char k[4];
                snprintf(k, sizeof(k), "%d", l);
                json_object_set_new(levels, k, json_integer((json_int_t)a->tables[i].by_level[l]));
            }
        json_object_set_new(released, a->tables[i].table, levels);
    }
    for (int why = 1; why < CG_RELEASE__COUNT; why++)
        json_object_set_new(withheld, cg_release_outcome_name((cg_release_outcome_t)why),
                            json_integer((json_int_t)a->withheld[why]));
    json_t *o = json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:i, s:s, s:s, s:I, s:o, s:o}", "type", "release", "subscriber",
        sub->name, "agreement", cg_policy_agreement(sub->policy), "policy",
        cg_policy_version(sub->policy), "catalogue", cg_catalogue_version(gw->subs->catalogue),
        "max_level", cg_policy_max_level(sub->policy), "from", from, "to", to, "released_total",
        (json_int_t)a->released, "released", released, "withheld", withheld);
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return text;
}

int cg_engine_release_audit_due(const cg_engine_t *gw, int force)
{
    return force || cg_engine_now_ms() >= gw->audit_due_ms;
}

char *cg_engine_release_audit_text(cg_engine_t *gw, size_t s, int64_t now_ms)
{
    const release_audit_t *a = &gw->audit[s];
    uint64_t withheld = 0;
    for (int why = 1; why < CG_RELEASE__COUNT; why++)
        withheld += a->withheld[why];
    if (!a->released && !withheld)
        return NULL; /* nothing happened: no record */
    return audit_json(gw, s, now_ms);
}

void cg_engine_release_audit_written(cg_engine_t *gw, size_t s, int64_t now_ms)
{
    release_audit_t *a = &gw->audit[s];
    a->n = 0; /* the table names stay allocated for the next interval */
    a->released = 0;
    memset(a->withheld, 0, sizeof(a->withheld));
    a->since_ms = now_ms;
}

void cg_engine_release_audit_rearm(cg_engine_t *gw)
{
    gw->audit_due_ms = cg_engine_now_ms() + gw->cfg->audit_interval_ms;
}

int64_t cg_engine_release_wall_ms(void)
{
    return wall_ms();
}
