/* commit.c - telling the source what is delivered: at-least-once commits of fully delivered
 * inputs, and exactly-once transactions (the sink's records and the inputs' positions commit
 * together; an abort rewinds the source to the last commit). */
#include "engine.h"

#include "cg_log.h"
#include "cg_metrics_gw.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* How long one resumable transactional wait may block before the loop looks at stop requests. */
#define CG_TXN_SLICE_MS 5000

/* Positions collected from the delivery bookkeeping (one per partition; per commit, not per
 * record). */
typedef struct pos_list {
    cg_source_pos_t *v;
    size_t n, cap;
} pos_list_t;

static void pos_add(const char *topic, int32_t partition, int64_t offset, void *opaque)
{
    pos_list_t *l = opaque;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        cg_source_pos_t *v = realloc(l->v, cap * sizeof(*v));
        if (!v)
            return; /* that partition is committed next time */
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = (cg_source_pos_t){topic, partition, offset};
}

static int pos_in(const cg_source_pos_t *l, size_t n, const char *topic, int32_t partition)
{
    for (size_t i = 0; i < n; i++)
        if (l[i].partition == partition && !strcmp(l[i].topic, topic))
            return 1;
    return 0;
}

/* at-least-once: commits every partition's delivered prefix; sync (on shutdown and revoke,
 * waiting at most the time left) or in the background. */
void cg_engine_commit_delivered(cg_engine_t *gw, int sync)
{
    pos_list_t l = {0};
    cg_delivery_foreach_committable(gw->delivery, pos_add, &l);
    if (l.n > 0 && gw->source.p->commit(gw->source.ctx, l.v, l.n, sync) && sync && gw->stop)
        gw->drain_incomplete = 1;
    free(l.v);
}

/* A transactional call that did not succeed: the sink has logged it (and reported a fatal
 * error); a drain that ran out of time leaves the inputs for the restart. */
static void txn_failed_call(cg_engine_t *gw, cg_txn_result_t r)
{
    if (r == CG_TXN_TIMEOUT)
        gw->drain_incomplete = 1;
}

int cg_engine_txn_full(const cg_engine_t *gw)
{
    return gw->txn_open && gw->txn_msgs >= (uint64_t)gw->cfg->transaction_max_messages;
}

int cg_engine_txn_begin(cg_engine_t *gw)
{
    if (gw->txn_open)
        return 0;
    cg_txn_result_t r = gw->sink.p->txn_begin(gw->sink.ctx);
    if (r != CG_TXN_OK) {
        txn_failed_call(gw, r);
        return -1;
    }
    gw->txn_open = 1;
    gw->txn_msgs = 0;
    gw->txn_began_ms = cg_engine_now_ms();
    return 0;
}

/* Aborts the open transaction (its records stay invisible to read_committed consumers), drops
 * the jobs not produced yet and, with rewind, seeks the source back to the last committed
 * positions so that those inputs are consumed again; partitions in keep (being revoked) are
 * left alone. */
void cg_engine_txn_abort(cg_engine_t *gw, const cg_source_pos_t *keep, size_t n_keep, int rewind)
{
    int had_work = gw->txn_open || cg_engine_jobs_outstanding(gw) > 0;
    if (gw->txn_open) {
        txn_failed_call(gw, gw->sink.p->txn_abort(gw->sink.ctx));
        gw->txn_open = 0;
        STAT_ADD(gw, transactions_aborted, 1);
        cg_metrics_gw_transaction(gw->metrics, "aborted");
    }
    gw->txn_failed = 0;
    gw->txn_msgs = 0;
    cg_engine_jobs_discard(gw);
    pos_list_t to = {0}, seek = {0};
    size_t again = cg_delivery_rewind(gw->delivery, pos_add, &to);
    if (!rewind || gw->fatal || !had_work) {
        free(to.v);
        return;
    }
    for (size_t i = 0; i < to.n; i++)
        if (!pos_in(keep, n_keep, to.v[i].topic, to.v[i].partition))
            pos_add(to.v[i].topic, to.v[i].partition, to.v[i].offset, &seek);
    free(to.v);
    char reason[512] = "";
    if (seek.n && gw->source.p->seek(gw->source.ctx, seek.v, seek.n, reason, sizeof(reason))) {
        char msg[600];
        snprintf(msg, sizeof(msg), "exactly-once: cannot rewind the consumer: %s", reason);
        cg_engine_fatal(gw, CG_ERR_KAFKA, msg);
    }
    /* rewound partitions are behind their end again; the others stay where they are (clearing
     * them all left a partition consumed to its end, with nothing more to come, never at its
     * end again, so --idle-exit never came) */
    for (size_t i = 0; i < seek.n; i++)
        cg_engine_mark_end(gw, seek.v[i].topic, seek.v[i].partition, 0);
    gw->aborts_in_row++;
    cg_log(CG_LOG_WARN, "transaction.aborted",
           "rewound %zu partition(s) to their committed offsets; %zu input(s) to consume again",
           seek.n, again);
    free(seek.v);
    if (gw->aborts_in_row > CG_TXN_MAX_ABORTS) {
        char msg[200];
        snprintf(msg, sizeof(msg),
                 "exactly-once: %d transactions in a row were aborted (see the warnings above)",
                 gw->aborts_in_row);
        cg_engine_fatal(gw, CG_ERR_KAFKA, msg);
    }
    /* back off before consuming again: 200 ms, doubling, at most 5 s */
    int64_t wait = (int64_t)100 << (gw->aborts_in_row < 6 ? gw->aborts_in_row : 6);
    gw->hold_until_ms = cg_engine_now_ms() + (wait < 5000 ? wait : 5000);
}

/* Commits the open transaction with the positions of its inputs; on an abortable error aborts
 * it and rewinds (except partitions in keep, being revoked). */
void cg_engine_txn_commit(cg_engine_t *gw, const cg_source_pos_t *keep, size_t n_keep)
{
    if (!gw->txn_open)
        return;
    if (gw->txn_failed) {
        cg_engine_txn_abort(gw, keep, n_keep, 1);
        return;
    }
    if (gw->inject_aborts > 0) {
        gw->inject_aborts--;
        cg_log(CG_LOG_WARN, "transaction.injected", "aborting instead of committing (a test)");
        /* so the records reach the broker */
        gw->sink.p->flush(gw->sink.ctx, cg_engine_remaining_ms(gw));
        cg_engine_txn_abort(gw, keep, n_keep, 1);
        return;
    }
    /* deliver first, so that positions are sent only with records the sink holds: a drain that
     * runs out of time then leaves no pending offsets behind in the group */
    for (;;) {
        int slice = gw->stop ? cg_engine_remaining_ms(gw) : CG_TXN_SLICE_MS;
        if (!gw->sink.p->flush(gw->sink.ctx, slice > 0 ? slice : 1))
            break;
        if (gw->fatal)
            return;
        if (gw->txn_failed) { /* a record failed: the transaction cannot commit */
            cg_engine_txn_abort(gw, keep, n_keep, 1);
            return;
        }
        if (cg_engine_out_of_time(gw)) {
            cg_log(CG_LOG_ERROR, "transaction.timeout",
                   "%d record(s) undelivered when delivery.drain_timeout_ms ran out; the "
                   "transaction's inputs are consumed again on restart",
                   gw->sink.p->queue_len(gw->sink.ctx));
            gw->drain_incomplete = 1;
            return;
        }
    }
    pos_list_t offsets = {0};
    cg_delivery_foreach_sealed(gw->delivery, pos_add, &offsets);
    cg_txn_result_t r = gw->sink.p->txn_commit(gw->sink.ctx, offsets.v, offsets.n, &gw->source);
    if (r == CG_TXN_OK) {
        for (size_t i = 0; i < offsets.n; i++)
            cg_delivery_committed(gw->delivery, offsets.v[i].topic, offsets.v[i].partition,
                                  offsets.v[i].offset);
        cg_log(CG_LOG_DEBUG, "transaction.committed", "%" PRIu64 " input(s), %zu partition(s)",
               gw->txn_msgs, offsets.n);
        gw->txn_open = 0;
        gw->txn_msgs = 0;
        gw->aborts_in_row = 0;
        STAT_ADD(gw, transactions_committed, 1);
        if (offsets.n)
            STAT_ADD(gw, commits, 1);
        cg_metrics_gw_transaction(gw->metrics, "committed");
        /* a sink that keeps the positions itself (a database) has them in its own commit;
         * the group gets them too, in the background, so that its lag shows in the metrics
         * and in the cluster's tools (the sink's positions still decide where to go on) */
        if (offsets.n && gw->sink.p->stored_positions && gw->source.p->commit)
            gw->source.p->commit(gw->source.ctx, offsets.v, offsets.n, 0);
    } else if (r == CG_TXN_ABORT) {
        cg_engine_txn_abort(gw, keep, n_keep, 1);
    } else {
        txn_failed_call(gw, r);
    }
    free(offsets.v);
}
