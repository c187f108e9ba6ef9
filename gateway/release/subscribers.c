/* subscribers.c - the config's release section made into the catalogue and one compiled policy
 * per subscriber (cg_subscribers.h): what the config alone can say is wrong is located at its
 * setting; what the catalogue forbids comes from cg_policy_compile, located at the setting its
 * text names. */
#include "cg_subscribers.h"

#include "cg_jsonpos.h"
#include "cg_pseudo.h"

#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* The errors of the config's release section, located at its settings. */
typedef struct errs {
    const cg_config_t *cfg;
    cg_jsonpos_errors_t list;
} errs_t;

/* An error at release.subscribers[i].key (key NULL: the element; sub: a key below it). */
static void at(errs_t *e, size_t i, const char *key, const char *sub, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void at(errs_t *e, size_t i, const char *key, const char *sub, const char *fmt, ...)
{
    const char *keys[5] = {"release", "subscribers", NULL, key, sub};
    int index[5] = {0, 0, (int)i, 0, 0};
    int n = key ? (sub ? 5 : 4) : 3;
    int line = 1, col = 1;
    cg_config_locate(e->cfg, keys, index, n, &line, &col);
    va_list ap;
    va_start(ap, fmt);
    cg_jsonpos_errors_add(&e->list, CG_ERR_CONFIG, e->cfg->path, line, col, fmt, ap);
    va_end(ap);
}

char **cg_subscribers_layers(const cg_config_t *cfg, size_t *n)
{
    *n = 0;
    size_t k = cfg->n_catalogue ? cfg->n_catalogue : 1;
    char **v = calloc(k, sizeof(*v));
    if (!v)
        return NULL;
    if (cfg->n_catalogue) {
        for (size_t i = 0; i < k; i++)
            if (!(v[(*n)++] = strdup(cfg->catalogue[i]))) {
                cg_subscribers_free_layers(v, *n);
                return NULL;
            }
        return v;
    }
    /* beside the first spec layer: a folder of specs, or a spec file's folder */
    const char *spec = cfg->n_specs ? cfg->specs[0] : ".";
    struct stat st;
    char *copy = strdup(spec), *dir = NULL;
    if (copy) {
        const char *base = !stat(spec, &st) && S_ISDIR(st.st_mode) ? copy : dirname(copy);
        size_t l = strlen(base) + sizeof("/classification");
        if ((dir = malloc(l)))
            snprintf(dir, l, "%s/classification", base);
    }
    free(copy);
    if (!dir) {
        free(v);
        return NULL;
    }
    v[(*n)++] = dir;
    return v;
}

void cg_subscribers_free_layers(char **layers, size_t n)
{
    for (size_t i = 0; layers && i < n; i++)
        free(layers[i]);
    free(layers);
}

void cg_subscribers_destroy(cg_subscribers_t *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++)
        cg_policy_destroy(s->v[i].policy);
    free(s->v);
    cg_catalogue_destroy(s->catalogue);
    free(s);
}

/* The policy definition of subscriber i from the config; its levels map checked. */
static void def_of(errs_t *e, size_t i, const cg_config_subscriber_t *c, cg_policy_def_t *d)
{
    *d = (cg_policy_def_t){.name = c->name,
                           .agreement = c->agreement,
                           .expires = c->expires,
                           .max_level = c->max_level,
                           .tables = (const char *const *)c->tables,
                           .n_tables = c->n_tables,
                           .cohorts = (const char *const *)c->cohorts,
                           .n_cohorts = c->n_cohorts,
                           .dates_year = c->dates == 1,
                           .date_shift_days = c->date_shift_days,
                           .age_top = c->age_top,
                           .free_text = c->free_text,
                           .label = c->version};
    static const char *const acts[] = {"", "keep", "generalize", "drop"};
    for (size_t k = 0; k < c->n_levels; k++) {
        const cg_config_kv_t *kv = &c->levels[k];
        int level =
            strlen(kv->key) == 1 && kv->key[0] >= '1' && kv->key[0] <= '5' ? kv->key[0] - '0' : 0;
        int act = 0;
        for (int a = 1; a < 4; a++)
            if (kv->value && !strcmp(kv->value, acts[a]))
                act = a;
        if (!level)
            at(e, i, "levels", kv->key, "'levels' keys are the levels \"1\" to \"5\", not '%s'",
               kv->key);
        else if (!act)
            at(e, i, "levels", kv->key, "'levels.%s' is keep, generalize or drop, not '%s'",
               kv->key, kv->value ? kv->value : "");
        else
            d->levels[level] = (cg_release_action_t)act;
    }
}

/* The setting a compile error's text is about ("levels.4: ...", "tables: ...", "expires ..."). */
static void locate_compile(errs_t *e, size_t i, const char *text)
{
    static const char *const keys[] = {"levels", "tables", "expires", "max_level", "key_file"};
    for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
        size_t l = strlen(keys[k]);
        if (!strncmp(text, keys[k], l) && (text[l] == '.' || text[l] == ':' || text[l] == ' ')) {
            char sub[4] = {0};
            if (text[l] == '.' && text[l + 1])
                sub[0] = text[l + 1];
            at(e, i, keys[k], sub[0] ? sub : NULL, "subscriber '%s': %s",
               e->cfg->subscribers[i].name, text);
            return;
        }
    }
    at(e, i, NULL, NULL, "subscriber '%s': %s", e->cfg->subscribers[i].name, text);
}

static cg_pseudo_key_t *key_of(errs_t *e, size_t i, const cg_config_subscriber_t *c,
                               const cg_mapping_t *m)
{
    char why[256];
    cg_pseudo_key_t *k = NULL;
    if (c->key_file || c->key_env) {
        if (!(k = cg_pseudo_key_load(c->key_file, c->key_file ? NULL : c->key_env, why,
                                     sizeof(why))))
            at(e, i, c->key_file ? "key_file" : "key_env", NULL, "subscriber '%s': %s", c->name,
               why);
        return k;
    }
    const cg_pseudo_t *site = m ? cg_mapping_pseudo(m) : NULL;
    if (!site) {
        at(e, i, NULL, NULL,
           "subscriber '%s' has no key_file or key_env, and there is no site key to derive one "
           "from",
           c->name);
        return NULL;
    }
    if (!(k = cg_release_derive_key(site, c->name, why, sizeof(why))))
        at(e, i, NULL, NULL, "subscriber '%s': %s", c->name, why);
    return k;
}

cg_subscribers_t *cg_subscribers_load(const cg_config_t *cfg, const cg_mapping_t *m,
                                      cg_error_t *errs, size_t max, size_t *n_errs)
{
    errs_t e = {cfg, {errs, errs ? max : 0, 0}};
    cg_subscribers_t *s = calloc(1, sizeof(*s));
    if (!s || (cfg->n_subscribers && !(s->v = calloc(cfg->n_subscribers, sizeof(*s->v))))) {
        if (e.list.max)
            cg_error_set(&errs[0], CG_ERR_NOMEM, cfg->path, 0, 0, "out of memory");
        e.list.n = 1;
        goto out;
    }
    if (!cfg->n_subscribers)
        goto out;
    /* names and topics: each its own, and no topic another output's */
    const char *outputs[] = {cfg->output_topic, cfg->dead_letter_topic, cfg->quality_topic,
                             cfg->audit_topic};
    for (size_t i = 0; i < cfg->n_subscribers; i++) {
        const cg_config_subscriber_t *c = &cfg->subscribers[i];
        for (size_t k = 0; k < i; k++) {
            if (!strcmp(c->name, cfg->subscribers[k].name))
                at(&e, i, "name", NULL, "subscriber '%s' is declared twice", c->name);
            if (!strcmp(c->topic, cfg->subscribers[k].topic))
                at(&e, i, "topic", NULL, "subscribers '%s' and '%s' share the topic '%s'",
                   cfg->subscribers[k].name, c->name, c->topic);
        }
        for (size_t k = 0; k < sizeof(outputs) / sizeof(outputs[0]); k++)
            if (outputs[k] && !strcmp(c->topic, outputs[k]))
                at(&e, i, "topic", NULL,
                   "subscriber '%s' would get the topic '%s', which has other records", c->name,
                   c->topic);
        if (cfg->cohorts && !strncmp(c->topic, "cohort.", 7))
            at(&e, i, "topic", NULL,
               "subscriber '%s': '%s' looks like a cohort topic (cohorts.topic); give it its own",
               c->name, c->topic);
    }
    size_t n_layers = 0;
    char **layers = cg_subscribers_layers(cfg, &n_layers);
    if (!layers) {
        at(&e, 0, NULL, NULL, "out of memory");
        goto out;
    }
    size_t nc = 0;
    s->catalogue = cg_catalogue_load((const char *const *)layers, n_layers,
                                     e.list.max > e.list.n ? errs + e.list.n : NULL,
                                     e.list.max > e.list.n ? e.list.max - e.list.n : 0, &nc);
    cg_subscribers_free_layers(layers, n_layers);
    e.list.n += nc;
    if (!s->catalogue)
        goto out;
    for (size_t i = 0; i < cfg->n_subscribers; i++) {
        const cg_config_subscriber_t *c = &cfg->subscribers[i];
        cg_policy_def_t d;
        def_of(&e, i, c, &d);
        cg_pseudo_key_t *k = key_of(&e, i, c, m);
        if (!k) {
            cg_pseudo_key_destroy(k);
            continue;
        }
        cg_error_t perrs[16];
        size_t np = 0;
        cg_policy_t *p = cg_policy_compile(s->catalogue, &d, k, perrs, 16, &np);
        cg_pseudo_key_destroy(k);
        for (size_t x = 0; x < np && x < 16; x++)
            locate_compile(&e, i, perrs[x].text);
        if (np > 16)
            e.list.n += np - 16;
        s->v[s->n++] = (cg_subscriber_t){c->name, c->topic, p};
        if (!p)
            s->n--;
    }
out:
    if (n_errs)
        *n_errs = e.list.n;
    if (e.list.n) {
        cg_subscribers_destroy(s);
        return NULL;
    }
    return s;
}
