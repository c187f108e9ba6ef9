/* policy.c - a subscriber's data-use policy compiled against the catalogue into a plan per
 * table: what each column becomes and the level it leaves at (see cg_release.h). Everything a
 * policy grants that the catalogue forbids is refused here, so `check` and the daemons refuse
 * the same policies and releasing a row never has to decide anything. */
#include "policy_impl.h"

#include "cg_jsonpos.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An error of the policy named name (its subscriber): the caller locates it by its text. */
static void perr(cg_jsonpos_errors_t *e, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void perr(cg_jsonpos_errors_t *e, const char *name, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cg_jsonpos_errors_add(e, CG_ERR_CONFIG, name, 0, 0, fmt, ap);
    va_end(ap);
}

cg_pseudo_key_t *cg_release_derive_key(const cg_pseudo_t *site, const char *name, char *errstr,
                                       size_t errstr_size)
{
    static const char label[] = "\0cohortgate/subscriber-key/v1\x1F";
    size_t l = sizeof(label) - 1, n = strlen(name);
    unsigned char *buf = malloc(l + n), md[32];
    if (!buf) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    memcpy(buf, label, l);
    memcpy(buf + l, name, n);
    cg_pseudo_t *own = cg_pseudo_clone(site, errstr, errstr_size); /* the site's is shared */
    cg_err_t rc = own ? cg_pseudo_hmac(own, buf, l + n, md) : CG_ERR_NOMEM;
    cg_pseudo_destroy(own);
    free(buf);
    if (rc != CG_OK) {
        snprintf(errstr, errstr_size, "cannot derive the subscriber's key");
        return NULL;
    }
    cg_pseudo_key_t *k = cg_pseudo_key_new(md, sizeof(md), errstr, errstr_size);
    OPENSSL_cleanse(md, sizeof(md));
    return k;
}

time_t cg_release_day_end(const char *s)
{
    int y, m, d;
    char rest;
    if (!s || strlen(s) != 10 || sscanf(s, "%4d-%2d-%2d%c", &y, &m, &d, &rest) != 3 ||
        s[4] != '-' || s[7] != '-' || y < 1970 || m < 1 || m > 12 || d < 1 ||
        d > cg_date_days_in_month(y, m))
        return (time_t)-1;
    return (time_t)(cg_date_days_from_civil(y, m, d) + 1) * 86400;
}

/* The level of a re-keyed pseudonym: that of the keyed ids (person_id ...) in the catalogue. */
#define PSEUDONYM_LEVEL 3

/* What the policy does with one column. */
static col_plan_t plan_column(const cg_policy_def_t *def, const cg_target_column_t *col,
                              cg_class_column_t e)
{
    col_plan_t p = {P_DROP, 0, e.level, 0};
    int max = def->max_level;
    cg_release_action_t act = def->levels[e.level];
    if ((e.flags & CG_CLASS_FREE_TEXT) && !def->free_text)
        return p;
    if (e.flags & CG_CLASS_PSEUDONYM) {
        /* a keyed id: this subscriber's key, never the site's. Re-keyed, a raw identifier (a
         * document id, a person_source_value) is a keyed id like the others: no higher than
         * PSEUDONYM_LEVEL, so that a retraction or a merge still reaches a level-3 database */
        p.level = e.level > PSEUDONYM_LEVEL ? PSEUDONYM_LEVEL : e.level;
        if (p.level <= max && def->levels[p.level] != CG_ACT_DROP)
            p.action = col->type == CG_COL_INT64 ? P_REKEY_INT : P_REKEY_TEXT;
        return p;
    }
    int can_gen = e.generalize && e.generalized_level <= max;
    if (act == CG_ACT_DROP)
        return p;
    if (act == CG_ACT_GENERALIZE || (act == CG_ACT_DEFAULT && e.level > max)) {
        if (can_gen) {
            p.action = P_GEN;
            p.gen = e.generalize;
            p.level = e.generalized_level;
            return p;
        }
        if (e.level > max)
            return p;
    }
    p.action = P_KEEP; /* act is keep (checked against max by the caller), or default within */
    return p;
}

/* The message's own time (a row's source time) as the catalogue would class an event date:
 * level 3, a quasi-identifier, generalized to the month or year at level 2. */
static col_plan_t source_time_plan(const cg_policy_def_t *def)
{
    static const cg_target_column_t col = {.name = "source_time", .type = CG_COL_DATETIME};
    cg_class_column_t e = {CG_CAT_MEDICAL_APPLICATION, 3, CG_CLASS_QUASI, CG_GEN_DATE, 2};
    return plan_column(def, &col, e);
}

static int granted_by_name(const cg_policy_def_t *def, const char *name)
{
    for (size_t i = 0; i < def->n_tables; i++)
        if (!strcmp(def->tables[i], name))
            return 1;
    return 0;
}

/* A short digest of everything that decides what the subscriber gets. */
static void policy_digest(cg_policy_t *p, const cg_policy_def_t *def, const cg_catalogue_t *cat)
{
    char canon[4096];
    size_t o =
        (size_t)snprintf(canon, sizeof(canon), "%s|%s|%s|%d|%d|%d|%d|%d|", def->name,
                         def->agreement ? def->agreement : "", def->expires, def->max_level,
                         def->dates_year, def->date_shift_days, def->age_top, def->free_text);
    for (int l = 1; l <= CG_RELEASE_LEVEL_MAX && o < sizeof(canon); l++)
        o += (size_t)snprintf(canon + o, sizeof(canon) - o, "%d", def->levels[l]);
    for (size_t i = 0; i < def->n_tables && o < sizeof(canon); i++)
        o += (size_t)snprintf(canon + o, sizeof(canon) - o, "|t:%s", def->tables[i]);
    for (size_t i = 0; i < def->n_cohorts && o < sizeof(canon); i++)
        o += (size_t)snprintf(canon + o, sizeof(canon) - o, "|c:%s", def->cohorts[i]);
    unsigned char md[32];
    unsigned n = 0;
    EVP_Digest(canon, o < sizeof(canon) ? o : sizeof(canon) - 1, md, &n, EVP_sha256(), NULL);
    char hex[9];
    for (int i = 0; i < 4; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    snprintf(p->version, sizeof(p->version), "%s+%s.%s",
             def->label && *def->label ? def->label : "policy", cg_catalogue_version(cat), hex);
}

cg_policy_t *cg_policy_compile(const cg_catalogue_t *cat, const cg_policy_def_t *def,
                               const cg_pseudo_key_t *key, cg_error_t *errs, size_t max_errs,
                               size_t *n_errs)
{
    cg_jsonpos_errors_t e = {errs, errs ? max_errs : 0, 0};
    const char *name = def && def->name ? def->name : "policy";
    cg_policy_t *p = calloc(1, sizeof(*p));
    char errstr[256];
    if (!p) {
        perr(&e, name, "out of memory");
        goto out;
    }
    static atomic_uint_fast64_t serials;
    p->serial = atomic_fetch_add(&serials, 1) + 1;
    if (def->max_level < 1 || def->max_level > CG_RELEASE_LEVEL_MAX)
        perr(&e, name, "max_level must be 1 to 5, not %d", def->max_level);
    if ((p->expires_at = cg_release_day_end(def->expires)) == (time_t)-1)
        perr(&e, name, "expires must be the agreement's last day as YYYY-MM-DD, not '%s'",
             def->expires ? def->expires : "");
    for (int l = 1; l <= CG_RELEASE_LEVEL_MAX; l++)
        if (def->levels[l] == CG_ACT_KEEP && l > def->max_level)
            perr(&e, name,
                 "levels.%d: keep grants level-%d columns to a subscriber whose max_level is %d "
                 "(the catalogue forbids it: generalize or drop them)",
                 l, l, def->max_level);
    for (size_t i = 0; i < def->n_tables; i++)
        if (!cg_target_table_any(def->tables[i]))
            perr(&e, name, "tables: no target has a table '%s'", def->tables[i]);
    if (e.n)
        goto out;
    if (!(p->name = strdup(def->name)) || !(p->agreement = strdup(def->agreement))) {
        perr(&e, name, "out of memory");
        goto out;
    }
    if (!(p->pseudo = cg_pseudo_new(key, 0, errstr, sizeof(errstr)))) {
        perr(&e, name, "key: %s", errstr);
        goto out;
    }
    p->max_level = def->max_level;
    p->dates_year = def->dates_year;
    p->shift_days = def->date_shift_days;
    p->age_top = def->age_top > 0 ? def->age_top : 90;
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    p->year_now = tm.tm_year + 1900;
    if (def->n_cohorts) {
        if (!(p->cohorts = calloc(def->n_cohorts, sizeof(*p->cohorts)))) {
            perr(&e, name, "out of memory");
            goto out;
        }
        for (size_t i = 0; i < def->n_cohorts; i++)
            if (!(p->cohorts[p->n_cohorts++] = strdup(def->cohorts[i]))) {
                perr(&e, name, "out of memory");
                goto out;
            }
    }
    /* the source time is an event time of the patient: as a level-3 date goes */
    uint8_t time_action = source_time_plan(def).action;
    /* a plan per table of every target */
    for (size_t ti = 0; cg_target_at(ti); ti++) {
        size_t n;
        const cg_target_table_t *tabs = cg_target_at(ti)->tables(&n);
        if (tabs && p->n_spans < CAT_TARGETS_MAX)
            p->spans[p->n_spans++] =
                (cat_span_t){(uintptr_t)tabs, (uintptr_t)(tabs + n), p->n_tables};
        for (size_t k = 0; tabs && k < n; k++) {
            const cg_target_table_t *t = &tabs[k];
            const cat_table_t *ct = cg_release__table(cat, t);
            table_plan_t *grown = realloc(p->tables, (p->n_tables + 1) * sizeof(*grown));
            if (!grown || !ct) {
                perr(&e, name, "out of memory");
                goto out;
            }
            p->tables = grown;
            table_plan_t *tp = &p->tables[p->n_tables++];
            memset(tp, 0, sizeof(*tp));
            tp->table = t;
            if (!(tp->cols = calloc(t->n_columns ? t->n_columns : 1, sizeof(*tp->cols)))) {
                perr(&e, name, "out of memory");
                goto out;
            }
            int banded = 0;
            for (size_t c = 0; c < t->n_columns; c++) {
                tp->cols[c] = plan_column(def, &t->columns[c], ct->cols[c]);
                if (tp->cols[c].action == P_GEN && tp->cols[c].gen == CG_GEN_AGE_BAND)
                    banded = 1;
            }
            /* a birth date-time goes to its year: its month is level 4 on its own */
            const cg_target_column_t *bdt = cg_target_column(t, "birth_datetime");
            if (bdt)
                tp->cols[bdt->index].year = 1;
            /* a birth date beside a banded year would give the band away (90+ especially) */
            const cg_target_column_t *bd = cg_target_column(t, "birth_datetime");
            if (banded && bd && tp->cols[bd->index].action != P_DROP)
                tp->cols[bd->index].action = P_DROP;
            int explicit_grant = granted_by_name(def, t->name);
            tp->granted = def->n_tables ? explicit_grant : 1;
            /* a table whose required column cannot go out is not released at all */
            for (size_t c = 0; c < t->n_columns; c++) {
                const cg_target_column_t *col = &t->columns[c];
                if (!col->required || tp->cols[c].action != P_DROP)
                    continue;
                if (explicit_grant) {
                    cg_class_column_t cc = ct->cols[c];
                    perr(&e, name,
                         "tables: '%s' cannot be released to this subscriber: its required column "
                         "%s (level %d%s) would be dropped at max_level %d",
                         t->name, col->name, cc.level,
                         (cc.flags & CG_CLASS_FREE_TEXT) && !def->free_text ? ", free text" : "",
                         def->max_level);
                }
                tp->granted = 0;
                break;
            }
            tp->time_action = time_action;
            if (tp->granted && !strcmp(t->name, CG_ROW_ORDER_RETRACTION)) {
                const cg_target_column_t *oc = cg_target_column(t, "order_id");
                p->order_ids = oc && tp->cols[oc->index].action == P_REKEY_TEXT;
            }
        }
    }
    if (e.n)
        goto out;
    policy_digest(p, def, cat);
out:
    if (n_errs)
        *n_errs = e.n;
    if (e.n) {
        cg_policy_destroy(p);
        return NULL;
    }
    return p;
}

void cg_policy_destroy(cg_policy_t *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n_tables; i++)
        free(p->tables[i].cols);
    free(p->tables);
    for (size_t i = 0; i < p->n_cohorts; i++)
        free(p->cohorts[i]);
    free(p->cohorts);
    cg_pseudo_destroy(p->pseudo);
    free(p->name);
    free(p->agreement);
    free(p);
}

const char *cg_policy_name(const cg_policy_t *p)
{
    return p->name;
}

const char *cg_policy_agreement(const cg_policy_t *p)
{
    return p->agreement;
}

const char *cg_policy_version(const cg_policy_t *p)
{
    return p->version;
}

int cg_policy_max_level(const cg_policy_t *p)
{
    return p->max_level;
}

int cg_policy_in_force(const cg_policy_t *p, time_t t)
{
    return t < p->expires_at;
}

const table_plan_t *cg_policy__plan(const cg_policy_t *p, const cg_target_table_t *t)
{
    size_t at = cat_span_find(p->spans, p->n_spans, t);
    if (at < p->n_tables && p->tables[at].table == t)
        return &p->tables[at];
    for (size_t i = 0; i < p->n_tables; i++)
        if (p->tables[i].table == t)
            return &p->tables[i];
    return NULL;
}

char *cg_policy_describe(const cg_policy_t *p, const cg_target_table_t *table)
{
    const table_plan_t *tp = cg_policy__plan(p, table);
    if (!tp)
        return NULL;
    static const char *const what[] = {"drop", "keep", "generalize", "re-key", "re-key"};
    static const char *const gen[] = {"", " (date)", " (age band)", " (zip3)"};
    size_t cap = 64 + table->n_columns * 96, o = 0;
    char *s = malloc(cap);
    if (!s)
        return NULL;
    o += (size_t)snprintf(s + o, cap - o, "%s: %s\n", table->name,
                          tp->granted ? "released" : "not released");
    for (size_t c = 0; c < table->n_columns && o < cap; c++) {
        const col_plan_t *cp = &tp->cols[c];
        if (cp->action == P_DROP)
            o += (size_t)snprintf(s + o, cap - o, "  %s: drop\n", table->columns[c].name);
        else
            o += (size_t)snprintf(s + o, cap - o, "  %s: %s%s (level %d)\n", table->columns[c].name,
                                  what[cp->action], gen[cp->gen], cp->level);
    }
    return s;
}
