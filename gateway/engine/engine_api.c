/* engine_api.c - what the engine offers plug-ins (cg_plugin.h): delivery reports, failures,
 * assignments and revokes, acknowledged commits, and the drain's clock. Called on the engine
 * thread from inside the plug-ins' callbacks. */
#include "engine.h"

#include "cg_log.h"
#include "cg_metrics_gw.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void cg_engine_delivered(cg_engine_t *gw, void *token, int dead_letter)
{
    if (dead_letter)
        STAT_ADD(gw, dead_lettered, 1);
    else
        STAT_ADD(gw, records_out, 1);
    if (token) /* NULL: a record of no input (the last audit records) */
        cg_delivery_done(gw->delivery, token);
}

void cg_engine_txn_failed(cg_engine_t *gw, const char *reason)
{
    if (!gw->txn_failed)
        cg_log(CG_LOG_WARN, "transaction.failed", "%s (the transaction is aborted)", reason);
    gw->txn_failed = 1;
}

void cg_engine_delivery_failed(cg_engine_t *gw, cg_err_t code, const char *reason, int abortable)
{
    STAT_ADD(gw, delivery_errors, 1);
    if (gw->eos && abortable) {
        /* the transaction cannot commit any more: abort it, consume its inputs again */
        cg_engine_txn_failed(gw, reason);
        return;
    }
    /* the record's input stays uncommitted: a restart replays it */
    cg_engine_fatal(gw, code, reason);
}

void cg_engine_record_failed(cg_engine_t *gw, void *token, cg_err_t code, const char *reason,
                             int abortable)
{
    if (gw->eos || !gw->source.p->reject || !token) {
        cg_engine_delivery_failed(gw, code, reason, abortable);
        return;
    }
    /* the source answers for this input (an MLLP AR) and the gateway goes on */
    STAT_ADD(gw, delivery_errors, 1);
    cg_source_pos_t pos;
    cg_delivery_msg_pos(token, &pos.topic, &pos.partition, &pos.offset);
    cg_log(CG_LOG_WARN, "record.failed", "%s (the input is rejected)", reason);
    gw->source.p->reject(gw->source.ctx, &pos, reason);
    cg_delivery_done(gw->delivery, token);
}

int cg_engine_stored_positions(cg_engine_t *gw, cg_source_pos_t *pos, size_t n)
{
    for (size_t i = 0; i < n; i++)
        pos[i].offset = -1;
    if (!gw->sink.p || !gw->sink.p->stored_positions || !n)
        return 0;
    char why[512] = "";
    if (gw->sink.p->stored_positions(gw->sink.ctx, pos, n, why, sizeof(why))) {
        char msg[600];
        snprintf(msg, sizeof(msg), "cannot read the stored positions of assigned partitions: %s",
                 why);
        cg_engine_fatal(gw, CG_ERR_IO, msg);
        return -1;
    }
    return 1;
}

void cg_engine_assigned(cg_engine_t *gw, int n_assigned)
{
    gw->n_assigned = n_assigned;
    __atomic_store_n(&gw->stats.assigned, (uint64_t)n_assigned, __ATOMIC_RELEASE);
    cg_metrics_gw_assigned(gw->metrics, n_assigned);
    gw->last_activity_ms = cg_engine_now_ms();
}

/* Revoked (or lost): finish what is in flight and commit it, then forget the partitions. Lost
 * ones cannot be committed any more. */
void cg_engine_revoke(cg_engine_t *gw, const cg_source_pos_t *parts, size_t n, int lost, int n_left)
{
    if (gw->fatal) {
        /* nothing more is produced or committed */
    } else if (gw->eos) {
        /* the offsets of lost partitions would be refused: abort, so their inputs are not
         * committed twice, and rewind the partitions kept */
        if (lost || cg_engine_jobs_drain(gw))
            cg_engine_txn_abort(gw, parts, n, 1);
        else
            cg_engine_txn_commit(gw, parts, n);
    } else {
        /* at-least-once produces everything (a lost partition's records may come twice) */
        cg_engine_jobs_drain(gw);
        cg_engine_flush_sink(gw);
        if (!lost)
            cg_engine_commit_delivered(gw, 1);
    }
    for (size_t i = 0; i < n; i++) {
        cg_engine_mark_end(gw, parts[i].topic, parts[i].partition,
                           0); /* its end no longer counts */
        size_t left = cg_delivery_drop_partition(gw->delivery, parts[i].topic, parts[i].partition);
        cg_log(left ? CG_LOG_WARN : CG_LOG_INFO, "partition.revoked", "%s [%" PRId32 "]%s",
               parts[i].topic, parts[i].partition,
               left ? " with undelivered input left uncommitted" : "");
    }
    gw->n_assigned = n_left;
    __atomic_store_n(&gw->stats.assigned, (uint64_t)n_left, __ATOMIC_RELEASE);
    cg_metrics_gw_assigned(gw->metrics, n_left);
}

void cg_engine_committed(cg_engine_t *gw, const cg_source_pos_t *pos, size_t n)
{
    STAT_ADD(gw, commits, 1);
    for (size_t i = 0; i < n; i++)
        cg_delivery_committed(gw->delivery, pos[i].topic, pos[i].partition, pos[i].offset);
}
