/* workers.c - the workers that decode and map: their rings of jobs, their threads, and how an
 * input is dispatched to one (a partition always to the same worker, so its order holds). */
#include "engine.h"

#include "cg_log.h"
#include "cg_metrics_gw.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    cg_engine_t *gw = w->gw;
    pthread_mutex_lock(&gw->mu);
    for (;;) {
        while (!gw->workers_stop && w->done == w->tail)
            pthread_cond_wait(&w->work, &gw->mu);
        if (w->done == w->tail)
            break; /* stopping, nothing left */
        job_t *j = &w->ring[w->done % CG_RING_CAP];
        pthread_mutex_unlock(&gw->mu);
        cg_engine_map_job(gw, w, j);
        pthread_mutex_lock(&gw->mu);
        __atomic_store_n(&w->done, w->done + 1, __ATOMIC_RELEASE);
        pthread_cond_signal(&gw->done_cv);
    }
    pthread_mutex_unlock(&gw->mu);
    return NULL;
}

int64_t cg_engine_workers_busy(void *opaque, char *what, size_t what_size)
{
    const cg_engine_t *gw = opaque;
    int64_t now = cg_engine_now_ms(), longest = 0;
    for (int i = 0; i < gw->n_workers; i++) {
        const worker_t *w = &gw->workers[i];
        int64_t since = __atomic_load_n(&w->busy_since_ms, __ATOMIC_ACQUIRE);
        if (since && now - since > longest) {
            longest = now - since;
            snprintf(what, what_size, "worker %d has been on partition %d offset %lld", i,
                     (int)__atomic_load_n(&w->busy_partition, __ATOMIC_RELAXED),
                     (long long)__atomic_load_n(&w->busy_offset, __ATOMIC_RELAXED));
        }
    }
    return longest;
}

uint64_t cg_engine_worker_done(const worker_t *w)
{
    return __atomic_load_n(&w->done, __ATOMIC_ACQUIRE);
}

size_t cg_engine_jobs_outstanding(const cg_engine_t *gw)
{
    size_t n = 0;
    for (int i = 0; i < gw->n_workers; i++)
        n += (size_t)(gw->workers[i].tail - gw->workers[i].head);
    return n;
}

int cg_engine_rings_have_room(const cg_engine_t *gw)
{
    for (int i = 0; i < gw->n_workers; i++)
        if (gw->workers[i].tail - gw->workers[i].head >= CG_RING_CAP)
            return 0;
    return 1;
}

/* A job whose records went out only in part (a full queue stopped it): no transaction may
 * commit before it is whole. */
int cg_engine_job_partial(const cg_engine_t *gw)
{
    for (int i = 0; i < gw->n_workers; i++) {
        const worker_t *w = &gw->workers[i];
        if (w->head < w->tail && w->ring[w->head % CG_RING_CAP].next_rec > 0)
            return 1;
    }
    return 0;
}

/* Waits up to ms for a worker to finish a job not produced yet. */
void cg_engine_wait_done(cg_engine_t *gw, int ms)
{
    if (!gw->threaded)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_nsec += (long)ms * 1000000L;
    ts.tv_sec += ts.tv_nsec / 1000000000L;
    ts.tv_nsec %= 1000000000L;
    pthread_mutex_lock(&gw->mu);
    for (;;) {
        int ready = 0;
        for (int i = 0; i < gw->n_workers && !ready; i++)
            ready = gw->workers[i].done > gw->workers[i].head;
        if (ready || pthread_cond_timedwait(&gw->done_cv, &gw->mu, &ts) == ETIMEDOUT)
            break;
    }
    pthread_mutex_unlock(&gw->mu);
}

/* Hands an input to its partition's worker (takes m: released with its job). */
void cg_engine_dispatch(cg_engine_t *gw, const cg_source_msg_t *m)
{
    /* a partition always maps on the same worker, so its order holds; partitions of a topic
     * spread evenly */
    uint32_t h = 2166136261u;
    for (const char *s = m->topic; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    worker_t *w = &gw->workers[(h + (uint32_t)m->partition) % (uint32_t)gw->n_workers];
    cg_delivery_msg_t *dm = cg_delivery_begin(gw->delivery, m->topic, m->partition, m->offset);
    if (!dm) {
        cg_engine_fatal(gw, CG_ERR_NOMEM, "out of memory tracking an input message");
        cg_source_msg_t copy = *m;
        gw->source.p->release(gw->source.ctx, &copy);
        return;
    }
    STAT_ADD(gw, consumed, 1);
    cg_metrics_gw_message_in(gw->metrics, m->topic);
    job_t *j = &w->ring[w->tail % CG_RING_CAP];
    j->in = *m;
    j->has_in = 1;
    j->dm = dm;
    j->format = m->format;
    if (!gw->threaded) {
        cg_engine_map_job(gw, w, j);
        w->tail++;
        w->done++;
        return;
    }
    pthread_mutex_lock(&gw->mu);
    w->tail++;
    pthread_cond_signal(&w->work);
    pthread_mutex_unlock(&gw->mu);
}

/* Drops every job not produced yet, once the workers are done with the ones they hold. Their
 * inputs stay uncommitted (the caller rewinds them). */
void cg_engine_jobs_discard(cg_engine_t *gw)
{
    if (gw->threaded) {
        pthread_mutex_lock(&gw->mu);
        for (int i = 0; i < gw->n_workers; i++)
            while (gw->workers[i].done != gw->workers[i].tail)
                pthread_cond_wait(&gw->done_cv, &gw->mu);
        pthread_mutex_unlock(&gw->mu);
    }
    for (int i = 0; i < gw->n_workers; i++) {
        worker_t *w = &gw->workers[i];
        for (; w->head < w->tail; w->head++)
            cg_engine_job_reset(gw, &w->ring[w->head % CG_RING_CAP]);
    }
}

int cg_engine_workers_start(cg_engine_t *gw, char *errstr, size_t errstr_size)
{
    if (!gw->threaded)
        return 0;
    gw->workers_stop = 0;
    for (int i = 0; i < gw->n_workers; i++) {
        int rc = pthread_create(&gw->workers[i].thread, NULL, worker_main, &gw->workers[i]);
        if (rc) {
            snprintf(errstr, errstr_size, "cannot start worker thread %d: %s", i, strerror(rc));
            return -1;
        }
        gw->workers[i].started = 1;
    }
    return 0;
}

void cg_engine_workers_stop(cg_engine_t *gw)
{
    pthread_mutex_lock(&gw->mu);
    gw->workers_stop = 1;
    for (int i = 0; i < gw->n_workers; i++)
        pthread_cond_signal(&gw->workers[i].work);
    pthread_mutex_unlock(&gw->mu);
    for (int i = 0; i < gw->n_workers; i++)
        if (gw->workers[i].started) {
            pthread_join(gw->workers[i].thread, NULL);
            gw->workers[i].started = 0;
        }
}

/* A mapping worker per worker thread for bundle m; all or none. */
int cg_engine_workers_mapping(cg_engine_t *gw, const cg_mapping_t *m, cg_mapping_worker_t **mws,
                              char *errstr, size_t errstr_size)
{
    for (int i = 0; i < gw->n_workers; i++) {
        if (!(mws[i] = cg_mapping_worker_new(m, errstr, errstr_size))) {
            for (int k = 0; k < i; k++)
                cg_mapping_worker_destroy(mws[k]);
            return -1;
        }
    }
    return 0;
}

/* The workers and their rings (threads start with cg_gateway_run). */
int cg_engine_workers_new(cg_engine_t *gw)
{
    int n = gw->opts.passthrough ? 1 : gw->cfg->workers; /* nothing to map: no threads */
    gw->n_workers = n < 1 ? 1 : n > CG_GATEWAY_MAX_WORKERS ? CG_GATEWAY_MAX_WORKERS : n;
    gw->threaded = gw->n_workers > 1;
    gw->stats.workers = (uint64_t)gw->n_workers;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* wait_done's deadline */
    pthread_mutex_init(&gw->mu, NULL);
    pthread_cond_init(&gw->done_cv, &ca);
    pthread_condattr_destroy(&ca);
    if (!(gw->workers = calloc((size_t)gw->n_workers, sizeof(*gw->workers))))
        return -1;
    for (int i = 0; i < gw->n_workers; i++) {
        worker_t *w = &gw->workers[i];
        w->gw = gw;
        w->index = i;
        pthread_cond_init(&w->work, NULL);
        if (!(w->ring = calloc(CG_RING_CAP, sizeof(*w->ring))))
            return -1;
        for (size_t k = 0; k < CG_RING_CAP; k++)
            cg_buf_init(&w->ring[k].buf);
    }
    return 0;
}

void cg_engine_workers_destroy(cg_engine_t *gw)
{
    if (!gw->workers)
        return;
    for (int i = 0; i < gw->n_workers; i++) {
        worker_t *w = &gw->workers[i];
        for (size_t k = 0; w->ring && k < CG_RING_CAP; k++) {
            cg_engine_job_reset(gw, &w->ring[k]);
            free(w->ring[k].recs);
            cg_buf_free(&w->ring[k].buf);
        }
        free(w->ring);
        cg_mapping_worker_destroy(w->mw);
        pthread_cond_destroy(&w->work);
    }
    free(gw->workers);
    gw->workers = NULL;
}
