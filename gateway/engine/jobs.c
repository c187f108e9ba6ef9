/* jobs.c - one input on its way: decoded and mapped into records (map_job), then reset for the
 * next input once the sink has them all. */
#include "engine.h"

#include "cg_log.h"
#include "cg_metrics_gw.h"

#include <stdlib.h>
#include <string.h>

void cg_engine_job_reset(cg_engine_t *gw, job_t *j)
{
    if (j->has_in)
        gw->source.p->release(gw->source.ctx, &j->in);
    j->has_in = 0;
    j->dm = NULL;
    j->rc = CG_OK;
    j->reason[0] = '\0';
    j->n_recs = 0;
    j->next_rec = 0;
    j->audited = 0;
    j->oc_kind = j->oc_spec = NULL;
    j->oc_type[0] = '\0';
    j->oc_done = 0;
    j->doc_off = j->doc_len = 0;
    if (j->withheld)
        memset(j->withheld, 0, gw->subs->n * CG_RELEASE__COUNT * sizeof(*j->withheld));
    cg_buf_reset(&j->buf);
    if (j->buf.cap > CG_JOB_KEEP_BYTES) { /* one huge message does not keep its slot big */
        cg_buf_free(&j->buf);
        cg_buf_init(&j->buf);
    }
}

job_rec_t *cg_engine_job_add_rec(job_t *j)
{
    if (j->n_recs == j->cap_recs) {
        size_t cap = j->cap_recs ? j->cap_recs * 2 : 8;
        job_rec_t *r = realloc(j->recs, cap * sizeof(*r));
        if (!r)
            return NULL;
        j->recs = r;
        j->cap_recs = cap;
    }
    return &j->recs[j->n_recs++];
}

/* The outcome's type, cut to fit (snprintf's "%s" cost more than the rest of the outcome). */
static void set_oc_type(job_t *j, const char *type)
{
    size_t n = type ? strnlen(type, sizeof(j->oc_type) - 1) : 0;
    memcpy(j->oc_type, type ? type : "", n);
    j->oc_type[n] = '\0';
}

/* Every consumed input leaves a trace: one that maps to no record is counted by outcome and
 * type and logged (no rows at info: a reconciler may ask; declared no research content, the
 * bulk of an ADT feed's traffic, at debug), so "nothing to emit" is never "lost". */
static void job_outcome(cg_engine_t *gw, job_t *j, const cg_source_msg_t *in,
                        cg_mapping_worker_t *mw)
{
    cg_map_outcome_t o;
    cg_mapping_worker_outcome(mw, &o);
    j->oc_kind = cg_map_outcome_name(o.kind);
    set_oc_type(j, o.type);
    j->oc_spec = o.spec;
    cg_metrics_gw_input(gw->metrics, cg_map_outcome_name(o.kind), o.type);
    if (o.kind == CG_MAP_NO_ROWS)
        cg_log(CG_LOG_INFO, "input.no_rows",
               "%s partition %d offset %lld: %s: a spec took it and no rule made a row",
               in->topic ? in->topic : "", (int)in->partition, (long long)in->offset, o.type);
    else if (o.kind == CG_MAP_NO_RESEARCH_CONTENT)
        cg_log(CG_LOG_DEBUG, "input.no_research_content",
               "%s partition %d offset %lld: %s: no research content (spec %s)",
               in->topic ? in->topic : "", (int)in->partition, (long long)in->offset, o.type,
               o.spec);
}

/* How well entry x ("TYPE" or "TYPE^EVENT") names the message type t^e: 2 exactly, 1 by its
 * type alone, 0 not. */
static int type_match(const char *x, cg_slice_t t, cg_slice_t e)
{
    size_t xl = strlen(x);
    if (xl < t.len || memcmp(x, t.ptr, t.len))
        return 0;
    if (xl == t.len)
        return 1;
    return x[t.len] == '^' && xl - t.len - 1 == e.len && !memcmp(x + t.len + 1, e.ptr, e.len) ? 2
                                                                                              : 0;
}

/* The feed's own handling of the input's message type (inputs[].no_research_content and
 * dead_letter), which goes over the specs': 'n', 'd', or 0 when neither names it; *entry the
 * entry that did (a config string: a bounded metric label). TYPE^EVENT wins over TYPE. */
static int feed_handling(const cg_source_msg_t *in, cg_mapping_worker_t *mw, const char **entry)
{
    cg_slice_t t, e;
    if ((!in->n_nrc_types && !in->n_dl_types) || !cg_mapping_worker_msg_type(mw, &t, &e) || !t.len)
        return 0;
    int best = 0, how = 0;
    for (size_t i = 0; i < in->n_nrc_types + in->n_dl_types; i++) {
        int dl = i >= in->n_nrc_types;
        const char *x = dl ? in->dl_types[i - in->n_nrc_types] : in->nrc_types[i];
        int m = type_match(x, t, e);
        if (m > best)
            best = m, how = dl ? 'd' : 'n', *entry = x;
    }
    return how;
}

/* The cg.document of a row that is not a document's: "order:" and its meta order_id (the order
 * an order cancel retracts by it, cg_row.h), NUL-ended at the end of buf; *len 0: none. */
static cg_err_t order_doc(cg_buf_t *buf, const cg_row_t *row, size_t *off, size_t *len)
{
    const cg_row_meta_t *m = cg_row_meta(row, CG_ROW_META_ORDER_ID);
    *len = 0;
    if (!m)
        return CG_OK;
    *off = buf->len;
    if (cg_buf_puts(buf, CG_ROW_ORDER_DOC_PREFIX) != CG_OK ||
        cg_buf_append(buf, m->value.ptr, m->value.len) != CG_OK || cg_buf_putc(buf, '\0') != CG_OK)
        return CG_ERR_NOMEM;
    *len = buf->len - 1 - *off;
    return CG_OK;
}

/* The row's records for each subscriber under its policy (cg_release.h): its topic, its level,
 * its pseudonyms; rows withheld are counted in the job, by subscriber and reason. */
static cg_err_t release_row(cg_engine_t *gw, worker_t *w, job_t *j, const cg_row_t *row,
                            const char *const *cohorts, size_t n_cohorts, time_t now)
{
    const cg_subscribers_t *subs = gw->subs;
    const char *set = NULL; /* the row's sensitive codes: the same for every subscriber */
    int level = cg_catalogue_row_level(subs->catalogue, row, &set);
    if (cg_release_row_prepare(w->scratch, row) != CG_OK) /* its ids and dates, parsed once */
        return CG_ERR_NOMEM;
    for (size_t s = 0; s < subs->n; s++) {
        cg_release_out_t out;
        cg_release_outcome_t why;
        cg_err_t rc = cg_release_row(subs->v[s].policy, row, cohorts, n_cohorts, level, set, now,
                                     w->scratch, &out, &why);
        if (rc != CG_OK)
            return rc;
        if (why != CG_RELEASE_OK) {
            if (!j->withheld &&
                !(j->withheld = calloc(subs->n * CG_RELEASE__COUNT, sizeof(*j->withheld))))
                return CG_ERR_NOMEM;
            j->withheld[s * CG_RELEASE__COUNT + why]++;
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
        /* a document's row: the subscriber's pseudonym of the document's id for cg.document,
         * as its records' source.message_id and its retractions' replaced_document_id say it */
        size_t doc_off = j->buf.len, doc_len = 0;
        if (j->doc_len && out.row.message_id.len) {
            if (cg_buf_append(&j->buf, out.row.message_id.ptr, out.row.message_id.len) != CG_OK ||
                cg_buf_putc(&j->buf, '\0') != CG_OK)
                return CG_ERR_NOMEM;
            doc_len = out.row.message_id.len;
        } else if (order_doc(&j->buf, &out.row, &doc_off, &doc_len) != CG_OK) {
            return CG_ERR_NOMEM; /* the subscriber's pseudonym of the order, as released */
        }
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
                         .level = (uint8_t)out.level,
                         .doc_off = doc_off,
                         .doc_len = doc_len};
    }
    return CG_OK;
}

/* Decodes and maps a job's input into its records and their cohorts (on the job's worker). */
void cg_engine_map_job(cg_engine_t *gw, worker_t *w, job_t *j)
{
    if (gw->opts.passthrough) { /* the input is its own record (produce.c) */
        j->rc = CG_OK;
        STAT_ADD(gw, worker_messages[w->index], 1);
        return;
    }
    const cg_source_msg_t *in = &j->in;
    const cg_row_t *rows;
    size_t n;
    double t0 = cg_metrics_now();
    __atomic_store_n(&w->busy_partition, in->partition, __ATOMIC_RELAXED);
    __atomic_store_n(&w->busy_offset, in->offset, __ATOMIC_RELAXED);
    /* t0's clock is cg_engine_now_ms()'s (CLOCK_MONOTONIC): one reading a message */
    __atomic_store_n(&w->busy_since_ms, (int64_t)(t0 * 1000), __ATOMIC_RELEASE);
    const char *buf = in->payload ? in->payload : "";
    cg_mapping_worker_set_hl7_charset(w->mw, in->charset);
    j->rc = cg_mapping_worker_map(w->mw, j->format, buf, in->len, &rows, &n, &j->me);
    __atomic_store_n(&w->busy_since_ms, 0, __ATOMIC_RELEASE);
    cg_metrics_gw_latency(gw->metrics, cg_metrics_now() - t0);
    STAT_ADD(gw, worker_messages[w->index], 1);
    const char *entry = NULL;
    /* not over a failure of our own (out of memory), which stays what it is */
    int how = j->rc == CG_OK || cg_err_classify(j->rc) == CG_ERR_CLASS_DEADLETTER
                  ? feed_handling(in, w->mw, &entry)
                  : 0;
    if (how == 'd') { /* a type this feed should never send: seen, whatever the specs say */
        j->rc = CG_ERR_MAP;
        memset(&j->me, 0, sizeof(j->me));
        j->me.code = CG_ERR_MAP;
        j->me.stage = "select";
        snprintf(j->me.text, sizeof(j->me.text),
                 "%s messages are dead-lettered on this input (inputs[].dead_letter)", entry);
        cg_error_format(&j->me, j->reason, sizeof(j->reason));
        cg_metrics_gw_input(gw->metrics, "dead_letter", entry);
        j->oc_kind = "dead_letter";
        set_oc_type(j, entry);
        return;
    }
    if (how == 'n') { /* consumed quietly: no records, no findings, counted */
        j->rc = CG_OK;
        cg_metrics_gw_input(gw->metrics, "no_research_content", entry);
        j->oc_kind = "no_research_content";
        set_oc_type(j, entry);
        cg_log(CG_LOG_DEBUG, "input.no_research_content",
               "%s partition %d offset %lld: %s: no research content on this input "
               "(inputs[].no_research_content)",
               in->topic ? in->topic : "", (int)in->partition, (long long)in->offset, entry);
        return;
    }
    if (j->rc != CG_OK) {
        if (cg_err_classify(j->rc) == CG_ERR_CLASS_DEADLETTER) {
            cg_error_format(&j->me, j->reason, sizeof(j->reason));
            cg_metrics_gw_input(gw->metrics, "dead_letter", "");
            j->oc_kind = "dead_letter";
        }
        return;
    }
    job_outcome(gw, j, in, w->mw);
    /* a document, whose rows a later version of it may retract: its id for cg.document */
    const cg_spec_format_t *input = cg_mapping_worker_format(w->mw);
    if (n && rows[0].message_id.len && input && input->documents) {
        j->doc_off = j->buf.len;
        if (cg_buf_append(&j->buf, rows[0].message_id.ptr, rows[0].message_id.len) != CG_OK ||
            cg_buf_putc(&j->buf, '\0') != CG_OK)
            goto nomem;
        j->doc_len = rows[0].message_id.len;
    }
    cg_row_source_t src = {
        .topic = in->topic,
        .partition = in->partition,
        .offset = in->offset,
    };
    time_t now = gw->subs ? time(NULL) : 0;
    for (size_t i = 0; i < n; i++) {
        const char *const *cohorts = NULL;
        size_t n_cohorts = cg_mapping_worker_route(w->mw, &rows[i], &cohorts);
        size_t val_off = j->buf.len;
        if (cg_row_encode(&rows[i], &src, cohorts, n_cohorts, gw->encode_flags, &j->buf) != CG_OK)
            goto nomem;
        size_t val_len = j->buf.len - val_off, key_off = j->buf.len;
        if (rows[i].person_key.len &&
            cg_buf_append(&j->buf, rows[i].person_key.ptr, rows[i].person_key.len) != CG_OK)
            goto nomem;
        size_t doc_off = j->doc_off, doc_len = j->doc_len;
        if (!doc_len && order_doc(&j->buf, &rows[i], &doc_off, &doc_len) != CG_OK)
            goto nomem;
        /* keyed by the patient's pseudonym: one patient's records stay in order; a record in
         * no cohort goes to the output topic, one in cohorts to each cohort's topic */
        for (size_t k = 0; k < (n_cohorts ? n_cohorts : 1); k++) {
            job_rec_t *r = cg_engine_job_add_rec(j);
            if (!r)
                goto nomem;
            *r = (job_rec_t){.cohort = n_cohorts ? cohorts[k] : NULL,
                             .table = rows[i].table->name,
                             .spec = rows[i].spec,
                             .rule = rows[i].rule,
                             .op = cg_row_op_name((cg_row_op_t)rows[i].op),
                             .spec_version = rows[i].spec_version,
                             .key_off = key_off,
                             .key_len = rows[i].person_key.len,
                             .val_off = val_off,
                             .val_len = val_len,
                             .doc_off = doc_off,
                             .doc_len = doc_len};
        }
        if (gw->subs && release_row(gw, w, j, &rows[i], cohorts, n_cohorts, now))
            goto nomem;
    }
    /* entries the specs left out: quality records, outputs of this input like its rows (so
     * they are sealed, committed and in the transaction with them); no key, no patient data */
    const cg_quality_t *q;
    size_t nq = cg_mapping_worker_quality(w->mw, &q);
    for (size_t i = 0; i < nq; i++) {
        size_t val_off = j->buf.len;
        if (cg_quality_encode(&q[i], &src, &j->buf) != CG_OK)
            goto nomem;
        job_rec_t *r = cg_engine_job_add_rec(j);
        if (!r)
            goto nomem;
        *r = (job_rec_t){.spec = q[i].spec,
                         .rule = q[i].rule,
                         .quality = q[i].reason,
                         .spec_version = q[i].spec_version,
                         .val_off = val_off,
                         .val_len = j->buf.len - val_off};
    }
    return;
nomem:
    j->rc = CG_ERR_NOMEM;
    snprintf(j->me.text, sizeof(j->me.text), "out of memory encoding a record");
}
