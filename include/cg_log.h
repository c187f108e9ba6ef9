/* cg_log.h - structured logs: one JSON object a line on stderr.
 *
 *   {"ts":"2026-11-23T11:00:00.123Z","level":"info","event":"partition.assigned","msg":"..."}
 *
 * Messages never contain keys or decoded patient identifiers: callers log stages, codes,
 * topics and offsets, not payloads.
 */
#ifndef CG_LOG_H
#define CG_LOG_H

typedef enum cg_log_level {
    CG_LOG_DEBUG = 0,
    CG_LOG_INFO,
    CG_LOG_WARN,
    CG_LOG_ERROR,
} cg_log_level_t;

void cg_log_set_level(cg_log_level_t level);
/* Adds "instance":name to every line after "event" (NULL or "": none), for a process that is
 * one of several (each database of `cohortgate sink -c A -c B`). Set before threads start. */
void cg_log_set_instance(const char *name);
cg_log_level_t cg_log_get_level(void);
void cg_log(cg_log_level_t level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
