/* pipeline.c - the gateway's consume → decode → produce loop with at-least-once commits.
 *
 * One thread drives both clients: librdkafka calls every callback (delivery reports, rebalances,
 * commit results) from inside our poll calls, so the delivery bookkeeping needs no locks.
 */
#include "cg_gateway.h"

#include "cg_cohort.h"
#include "cg_delivery.h"
#include "cg_kafka.h"
#include "cg_log.h"
#include "cg_pseudo.h"
#include "cg_record.h"
#include "cg_spec.h"
#include "cg_vocab.h"

#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

struct cg_gateway {
    const cg_config_t *cfg;
    cg_gateway_opts_t opts;
    cg_kafka_embedded_t *embedded; /* NULL unless the config asks for the embedded broker */
    char *bootstrap;
    rd_kafka_t *consumer;
    rd_kafka_t *producer;
    rd_kafka_topic_t *out_rkt;
    rd_kafka_topic_t *dlq_rkt;
    cg_delivery_t *delivery;
    cg_vocab_t *vocab;
    cg_pseudo_t *pseudo;
    cg_specset_t *specs;
    cg_mapper_t *mapper;
    cg_cohortset_t *cohorts; /* NULL when none are configured */
    cg_cohort_router_t *router;
    /* cohort topics produced to so far, by name (a handful: cohorts x tables) */
    struct cohort_topic {
        const char *cohort, *table; /* the names' own pointers, for a lookup without building
                                     * the name; cohort is cleared when a reload frees it */
        char *name;
        rd_kafka_topic_t *rkt;
    } * ctopics;
    size_t n_ctopics;
    volatile sig_atomic_t stop;
    volatile sig_atomic_t reload; /* SIGHUP: recompile specs and cohorts between messages */
    cg_err_t fatal;
    char fatal_reason[512];
    cg_gateway_stats_t stats;
    cg_buf_t record; /* reused per record */
    int n_assigned;
    /* partitions known to be at their end (for --idle-exit): set by an EOF event, cleared by a
     * message of that partition */
    struct at_end {
        char *topic;
        int32_t partition;
        int at_end;
    } * ends;
    size_t n_ends;
    int64_t last_activity_ms;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void set_fatal(cg_gateway_t *gw, cg_err_t code, const char *reason)
{
    if (gw->fatal)
        return;
    gw->fatal = code;
    snprintf(gw->fatal_reason, sizeof(gw->fatal_reason), "%s", reason);
    cg_log(CG_LOG_ERROR, "gateway.fatal", "%s", reason);
    gw->stop = 1;
}

/* ---- callbacks (run on the gateway thread, from inside poll) ---- */

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    cg_gateway_t *gw = opaque;
    cg_delivery_msg_t *dm = m->_private;
    if (m->err) {
        /* The record's input offset stays uncommitted: a restart replays it. */
        gw->stats.delivery_errors++;
        char reason[400];
        snprintf(reason, sizeof(reason), "delivery to %s failed: %s", rd_kafka_topic_name(m->rkt),
                 rd_kafka_err2str(m->err));
        set_fatal(gw, CG_ERR_KAFKA, reason);
        return;
    }
    if (m->rkt == gw->dlq_rkt)
        gw->stats.dead_lettered++;
    else
        gw->stats.records_out++;
    cg_delivery_done(gw->delivery, dm);
}

typedef struct commit_ctx {
    rd_kafka_topic_partition_list_t *list;
} commit_ctx_t;

static void add_committable(const char *topic, int32_t partition, int64_t next, void *opaque)
{
    commit_ctx_t *c = opaque;
    rd_kafka_topic_partition_list_add(c->list, topic, partition)->offset = next;
}

static void record_commit_result(cg_gateway_t *gw, rd_kafka_resp_err_t err,
                                 const rd_kafka_topic_partition_list_t *offsets)
{
    if (err == RD_KAFKA_RESP_ERR__NO_OFFSET)
        return;
    if (err) {
        cg_log(CG_LOG_WARN, "offsets.commit_failed", "%s (will retry)", rd_kafka_err2str(err));
        return;
    }
    gw->stats.commits++;
    for (int i = 0; offsets && i < offsets->cnt; i++) {
        const rd_kafka_topic_partition_t *p = &offsets->elems[i];
        if (!p->err && p->offset >= 0)
            cg_delivery_committed(gw->delivery, p->topic, p->partition, p->offset);
    }
}

static void on_commit(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                      rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
    (void)rk;
    record_commit_result(opaque, err, offsets);
}

/* Commits every partition's delivered prefix; sync on shutdown and revoke, async otherwise. */
static void commit_delivered(cg_gateway_t *gw, int sync)
{
    commit_ctx_t c = {rd_kafka_topic_partition_list_new(8)};
    cg_delivery_foreach_committable(gw->delivery, add_committable, &c);
    if (c.list->cnt > 0) {
        rd_kafka_resp_err_t err = rd_kafka_commit(gw->consumer, c.list, sync ? 0 : 1);
        if (sync)
            record_commit_result(gw, err, c.list);
        else if (err)
            cg_log(CG_LOG_WARN, "offsets.commit_failed", "%s", rd_kafka_err2str(err));
    }
    rd_kafka_topic_partition_list_destroy(c.list);
}

/* Waits for every record in flight to be delivered (or fail). */
static void drain(cg_gateway_t *gw, int timeout_ms)
{
    rd_kafka_resp_err_t err = rd_kafka_flush(gw->producer, timeout_ms);
    if (err)
        cg_log(CG_LOG_WARN, "producer.flush", "%d record(s) still undelivered after %d ms: %s",
               rd_kafka_outq_len(gw->producer), timeout_ms, rd_kafka_err2str(err));
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    cg_gateway_t *gw = opaque;
    int cooperative = !strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE");
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        for (int i = 0; i < parts->cnt; i++)
            cg_log(CG_LOG_INFO, "partition.assigned", "%s [%" PRId32 "]", parts->elems[i].topic,
                   parts->elems[i].partition);
        if (cooperative)
            rd_kafka_error_destroy(rd_kafka_incremental_assign(rk, parts));
        else
            rd_kafka_assign(rk, parts);
        gw->n_assigned += parts->cnt;
        gw->last_activity_ms = now_ms();
        return;
    }
    /* Revoked (or lost): finish what is in flight, commit it, then let go of the partitions. */
    drain(gw, 30000);
    if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS && !rd_kafka_assignment_lost(rk))
        commit_delivered(gw, 1);
    for (int i = 0; i < parts->cnt; i++) {
        for (size_t k = 0; k < gw->n_ends; k++) /* a revoked partition's end no longer counts */
            if (gw->ends[k].partition == parts->elems[i].partition &&
                !strcmp(gw->ends[k].topic, parts->elems[i].topic))
                gw->ends[k].at_end = 0;
        size_t lost = cg_delivery_drop_partition(gw->delivery, parts->elems[i].topic,
                                                 parts->elems[i].partition);
        cg_log(lost ? CG_LOG_WARN : CG_LOG_INFO, "partition.revoked", "%s [%" PRId32 "]%s",
               parts->elems[i].topic, parts->elems[i].partition,
               lost ? " with undelivered input left uncommitted" : "");
    }
    if (cooperative)
        rd_kafka_error_destroy(rd_kafka_incremental_unassign(rk, parts));
    else
        rd_kafka_assign(rk, NULL);
    gw->n_assigned = cooperative ? gw->n_assigned - parts->cnt : 0;
}

/* ---- producing ---- */

/* Hands one record to the producer, waiting (never dropping) while its queue is full. */
static cg_err_t produce(cg_gateway_t *gw, rd_kafka_topic_t *rkt, const void *key, size_t key_len,
                        const void *val, size_t val_len, const rd_kafka_message_t *in,
                        const char *const *hdrs, size_t n_hdrs, cg_delivery_msg_t *dm)
{
    cg_delivery_add(dm);
    for (;;) {
        rd_kafka_headers_t *h = rd_kafka_headers_new(n_hdrs / 2 + 3);
        char part[16], off[24];
        snprintf(part, sizeof(part), "%" PRId32, in->partition);
        snprintf(off, sizeof(off), "%" PRId64, in->offset);
        rd_kafka_header_add(h, "cg.source.topic", -1, rd_kafka_topic_name(in->rkt), -1);
        rd_kafka_header_add(h, "cg.source.partition", -1, part, -1);
        rd_kafka_header_add(h, "cg.source.offset", -1, off, -1);
        for (size_t i = 0; i + 1 < n_hdrs; i += 2)
            rd_kafka_header_add(h, hdrs[i], -1, hdrs[i + 1], -1);
        rd_kafka_resp_err_t err = rd_kafka_producev(
            gw->producer, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_KEY(key, key_len),
            RD_KAFKA_V_VALUE((void *)val, val_len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_OPAQUE(dm), RD_KAFKA_V_END);
        if (!err)
            return CG_OK;
        rd_kafka_headers_destroy(h);
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            /* backpressure: serve delivery reports until there is room */
            rd_kafka_poll(gw->producer, 50);
            if (gw->fatal)
                break;
            continue;
        }
        char reason[400];
        snprintf(reason, sizeof(reason), "produce to %s failed: %s", rd_kafka_topic_name(rkt),
                 rd_kafka_err2str(err));
        set_fatal(gw, CG_ERR_KAFKA, reason);
        break;
    }
    cg_delivery_unadd(gw->delivery, dm);
    return gw->fatal ? gw->fatal : CG_ERR_KAFKA;
}

static void dead_letter(cg_gateway_t *gw, const rd_kafka_message_t *in, const char *stage,
                        cg_err_t code, const char *reason, const cg_map_error_t *me,
                        cg_delivery_msg_t *dm)
{
    char ver[16];
    snprintf(ver, sizeof(ver), "%d", me ? me->spec_version : 0);
    const char *hdrs[] = {
        "cg.error.stage",  stage,
        "cg.error.code",   cg_err_name(code),
        "cg.error.class",  cg_err_class_name(cg_err_classify(code)),
        "cg.error.reason", reason,
        "cg.spec",         me ? me->spec : "",
        "cg.spec.version", ver,
    };
    /* the original bytes and key, untouched; the spec headers only when a spec was chosen */
    size_t n = sizeof(hdrs) / sizeof(hdrs[0]) - (me && me->spec[0] ? 0 : 4);
    produce(gw, gw->dlq_rkt, in->key, in->key_len, in->payload, in->len, in, hdrs, n, dm);
}

/* The topic of a cohort's records of one table, from the cohorts.topic template. */
static rd_kafka_topic_t *cohort_topic(cg_gateway_t *gw, const char *cohort, const char *table)
{
    /* by pointer first: no name to build per record once the topic is known */
    for (size_t i = 0; i < gw->n_ctopics; i++)
        if (gw->ctopics[i].cohort == cohort && gw->ctopics[i].table == table)
            return gw->ctopics[i].rkt;
    char name[512];
    size_t o = 0;
    for (const char *t = gw->cfg->cohort_topic; *t && o + 1 < sizeof(name);) {
        const char *sub = NULL;
        size_t skip = 1;
        if (!strncmp(t, "{cohort}", 8)) {
            sub = cohort;
            skip = 8;
        } else if (!strncmp(t, "{table}", 7)) {
            sub = table;
            skip = 7;
        }
        if (sub)
            o += (size_t)snprintf(name + o, sizeof(name) - o, "%s", sub);
        else
            name[o++] = *t;
        t += skip;
        if (o >= sizeof(name))
            o = sizeof(name) - 1;
    }
    name[o] = '\0';
    for (size_t i = 0; i < gw->n_ctopics; i++)
        if (!strcmp(gw->ctopics[i].name, name)) { /* known by name, e.g. after a reload */
            gw->ctopics[i].cohort = cohort;
            gw->ctopics[i].table = table;
            return gw->ctopics[i].rkt;
        }
    void *grown = realloc(gw->ctopics, (gw->n_ctopics + 1) * sizeof(*gw->ctopics));
    if (!grown) {
        set_fatal(gw, CG_ERR_NOMEM, "out of memory for a cohort topic");
        return NULL;
    }
    gw->ctopics = grown;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(gw->producer, name, NULL);
    char *copy = strdup(name);
    if (!rkt || !copy) {
        free(copy);
        if (rkt)
            rd_kafka_topic_destroy(rkt);
        set_fatal(gw, CG_ERR_KAFKA, "cannot create a cohort topic handle");
        return NULL;
    }
    gw->ctopics[gw->n_ctopics++] = (struct cohort_topic){cohort, table, copy, rkt};
    cg_log(CG_LOG_INFO, "cohort.topic", "publishing to %s", name);
    return rkt;
}

static void process(cg_gateway_t *gw, const rd_kafka_message_t *in)
{
    cg_delivery_msg_t *dm =
        cg_delivery_begin(gw->delivery, rd_kafka_topic_name(in->rkt), in->partition, in->offset);
    if (!dm) {
        set_fatal(gw, CG_ERR_NOMEM, "out of memory tracking an input message");
        return;
    }
    gw->stats.consumed++;
    const cg_map_row_t *rows;
    size_t n;
    cg_map_error_t me;
    cg_err_t rc =
        cg_mapper_map_hl7(gw->mapper, in->payload ? in->payload : "", in->len, &rows, &n, &me);
    if (rc != CG_OK) {
        if (cg_err_classify(rc) == CG_ERR_CLASS_DEADLETTER) {
            char reason[512];
            snprintf(reason, sizeof(reason), "%s%s%s", me.rule[0] ? me.rule : "",
                     me.rule[0] ? ": " : "", me.reason);
            dead_letter(gw, in, me.stage ? me.stage : "map", rc, reason, &me, dm);
        } else {
            set_fatal(gw, rc, me.reason);
        }
        cg_delivery_seal(gw->delivery, dm);
        return;
    }
    cg_record_source_t src = {
        .topic = rd_kafka_topic_name(in->rkt),
        .partition = in->partition,
        .offset = in->offset,
        .message_id = n ? rows[0].message_id : (cg_slice_t){"", 0},
    };
    for (size_t i = 0; i < n && !gw->fatal; i++) {
        const char *const *cohorts = NULL;
        size_t n_cohorts =
            gw->router ? cg_cohort_route(gw->router, rows[i].table, rows[i].row_json, &cohorts) : 0;
        cg_buf_reset(&gw->record);
        if (cg_map_row_envelope(&rows[i], &src, cohorts, n_cohorts, &gw->record) != CG_OK) {
            set_fatal(gw, CG_ERR_NOMEM, "out of memory encoding a record");
            break;
        }
        char ver[16];
        snprintf(ver, sizeof(ver), "%d", rows[i].spec_version);
        const char *hdrs[] = {"cg.spec",  rows[i].spec,  "cg.spec.version", ver,
                              "cg.table", rows[i].table, "cg.rule",         rows[i].rule};
        /* keyed by the patient's pseudonym: one patient's records stay in order; a record in
         * no cohort goes to the output topic, one in cohorts to each cohort's topic */
        for (size_t k = 0; k < (n_cohorts ? n_cohorts : 1) && !gw->fatal; k++) {
            rd_kafka_topic_t *rkt =
                n_cohorts ? cohort_topic(gw, cohorts[k], rows[i].table) : gw->out_rkt;
            if (!rkt)
                break;
            produce(gw, rkt, rows[i].person_key.ptr, rows[i].person_key.len, gw->record.data,
                    gw->record.len, in, hdrs, sizeof(hdrs) / sizeof(hdrs[0]), dm);
        }
    }
    cg_delivery_seal(gw->delivery, dm);
}

/* Loads what mapping needs: vocabularies, the pseudonym key, the specs. */
static int load_mapping(cg_gateway_t *gw, char *errstr, size_t errstr_size)
{
    const cg_config_t *cfg = gw->cfg;
    cg_error_t errs[8];
    size_t n_errs = 0;
    gw->vocab = cg_vocab_new();
    if (!gw->vocab) {
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    char vdir[4096];
    const char *vocab = cfg->vocab ? cfg->vocab : cg_spec_vocab_dir(cfg->specs, vdir, sizeof(vdir));
    if (vocab && (cg_vocab_load_csv_dir(gw->vocab, vocab, errs, 8, &n_errs) != CG_OK || n_errs))
        goto located;
    if (cfg->athena && cg_vocab_load_athena(gw->vocab, cfg->athena, NULL, 0, &errs[0]) != CG_OK) {
        n_errs = 1;
        goto located;
    }
    cg_pseudo_key_t *key =
        cg_pseudo_key_load(cfg->key_file, cfg->key_file ? NULL : cfg->key_env, errstr, errstr_size);
    if (!key)
        return -1;
    gw->pseudo = cg_pseudo_new(key, cfg->date_shift_days, errstr, errstr_size);
    cg_pseudo_key_destroy(key);
    if (!gw->pseudo)
        return -1;
    cg_spec_env_t env = {.vocab = gw->vocab,
                         .pseudo = gw->pseudo,
                         .source_utc_offset = cfg->source_utc_offset,
                         .hl7 = &cfg->hl7};
    gw->specs = cg_specset_load(cfg->specs, &env, errs, 8, &n_errs);
    if (!gw->specs)
        goto located;
    gw->mapper = cg_mapper_new(gw->specs, &env, errstr, errstr_size);
    if (!gw->mapper)
        return -1;
    if (cfg->cohorts) {
        gw->cohorts = cg_cohortset_load(cfg->cohorts, errs, 8, &n_errs);
        if (!gw->cohorts)
            goto located;
        if (!(gw->router = cg_cohort_router_new(gw->cohorts))) {
            snprintf(errstr, errstr_size, "out of memory");
            return -1;
        }
        cg_log(CG_LOG_INFO, "cohorts.loaded", "%zu cohort(s) from %s",
               cg_cohortset_count(gw->cohorts), cfg->cohorts);
    }
    cg_log(CG_LOG_INFO, "mapping.loaded", "%zu spec(s) from %s, %zu vocabulary code(s)",
           cg_specset_count(gw->specs), cfg->specs, cg_vocab_count(gw->vocab));
    return 0;
located:
    if (n_errs)
        snprintf(errstr, errstr_size, "%s:%d:%d: %s%s", errs[0].file, errs[0].line, errs[0].column,
                 errs[0].text, n_errs > 1 ? " (and more: run cohortgate check --spec)" : "");
    else
        snprintf(errstr, errstr_size, "%s: no spec found", cfg->specs);
    return -1;
}

/* ---- life cycle ---- */

cg_gateway_t *cg_gateway_new(const cg_config_t *cfg, const cg_gateway_opts_t *opts, char *errstr,
                             size_t errstr_size)
{
    cg_gateway_t *gw = calloc(1, sizeof(*gw));
    if (!gw) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    gw->cfg = cfg;
    if (opts)
        gw->opts = *opts;
    cg_buf_init(&gw->record);
    cg_log_set_level((cg_log_level_t)cfg->log_level);
    if (!(gw->delivery = cg_delivery_new()))
        goto fail_nomem;
    if (load_mapping(gw, errstr, errstr_size))
        goto fail;

    if (cfg->embedded_enabled) {
        gw->embedded = cg_kafka_embedded_start(cfg, errstr, errstr_size);
        if (!gw->embedded)
            goto fail;
        gw->bootstrap = strdup(cg_kafka_embedded_bootstrap(gw->embedded));
    } else {
        gw->bootstrap = strdup(cg_config_kafka_get(cfg, "bootstrap.servers"));
    }
    if (!gw->bootstrap)
        goto fail_nomem;

    gw->producer = cg_kafka_producer_new(cfg, gw->bootstrap, on_delivery, gw, errstr, errstr_size);
    if (!gw->producer)
        goto fail;
    gw->consumer =
        cg_kafka_consumer_new(cfg, gw->bootstrap, on_rebalance, on_commit, gw, errstr, errstr_size);
    if (!gw->consumer)
        goto fail;
    gw->out_rkt = rd_kafka_topic_new(gw->producer, cfg->output_topic, NULL);
    gw->dlq_rkt = rd_kafka_topic_new(gw->producer, cfg->dead_letter_topic, NULL);
    if (!gw->out_rkt || !gw->dlq_rkt)
        goto fail_nomem;
    return gw;

fail_nomem:
    snprintf(errstr, errstr_size, "out of memory");
fail:
    cg_gateway_destroy(gw);
    return NULL;
}

/* Compiles the config's specs and cohorts anew and swaps them in only when all compile; on any
 * error the running ones stay and the error is logged. Runs between messages, so no row of the
 * old mapper is in use. The vocabularies and the key are kept. */
static void reload_mapping(cg_gateway_t *gw)
{
    const cg_config_t *cfg = gw->cfg;
    cg_error_t errs[8];
    size_t n_errs = 0;
    char errstr[512] = "";
    cg_spec_env_t env = {.vocab = gw->vocab,
                         .pseudo = gw->pseudo,
                         .source_utc_offset = cfg->source_utc_offset,
                         .hl7 = &cfg->hl7};
    cg_specset_t *specs = cg_specset_load(cfg->specs, &env, errs, 8, &n_errs);
    cg_cohortset_t *cohorts = NULL;
    cg_mapper_t *mapper = NULL;
    cg_cohort_router_t *router = NULL;
    if (specs && cfg->cohorts)
        cohorts = cg_cohortset_load(cfg->cohorts, errs, 8, &n_errs);
    if (specs && (!cfg->cohorts || cohorts)) {
        mapper = cg_mapper_new(specs, &env, errstr, sizeof(errstr));
        if (mapper && cohorts && !(router = cg_cohort_router_new(cohorts)))
            snprintf(errstr, sizeof(errstr), "out of memory");
    }
    /* counted atomically: a test thread watches them to know the reload has happened */
    __atomic_add_fetch(&gw->stats.reloads, 1, __ATOMIC_RELEASE);
    if (!mapper || (cohorts && !router)) {
        __atomic_add_fetch(&gw->stats.reload_failures, 1, __ATOMIC_RELEASE);
        if (n_errs)
            cg_log(CG_LOG_ERROR, "reload.failed",
                   "%s:%d:%d: %s (%zu error(s); the running specs and cohorts stay)", errs[0].file,
                   errs[0].line, errs[0].column, errs[0].text, n_errs);
        else
            cg_log(CG_LOG_ERROR, "reload.failed", "%s (the running specs and cohorts stay)",
                   errstr);
        cg_cohort_router_destroy(router);
        cg_mapper_destroy(mapper);
        cg_cohortset_destroy(cohorts);
        cg_specset_destroy(specs);
        return;
    }
    cg_mapper_destroy(gw->mapper);
    cg_specset_destroy(gw->specs);
    cg_cohort_router_destroy(gw->router);
    cg_cohortset_destroy(gw->cohorts);
    for (size_t i = 0; i < gw->n_ctopics; i++) /* the old cohort names are freed */
        gw->ctopics[i].cohort = NULL;
    gw->mapper = mapper;
    gw->specs = specs;
    gw->router = router;
    gw->cohorts = cohorts;
    cg_log(CG_LOG_INFO, "reload.done", "%zu spec(s), %zu cohort(s) in use", cg_specset_count(specs),
           cg_cohortset_count(cohorts));
}

static void mark_end(cg_gateway_t *gw, const rd_kafka_message_t *m, int at_end)
{
    if (!m->rkt)
        return;
    const char *topic = rd_kafka_topic_name(m->rkt);
    for (size_t i = 0; i < gw->n_ends; i++)
        if (gw->ends[i].partition == m->partition && !strcmp(gw->ends[i].topic, topic)) {
            gw->ends[i].at_end = at_end;
            return;
        }
    void *grown = realloc(gw->ends, (gw->n_ends + 1) * sizeof(*gw->ends));
    char *copy = strdup(topic);
    if (!grown || !copy) {
        free(copy);
        if (grown)
            gw->ends = grown;
        return;
    }
    gw->ends = grown;
    gw->ends[gw->n_ends++] = (struct at_end){copy, m->partition, at_end};
}

static int count_ends(const cg_gateway_t *gw)
{
    int n = 0;
    for (size_t i = 0; i < gw->n_ends; i++)
        n += gw->ends[i].at_end;
    return n;
}

cg_err_t cg_gateway_run(cg_gateway_t *gw, char *errstr, size_t errstr_size)
{
    const cg_config_t *cfg = gw->cfg;
    rd_kafka_topic_partition_list_t *subs = rd_kafka_topic_partition_list_new((int)cfg->n_inputs);
    for (size_t i = 0; i < cfg->n_inputs; i++)
        rd_kafka_topic_partition_list_add(subs, cfg->inputs[i].topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(gw->consumer, subs);
    rd_kafka_topic_partition_list_destroy(subs);
    if (err) {
        snprintf(errstr, errstr_size, "subscribe failed: %s", rd_kafka_err2str(err));
        return CG_ERR_KAFKA;
    }
    cg_log(CG_LOG_INFO, "gateway.started", "consuming %zu topic(s) from %s as group %s",
           cfg->n_inputs, gw->bootstrap, cfg->group_id);

    int64_t next_commit = now_ms() + cfg->commit_interval_ms;
    gw->last_activity_ms = now_ms();
    while (!gw->stop) {
        if (gw->reload) {
            gw->reload = 0;
            reload_mapping(gw);
        }
        if (cg_delivery_in_flight(gw->delivery) < (size_t)cfg->max_in_flight) {
            rd_kafka_message_t *m = rd_kafka_consumer_poll(gw->consumer, 100);
            if (m) {
                if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
                    process(gw, m);
                    mark_end(gw, m, 0);
                } else if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                    mark_end(gw, m, 1);
                } else {
                    cg_log(CG_LOG_WARN, "consumer.error", "%s", rd_kafka_message_errstr(m));
                }
                rd_kafka_message_destroy(m);
                gw->last_activity_ms = now_ms();
            }
        } else {
            /* too much in flight: wait for delivery reports (the consumer keeps its session) */
            rd_kafka_poll(gw->producer, 100);
        }
        rd_kafka_poll(gw->producer, 0);

        int64_t t = now_ms();
        if (t >= next_commit) {
            commit_delivered(gw, 0);
            next_commit = t + cfg->commit_interval_ms;
        }
        if (cg_delivery_in_flight(gw->delivery) > 0)
            gw->last_activity_ms = t;
        /* idle means: every assigned partition reported its end, nothing is in flight, and
         * nothing came for idle_exit_ms (a slow first fetch is not idleness) */
        if (gw->opts.idle_exit_ms > 0 && gw->n_assigned > 0 && count_ends(gw) >= gw->n_assigned &&
            t - gw->last_activity_ms >= gw->opts.idle_exit_ms) {
            cg_log(CG_LOG_INFO, "gateway.idle", "nothing to consume for %d ms; stopping",
                   gw->opts.idle_exit_ms);
            break;
        }
    }

    cg_log(CG_LOG_INFO, "gateway.stopping", "draining %zu input message(s) in flight",
           cg_delivery_in_flight(gw->delivery));
    drain(gw, 30000);
    if (!gw->fatal || gw->fatal == CG_ERR_KAFKA)
        commit_delivered(gw, 1);
    err = rd_kafka_consumer_close(gw->consumer);
    if (err)
        cg_log(CG_LOG_WARN, "consumer.close", "%s", rd_kafka_err2str(err));
    cg_log(CG_LOG_INFO, "gateway.stopped",
           "consumed %" PRIu64 ", records %" PRIu64 ", dead-lettered %" PRIu64 ", commits %" PRIu64,
           gw->stats.consumed, gw->stats.records_out, gw->stats.dead_lettered, gw->stats.commits);
    if (gw->fatal) {
        snprintf(errstr, errstr_size, "%s", gw->fatal_reason);
        return gw->fatal;
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

const char *cg_gateway_bootstrap(const cg_gateway_t *gw)
{
    return gw->bootstrap;
}

void cg_gateway_get_stats(const cg_gateway_t *gw, cg_gateway_stats_t *out)
{
    *out = gw->stats;
    out->reloads = __atomic_load_n(&gw->stats.reloads, __ATOMIC_ACQUIRE);
    out->reload_failures = __atomic_load_n(&gw->stats.reload_failures, __ATOMIC_ACQUIRE);
}

cg_err_t cg_gateway_report_topics(cg_gateway_t *gw, int max_per_topic)
{
    const char **topics = calloc(gw->n_ctopics + 2, sizeof(*topics));
    if (!topics)
        return CG_ERR_NOMEM;
    topics[0] = gw->cfg->output_topic;
    for (size_t i = 0; i < gw->n_ctopics; i++)
        topics[i + 1] = gw->ctopics[i].name;
    topics[gw->n_ctopics + 1] = gw->cfg->dead_letter_topic;
    cg_err_t rc = cg_kafka_print_topics(gw->bootstrap, topics, gw->n_ctopics + 2, max_per_topic,
                                        gw->opts.report ? gw->opts.report : stdout);
    free(topics);
    return rc;
}

void cg_gateway_destroy(cg_gateway_t *gw)
{
    if (!gw)
        return;
    if (gw->out_rkt)
        rd_kafka_topic_destroy(gw->out_rkt);
    if (gw->dlq_rkt)
        rd_kafka_topic_destroy(gw->dlq_rkt);
    for (size_t i = 0; i < gw->n_ctopics; i++) {
        rd_kafka_topic_destroy(gw->ctopics[i].rkt);
        free(gw->ctopics[i].name);
    }
    free(gw->ctopics);
    for (size_t i = 0; i < gw->n_ends; i++)
        free(gw->ends[i].topic);
    free(gw->ends);
    if (gw->consumer)
        rd_kafka_destroy(gw->consumer);
    if (gw->producer) {
        rd_kafka_flush(gw->producer, 5000);
        rd_kafka_destroy(gw->producer);
    }
    cg_kafka_embedded_stop(gw->embedded);
    cg_delivery_destroy(gw->delivery);
    cg_mapper_destroy(gw->mapper);
    cg_cohort_router_destroy(gw->router);
    cg_cohortset_destroy(gw->cohorts);
    cg_specset_destroy(gw->specs);
    cg_pseudo_destroy(gw->pseudo);
    cg_vocab_destroy(gw->vocab);
    cg_buf_free(&gw->record);
    free(gw->bootstrap);
    free(gw);
}
