/* engine_api.c - what the engine offers plug-ins (cg_plugin.h): delivery reports, failures,
 * assignments and revokes, acknowledged commits, and the drain's clock. Called on the engine
 * thread from inside the plug-ins' callbacks. */
#include "engine.h"

#include "cg_log.h"
#include "cg_metrics.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int64_t cg_engine_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void cg_engine_fatal(cg_engine_t *gw, cg_err_t code, const char *reason)
{
    if (gw->fatal)
        return;
    gw->fatal = code;
    snprintf(gw->fatal_reason, sizeof(gw->fatal_reason), "%s", reason);
    cg_log(CG_LOG_ERROR, "gateway.fatal", "%s", reason);
    cg_metrics_gw_fatal(gw->metrics, reason);
    gw->stop = 1;
}

/* Once a stop is requested, everything left must be done by drain_timeout_ms after it. */
void cg_engine_note_stop(cg_engine_t *gw)
{
    if (gw->stop && !gw->deadline_ms)
        gw->deadline_ms = cg_engine_now_ms() + gw->cfg->drain_timeout_ms;
}

/* What a blocking call may take: what is left of the drain once stopping; for a revoke while
 * running, the drain timeout too. */
int cg_engine_remaining_ms(cg_engine_t *gw)
{
    cg_engine_note_stop(gw);
    int64_t left =
        gw->deadline_ms ? gw->deadline_ms - cg_engine_now_ms() : gw->cfg->drain_timeout_ms;
    return left < 0 ? 0 : left > INT32_MAX ? INT32_MAX : (int)left;
}

int cg_engine_out_of_time(cg_engine_t *gw)
{
    cg_engine_note_stop(gw);
    return gw->deadline_ms && cg_engine_now_ms() >= gw->deadline_ms;
}

int cg_engine_stopping(cg_engine_t *gw)
{
    return gw->stop != 0;
}

void cg_engine_delivered(cg_engine_t *gw, void *token, int dead_letter)
{
    if (dead_letter)
        STAT_ADD(gw, dead_lettered, 1);
    else
        STAT_ADD(gw, records_out, 1);
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
        if (lost || jobs_drain(gw))
            txn_abort(gw, parts, n, 1);
        else
            txn_commit(gw, parts, n);
    } else {
        /* at-least-once produces everything (a lost partition's records may come twice) */
        jobs_drain(gw);
        flush_sink(gw);
        if (!lost)
            commit_delivered(gw, 1);
    }
    for (size_t i = 0; i < n; i++) {
        mark_end(gw, parts[i].topic, parts[i].partition, 0); /* its end no longer counts */
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

/* ---- partitions at their end (for --idle-exit) ---- */

void mark_end(cg_engine_t *gw, const char *topic, int32_t partition, int at_end)
{
    if (!topic)
        return;
    for (size_t i = 0; i < gw->n_ends; i++)
        if (gw->ends[i].partition == partition && !strcmp(gw->ends[i].topic, topic)) {
            gw->ends[i].at_end = at_end;
            return;
        }
    if (!at_end) /* not known at its end yet: nothing to clear */
        return;
    void *grown = realloc(gw->ends, (gw->n_ends + 1) * sizeof(*gw->ends));
    char *copy = strdup(topic);
    if (!grown || !copy) {
        free(copy);
        if (grown)
            gw->ends = grown;
        return;
    }
    gw->ends = grown;
    gw->ends[gw->n_ends++] = (at_end_t){copy, partition, at_end};
}

int count_ends(const cg_engine_t *gw)
{
    int n = 0;
    for (size_t i = 0; i < gw->n_ends; i++)
        n += gw->ends[i].at_end;
    return n;
}

void ends_clear(cg_engine_t *gw)
{
    for (size_t k = 0; k < gw->n_ends; k++)
        gw->ends[k].at_end = 0;
}
