/* log.c - JSON-lines logging (see cg_log.h). */
#include "cg_log.h"

#include "cg_buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static cg_log_level_t cg_log_level = CG_LOG_INFO;
static const char *const cg_log_names[] = {"debug", "info", "warn", "error"};
static char cg_log_instance[128]; /* "": none */

void cg_log_set_instance(const char *name)
{
    snprintf(cg_log_instance, sizeof(cg_log_instance), "%s", name ? name : "");
}

void cg_log_set_level(cg_log_level_t level)
{
    cg_log_level = level;
}

cg_log_level_t cg_log_get_level(void)
{
    return cg_log_level;
}

void cg_log(cg_log_level_t level, const char *event, const char *fmt, ...)
{
    if (level < cg_log_level)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[32];
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);

    /* one write per line so concurrent threads do not interleave */
    cg_buf_t b;
    cg_buf_init(&b);
    cg_buf_printf(&b, "{\"ts\":\"%s.%03ldZ\",\"level\":\"%s\",\"event\":", when,
                  ts.tv_nsec / 1000000, cg_log_names[level]);
    cg_buf_put_json_str(&b, event, strlen(event));
    if (cg_log_instance[0]) {
        cg_buf_puts(&b, ",\"instance\":");
        cg_buf_put_json_str(&b, cg_log_instance, strlen(cg_log_instance));
    }
    cg_buf_puts(&b, ",\"msg\":");
    cg_buf_put_json_str(&b, msg, strlen(msg));
    cg_buf_puts(&b, "}\n");
    if (!b.failed)
        fwrite(b.data, 1, b.len, stderr);
    cg_buf_free(&b);
}
