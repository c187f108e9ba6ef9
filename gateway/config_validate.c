/* config_validate.c - what a daemon refuses at start once its config has loaded, in one place
 * that `check -c` calls too (cg_config_validate, cg_config.h): the chosen plug-ins' validate and
 * whether they can do the delivery semantics asked for. Connects to nothing. */
#include "cg_config.h"

#include "cg_plugin.h"

#include <string.h>

#define CG_VALIDATE_MAX_PROBLEMS 64

/* Appends a located error; counts it even when errs is full, so the caller knows the total. */
static void add(const cg_config_t *cfg, const cg_config_problem_t *pr, cg_error_t *errs, size_t max,
                size_t *n)
{
    int line = 1, col = 1;
    if (pr->n_keys > 0)
        cg_config_locate(cfg, pr->keys, pr->index, pr->n_keys, &line, &col);
    if (*n < max)
        cg_error_set(&errs[*n], CG_ERR_CONFIG, cfg->path, line, col, "%s", pr->text);
    (*n)++;
}

static void run_validate(const cg_config_t *cfg, const cg_config_map_t *map,
                         size_t (*validate)(const void *, const cg_config_t *,
                                            cg_config_problem_t *, size_t),
                         cg_error_t *errs, size_t max, size_t *n)
{
    static cg_config_problem_t prs[CG_VALIDATE_MAX_PROBLEMS];
    memset(prs, 0, sizeof(prs));
    size_t k = validate(cg_config_plugin_conf(cfg, map), cfg, prs, CG_VALIDATE_MAX_PROBLEMS);
    for (size_t i = 0; i < k && i < CG_VALIDATE_MAX_PROBLEMS; i++)
        add(cfg, &prs[i], errs, max, n);
}

size_t cg_config_validate(const cg_config_t *cfg, cg_error_t *errs, size_t max)
{
    size_t n = 0;
    const cg_source_plugin_t *sp = cg_source_plugin_find(cfg->source ? cfg->source : "kafka");
    const cg_sink_plugin_t *kp = cg_sink_plugin_find(cfg->sink ? cfg->sink : "kafka");
    if (!sp || !kp) /* the loader refused it already */
        return 0;
    if (sp->validate)
        run_validate(cfg, sp->config_map, sp->validate, errs, max, &n);
    /* a plug-in whose source and sink share one validate (Kafka's) validates once */
    if (kp->validate && !(kp->validate == sp->validate && kp->config_map == sp->config_map))
        run_validate(cfg, kp->config_map, kp->validate, errs, max, &n);
    /* pseudonym.authorities: what the mapping bundle would refuse, at its place in the file */
    cg_pseudo_authority_opts_t ao = cg_config_authority_opts(cfg);
    cg_pseudo_authority_bad_t bad;
    cg_config_problem_t apr = {.keys = {"pseudonym", "authorities"}, .n_keys = 2};
    cg_pseudo_authorities_t *auth =
        cg_pseudo_authorities_new(&ao, &bad, apr.text, sizeof(apr.text));
    if (!auth) {
        if (bad.table) {
            const cg_pseudo_pair_t *t = !strcmp(bad.table, "aliases") ? ao.aliases : ao.defaults;
            apr.keys[2] = bad.table;
            apr.keys[3] = t[bad.index].from;
            apr.n_keys = 4;
        }
        add(cfg, &apr, errs, max, &n);
    }
    cg_pseudo_authorities_destroy(auth);
    if (cfg->semantics == CG_DELIVERY_EXACTLY_ONCE && (!kp->txn_commit || !sp->seek)) {
        cg_config_problem_t pr = {.keys = {"delivery", "semantics"}, .n_keys = 2};
        snprintf(pr.text, sizeof(pr.text),
                 "'delivery.semantics' exactly-once needs a source that can rewind and a sink "
                 "with transactions: the %s %s has none",
                 sp->seek ? kp->name : sp->name, sp->seek ? "sink" : "source");
        add(cfg, &pr, errs, max, &n);
    }
    return n;
}
