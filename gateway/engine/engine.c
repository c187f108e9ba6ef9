/* engine.c - the gateway's life cycle and run loop: plug-ins made from the config, the mapping
 * bundle loaded (and reloaded on SIGHUP), then take inputs from the source, map, produce,
 * commit, until stopped or idle; then drain and commit within delivery.drain_timeout_ms. */
#include "engine.h"

#include "cg_cohort.h"
#include "cg_log.h"
#include "cg_metrics_gw.h"
#include "cg_spec.h"
#include "cg_vocab.h"
#include "testing.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* What `check` warns about, one log line each, so that a daemon started without a check still
 * says what is most likely a mistake: the spec layers' (lookups that find no vocabulary), then
 * the specs' own (cg_specset_warnings, at most CG_SPEC_MAX_WARNINGS as check --spec prints). */
static void log_warnings(const cg_mapping_t *m)
{
    const cg_error_t *w;
    size_t n = cg_mapping_warnings(m, &w), n_spec;
    const cg_error_t *sw = cg_specset_warnings(cg_mapping_specs(m), &n_spec);
    char line[CG_ERROR_FORMAT_SIZE];
    for (size_t i = 0; i < n; i++)
        cg_log(CG_LOG_WARN, "mapping.warning", "%s", cg_error_format(&w[i], line, sizeof(line)));
    for (size_t i = 0; i < n_spec && i < CG_SPEC_MAX_WARNINGS; i++)
        cg_log(CG_LOG_WARN, "spec.warning", "%s", cg_error_format(&sw[i], line, sizeof(line)));
}

/* Loads what mapping needs (cg_mapping.h): vocabularies, the pseudonym key, specs, cohorts. */
static int load_mapping(cg_engine_t *gw, char *errstr, size_t errstr_size)
{
    cg_mapping_opts_t mo;
    cg_config_mapping_opts(gw->cfg, &mo);
    enum { MAX_ERRS = 32 };
    cg_error_t errs[MAX_ERRS];
    size_t n_errs = 0;
    gw->mapping = cg_mapping_load(&mo, errs, MAX_ERRS, &n_errs);
    if (!gw->mapping) {
        char loc[1024];
        /* every one in order, as `check -c` prints them; the first is also the reason */
        for (size_t i = 0; n_errs > 1 && i < n_errs && i < MAX_ERRS; i++)
            cg_log(CG_LOG_ERROR, "config.invalid", "%s",
                   cg_error_format(&errs[i], loc, sizeof(loc)));
        if (n_errs > MAX_ERRS)
            cg_log(CG_LOG_ERROR, "config.invalid", "… and %zu more error(s)", n_errs - MAX_ERRS);
        snprintf(errstr, errstr_size, "%s", cg_error_format(&errs[0], loc, sizeof(loc)));
        if (n_errs > 1)
            snprintf(errstr + strlen(errstr), errstr_size - strlen(errstr),
                     " (and %zu more error(s), each logged as config.invalid)", n_errs - 1);
        return -1;
    }
    cg_mapping_worker_t *mws[CG_GATEWAY_MAX_WORKERS];
    if (cg_engine_workers_mapping(gw, gw->mapping, mws, errstr, errstr_size))
        return -1;
    for (int i = 0; i < gw->n_workers; i++)
        gw->workers[i].mw = mws[i];
    const cg_cohortset_t *cohorts = cg_mapping_cohorts(gw->mapping);
    if (cohorts)
        cg_log(CG_LOG_INFO, "cohorts.loaded", "%zu cohort(s) from %s", cg_cohortset_count(cohorts),
               cg_mapping_cohorts_path(gw->mapping));
    log_warnings(gw->mapping);
    cg_log(CG_LOG_INFO, "mapping.loaded", "%zu spec(s) from %s, %zu vocabulary code(s)",
           cg_specset_count(cg_mapping_specs(gw->mapping)), cg_mapping_specs_path(gw->mapping),
           cg_vocab_count(cg_mapping_vocab(gw->mapping)));
    return 0;
}

/* Graded release (release.*): the catalogue and each subscriber's policy, compiled as `check`
 * compiles them; the workers' scratch space; the audit's counts (release.c). */
static int release_setup(cg_engine_t *gw, char *errstr, size_t errstr_size)
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
    if (!(gw->audit = cg_engine_release_audit_new(gw->subs->n))) {
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
        cg_engine_release_audit_written(gw, i, cg_engine_release_wall_ms());
        cg_metrics_gw_agreement(gw->metrics, s->name, in_force);
        cg_log(CG_LOG_INFO, "release.subscriber",
               "%s: level %d and below to %s under agreement %s, policy %s", s->name,
               cg_policy_max_level(s->policy), s->topic, cg_policy_agreement(s->policy),
               cg_policy_version(s->policy));
        if (!in_force) {
            cg_log(CG_LOG_ERROR, "release.agreement_expired",
                   "%s: agreement %s has expired: the subscriber gets nothing", s->name,
                   cg_policy_agreement(s->policy));
            cg_engine_release_expired_logged(gw, i);
        }
    }
    cg_engine_release_audit_rearm(gw);
    return 0;
}

static void release_free(cg_engine_t *gw)
{
    for (int i = 0; gw->workers && i < gw->n_workers; i++) {
        cg_release_scratch_destroy(gw->workers[i].scratch);
        gw->workers[i].scratch = NULL;
        for (size_t k = 0; gw->workers[i].ring && k < CG_RING_CAP; k++) {
            free(gw->workers[i].ring[k].withheld);
            gw->workers[i].ring[k].withheld = NULL;
        }
    }
    cg_engine_release_audit_free(gw->audit, gw->subs ? gw->subs->n : 0);
    gw->audit = NULL;
    cg_subscribers_destroy(gw->subs);
    gw->subs = NULL;
    cg_config_destroy(gw->release_cfg);
    gw->release_cfg = NULL;
}

/* The same subscribers, in the same order, to the same topics: what a reload may not change
 * (their topics, counts and audit are set up at start). */
static const char *same_subscribers(const cg_subscribers_t *subs, const cg_config_t *cfg)
{
    if (cfg->n_subscribers != subs->n)
        return "a subscriber was added or removed";
    for (size_t i = 0; i < subs->n; i++)
        if (strcmp(cfg->subscribers[i].name, subs->v[i].name) ||
            strcmp(cfg->subscribers[i].topic, subs->v[i].topic))
            return "a subscriber's name, topic or place in the list changed";
    return NULL;
}

/* SIGHUP: the release section (of fresh, the config file read again) and the catalogue read
 * again and every policy compiled anew, swapped in only when all compile (as check -c would
 * accept them); *taken when the engine keeps fresh (its subscribers name its strings). What the
 * old policies released is audited under their version first. Adding, removing or renaming
 * subscribers needs a restart. Runs with no job in any ring, as reload_mapping. */
static int reload_release(cg_engine_t *gw, cg_config_t *fresh, int *taken)
{
    if (!gw->subs)
        return 0;
    if (!fresh) /* load_fresh said why */
        return -1;
    enum { MAX_ERRS = 32 };
    cg_error_t errs[MAX_ERRS];
    size_t n = 0;
    char loc[1024] = "";
    cg_subscribers_t *subs = NULL;
    cg_config_t *cfg = fresh;
    const char *changed = same_subscribers(gw->subs, cfg);
    if (!changed)
        subs = cg_subscribers_load(cfg, gw->mapping, errs, MAX_ERRS, &n);
    if (!subs) {
        for (size_t i = 1; !changed && i < n && i < MAX_ERRS; i++)
            cg_log(CG_LOG_ERROR, "config.invalid", "%s",
                   cg_error_format(&errs[i], loc, sizeof(loc)));
        cg_log(CG_LOG_ERROR, "reload.failed", "release: %s (the running policies stay)",
               changed ? changed
               : n     ? cg_error_format(&errs[0], loc, sizeof(loc))
                       : "out of memory");
        if (changed)
            cg_log(CG_LOG_ERROR, "reload.failed", "release: restart to change subscribers");
        return -1;
    }
    if ((gw->eos && cg_engine_txn_begin(gw)) || cg_engine_audit_produce(gw, NULL, 1) != 1)
        cg_log(CG_LOG_WARN, "release.audit_failed",
               "the audit of the policies being replaced could not be written now; its counts "
               "go into the next audit records");
    cg_subscribers_destroy(gw->subs);
    cg_config_destroy(gw->release_cfg);
    gw->subs = subs;
    gw->release_cfg = cfg;
    *taken = 1;
    time_t now = time(NULL);
    for (size_t i = 0; i < subs->n; i++) {
        const cg_subscriber_t *s = &subs->v[i];
        int in_force = cg_policy_in_force(s->policy, now);
        cg_engine_release_policy_replaced(gw, i);
        cg_metrics_gw_agreement(gw->metrics, s->name, in_force);
        cg_log(CG_LOG_INFO, "release.reloaded",
               "%s: level %d and below to %s under agreement %s, policy %s", s->name,
               cg_policy_max_level(s->policy), s->topic, cg_policy_agreement(s->policy),
               cg_policy_version(s->policy));
    }
    return 0;
}

/* Makes the source and the sink the config names, each with its own config struct. */
/* The sink's queue, for /metrics (cg_metrics_gw_queue_fn; opaque is the sink instance). */
static int sink_queue_len(void *opaque)
{
    const cg_sink_t *s = opaque;
    return s->p->queue_len(s->ctx);
}

static int plugins_new(cg_engine_t *gw, char *errstr, size_t errstr_size)
{
    const cg_config_t *cfg = gw->cfg;
    const char *src_name = cfg->source ? cfg->source : "kafka";
    const char *sink_name = cfg->sink ? cfg->sink : "kafka";
    const cg_source_plugin_t *sp = cg_source_plugin_find(src_name);
    const cg_sink_plugin_t *kp = cg_sink_plugin_find(sink_name);
    if (!sp || !kp) {
        snprintf(errstr, errstr_size, "no %s plug-in named '%s'", sp ? "sink" : "source",
                 sp ? sink_name : src_name);
        return -1;
    }
    if (gw->eos && (!kp->txn_commit || !sp->seek)) {
        snprintf(errstr, errstr_size,
                 "delivery.semantics exactly-once needs a source that can rewind and a sink with "
                 "transactions: the %s %s has none",
                 sp->seek ? sink_name : src_name, sp->seek ? "sink" : "source");
        return -1;
    }
    cg_plugin_env_t env = {.cfg = cfg,
                           .conf = cg_config_plugin_conf(cfg, sp->config_map),
                           .engine = gw,
                           .metrics = gw->metrics,
                           .exactly_once = gw->eos,
                           .passthrough = gw->opts.passthrough};
    gw->source.p = sp;
    if (!(gw->source.ctx = sp->init(&env, errstr, errstr_size)))
        return -1;
    env.conf = cg_config_plugin_conf(cfg, kp->config_map);
    env.source = &gw->source;
    gw->sink.p = kp;
    if (!(gw->sink.ctx = kp->init(&env, errstr, errstr_size)))
        return -1;
    return 0;
}

cg_gateway_t *cg_gateway_new(const cg_config_t *cfg, const cg_gateway_opts_t *opts, char *errstr,
                             size_t errstr_size)
{
    cg_engine_t *gw = calloc(1, sizeof(*gw));
    if (!gw) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    gw->cfg = cfg;
    gw->encode_flags = cfg->ids_as_strings ? CG_ROW_ENCODE_IDS_AS_STRINGS : 0;
    if (opts)
        gw->opts = *opts;
    gw->eos = cfg->semantics == CG_DELIVERY_EXACTLY_ONCE;
    cg_log_set_level((cg_log_level_t)cfg->log_level);
    if (cg_engine_workers_new(gw))
        goto fail_nomem;
    if (!(gw->delivery = cg_delivery_new()))
        goto fail_nomem;
    if (!(gw->metrics = cg_metrics_gw_new(cfg->metrics_max_series, cfg->metrics_health_grace_ms)))
        goto fail_nomem;
    if (!gw->opts.passthrough &&
        (load_mapping(gw, errstr, errstr_size) || release_setup(gw, errstr, errstr_size)))
        goto fail;
    if (plugins_new(gw, errstr, errstr_size))
        goto fail;
    cg_metrics_gw_set_stuck(gw->metrics, cfg->metrics_stuck_worker_ms, cg_engine_workers_busy, gw);
    /* /metrics shows the sink's queue (the producer's, for Kafka); logs its address */
    cg_metrics_gw_serve(gw->metrics, cfg->metrics_listen, sink_queue_len, &gw->sink);
    return gw;

fail_nomem:
    snprintf(errstr, errstr_size, "out of memory");
fail:
    cg_gateway_destroy(gw);
    return NULL;
}

/* Compiles the config's specs and cohorts anew and swaps them in only when all compile; on any
 * error the running ones stay and the error is logged. Runs with no job in any ring, so no
 * record of the old specs is waiting. The vocabularies and the key are kept. */
static int reload_mapping(cg_engine_t *gw)
{
    cg_error_t errs[8];
    size_t n_errs = 0;
    char errstr[1024] = "";
    cg_mapping_worker_t *mws[CG_GATEWAY_MAX_WORKERS];
    cg_mapping_t *m = cg_mapping_reload(gw->mapping, errs, 8, &n_errs);
    if (!m)
        cg_error_format(&errs[0], errstr, sizeof(errstr));
    int ok = m && !cg_engine_workers_mapping(gw, m, mws, errstr, sizeof(errstr));
    if (!ok) {
        if (n_errs > 1)
            cg_log(CG_LOG_ERROR, "reload.failed",
                   "%s (%zu error(s); the running specs and cohorts stay)", errstr, n_errs);
        else
            cg_log(CG_LOG_ERROR, "reload.failed", "%s (the running specs and cohorts stay)",
                   errstr);
        cg_mapping_destroy(m);
        return -1;
    }
    /* the workers wait for a job, so they hold no mapper now */
    for (int i = 0; i < gw->n_workers; i++) {
        cg_mapping_worker_destroy(gw->workers[i].mw);
        gw->workers[i].mw = mws[i];
    }
    cg_mapping_destroy(gw->mapping);
    for (size_t i = 0; i < gw->n_cdests; i++) /* the old cohort names are freed */
        gw->cdests[i].cohort = NULL;
    gw->mapping = m;
    log_warnings(m); /* a reload re-reads the spec layers: they may warn anew */
    cg_log(CG_LOG_INFO, "reload.done", "%zu spec(s), %zu cohort(s) in use",
           cg_specset_count(cg_mapping_specs(m)), cg_cohortset_count(cg_mapping_cohorts(m)));
    return 0;
}

/* After the loop: produce what was consumed, commit it (or the open transaction), all within
 * the drain timeout. */
static void drain_and_commit(cg_engine_t *gw)
{
    cg_engine_note_stop(gw);
    if (!gw->deadline_ms) /* an idle exit */
        gw->deadline_ms = cg_engine_now_ms() + gw->cfg->drain_timeout_ms;
    cg_log(CG_LOG_INFO, "gateway.stopping",
           "draining %zu input message(s) in flight (at most %d ms)",
           cg_delivery_in_flight(gw->delivery), gw->cfg->drain_timeout_ms);
    cg_metrics_gw_stopping(gw->metrics);
    int drained = !gw->fatal && cg_engine_jobs_drain(gw) == 0;
    /* the last audit records: what was released since the last ones (no input of their own) */
    if (drained && gw->subs && !(gw->eos && cg_engine_txn_begin(gw)) &&
        cg_engine_audit_produce(gw, NULL, 1) != 1)
        cg_log(CG_LOG_ERROR, "release.audit_failed",
               "the last audit records could not be handed to the sink");
    if (gw->eos) {
        if (drained && !gw->txn_failed && !gw->fatal) {
            cg_engine_txn_commit(gw, NULL, 0);
        } else if (!gw->fatal || !gw->sink.p->fatal(gw->sink.ctx, NULL, 0)) {
            cg_engine_txn_abort(gw, NULL, 0, 0); /* its inputs are consumed again on restart */
            if (!gw->fatal)
                gw->drain_incomplete = 1;
        }
        if (gw->txn_open) /* the commit ran out of time: a restart's init aborts it */
            gw->drain_incomplete = 1;
        return;
    }
    if (!drained && !gw->fatal)
        gw->drain_incomplete = 1;
    cg_engine_flush_sink(gw);
    if (!gw->fatal || gw->fatal == CG_ERR_KAFKA)
        cg_engine_commit_delivered(gw, 1);
}

/* Takes what the source has (a message, an end, nothing) within timeout_ms. */
/* Inputs taken per turn of the run loop at most: the loop's own work (the sink's poll, the
 * clock, backpressure) is then paid once per batch, not once per input. The rings and
 * max_in_flight still bound what is taken. */
#define CG_INPUT_BATCH 32

static void take_input(cg_engine_t *gw, int timeout_ms)
{
    size_t max = (size_t)gw->cfg->max_in_flight;
    for (int k = 0; k < CG_INPUT_BATCH; k++) {
        if (k && (gw->stop || gw->fatal || !cg_engine_rings_have_room(gw) ||
                  cg_delivery_in_flight(gw->delivery) >= max))
            break;
        cg_source_msg_t m;
        switch (gw->source.p->poll(gw->source.ctx, k ? 0 : timeout_ms, &m)) {
        case CG_SOURCE_NONE:
            if (k)
                gw->last_activity_ms = cg_engine_now_ms();
            return;
        case CG_SOURCE_MSG:
            cg_engine_mark_end(gw, m.topic, m.partition, 0);
            cg_engine_dispatch(gw, &m);
            break;
        case CG_SOURCE_END:
            cg_engine_mark_end(gw, m.topic, m.partition, 1);
            break;
        case CG_SOURCE_ERROR:
            k = CG_INPUT_BATCH; /* the loop looks at what the error did first */
            break;
        }
    }
    gw->last_activity_ms = cg_engine_now_ms();
}

/* SIGHUP's config: the file read again, once, for the release section and the plug-ins that
 * reload; NULL (said why, *ok cleared) when it does not load, or when none of them is there or
 * the config came from no file. */
static cg_config_t *load_fresh(cg_engine_t *gw, int *ok)
{
    if (!gw->cfg->from_file || !(gw->subs || gw->source.p->reload || gw->sink.p->reload))
        return NULL;
    enum { MAX_ERRS = 32 };
    cg_error_t errs[MAX_ERRS];
    size_t n = 0;
    char loc[1024];
    cg_config_t *fresh = cg_config_load_file_all(gw->cfg->path, errs, MAX_ERRS, &n);
    if (fresh)
        return fresh;
    for (size_t i = 1; i < n && i < MAX_ERRS; i++)
        cg_log(CG_LOG_ERROR, "config.invalid", "%s", cg_error_format(&errs[i], loc, sizeof(loc)));
    cg_log(CG_LOG_ERROR, "reload.failed", "config: %s (the running settings stay)",
           n ? cg_error_format(&errs[0], loc, sizeof(loc)) : "out of memory");
    *ok = 0;
    return NULL;
}

/* What the plug-ins read from files (MLLP's TLS certificates and CRL, the PostgreSQL sink's
 * live settings of fresh and its cohort definitions), re-read. */
static int reload_plugins(cg_engine_t *gw, const cg_config_t *fresh)
{
    char why[1024] = "";
    int rc = 0;
    if (gw->source.p->reload && gw->source.p->reload(gw->source.ctx, fresh, why, sizeof(why))) {
        cg_log(CG_LOG_ERROR, "reload.failed", "%s: %s (the running ones stay)", gw->source.p->name,
               why);
        rc = -1;
    }
    why[0] = '\0';
    if (gw->sink.p->reload && gw->sink.p->reload(gw->sink.ctx, fresh, why, sizeof(why))) {
        cg_log(CG_LOG_ERROR, "reload.failed", "%s: %s (the running ones stay)", gw->sink.p->name,
               why);
        rc = -1;
    }
    return rc;
}

cg_err_t cg_gateway_run(cg_gateway_t *gw, char *errstr, size_t errstr_size)
{
    const cg_config_t *cfg = gw->cfg;
    const cg_source_plugin_t *sp = gw->source.p;
    const cg_sink_plugin_t *kp = gw->sink.p;
    if (sp->start(gw->source.ctx, errstr, errstr_size))
        return CG_ERR_KAFKA;
    /* a source waiting on fds wakes when delivery reports arrive, rather than on a timer */
    if (sp->watch && kp->wake_fd) {
        int fd = kp->wake_fd(gw->sink.ctx);
        if (fd >= 0) {
            sp->watch(gw->source.ctx, fd);
            gw->sink_wakes = 1;
        }
    }
    /* exactly-once: fences a previous instance and aborts what it left open */
    if (gw->eos && kp->txn_init(gw->sink.ctx, errstr, errstr_size) != CG_TXN_OK) {
        sp->close(gw->source.ctx);
        return CG_ERR_KAFKA;
    }
    if (cg_engine_workers_start(gw, errstr, errstr_size)) {
        cg_engine_workers_stop(gw);
        sp->close(gw->source.ctx);
        return CG_ERR_INVALID_ARG;
    }
    char what[512] = "";
    if (sp->describe)
        sp->describe(gw->source.ctx, what, sizeof(what));
    cg_log(CG_LOG_INFO, "gateway.started", "consuming %s, %s, %d worker(s)", what,
           gw->eos ? "exactly-once" : "at-least-once", gw->n_workers);

    int64_t next_commit = cg_engine_now_ms() + cfg->commit_interval_ms;
    gw->last_activity_ms = cg_engine_now_ms();
    while (!gw->stop) {
        char reason[512];
        if (kp->fatal(gw->sink.ctx, reason, sizeof(reason))) {
            cg_engine_fatal(gw, CG_ERR_KAFKA, reason);
            break;
        }
        if (gw->reload && !cg_engine_jobs_outstanding(gw)) { /* no record of the old specs waits */
            gw->reload = 0;
            /* each part swaps in alone when it loads: a broken policy does not hold back good
             * specs, nor a bad certificate either of them */
            int ok = 1, taken = 0;
            cg_config_t *fresh = load_fresh(gw, &ok);
            if (!gw->opts.passthrough) /* pass-through maps nothing */
                ok &= !reload_mapping(gw);
            ok &= !reload_plugins(gw, fresh);
            if (!gw->opts.passthrough)
                ok &= !reload_release(gw, fresh, &taken);
            if (!taken)
                cg_config_destroy(fresh);
            cg_metrics_gw_reload(gw->metrics, ok);
            if (!ok)
                __atomic_add_fetch(&gw->stats.reload_failures, 1, __ATOMIC_RELEASE);
            /* last, atomically: a test thread watches it to know the reload has happened */
            __atomic_add_fetch(&gw->stats.reloads, 1, __ATOMIC_RELEASE);
        }
        if (gw->eos && gw->txn_failed)
            cg_engine_txn_abort(gw, NULL, 0, 1);
        cg_engine_produce_ready(gw, 0);
        /* a transaction commits whole inputs only */
        if (gw->eos && gw->txn_open && !cg_engine_job_partial(gw) &&
            (cg_engine_txn_full(gw) ||
             cg_engine_now_ms() - gw->txn_began_ms >= cfg->commit_interval_ms))
            cg_engine_txn_commit(gw, NULL, 0);
        if (gw->fatal)
            break;
        cg_engine_backpressure(gw);

        int64_t t = cg_engine_now_ms();
        int waiting = gw->stalled_since != 0;
        int can_poll = t >= gw->hold_until_ms && !gw->reload && cg_engine_rings_have_room(gw) &&
                       (!waiting || gw->paused);
        /* wait on the sink when the output side is what holds things up */
        kp->poll(gw->sink.ctx, (waiting || (!can_poll && !gw->threaded)) ? 10 : 0);
        /* pass-through: what the poll just delivered is answered now (MLLP's ACKs), not after
         * the wait for input below, which its senders only send once answered: with nothing
         * else in flight that wait ran its full 100 ms */
        if (!gw->eos && gw->opts.passthrough)
            cg_engine_commit_delivered(gw, 0);
        if (can_poll) {
            /* a paused source is still polled: rebalances, max.poll.interval.ms */
            /* pass-through: delivery reports are what the senders wait for, so the source's
             * wait is short while any is due, unless their arrival wakes it (sink_wakes) */
            int busy = cg_engine_jobs_outstanding(gw) || (gw->opts.passthrough && !gw->sink_wakes &&
                                                          cg_delivery_in_flight(gw->delivery));
            take_input(gw, waiting ? 0 : busy ? 1 : 100);
        } else if (!waiting) {
            cg_engine_wait_done(gw, 10);
        }

        t = cg_engine_now_ms();
        if (!gw->eos && !gw->opts.passthrough && t >= next_commit) { /* pass-through: above */
            cg_engine_commit_delivered(gw, 0);
            next_commit = t + cfg->commit_interval_ms;
        }
        if (cg_delivery_in_flight(gw->delivery) > 0 || cg_engine_jobs_outstanding(gw))
            gw->last_activity_ms = t;
        /* idle means: every assigned partition reported its end, nothing is in flight, and
         * nothing came for idle_exit_ms (a slow first fetch is not idleness) */
        if (gw->opts.idle_exit_ms > 0 && gw->n_assigned > 0 &&
            cg_engine_count_ends(gw) >= gw->n_assigned && !gw->stalled_since &&
            t - gw->last_activity_ms >= gw->opts.idle_exit_ms) {
            cg_log(CG_LOG_INFO, "gateway.idle", "nothing to consume for %d ms; stopping",
                   gw->opts.idle_exit_ms);
            break;
        }
    }

    drain_and_commit(gw);
    gw->ran = 1;
    sp->close(gw->source.ctx);
    cg_engine_workers_stop(gw);
    cg_engine_jobs_discard(gw); /* after a fatal error */
    cg_log(CG_LOG_INFO, "gateway.stopped",
           "consumed %" PRIu64 ", records %" PRIu64 ", dead-lettered %" PRIu64 ", commits %" PRIu64
           ", transactions %" PRIu64 " committed and %" PRIu64 " aborted, waited %" PRIu64
           " and paused %" PRIu64 " time(s)",
           gw->stats.consumed, gw->stats.records_out, gw->stats.dead_lettered, gw->stats.commits,
           gw->stats.transactions_committed, gw->stats.transactions_aborted, gw->stats.stalls,
           gw->stats.pauses);
    if (gw->fatal) {
        snprintf(errstr, errstr_size, "%s", gw->fatal_reason);
        return gw->fatal;
    }
    if (gw->drain_incomplete) {
        snprintf(errstr, errstr_size,
                 "the drain did not finish within delivery.drain_timeout_ms (%d ms): the inputs "
                 "left uncommitted are consumed again on restart",
                 cfg->drain_timeout_ms);
        return CG_ERR_KAFKA_RETRY;
    }
    return CG_OK;
}

void cg_gateway_stop(cg_gateway_t *gw)
{
    gw->stop = 1;
}

void cg_gateway_reload(cg_gateway_t *gw)
{
    gw->reload = 1;
}

int cg_gateway_drain_timeout_ms(const cg_gateway_t *gw)
{
    return gw->cfg->drain_timeout_ms;
}

int cg_gateway_metrics_port(const cg_gateway_t *gw)
{
    return cg_metrics_gw_port(gw->metrics);
}

void cg_gateway_get_stats(const cg_gateway_t *gw, cg_gateway_stats_t *out)
{
#define LOAD(f) out->f = __atomic_load_n(&gw->stats.f, __ATOMIC_ACQUIRE)
    LOAD(consumed);
    LOAD(records_out);
    LOAD(dead_lettered);
    LOAD(delivery_errors);
    LOAD(commits);
    LOAD(reloads);
    LOAD(reload_failures);
    LOAD(transactions_committed);
    LOAD(transactions_aborted);
    LOAD(stalls);
    LOAD(pauses);
    LOAD(queue_full);
    LOAD(workers);
    LOAD(assigned);
    for (int i = 0; i < CG_GATEWAY_MAX_WORKERS; i++)
        LOAD(worker_messages[i]);
#undef LOAD
}

cg_err_t cg_gateway_report_topics(cg_gateway_t *gw, int max_per_topic)
{
    if (!gw->sink.p->report)
        return CG_OK;
    size_t n_subs = gw->subs ? gw->subs->n : 0, n = 0;
    const char **dests = calloc(gw->n_cdests + n_subs + 5, sizeof(*dests));
    if (!dests)
        return CG_ERR_NOMEM;
    dests[n++] = gw->cfg->output_topic;
    for (size_t i = 0; i < gw->n_cdests; i++)
        dests[n++] = gw->cdests[i].name;
    for (size_t i = 0; i < n_subs; i++) /* what each subscriber got, and the audit of it */
        dests[n++] = gw->subs->v[i].topic;
    if (n_subs)
        dests[n++] = gw->cfg->audit_topic;
    dests[n++] = gw->cfg->dead_letter_topic;
    dests[n++] = gw->cfg->quality_topic;
    if (gw->cfg->outcome_topic)
        dests[n++] = gw->cfg->outcome_topic;
    cg_err_t rc = gw->sink.p->report(gw->sink.ctx, dests, n, max_per_topic,
                                     gw->opts.report ? gw->opts.report : stdout);
    free(dests);
    return rc;
}

void cg_engine_testing_inject_aborts(cg_gateway_t *gw, int n)
{
    gw->inject_aborts = n;
}

void cg_gateway_destroy(cg_gateway_t *gw)
{
    if (!gw)
        return;
    cg_metrics_gw_destroy(gw->metrics); /* first: its endpoint reads the sink's queue */
    if (gw->workers)
        cg_engine_workers_stop(gw); /* when run() never did */
    release_free(gw);               /* the workers' scratch and the jobs' counts with it */
    cg_engine_workers_destroy(gw);  /* before the source: the rings hold its messages */
    /* the sink first: a Kafka sink may use the source's embedded broker; run() has drained
     * within its time already, what is left is given up */
    if (gw->sink.p && gw->sink.ctx) {
        if (!gw->ran)
            gw->sink.p->flush(gw->sink.ctx, 5000);
        gw->sink.p->destroy(gw->sink.ctx);
    }
    if (gw->source.p && gw->source.ctx)
        gw->source.p->destroy(gw->source.ctx);
    cg_engine_cohort_dests_free(gw);
    for (size_t i = 0; i < gw->n_ends; i++)
        free(gw->ends[i].topic);
    free(gw->ends);
    cg_delivery_destroy(gw->delivery);
    cg_mapping_destroy(gw->mapping);
    if (gw->n_workers) {
        pthread_cond_destroy(&gw->done_cv);
        pthread_mutex_destroy(&gw->mu);
    }
    free(gw);
}
