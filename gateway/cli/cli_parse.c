/* cli_parse.c - `cohortgate parse`: decode HL7 v2 files and XML clinical documents and print
 * structure, values or counts.
 *
 * Each input is told apart by the input-format registry (cg_spec_format_sniff): XML is one
 * document per file, anything else is read as HL7 v2 (one or many messages). Each message or
 * document is rendered into a buffer first and printed only when it decoded completely, so a bad
 * one never leaves half a JSON object on stdout; its error goes to stderr as "FILE: message N:
 * reason" (or "FILE: document N: reason") and the exit status says that something failed.
 */
#include "cg_cli.h"
#include "cg_hl7.h"
#include "cg_spec_format.h"
#include "cg_xml.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct parse_opts {
    cg_hl7_path_t *paths;
    size_t npaths;
    /* each --get compiled both ways, since the kind of input is known only per file: an
     * HL7 path (hl7_ok[i]) and an XPath (xpaths[i], NULL when it is not one) */
    const char **gets;
    int *hl7_ok;
    cg_xml_xpath_t **xpaths;
    int stats;
    cg_hl7_options_t hl7;
    cg_xml_options_t xml;
} parse_opts_t;

typedef struct parse_stats {
    size_t files, messages, documents, segments, fields, bytes, errors;
    json_t *types;
} parse_stats_t;

/* The XML side, made on the first XML input. */
typedef struct parse_xml {
    cg_xml_doc_t *doc;
    cg_xml_eval_t *ev;
} parse_xml_t;

static void usage(FILE *out)
{
    cg_xml_options_t xml_defaults;
    cg_xml_options_default(&xml_defaults);
    fprintf(
        out,
        "usage: cohortgate parse [OPTIONS] FILE...\n"
        "\n"
        "Decodes HL7 v2 messages (one or many per file: back-to-back MSH messages, MLLP frames,\n"
        "FHS/BHS batches) and XML clinical documents (CDA R2 / C-CDA, one per file; a file is\n"
        "XML when it starts with '<' after an optional BOM and white space), and prints one\n"
        "JSON object per message on stdout:\n"
        "  {\"file\":..., \"message\":N, \"offset\":BYTE, \"type\":MSH-9, \"control_id\":MSH-10,\n"
        "   \"charset\":..., \"segments\":[{\"name\":\"PID\", \"fields\":[FIELD1, FIELD2, ...]}]}\n"
        "where each field is an array of repetitions, each repetition an array of components,\n"
        "each component an array of subcomponent strings (an empty field is []). Values are\n"
        "unescaped and converted to UTF-8 from the MSH-18 character set.\n"
        "\n"
        "and one JSON object per XML document:\n"
        "  {\"file\":..., \"document\":1, \"root\":\"ClinicalDocument\", \"namespace\":...,\n"
        "   \"templateIds\":[...], \"id\":\"root^extension\", "
        "\"sections\":[{\"kind\":\"problems\",\n"
        "   \"templateIds\":[...], \"title\":..., \"entries\":N}, ...]}\n"
        "where a section's kind comes from its C-CDA templateId (null when unknown). XML is\n"
        "decoded with the network off and no DTD loading; a DOCTYPE that declares entities is\n"
        "refused (XXE, entity expansion). Its declared encoding (UTF-8, GB18030, GBK,\n"
        "ISO-8859-1, ...) is converted to UTF-8; invalid bytes are an error.\n"
        "\n"
        "FILE '-' reads standard input.\n"
        "\n"
        "options:\n"
        "  --get PATH           print, for each message or document, one line with the value\n"
        "                       of each PATH (repeatable; values separated by tabs, several\n"
        "                       matches joined with '~', tabs and line breaks inside values\n"
        "                       become spaces). For HL7 v2 PATH is e.g. PID-5.1, PID-3[*].1,\n"
        "                       OBX[*]-5 (see specs/PATHS.md); for XML an XPath 1.0 expression\n"
        "                       with the prefixes hl7, sdtc and xsi, e.g.\n"
        "                       /hl7:ClinicalDocument/hl7:id/@extension\n"
        "  --stats              print one JSON object with counts (messages, documents,\n"
        "                       segments, fields, bytes, errors, messages per type) instead of\n"
        "                       the messages and documents\n"
        "  --charset NAME       character set for messages with an empty MSH-18 (default\n"
        "                       \"%s\"; e.g. \"GB 18030-2000\", \"8859/1\", or an iconv name);\n"
        "                       when given, also the encoding of XML documents that declare\n"
        "                       none and have no BOM (otherwise UTF-8)\n"
        "  --max-message-bytes N, --max-segments N, --max-fields N, --max-reps N\n"
        "                       decoding limits (defaults %u, %u, %u fields per segment,\n"
        "                       %u repetitions per field)\n"
        "  --max-document-bytes N, --max-depth N\n"
        "                       XML limits (defaults %zu bytes, %u levels of element nesting;\n"
        "                       libxml2 itself stops at 256 levels)\n"
        "  -h, --help           show this help\n"
        "\n"
        "A message that fails is reported on stderr as 'FILE: message N: reason', a document\n"
        "as 'FILE: document N: line L, column C: reason'; the others are still printed.\n"
        "Exit status: 0 all decoded, 1 some input failed, 2 usage error.\n",
        CG_HL7_DEFAULT_CHARSET, CG_HL7_DEFAULT_MAX_MESSAGE_BYTES, CG_HL7_DEFAULT_MAX_SEGMENTS,
        CG_HL7_DEFAULT_MAX_FIELDS, CG_HL7_DEFAULT_MAX_REPS, xml_defaults.max_bytes,
        xml_defaults.max_depth);
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

static void report(const char *file, const cg_error_t *e)
{
    char loc[512];
    fprintf(stderr, "%s: message %zu: %s\n", file, e->message,
            cg_error_format(e, loc, sizeof(loc)));
}

/* Appends raw decoded as a JSON string. */
static cg_err_t put_value(cg_hl7_msg_t *m, cg_slice_t raw, int literal, cg_buf_t *tmp,
                          cg_buf_t *out, cg_error_t *err)
{
    cg_buf_reset(tmp);
    cg_err_t rc =
        literal ? cg_hl7_decode_noescape(m, raw, tmp, err) : cg_hl7_decode(m, raw, tmp, err);
    if (rc != CG_OK)
        return rc;
    return cg_buf_put_json_str(out, tmp->data ? tmp->data : "", tmp->len);
}

static cg_err_t render_json(cg_hl7_msg_t *m, const char *file, cg_buf_t *tmp, cg_buf_t *out,
                            cg_error_t *err)
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
                           cg_error_t *err)
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
    cg_error_t e;
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

/* Why --get text is not a path of the input's kind, compiled again: the error path only. */
static const char *get_error(const char *text, int xml, cg_error_t *e)
{
    if (xml) {
        cg_xml_xpath_t *x = cg_xml_xpath_compile(text, NULL, 0, e);
        cg_xml_xpath_free(x);
    } else {
        cg_hl7_path_t p;
        cg_hl7_path_compile(&p, text, strlen(text), e);
    }
    return e->text;
}

/* One line with the values of each --get XPath, or in *bad the one that is not an XPath. */
static cg_err_t render_xml_get(parse_xml_t *x, const parse_opts_t *o, cg_buf_t *tmp, cg_buf_t *out,
                               size_t *bad)
{
    cg_xml_eval_bind(x->ev, x->doc);
    for (size_t i = 0; i < o->npaths; i++) {
        if (!o->xpaths[i]) {
            *bad = i;
            return CG_ERR_SPEC;
        }
        if (i)
            cg_buf_putc(out, '\t');
        cg_buf_reset(tmp);
        cg_xml_xpath_values(x->ev, o->xpaths[i], NULL, '~', tmp);
        for (size_t k = 0; k < tmp->len; k++)
            if (tmp->data[k] == '\t' || tmp->data[k] == '\n' || tmp->data[k] == '\r')
                tmp->data[k] = ' ';
        cg_buf_append(out, tmp->data ? tmp->data : "", tmp->len);
    }
    cg_buf_putc(out, '\n');
    return out->failed ? CG_ERR_NOMEM : CG_OK;
}

/* The summary of the document, with the file and document number in front. */
static cg_err_t render_xml_json(parse_xml_t *x, const char *file, cg_buf_t *tmp, cg_buf_t *out)
{
    cg_buf_reset(tmp);
    cg_err_t rc = cg_xml_summary(x->doc, tmp);
    if (rc != CG_OK)
        return rc;
    cg_buf_puts(out, "{\"file\":");
    cg_buf_put_json_str(out, file, strlen(file));
    cg_buf_puts(out, ",\"document\":1,");
    cg_buf_append(out, tmp->data + 1, tmp->len - 1); /* the summary without its '{' */
    cg_buf_putc(out, '\n');
    return out->failed ? CG_ERR_NOMEM : CG_OK;
}

static int parse_xml(const char *shown, const char *data, size_t len, const parse_opts_t *o,
                     parse_xml_t *x, parse_stats_t *st, cg_buf_t *tmp, cg_buf_t *out)
{
    if (!x->doc && !(x->doc = cg_xml_doc_new(&o->xml))) {
        fprintf(stderr, "%s: document 1: out of memory\n", shown);
        st->errors++;
        return 1;
    }
    if (o->npaths && !x->ev && !(x->ev = cg_xml_eval_new())) {
        fprintf(stderr, "%s: document 1: out of memory\n", shown);
        st->errors++;
        return 1;
    }
    cg_error_t e;
    cg_err_t rc = cg_xml_parse(x->doc, data, len, &e);
    if (rc != CG_OK) {
        char loc[512];
        fprintf(stderr, "%s: document 1: %s\n", shown, cg_error_format(&e, loc, sizeof(loc)));
        st->errors++;
        return 1;
    }
    cg_buf_reset(out);
    size_t bad = 0;
    if (o->npaths)
        rc = render_xml_get(x, o, tmp, out, &bad);
    else /* --stats too: a document counts as decoded only when its summary renders */
        rc = render_xml_json(x, shown, tmp, out);
    if (rc != CG_OK) {
        cg_error_t ge;
        if (rc == CG_ERR_SPEC)
            fprintf(stderr, "%s: document 1: --get '%s' is not an XPath expression: %s\n", shown,
                    o->gets[bad], get_error(o->gets[bad], 1, &ge));
        else
            fprintf(stderr, "%s: document 1: %s\n", shown, cg_err2str(rc));
        st->errors++;
        return 1;
    }
    if (o->stats && !o->npaths)
        cg_buf_reset(out);
    if (o->stats)
        st->documents++;
    if (out->len)
        fwrite(out->data, 1, out->len, stdout);
    return 0;
}

static int parse_file(const char *file, const parse_opts_t *o, cg_hl7_msg_t *m, parse_xml_t *x,
                      parse_stats_t *st, cg_buf_t *tmp, cg_buf_t *out)
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
    if (cg_spec_format_sniff(data, len)->format == CG_INPUT_XML) {
        int xml_failed = parse_xml(shown, data, len, o, x, st, tmp, out);
        free(data);
        return xml_failed;
    }
    int failed = 0;
    for (size_t i = 0; i < o->npaths; i++) {
        if (!o->hl7_ok[i]) {
            cg_error_t ge;
            fprintf(stderr, "%s: message 1: --get '%s' is not an HL7 v2 path: %s\n", shown,
                    o->gets[i], get_error(o->gets[i], 0, &ge));
            st->errors++;
            free(data);
            return 1;
        }
    }
    cg_hl7_reader_t r;
    cg_hl7_reader_init(&r, data, len);
    if (!cg_hl7_reader_more(&r)) {
        fprintf(stderr, "%s: message 1: byte 0: no HL7 v2 message in the input\n", shown);
        st->errors++;
        failed = 1;
    }
    while (cg_hl7_reader_more(&r)) {
        cg_error_t err;
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
    cg_xml_options_default(&o.xml);
    o.paths = calloc((size_t)argc + 1, sizeof(*o.paths));
    o.gets = calloc((size_t)argc + 1, sizeof(*o.gets));
    o.hl7_ok = calloc((size_t)argc + 1, sizeof(*o.hl7_ok));
    o.xpaths = calloc((size_t)argc + 1, sizeof(*o.xpaths));
    const char **files = calloc((size_t)argc + 1, sizeof(*files));
    size_t nfiles = 0;
    int status = CG_EXIT_OK;
    int charset_given = 0;
    char xml_charset[64];
    if (!o.paths || !o.gets || !o.hl7_ok || !o.xpaths || !files) {
        fprintf(stderr, "cohortgate parse: out of memory\n");
        status = CG_EXIT_FAILURE;
        goto out;
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
                cg_error_t e, xe;
                o.gets[o.npaths] = v;
                o.hl7_ok[o.npaths] =
                    cg_hl7_path_compile(&o.paths[o.npaths], v, strlen(v), &e) == CG_OK;
                o.xpaths[o.npaths] = cg_xml_xpath_compile(v, NULL, 0, &xe);
                if (!o.hl7_ok[o.npaths] && !o.xpaths[o.npaths]) {
                    /* neither kind: show both complaints, each pointing into the text */
                    fprintf(stderr,
                            "cohortgate parse: --get: neither an HL7 v2 path nor an XPath\n"
                            "  HL7 v2: %s\n    %s\n    %*s^\n"
                            "  XPath: %s\n    %s\n    %*s^\n",
                            e.text, v, e.column > 0 ? e.column - 1 : 0, "", xe.text, v,
                            xe.column > 0 ? xe.column - 1 : 0, "");
                    status = CG_EXIT_USAGE;
                    goto out;
                }
                o.npaths++;
            } else if (!strcmp(a, "--charset")) {
                o.hl7.default_charset = v;
                charset_given = 1;
            } else if (!strcmp(a, "--max-message-bytes") && !parse_num(v, UINT32_MAX - 2, &n)) {
                o.hl7.max_message_bytes = (size_t)n;
            } else if (!strcmp(a, "--max-segments") && !parse_num(v, UINT32_MAX - 2, &n)) {
                o.hl7.max_segments = (uint32_t)n;
            } else if (!strcmp(a, "--max-fields") && !parse_num(v, UINT32_MAX - 2, &n)) {
                o.hl7.max_fields = (uint32_t)n;
            } else if (!strcmp(a, "--max-reps") && !parse_num(v, UINT32_MAX - 2, &n)) {
                o.hl7.max_reps = (uint32_t)n;
            } else if (!strcmp(a, "--max-document-bytes") && !parse_num(v, INT32_MAX, &n)) {
                o.xml.max_bytes = (size_t)n;
            } else if (!strcmp(a, "--max-depth") && !parse_num(v, UINT32_MAX - 2, &n)) {
                o.xml.max_depth = (unsigned)n;
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
    if (charset_given) { /* the same name, as iconv knows it, for undeclared XML */
        o.xml.default_encoding = cg_hl7_charset_iconv_name(
            o.hl7.default_charset, strlen(o.hl7.default_charset), xml_charset, sizeof(xml_charset));
    }
    parse_xml_t x = {NULL, NULL};
    parse_stats_t st;
    memset(&st, 0, sizeof(st));
    st.types = json_object();
    cg_buf_t tmp, buf;
    cg_buf_init(&tmp);
    cg_buf_init(&buf);
    for (size_t i = 0; i < nfiles; i++)
        if (parse_file(files[i], &o, m, &x, &st, &tmp, &buf))
            status = CG_EXIT_FAILURE;
    if (o.stats) {
        json_t *j =
            json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:O}", "files", (json_int_t)st.files,
                      "messages", (json_int_t)st.messages, "documents", (json_int_t)st.documents,
                      "segments", (json_int_t)st.segments, "fields", (json_int_t)st.fields, "bytes",
                      (json_int_t)st.bytes, "errors", (json_int_t)st.errors, "types", st.types);
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
    cg_xml_eval_destroy(x.ev);
    cg_xml_doc_destroy(x.doc);
    fflush(stdout);
out:
    for (size_t i = 0; o.xpaths && i < o.npaths; i++)
        cg_xml_xpath_free(o.xpaths[i]);
    free(o.paths);
    free(o.gets);
    free(o.hl7_ok);
    free(o.xpaths);
    free(files);
    return status;
}
