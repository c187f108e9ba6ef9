/* file_sink.c - the file sink: one NDJSON line a record,
 *
 *   {"topic":DEST,"key":KEY,"value":VALUE,"headers":{NAME:VALUE,...}}
 *
 * key and value as JSON strings (bytes that are not UTF-8 become U+FFFD, so every line is
 * JSON; a dead letter's original bytes are in its value). A record counts as delivered once
 * its line is flushed to the file: poll() flushes and reports every pending record, so the
 * engine commits its input as it would after a broker's acknowledgement. No transactions:
 * exactly-once is refused with this sink. No allocation per record once warm. */
#include "file_sink.h"

#include "cg_buf.h"
#include "cg_metrics_gw.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct pending {
    void *token;
    int dead;
} pending_t;

typedef struct file_sink {
    cg_engine_t *engine;
    cg_metrics_gw_t *metrics;
    char *path;
    FILE *f;
    int own; /* f is ours to close (not stdout) */
    cg_buf_t line;
    pending_t *pending; /* written, not yet flushed and reported */
    size_t n_pending, cap_pending;
    int failed;
    char reason[512];
} file_sink_t;

/* clang-format off */
const cg_config_map_t cg_file_sink_config_map[] = {
    CG_CONFIG_ROW_GROUP("output.file", "The file sink (output.sink \"file\")."),
    CG_CONFIG_ROW_STRING("output.file.path", cg_file_sink_conf_t, path, "-", 0,
     "File the file sink appends its NDJSON lines to, one record a line (topic, key, value, "
     "headers); relative to the config file; \"-\" for stdout."),
    CG_CONFIG_ROW_END,
};
/* clang-format on */

/* Appends s as a JSON string: quotes, escapes, and U+FFFD for bytes that are not UTF-8. */
static void json_str(cg_buf_t *b, const unsigned char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    cg_buf_append(b, "\"", 1);
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            cg_buf_append(b, e, 2);
            i++;
        } else if (c < 0x20) {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            cg_buf_append(b, e, 6);
            i++;
        } else if (c < 0x80) {
            cg_buf_append(b, (const char *)&s[i++], 1);
        } else {
            /* a well-formed UTF-8 sequence is copied, anything else replaced */
            size_t len = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
            uint32_t cp = len == 4 ? c & 7u : len == 3 ? c & 15u : c & 31u;
            size_t k = 1;
            for (; len && k < len && i + k < n && (s[i + k] & 0xc0) == 0x80; k++)
                cp = (cp << 6) | (s[i + k] & 0x3fu);
            int ok = len && k == len &&
                     !(len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp < 0xe000))) &&
                     !(len == 4 && (cp < 0x10000 || cp > 0x10ffff));
            if (ok) {
                cg_buf_append(b, (const char *)&s[i], len);
                i += len;
            } else {
                cg_buf_append(b, "\\ufffd", 6);
                i++;
            }
        }
    }
    cg_buf_append(b, "\"", 1);
}

static void fail(file_sink_t *fs, const char *what)
{
    if (fs->failed)
        return;
    fs->failed = 1;
    snprintf(fs->reason, sizeof(fs->reason), "file sink: %s %s: %s", what, fs->path,
             strerror(errno));
    cg_engine_fatal(fs->engine, CG_ERR_IO, fs->reason);
}

static void fsink_destroy(void *ctx)
{
    file_sink_t *fs = ctx;
    if (!fs)
        return;
    if (fs->f && fs->own)
        fclose(fs->f);
    else if (fs->f)
        fflush(fs->f);
    cg_buf_free(&fs->line);
    free(fs->pending);
    free(fs->path);
    free(fs);
}

static void *fsink_init(const cg_plugin_env_t *env, char *errstr, size_t errstr_size)
{
    const cg_file_sink_conf_t *conf = env->conf;
    file_sink_t *fs = calloc(1, sizeof(*fs));
    if (!fs || !conf) {
        snprintf(errstr, errstr_size, fs ? "file sink: no config" : "out of memory");
        free(fs);
        return NULL;
    }
    fs->engine = env->engine;
    fs->metrics = env->metrics;
    cg_buf_init(&fs->line);
    const char *p = conf->path ? conf->path : "-";
    const char *base = env->cfg ? env->cfg->base_dir : NULL;
    size_t n = strlen(p) + (base ? strlen(base) : 0) + 2;
    if (!(fs->path = malloc(n))) {
        snprintf(errstr, errstr_size, "out of memory");
        goto fail;
    }
    if (p[0] != '/' && strcmp(p, "-") && base)
        snprintf(fs->path, n, "%s/%s", base, p);
    else
        snprintf(fs->path, n, "%s", p);
    if (!strcmp(fs->path, "-")) {
        fs->f = stdout;
    } else if ((fs->f = fopen(fs->path, "a"))) {
        fs->own = 1;
    } else {
        snprintf(errstr, errstr_size, "file sink: cannot open %s: %s", fs->path, strerror(errno));
        goto fail;
    }
    return fs;
fail:
    fsink_destroy(fs);
    return NULL;
}

static const char *header(const cg_sink_record_t *rec, const char *name)
{
    for (size_t i = 0; i + 1 < rec->n_headers; i += 2)
        if (!strcmp(rec->headers[i], name))
            return rec->headers[i + 1];
    return "";
}

static cg_sink_result_t fsink_produce(void *ctx, const cg_sink_record_t *rec)
{
    file_sink_t *fs = ctx;
    if (fs->failed)
        return CG_SINK_FAILED;
    if (fs->n_pending == fs->cap_pending) {
        size_t cap = fs->cap_pending ? fs->cap_pending * 2 : 256;
        pending_t *p = realloc(fs->pending, cap * sizeof(*p));
        if (!p) {
            cg_engine_fatal(fs->engine, CG_ERR_NOMEM, "file sink: out of memory");
            return CG_SINK_FAILED;
        }
        fs->pending = p;
        fs->cap_pending = cap;
    }
    cg_buf_t *b = &fs->line;
    cg_buf_reset(b);
    cg_buf_append(b, "{\"topic\":", 9);
    json_str(b, (const unsigned char *)rec->dest, strlen(rec->dest));
    cg_buf_append(b, ",\"key\":", 7);
    json_str(b, rec->key, rec->key ? rec->key_len : 0);
    cg_buf_append(b, ",\"value\":", 9);
    json_str(b, rec->value, rec->value ? rec->value_len : 0);
    cg_buf_append(b, ",\"headers\":{", 12);
    for (size_t i = 0; i + 1 < rec->n_headers; i += 2) {
        if (i)
            cg_buf_append(b, ",", 1);
        json_str(b, (const unsigned char *)rec->headers[i], strlen(rec->headers[i]));
        cg_buf_append(b, ":", 1);
        json_str(b, (const unsigned char *)rec->headers[i + 1], strlen(rec->headers[i + 1]));
    }
    cg_buf_append(b, "}}\n", 3);
    if (b->failed) {
        cg_engine_fatal(fs->engine, CG_ERR_NOMEM, "file sink: out of memory");
        return CG_SINK_FAILED;
    }
    if (fwrite(b->data, 1, b->len, fs->f) != b->len) {
        fail(fs, "cannot write");
        return CG_SINK_FAILED;
    }
    fs->pending[fs->n_pending++] = (pending_t){rec->token, rec->dead_letter};
    /* written counts as delivered for /metrics; the engine hears of it once flushed */
    if (rec->dead_letter)
        cg_metrics_gw_dead_letter(fs->metrics, header(rec, "cg.error.stage"),
                                  header(rec, "cg.error.code"));
    else if (header(rec, "cg.quality.reason")[0])
        cg_metrics_gw_quality(fs->metrics, header(rec, "cg.spec"),
                              header(rec, "cg.quality.reason"));
    else
        cg_metrics_gw_row_out(fs->metrics, rec->dest, header(rec, "cg.spec"));
    return CG_SINK_OK;
}

/* Flushes what was written and reports it delivered. */
static void fsink_poll(void *ctx, int timeout_ms)
{
    (void)timeout_ms; /* a file does not make us wait */
    file_sink_t *fs = ctx;
    if (!fs->n_pending || fs->failed)
        return;
    if (fflush(fs->f) != 0) {
        fail(fs, "cannot write");
        return;
    }
    size_t n = fs->n_pending;
    fs->n_pending = 0;
    for (size_t i = 0; i < n; i++)
        cg_engine_delivered(fs->engine, fs->pending[i].token, fs->pending[i].dead);
}

static int fsink_flush(void *ctx, int timeout_ms)
{
    fsink_poll(ctx, timeout_ms);
    return ((file_sink_t *)ctx)->n_pending > 0;
}

static int fsink_queue_len(void *ctx)
{
    /* read by the metrics endpoint's thread too */
    return (int)__atomic_load_n(&((file_sink_t *)ctx)->n_pending, __ATOMIC_RELAXED);
}

static int fsink_fatal(void *ctx, char *reason, size_t size)
{
    file_sink_t *fs = ctx;
    if (fs->failed && reason)
        snprintf(reason, size, "%s", fs->reason);
    return fs->failed;
}

const cg_sink_plugin_t cg_file_sink_plugin = {
    .name = "file",
    .desc = "NDJSON lines in a file or on stdout, for dry runs",
    .config_map = cg_file_sink_config_map,
    .conf_size = sizeof(cg_file_sink_conf_t),
    .init = fsink_init,
    .produce = fsink_produce,
    .poll = fsink_poll,
    .flush = fsink_flush,
    .queue_len = fsink_queue_len,
    .fatal = fsink_fatal,
    .destroy = fsink_destroy,
};
