/* release.c - graded release in the engine: every mapped row released to each subscriber under
 * its policy (cg_release.h; on the job's worker), what was released and withheld counted (on
 * the engine thread, as the records are handed to the sink), and audit records written per
 * release.audit_interval_ms as outputs of the input that completed the interval, so that they
 * commit with it. */
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
    uint64_t withheld[CG_RELEASE_REASONS];
    int64_t since_ms; /* wall clock: the interval's start */
    int expired_logged;
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

int cg_engine_release_setup(cg_engine_t *gw, char *errstr, size_t errstr_size)
{
    const cg_config_t *cfg = gw->cfg;
    if (!cfg->n_subscribers)
        return 0;
    enum { MAX_ERRS = 32 };
    cg_error_t errs[MAX_ERRS];
    size_t n = 0;
    gw->subs = cg_subscribers_load(cfg, gw->mapping, errs, MAX_ERRS, &n);
    if (!gw->subs) {
        char loc[1024];
        for (size_t i = 0; n > 1 && i < n && i < MAX_ERRS; i++)
            cg_log(CG_LOG_ERROR, "config.invalid", "%s",
                   cg_error_format(&errs[i], loc, sizeof(loc)));
        snprintf(errstr, errstr_size, "%s%s", cg_error_format(&errs[0], loc, sizeof(loc)),
                 n > 1 ? " (and more errors, each logged as config.invalid)" : "");
        return -1;
    }
    if (!(gw->audit = calloc(gw->subs->n, sizeof(*gw->audit)))) {
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    for (int i = 0; i < gw->n_workers; i++)
        if (!(gw->workers[i].scratch = cg_release_scratch_new())) {
            snprintf(errstr, errstr_size, "out of memory");
            return -1;
        }
    time_t now = time(NULL);
    for (size_t i = 0; i < gw->subs->n; i++) {
        const cg_subscriber_t *s = &gw->subs->v[i];
        int in_force = cg_policy_in_force(s->policy, now);
        gw->audit[i].since_ms = wall_ms();
        cg_metrics_gw_agreement(gw->metrics, s->name, in_force);
        cg_log(CG_LOG_INFO, "release.subscriber",
               "%s: level %d and below to %s under agreement %s, policy %s", s->name,
               cg_policy_max_level(s->policy), s->topic, cg_policy_agreement(s->policy),
               cg_policy_version(s->policy));
        if (!in_force) {
            cg_log(CG_LOG_ERROR, "release.agreement_expired",
                   "%s: agreement %s has expired: the subscriber gets nothing", s->name,
                   cg_policy_agreement(s->policy));
            gw->audit[i].expired_logged = 1;
        }
    }
    gw->audit_due_ms = cg_engine_now_ms() + cfg->audit_interval_ms;
    return 0;
}

void cg_engine_release_free(cg_engine_t *gw)
{
    for (int i = 0; gw->workers && i < gw->n_workers; i++) {
        cg_release_scratch_destroy(gw->workers[i].scratch);
        gw->workers[i].scratch = NULL;
        for (size_t k = 0; gw->workers[i].ring && k < CG_RING_CAP; k++) {
            free(gw->workers[i].ring[k].withheld);
            gw->workers[i].ring[k].withheld = NULL;
        }
    }
    for (size_t i = 0; gw->audit && i < gw->subs->n; i++)
        free(gw->audit[i].tables);
    free(gw->audit);
    gw->audit = NULL;
    cg_subscribers_destroy(gw->subs);
    gw->subs = NULL;
}

cg_err_t cg_engine_release_row(cg_engine_t *gw, worker_t *w, job_t *j, const cg_row_t *row,
                               const char *const *cohorts, size_t n_cohorts, time_t now)
{
    const cg_subscribers_t *subs = gw->subs;
    const char *set = NULL; /* the row's sensitive codes: the same for every subscriber */
    int level = cg_catalogue_row_level(subs->catalogue, row, &set);
    for (size_t s = 0; s < subs->n; s++) {
        cg_release_out_t out;
        cg_release_outcome_t why;
        cg_err_t rc = cg_release_row(subs->v[s].policy, row, cohorts, n_cohorts, level, set, now,
                                     w->scratch, &out, &why);
        if (rc != CG_OK)
            return rc;
        if (why != CG_RELEASE_OK) {
            if (!j->withheld &&
                !(j->withheld = calloc(subs->n * CG_RELEASE_REASONS, sizeof(*j->withheld))))
                return CG_ERR_NOMEM;
            j->withheld[s * CG_RELEASE_REASONS + why]++;
            continue;
        }
        size_t val_off = j->buf.len;
        /* no cohorts in a subscriber's record: the names of sensitive cohorts would say what
         * the catalogue withholds */
        if (cg_row_encode(&out.row, &out.src, NULL, 0, gw->encode_flags, &j->buf) != CG_OK)
            return CG_ERR_NOMEM;
        size_t val_len = j->buf.len - val_off, key_off = j->buf.len;
        if (out.key.len && cg_buf_append(&j->buf, out.key.ptr, out.key.len) != CG_OK)
            return CG_ERR_NOMEM;
        job_rec_t *r = cg_engine_job_add_rec(j);
        if (!r)
            return CG_ERR_NOMEM;
        *r = (job_rec_t){.table = row->table->name,
                         .spec = row->spec,
                         .rule = row->rule,
                         .op = cg_row_op_name((cg_row_op_t)row->op),
                         .spec_version = row->spec_version,
                         .key_off = key_off,
                         .key_len = out.key.len,
                         .val_off = val_off,
                         .val_len = val_len,
                         .sub = (int)s + 1,
                         .level = (uint8_t)out.level};
    }
    return CG_OK;
}

void cg_engine_release_count(cg_engine_t *gw, const job_t *j)
{
    if (!j->withheld)
        return;
    for (size_t s = 0; s < gw->subs->n; s++) {
        release_audit_t *a = &gw->audit[s];
        const char *name = gw->subs->v[s].name;
        for (int why = 1; why < CG_RELEASE_REASONS; why++) {
            uint32_t n = j->withheld[s * CG_RELEASE_REASONS + why];
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
    if (r->level <= CG_RELEASE_LEVEL_MAX)
        t->by_level[r->level]++;
    a->released++;
    cg_metrics_gw_released(gw->metrics, gw->subs->v[r->sub - 1].name, r->level, 1);
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
    for (int why = 1; why < CG_RELEASE_REASONS; why++)
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

int cg_engine_release_audit(cg_engine_t *gw, job_t *j, int force)
{
    if (!force && cg_engine_now_ms() < gw->audit_due_ms)
        return 1;
    int64_t now = wall_ms();
    for (size_t s = 0; s < gw->subs->n; s++) {
        release_audit_t *a = &gw->audit[s];
        uint64_t withheld = 0;
        for (int why = 1; why < CG_RELEASE_REASONS; why++)
            withheld += a->withheld[why];
        if (!a->released && !withheld)
            continue; /* nothing happened: no record */
        const cg_subscriber_t *sub = &gw->subs->v[s];
        char *text = audit_json(gw, s, now);
        if (!text) {
            cg_engine_fatal(gw, CG_ERR_NOMEM, "out of memory writing an audit record");
            return -1;
        }
        const char *hdrs[] = {"cg.subscriber", sub->name, "cg.policy",
                              cg_policy_version(sub->policy)};
        cg_sink_result_t rc = cg_engine_produce_one(
            gw, gw->cfg->audit_topic, 0, sub->name, strlen(sub->name), text, strlen(text), NULL,
            hdrs, sizeof(hdrs) / sizeof(hdrs[0]), j ? j->dm : NULL);
        free(text);
        if (rc == CG_SINK_FULL)
            return 0; /* this one and the rest again on the next call */
        if (rc != CG_SINK_OK)
            return -1;
        a->n = 0; /* the table names stay allocated for the next interval */
        a->released = 0;
        memset(a->withheld, 0, sizeof(a->withheld));
        a->since_ms = now;
    }
    gw->audit_due_ms = cg_engine_now_ms() + gw->cfg->audit_interval_ms;
    return 1;
}
