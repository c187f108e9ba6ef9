/* engine_state.c - the engine's state every other engine file reads: the clock of the drain,
 * stopping on a fatal error, and which partitions are at their end (for --idle-exit). At the
 * bottom of the engine's files, so workers, commits, producing and the plug-ins' calls
 * (engine_api.c) build on it without calling back and forth. */
#include "engine.h"

#include "cg_log.h"
#include "cg_metrics_gw.h"

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

/* ---- partitions at their end (for --idle-exit) ---- */

void cg_engine_mark_end(cg_engine_t *gw, const char *topic, int32_t partition, int at_end)
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

int cg_engine_count_ends(const cg_engine_t *gw)
{
    int n = 0;
    for (size_t i = 0; i < gw->n_ends; i++)
        n += gw->ends[i].at_end;
    return n;
}
