/* cli_parse.c - `cohortgate parse`: decode HL7 v2 files and print structure, values or counts.
 *
 * Each message is rendered into a buffer first and printed only when it decoded completely, so a
 * bad message never leaves half a JSON object on stdout; its error goes to stderr as
 * "FILE: message N: reason" and the exit status says that something failed.
 */
#include "cg_cli.h"
#include "cg_hl7.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct parse_opts {
    cg_hl7_path_t *paths;
    size_t npaths;
    int stats;
    cg_hl7_options_t hl7;
} parse_opts_t;

typedef struct parse_stats {
    size_t files, messages, segments, fields, bytes, errors;
    json_t *types;
} parse_stats_t;

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: cohortgate parse [OPTIONS] FILE...\n"
        "\n"
        "Decodes HL7 v2 messages (one or many per file: back-to-back MSH messages, MLLP frames,\n"
        "FHS/BHS batches) and prints one JSON object per message on stdout:\n"
        "  {\"file\":..., \"message\":N, \"offset\":BYTE, \"type\":MSH-9, \"control_id\":MSH-10,\n"
        "   \"charset\":..., \"segments\":[{\"name\":\"PID\", \"fields\":[FIELD1, FIELD2, ...]}]}\n"
        "where each field is an array of repetitions, each repetition an array of components,\n"
        "each component an array of subcomponent strings (an empty field is []). Values are\n"
        "unescaped and converted to UTF-8 from the MSH-18 character set.\n"
        "\n"
        "FILE '-' reads standard input.\n"
        "\n"
        "options:\n"
        "  --get PATH           print, for each message, one line with the value of each PATH\n"
        "                       (repeatable; values separated by tabs, several matches joined\n"
        "                       with '~', tabs and line breaks inside values become spaces).\n"
        "                       PATH is e.g. PID-5.1, PID-3[*].1, OBX[*]-5: see specs/PATHS.md\n"
        "  --stats              print one JSON object with counts (messages, segments, fields,\n"
        "                       bytes, errors, messages per type) instead of the messages\n"
        "  --charset NAME       character set for messages with an empty MSH-18 (default\n"
        "                       \"%s\"; e.g. \"GB 18030-2000\", \"8859/1\", or an iconv name)\n"
        "  --max-message-bytes N, --max-segments N, --max-fields N, --max-reps N\n"
        "                       decoding limits (defaults %u, %u, %u fields per segment,\n"
        "                       %u repetitions per field)\n"
        "  -h, --help           show this help\n"
        "\n"
        "A message that fails is reported on stderr as 'FILE: message N: reason'; the others\n"
        "are still printed. Exit status: 0 all decoded, 1 some input failed, 2 usage error.\n",
        CG_HL7_DEFAULT_CHARSET, CG_HL7_DEFAULT_MAX_MESSAGE_BYTES, CG_HL7_DEFAULT_MAX_SEGMENTS,
        CG_HL7_DEFAULT_MAX_FIELDS, CG_HL7_DEFAULT_MAX_REPS);
}

static int read_all(FILE *f, char **out, size_t *len)
{
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    if (!buf)
        return -1;
    for (;;) {
        if (n == cap) {
            char *p = realloc(buf, cap * 2);
            if (!p) {
                free(buf);
                return -1;
            }
            buf = p;
            cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0) {
            if (ferror(f)) {
                free(buf);
                return -1;
            }
            break;
        }
    }
    *out = buf;
    *len = n;
    return 0;
}

static void report(const char *file, const cg_hl7_error_t *e)
{
    char loc[512];
    fprintf(stderr, "%s: message %zu: %s\n", file, e->message,
            cg_hl7_error_location(e, loc, sizeof(loc)));
}

/* Appends raw decoded as a JSON string. */
static cg_err_t put_value(cg_hl7_msg_t *m, cg_slice_t raw, int literal, cg_buf_t *tmp,
                          cg_buf_t *out, cg_hl7_error_t *err)
{
    cg_buf_reset(tmp);
    cg_err_t rc =
        literal ? cg_hl7_decode_noescape(m, raw, tmp, err) : cg_hl7_decode(m, raw, tmp, err);
    if (rc != CG_OK)
        return rc;
    return cg_buf_put_json_str(out, tmp->data ? tmp->data : "", tmp->len);
}

static cg_err_t render_json(cg_hl7_msg_t *m, const char *file, cg_buf_t *tmp, cg_buf_t *out,
                            cg_hl7_error_t *err)
{
    cg_hl7_path_t p9, p10;
    cg_hl7_path_compile(&p9, "MSH-9", 5, NULL);
    cg_hl7_path_compile(&p10, "MSH-10", 6, NULL);
    cg_hl7_match_t mt;
    cg_err_t rc;
    cg_buf_puts(out, "{\"file\":");
    cg_buf_put_json_str(out, file, strlen(file));
    cg_buf_printf(out, ",\"message\":%zu,\"offset\":%zu,\"type\":", cg_hl7_msg_number(m),
                  cg_hl7_msg_offset(m));
    cg_hl7_scope_t all = cg_hl7_scope_message(m);
    cg_slice_t none = {"", 0};
    if ((rc = put_value(m, cg_hl7_path_first(m, &p9, all, &mt) ? mt.raw : none, 0, tmp, out,
                        err)) != CG_OK)
        return rc;
    cg_buf_puts(out, ",\"control_id\":");
    if ((rc = put_value(m, cg_hl7_path_first(m, &p10, all, &mt) ? mt.raw : none, 0, tmp, out,
                        err)) != CG_OK)
        return rc;
    cg_buf_puts(out, ",\"charset\":");
    cg_buf_put_json_str(out, cg_hl7_msg_charset(m), strlen(cg_hl7_msg_charset(m)));
    const cg_hl7_batch_t *b = cg_hl7_msg_batch(m);
    if (b->fhs.len || b->bhs.len)
        cg_buf_printf(out, ",\"batch\":{\"batch\":%zu,\"index\":%zu}", b->batch_no,
                      b->index_in_batch);
    cg_buf_puts(out, ",\"segments\":[");
    uint32_t nseg = cg_hl7_seg_count(m);
    for (uint32_t s = 0; s < nseg; s++) {
        const char *name = cg_hl7_seg_name(m, s);
        int header = !strcmp(name, "MSH");
        cg_buf_puts(out, s ? ",{\"name\":" : "{\"name\":");
        cg_buf_put_json_str(out, name, strlen(name));
        cg_buf_puts(out, ",\"fields\":[");
        uint32_t nf = cg_hl7_field_count(m, s);
        for (uint32_t f = 1; f <= nf; f++) {
            if (f > 1)
                cg_buf_putc(out, ',');
            cg_slice_t whole;
            cg_hl7_get_raw(m, s, f, 0, 0, 0, &whole);
            if (whole.len == 0) {
                cg_buf_puts(out, "[]");
                continue;
            }
            cg_buf_putc(out, '[');
            uint32_t nr = cg_hl7_rep_count(m, s, f);
            for (uint32_t r = 1; r <= nr; r++) {
                cg_buf_puts(out, r > 1 ? ",[" : "[");
                uint32_t nc = cg_hl7_comp_count(m, s, f, r);
                for (uint32_t c = 1; c <= nc; c++) {
                    cg_buf_puts(out, c > 1 ? ",[" : "[");
                    uint32_t nsub = cg_hl7_sub_count(m, s, f, r, c);
                    for (uint32_t k = 1; k <= nsub; k++) {
                        cg_slice_t v;
                        cg_hl7_get_raw(m, s, f, r, c, k, &v);
                        if (k > 1)
                            cg_buf_putc(out, ',');
                        if ((rc = put_value(m, v, header && f <= 2, tmp, out, err)) != CG_OK)
                            return rc;
                    }
                    cg_buf_putc(out, ']');
                }
                cg_buf_putc(out, ']');
            }
            cg_buf_putc(out, ']');
        }
        cg_buf_puts(out, "]}");
    }
    cg_buf_puts(out, "]}\n");
    return out->failed ? CG_ERR_NOMEM : CG_OK;
}

static cg_err_t render_get(cg_hl7_msg_t *m, const parse_opts_t *o, cg_buf_t *tmp, cg_buf_t *out,
                           cg_hl7_error_t *err)
{
    cg_hl7_scope_t all = cg_hl7_scope_message(m);
    for (size_t i = 0; i < o->npaths; i++) {
        if (i)
            cg_buf_putc(out, '\t');
        cg_buf_reset(tmp);
        cg_err_t rc = cg_hl7_path_get(m, &o->paths[i], all, '~', tmp, NULL, err);
        if (rc != CG_OK)
            return rc;
        /* one line per message, one column per path: keep separators out of values */
        for (size_t k = 0; k < tmp->len; k++)
            if (tmp->data[k] == '\t' || tmp->data[k] == '\n' || tmp->data[k] == '\r')
                tmp->data[k] = ' ';
        cg_buf_append(out, tmp->data ? tmp->data : "", tmp->len);
    }
    cg_buf_putc(out, '\n');
    return out->failed ? CG_ERR_NOMEM : CG_OK;
}

static void count_stats(cg_hl7_msg_t *m, parse_stats_t *st, cg_buf_t *tmp)
{
    st->messages++;
    uint32_t nseg = cg_hl7_seg_count(m);
    st->segments += nseg;
    for (uint32_t s = 0; s < nseg; s++)
        st->fields += cg_hl7_field_count(m, s);
    cg_hl7_path_t p1, p2;
    cg_hl7_path_compile(&p1, "MSH-9.1", 7, NULL);
    cg_hl7_path_compile(&p2, "MSH-9.2", 7, NULL);
    cg_hl7_error_t e;
    cg_buf_reset(tmp);
    cg_hl7_path_get(m, &p1, cg_hl7_scope_message(m), 0, tmp, NULL, &e);
    size_t n1 = tmp->len;
    cg_buf_putc(tmp, '^');
    cg_hl7_path_get(m, &p2, cg_hl7_scope_message(m), 0, tmp, NULL, &e);
    if (tmp->len == n1 + 1)
        tmp->len = n1; /* no trigger event */
    cg_buf_append(tmp, "", 0);
    const char *key = tmp->data && tmp->data[0] ? tmp->data : "(none)";
    json_t *v = json_object_get(st->types, key);
    json_object_set_new(st->types, key, json_integer(v ? json_integer_value(v) + 1 : 1));
}

static int parse_file(const char *file, const parse_opts_t *o, cg_hl7_msg_t *m, parse_stats_t *st,
                      cg_buf_t *tmp, cg_buf_t *out)
{
    char *data = NULL;
    size_t len = 0;
    FILE *f = strcmp(file, "-") ? fopen(file, "rb") : stdin;
    if (!f || read_all(f, &data, &len) != 0) {
        fprintf(stderr, "%s: cannot read: %s\n", file, strerror(errno));
        if (f && f != stdin)
            fclose(f);
        st->errors++;
        return 1;
    }
    if (f != stdin)
        fclose(f);
    const char *shown = strcmp(file, "-") ? file : "(stdin)";
    st->files++;
    st->bytes += len;
    int failed = 0;
    cg_hl7_reader_t r;
    cg_hl7_reader_init(&r, data, len);
    if (!cg_hl7_reader_more(&r)) {
        fprintf(stderr, "%s: message 1: byte 0: no HL7 v2 message in the input\n", shown);
        st->errors++;
        failed = 1;
    }
    while (cg_hl7_reader_more(&r)) {
        cg_hl7_error_t err;
        cg_err_t rc = cg_hl7_reader_next(&r, m, &err);
        if (rc == CG_OK) {
            cg_buf_reset(out);
            if (o->npaths)
                rc = render_get(m, o, tmp, out, &err);
            else /* --stats too: a message counts as decoded only when all its values are */
                rc = render_json(m, shown, tmp, out, &err);
            if (o->stats && !o->npaths)
                cg_buf_reset(out);
        }
        if (rc != CG_OK) {
            report(shown, &err);
            st->errors++;
            failed = 1;
            continue;
        }
        if (o->stats)
            count_stats(m, st, tmp);
        if (out->len)
            fwrite(out->data, 1, out->len, stdout);
    }
    free(data);
    return failed;
}

static int parse_num(const char *s, unsigned long long max, unsigned long long *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || end == s || v == 0 || v > max || s[0] == '-')
        return -1;
    *out = v;
    return 0;
}

int cg_cli_parse(int argc, char **argv)
{
    parse_opts_t o;
    memset(&o, 0, sizeof(o));
    cg_hl7_options_default(&o.hl7);
    o.paths = calloc((size_t)argc + 1, sizeof(*o.paths));
    const char **files = calloc((size_t)argc + 1, sizeof(*files));
    size_t nfiles = 0;
    int status = CG_EXIT_OK;
    if (!o.paths || !files) {
        fprintf(stderr, "cohortgate parse: out of memory\n");
        free(o.paths);
        free(files);
        return CG_EXIT_FAILURE;
    }
    int only_files = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (only_files || a[0] != '-' || !strcmp(a, "-")) {
            files[nfiles++] = a;
        } else if (!strcmp(a, "--")) {
            only_files = 1;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            goto out;
        } else if (!strcmp(a, "--stats")) {
            o.stats = 1;
        } else if (!strcmp(a, "--strict-segments")) {
            o.hl7.strict_segments = 1;
        } else if (!strcmp(a, "--get") || !strcmp(a, "--charset") || !strncmp(a, "--max-", 6)) {
            if (i + 1 >= argc) {
                fprintf(stderr, "cohortgate parse: %s needs a value\n", a);
                status = CG_EXIT_USAGE;
                goto out;
            }
            const char *v = argv[++i];
            unsigned long long n = 0;
            if (!strcmp(a, "--get")) {
                cg_error_t e;
                if (cg_hl7_path_compile(&o.paths[o.npaths], v, strlen(v), &e) != CG_OK) {
                    fprintf(stderr, "cohortgate parse: --get: %s\n  %s\n  %*s^\n", e.text, v,
                            e.column - 1, "");
                    status = CG_EXIT_USAGE;
                    goto out;
                }
                o.npaths++;
            } else if (!strcmp(a, "--charset")) {
                o.hl7.default_charset = v;
            } else if (!strcmp(a, "--max-message-bytes") && !parse_num(v, UINT32_MAX - 2, &n)) {
                o.hl7.max_message_bytes = (size_t)n;
            } else if (!strcmp(a, "--max-segments") && !parse_num(v, UINT32_MAX - 2, &n)) {
                o.hl7.max_segments = (uint32_t)n;
            } else if (!strcmp(a, "--max-fields") && !parse_num(v, UINT32_MAX - 2, &n)) {
                o.hl7.max_fields = (uint32_t)n;
            } else if (!strcmp(a, "--max-reps") && !parse_num(v, UINT32_MAX - 2, &n)) {
                o.hl7.max_reps = (uint32_t)n;
            } else {
                fprintf(stderr, "cohortgate parse: bad option or value: %s %s\n", a, v);
                status = CG_EXIT_USAGE;
                goto out;
            }
        } else {
            fprintf(stderr, "cohortgate parse: unknown option '%s' (see --help)\n", a);
            status = CG_EXIT_USAGE;
            goto out;
        }
    }
    if (nfiles == 0) {
        fprintf(stderr, "cohortgate parse: no FILE given ('-' reads standard input)\n");
        usage(stderr);
        status = CG_EXIT_USAGE;
        goto out;
    }
    cg_hl7_msg_t *m = cg_hl7_msg_new(&o.hl7);
    if (!m) {
        fprintf(stderr, "cohortgate parse: invalid limits or out of memory\n");
        status = CG_EXIT_USAGE;
        goto out;
    }
    char probe[64];
    if (!cg_hl7_charset_iconv_name(o.hl7.default_charset, strlen(o.hl7.default_charset), probe,
                                   sizeof(probe))) {
        fprintf(stderr, "cohortgate parse: --charset: bad name '%s'\n", o.hl7.default_charset);
        cg_hl7_msg_destroy(m);
        status = CG_EXIT_USAGE;
        goto out;
    }
    parse_stats_t st;
    memset(&st, 0, sizeof(st));
    st.types = json_object();
    cg_buf_t tmp, buf;
    cg_buf_init(&tmp);
    cg_buf_init(&buf);
    for (size_t i = 0; i < nfiles; i++)
        if (parse_file(files[i], &o, m, &st, &tmp, &buf))
            status = CG_EXIT_FAILURE;
    if (o.stats) {
        json_t *j =
            json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:O}", "files", (json_int_t)st.files, "messages",
                      (json_int_t)st.messages, "segments", (json_int_t)st.segments, "fields",
                      (json_int_t)st.fields, "bytes", (json_int_t)st.bytes, "errors",
                      (json_int_t)st.errors, "types", st.types);
        if (j) {
            json_dumpf(j, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
            fputc('\n', stdout);
            json_decref(j);
        }
    }
    json_decref(st.types);
    cg_buf_free(&tmp);
    cg_buf_free(&buf);
    cg_hl7_msg_destroy(m);
    fflush(stdout);
out:
    free(o.paths);
    free(files);
    return status;
}
