/* cli_map.c - `cohortgate map`: dry-run mapping specs on files, records as NDJSON on stdout.
 * The integration engineer's loop: edit a spec, map a sample, read the rows (and --trace). */
#include "cg_cli.h"
#include "cg_config.h"
#include "cg_release.h"
#include "cg_subscribers.h"
#include "cg_hl7.h"
#include "cg_mapping.h"
#include "cg_pseudo.h"
#include "cg_spec.h"
#include "cg_spec_format.h"

#include <errno.h>
#include <fcntl.h>
#include <iconv.h>
#include <getopt.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: cohortgate map --spec FILE|DIR [OPTIONS] INPUT...\n\n"
        "Map HL7 v2 files (several messages a file, batches and MLLP framing are fine) and XML\n"
        "documents (CDA / C-CDA, one document a file; told apart by their first bytes; - for\n"
        "stdin) with the given specs and print one JSON record envelope a line. Errors go to\n"
        "stderr as INPUT: message N: STAGE: REASON (document N for XML); the exit status is 1\n"
        "if any message failed, and the other messages are still mapped. An entry a spec with\n"
        "\"on_error\": \"entry\" leaves out (C-CDA's default) is reported on stderr as\n"
        "INPUT: document N: quality: map: rule R, column C, entry K at WHERE: left out: REASON\n"
        "(what `run` publishes on the quality topic, no values); the rest of the document maps\n"
        "and the exit status stays 0. A message that maps to no record is a line there too,\n"
        "not a failure: INPUT: message N: no_rows: TYPE: ... or INPUT: message N:\n"
        "no_research_content: TYPE: REASON (spec NAME). An input with no message in it (empty,\n"
        "a BOM, an empty MLLP frame, a batch envelope alone) fails as cohortgate run\n"
        "dead-letters it.\n\n"
        "options:\n"
        "  -s, --spec FILE|DIR   a spec, or a folder of *.json specs (every matching spec\n"
        "                        applies to a message); again for a layer over the ones\n"
        "                        before (the shipped specs/ first, a site's after it): a\n"
        "                        spec replaces an earlier layer's of the same name\n"
        "      --vocab DIR|FILE  vocabulary tables (*.csv: project tables or OMOP\n"
        "                        SOURCE_TO_CONCEPT_MAP files); again for a layer whose rows\n"
        "                        replace earlier layers' (vocabulary, code); default: the\n"
        "                        vocab/ folder of each spec layer\n"
        "      --athena DIR      also load OHDSI Athena CONCEPT.csv and CONCEPT_RELATIONSHIP.csv\n"
        "      --key-file FILE   pseudonym key (at least 32 bytes); default: the environment\n"
        "                        variable COHORTGATE_PSEUDONYM_KEY. Without a key, map refuses\n"
        "                        to run rather than emit unkeyed pseudonyms.\n"
        "      --date-shift N    shift each patient's dates by a keyed offset in [-N, N] days\n"
        "      --utc-offset +HH:MM  offset written for HL7 times that carry none\n"
        "      --message-id keyed|plain  source.message_id as a keyed hash of MSH-10 or the\n"
        "                        document id (keyed, the default, as pseudonym.message_id) or\n"
        "                        as sent (plain)\n"
        "      --charset NAME    character set of messages with an empty MSH-18 (default\n"
        "                        \"UNICODE UTF-8\"; e.g. \"8859/1\", \"GB 18030-2000\", or an\n"
        "                        iconv name)\n"
        "      --cohorts DIR     route rows through the cohort definitions in DIR (or one\n"
        "                        file), as the gateway does: each record lists its \"cohorts\"\n"
        "      --param NAME=VALUE  a value for the specs' parameter NAME (as mapping.params),\n"
        "                        e.g. patient_id_types='NNCHN|MR|*'; repeatable\n"
        "      --max-message-ms N  time budget of one message's mapping (default %d; 0: none)\n"
        "      --max-message-mb N  memory budget of its values in MiB (default %d; 0: none):\n"
        "                        past either, the message fails with MAP_LIMIT, as run\n"
        "                        dead-letters it (mapping.max_message_ms, "
        "max_message_mb)\n" CG_CLI_AUTHORITY_HELP
        "      --strict          refuse specs that check --spec warns about (a concept id from a\n"
        "                        raw code, an unknown vocabulary, …): warnings become errors\n"
        "  -t, --trace           add, for every column, the rule and source path behind it and\n"
        "                        the steps its value took (coalesce branch, vocabulary row);\n"
        "                        with --cohorts, the rule behind each cohort (\"cohort_rules\")\n"
        "      --ids-as-strings  64-bit ids as JSON strings, as output.ids_as_strings does\n"
        "      --for NAME        print what subscriber NAME of --config's release.subscribers\n"
        "                        would get instead (its policy, its pseudonyms; rows withheld are\n"
        "                        counted on stderr by reason)\n"
        "      --config FILE     with --for: the gateway config that declares the subscriber\n"
        "  -q, --quiet           no progress on stderr\n"
        "  -h, --help            show this help\n",
        CG_MAPPING_DEFAULT_MAX_MESSAGE_MS, CG_MAPPING_DEFAULT_MAX_MESSAGE_MB);
}

typedef struct map_opts {
    cg_cli_layers_t specs, vocab;
    const char *athena, *key_file, *utc_offset, *charset, *cohorts, *for_sub, *config;
    int date_shift, trace, ids_as_strings, quiet, strict, message_id_plain;
    long max_ms, max_mb;
    cg_spec_param_t params[CG_CLI_MAX_PARAMS];
    size_t n_params;
    cg_cli_authorities_t auth;
} map_opts_t;

static void progress(const cg_cli_map_counts_t *c, int final)
{
    static time_t last;
    time_t now = time(NULL);
    if (!final && now == last)
        return;
    last = now;
    fprintf(stderr,
            "\rcohortgate map: %zu message(s), %zu row(s), %zu failed, %zu entries left out, %zu "
            "without rows, %zu no research content, %.1f MB%s",
            c->messages, c->rows, c->failed, c->quality, c->no_rows, c->no_research_content,
            c->bytes / 1e6, final ? "\n" : "");
}

/* Records are gathered here and written in large blocks: one fwrite a line cost more than
 * encoding it. */
#define OUT_FLUSH_BYTES (256u * 1024u)

static void flush_out(cg_buf_t *line, FILE *out)
{
    if (line->len)
        fwrite(line->data, 1, line->len, out);
    cg_buf_reset(line);
}

/* A file is mapped in one piece, but the pages behind the reader are given back this often, so
 * RSS stays flat however long the file is. */
#define RELEASE_BYTES (8u * 1024u * 1024u)

/* --for: the subscriber whose records are printed instead of the site's, and what it was not
 * given. One map command at a time, so file-level. */
static struct {
    const cg_subscribers_t *subs;
    const cg_subscriber_t *sub;
    cg_release_scratch_t *scratch;
    size_t released, withheld[CG_RELEASE__COUNT];
} rel;

/* The subscriber's record of row, if released, to line. */
static void put_released(const cg_row_t *row, const char *const *cohorts, size_t n_cohorts,
                         int flags, cg_buf_t *line)
{
    const char *set = NULL;
    int level = cg_catalogue_row_level(rel.subs->catalogue, row, &set);
    cg_release_out_t out;
    cg_release_outcome_t why;
    if (cg_release_row(rel.sub->policy, row, cohorts, n_cohorts, level, set, time(NULL),
                       rel.scratch, &out, &why) != CG_OK) {
        fprintf(stderr, "cohortgate map: out of memory releasing a row\n");
        exit(CG_EXIT_FAILURE);
    }
    if (why != CG_RELEASE_OK) {
        rel.withheld[why]++;
        return;
    }
    rel.released++;
    cg_row_encode(&out.row, &out.src, NULL, 0, (unsigned)flags & ~CG_ROW_ENCODE_TRACE, line);
    cg_buf_putc_fast(line, '\n');
}

/* Writes rows as NDJSON envelopes to line; flags: cg_row_encode's (the trace, ids as strings).
 * With --cohorts, rows go through the routing stage the gateway runs, so "cohorts" shows what a
 * row would join. */
static void put_rows(cg_mapping_worker_t *mw, const cg_row_t *rows, size_t n, int flags,
                     cg_buf_t *line)
{
    for (size_t i = 0; i < n; i++) {
        const char *const *cohorts = NULL;
        size_t n_cohorts = cg_mapping_worker_route(mw, &rows[i], &cohorts);
        if (rel.sub) {
            put_released(&rows[i], cohorts, n_cohorts, flags, line);
            continue;
        }
        cg_row_encode(&rows[i], NULL, cohorts, n_cohorts, (unsigned)flags, line);
        if ((flags & CG_ROW_ENCODE_TRACE) && n_cohorts && line->len) {
            /* with the trace, the rule behind each cohort the row joined */
            line->len--; /* the record's closing brace */
            cg_buf_puts(line, ",\"cohort_rules\":{");
            for (size_t k = 0; k < n_cohorts; k++) {
                const char *why = cg_mapping_worker_route_why(mw, k);
                cg_buf_puts(line, k ? "," : "");
                cg_buf_put_json_str(line, cohorts[k], strlen(cohorts[k]));
                cg_buf_putc(line, ':');
                cg_buf_put_json_str(line, why ? why : "", why ? strlen(why) : 0);
            }
            cg_buf_puts(line, "}}");
        }
        cg_buf_putc_fast(line, '\n');
    }
}

/* One failed input as "NAME: message N: STAGE: ERROR" ("document N" for XML). */
static void put_error(FILE *errs, const char *name, const char *unit, size_t n, const cg_error_t *e)
{
    char text[1024];
    fprintf(errs, "%s: %s %zu: %s: %s\n", name, unit, n, e->stage ? e->stage : "map",
            cg_error_format(e, text, sizeof(text)));
}

/* The entries the last input left out (on_error "entry"), as "NAME: message N: quality: map:
 * FINDING" lines beside the errors: what `run` publishes on the quality topic, value-free. */
static void put_quality(cg_mapping_worker_t *mw, FILE *errs, const char *name, const char *unit,
                        size_t n, cg_cli_map_counts_t *cnt)
{
    const cg_quality_t *q;
    size_t nq = cg_mapping_worker_quality(mw, &q);
    for (size_t i = 0; i < nq; i++) {
        char text[1536];
        fprintf(errs, "%s: %s %zu: quality: %s: %s\n", name, unit, n, q[i].stage,
                cg_quality_format(&q[i], text, sizeof(text)));
    }
    cnt->quality += nq;
}

/* A message that mapped to no record leaves a line, as the gateway counts and logs it: the
 * outcome in the place of an error's stage. */
static void put_outcome(cg_mapping_worker_t *mw, FILE *errs, const char *name, const char *unit,
                        size_t n, cg_cli_map_counts_t *cnt)
{
    cg_map_outcome_t o;
    cg_mapping_worker_outcome(mw, &o);
    if (o.kind == CG_MAP_NO_ROWS) {
        cnt->no_rows++;
        fprintf(errs, "%s: %s %zu: no_rows: %s: a spec took it and no rule made a row\n", name,
                unit, n, o.type);
    } else if (o.kind == CG_MAP_NO_RESEARCH_CONTENT) {
        cnt->no_research_content++;
        fprintf(errs, "%s: %s %zu: no_research_content: %s: %s (spec %s)\n", name, unit, n, o.type,
                o.reason, o.spec);
    }
}

/* An input in which the reader found no message (empty, a BOM, an empty MLLP frame, a batch
 * envelope alone) fails as the gateway fails the same bytes as one record: mapped whole, so
 * the reason is the gateway's dead letter's, word for word. */
static void map_no_message(cg_mapping_worker_t *mw, const char *name, const char *buf, size_t len,
                           FILE *errs, cg_cli_map_counts_t *cnt)
{
    const cg_row_t *rows;
    size_t n;
    cg_error_t me;
    cnt->messages++;
    if (cg_mapping_worker_map(mw, CG_INPUT_HL7V2, buf, len, &rows, &n, &me) != CG_OK) {
        cnt->failed++;
        put_error(errs, name, "message", 1, &me);
    }
}

/* Whether an input is an XML document: the input-format registry says, as the mapper's does. */
static int is_xml(const char *buf, size_t len)
{
    return cg_spec_format_sniff(buf, len)->format == CG_INPUT_XML;
}

/* An XML input is one document (CDA and vendor XML are sent one per file or record). */
static size_t map_xml(cg_mapping_worker_t *mw, const char *name, const char *buf, size_t len,
                      int trace, FILE *out, FILE *errs, cg_cli_map_counts_t *cnt, cg_buf_t *line)
{
    const cg_row_t *rows;
    size_t n;
    cg_error_t me;
    cnt->messages++;
    cnt->bytes += len;
    cg_err_t rc = cg_mapping_worker_map(mw, CG_INPUT_XML, buf, len, &rows, &n, &me);
    if (rc) {
        cnt->failed++;
        put_error(errs, name, "document", 1, &me);
        return 1;
    }
    put_rows(mw, rows, n, trace, line);
    flush_out(line, out);
    put_quality(mw, errs, name, "document", 1, cnt);
    cnt->rows += n;
    if (!n)
        put_outcome(mw, errs, name, "document", 1, cnt);
    return 0;
}

/* Pages of a mapped input the reader has left behind, given back as it goes (cg_hl7_reader_t
 * scanned, and between messages) so that memory does not grow with the file. */
typedef struct page_release {
    const char *base; /* NULL: the input is not a mapping of ours */
    size_t done, page;
} page_release_t;

static void release_pages(void *ctx, size_t upto)
{
    page_release_t *pr = ctx;
    if (!pr->base || !pr->page)
        return;
    upto &= ~(pr->page - 1);
    if (upto <= pr->done || upto - pr->done < RELEASE_BYTES)
        return;
    madvise((char *)(uintptr_t)pr->base + pr->done, upto - pr->done, MADV_DONTNEED);
    pr->done = upto;
}

/* Maps every message the reader holds. base is the input offset of rd->buf[0] (not 0 when
 * streaming), added to error offsets. With map_base, pages of that mapping before the current
 * message are released as the reader moves on. */
static size_t map_reader(cg_mapping_worker_t *mw, cg_hl7_msg_t *msg, const char *name,
                         cg_hl7_reader_t *rd, size_t base, const char *map_base, int trace,
                         FILE *out, FILE *errs, cg_cli_map_counts_t *cnt, cg_buf_t *line)
{
    size_t failed = 0;
    int tty = cnt->progress && isatty(2);
    int out_tty = isatty(fileno(out));
    long page = sysconf(_SC_PAGESIZE);
    page_release_t pr = {map_base, 0, page > 0 ? (size_t)page : 0};
    if (map_base) {
        rd->scanned = release_pages;
        rd->scanned_ctx = &pr;
    }
    while (cg_hl7_reader_more(rd)) {
        /* the last message's rows are encoded: nothing points below rd->pos any more */
        release_pages(&pr, rd->pos);
        cg_error_t he;
        size_t start = rd->pos;
        cnt->messages++;
        cg_err_t rc = cg_hl7_reader_next(rd, msg, &he);
        cnt->bytes += rd->pos - start;
        if (rc) {
            failed++;
            he.offset += base;
            he.stage = "decode";
            put_error(errs, name, "message", he.message, &he);
            continue;
        }
        const cg_row_t *rows;
        size_t n;
        cg_error_t me;
        rc = cg_mapping_worker_map_msg(mw, msg, &rows, &n, &me);
        if (rc) {
            failed++;
            put_error(errs, name, "message", cg_hl7_msg_number(msg), &me);
            continue;
        }
        put_rows(mw, rows, n, trace, line);
        if (line->len >= OUT_FLUSH_BYTES || out_tty)
            flush_out(line, out);
        put_quality(mw, errs, name, "message", cg_hl7_msg_number(msg), cnt);
        cnt->rows += n;
        if (!n)
            put_outcome(mw, errs, name, "message", cg_hl7_msg_number(msg), cnt);
        if (tty)
            progress(cnt, 0);
    }
    rd->scanned = NULL;
    cnt->failed += failed;
    return failed;
}

/* After an input's last message: a BTS or FTS whose count disagreed (a message or batch lost on
 * the way) is reported as a failure of the input, as the gateway dead-letters it. */
static void put_count_error(const cg_hl7_reader_t *rd, const char *name, FILE *errs,
                            cg_cli_map_counts_t *cnt)
{
    cg_error_t he;
    if (cg_hl7_reader_end(rd, &he) == CG_OK)
        return;
    he.stage = "decode";
    put_error(errs, name, "message", he.message, &he);
    cnt->failed++;
}

size_t cg_cli_map_buffer(cg_mapping_worker_t *mw, cg_hl7_msg_t *msg, const char *name,
                         const char *buf, size_t len, int trace, FILE *out, FILE *errs,
                         cg_cli_map_counts_t *cnt)
{
    cg_hl7_reader_t rd;
    cg_hl7_reader_init(&rd, buf, len);
    cg_buf_t line;
    cg_buf_init(&line);
    size_t before = cnt->messages, failed_before = cnt->failed;
    int xml = is_xml(buf, len);
    size_t failed = xml ? map_xml(mw, name, buf, len, trace, out, errs, cnt, &line)
                        : map_reader(mw, msg, name, &rd, 0, NULL, trace, out, errs, cnt, &line);
    if (!xml && rd.count_error_at) {
        put_count_error(&rd, name, errs, cnt);
        failed++;
    }
    if (cnt->messages == before) {
        map_no_message(mw, name, buf, len, errs, cnt);
        failed += cnt->failed - failed_before;
    }
    flush_out(&line, out);
    cg_buf_free(&line);
    return failed;
}

/* Where buf[0..n) may be cut so that both parts hold whole messages: the start of the last line
 * (after \r, \n or an MLLP end byte, MLLP start bytes skipped) that begins with MSH, FHS or BHS,
 * the segments at which the reader itself ends a message. 0 when there is none after buf[0]. */
static size_t last_cut(const char *buf, size_t n)
{
    for (size_t i = n; i-- > 1;) {
        unsigned char c = (unsigned char)buf[i - 1];
        if (c != '\r' && c != '\n' && c != 0x1c)
            continue;
        size_t j = i;
        while (j < n && buf[j] == 0x0b)
            j++;
        if (n - j >= 3 &&
            ((buf[j] == 'M' && buf[j + 1] == 'S' && buf[j + 2] == 'H') ||
             ((buf[j] == 'F' || buf[j] == 'B') && buf[j + 1] == 'H' && buf[j + 2] == 'S')))
            return i;
    }
    return 0;
}

/* Batch headers the reader keeps as slices into the chunk about to be dropped: copied, so the
 * slices stay valid, and their offsets made absolute. */
static void keep_batch_header(cg_slice_t *seg, size_t *offset, const char *chunk, size_t cut,
                              size_t base, cg_buf_t *copy)
{
    if (!seg->ptr || seg->ptr < chunk || seg->ptr >= chunk + cut)
        return;
    cg_buf_reset(copy);
    cg_buf_append(copy, seg->ptr, seg->len);
    seg->ptr = copy->data ? copy->data : "";
    *offset += base;
}

/* Largest input kept in memory while looking for the end of one message: beyond the decoder's
 * message size limit it is an error anyway. */
#define STREAM_CHUNK (1u << 20)
#define STREAM_MAX   (CG_HL7_DEFAULT_MAX_MESSAGE_BYTES + STREAM_CHUNK)

/* Doubles the stream buffer up to STREAM_MAX; 0 when it cannot grow. */
static int grow(char **buf, size_t *cap)
{
    if (*cap >= STREAM_MAX)
        return 0;
    size_t ncap = *cap * 2 < STREAM_MAX ? *cap * 2 : STREAM_MAX;
    char *nb = realloc(*buf, ncap);
    if (!nb)
        return 0;
    *buf = nb;
    *cap = ncap;
    return 1;
}

/* Reads fd in chunks cut at message boundaries, so memory stays bounded for any input length
 * (stdin, pipes). Messages, numbers and offsets come out as if the input were one buffer.
 * Returns -1 on a read error. */
static int map_stream(cg_mapping_worker_t *mw, cg_hl7_msg_t *msg, const char *name, int fd,
                      int trace, FILE *out, FILE *errs, cg_cli_map_counts_t *cnt)
{
    size_t cap = STREAM_CHUNK, fill = 0, base = 0;
    char *buf = malloc(cap);
    cg_buf_t line, fhs, bhs;
    cg_buf_init(&line);
    cg_buf_init(&fhs);
    cg_buf_init(&bhs);
    cg_hl7_reader_t rd;
    int started = 0, eof = 0, status = 0;
    size_t before = cnt->messages;
    /* the first bytes, for an input that turns out to hold no message (map_no_message) */
    char head[64];
    size_t head_len = 0;
    if (!buf) {
        fprintf(errs, "%s: out of memory\n", name);
        return -1;
    }
    while (!eof || fill) {
        while (!eof && fill < cap) {
            ssize_t r = read(fd, buf + fill, cap - fill);
            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0) {
                fprintf(errs, "%s: cannot read: %s\n", name, strerror(errno));
                status = -1;
                eof = 1;
                break;
            }
            if (r == 0)
                eof = 1;
            fill += (size_t)r;
        }
        /* an XML document is read whole (up to STREAM_MAX) */
        if (!started && is_xml(buf, fill) && !eof && grow(&buf, &cap))
            continue;
        if (!started && is_xml(buf, fill)) {
            map_xml(mw, name, buf, fill, trace, out, errs, cnt, &line);
            if (!eof)
                fprintf(errs, "%s: XML input longer than %zu bytes: the rest is not read\n", name,
                        (size_t)STREAM_MAX);
            break;
        }
        size_t cut = eof ? fill : last_cut(buf, fill);
        if (!cut) { /* no message ends in the buffer: read more, or give it up whole */
            if (grow(&buf, &cap))
                continue;
            cut = fill;
        }
        if (!started) {
            cg_hl7_reader_init(&rd, buf, cut); /* skips a BOM at the very start */
            started = 1;
            head_len = cut < sizeof(head) ? cut : sizeof(head);
            memcpy(head, buf, head_len);
        }
        rd.buf = buf;
        rd.len = cut;
        map_reader(mw, msg, name, &rd, base, NULL, trace, out, errs, cnt, &line);
        keep_batch_header(&rd.batch.fhs, &rd.batch.fhs_offset, buf, cut, base, &fhs);
        keep_batch_header(&rd.batch.bhs, &rd.batch.bhs_offset, buf, cut, base, &bhs);
        memmove(buf, buf + cut, fill - cut);
        fill -= cut;
        base += cut;
        rd.pos = 0;
    }
    if (started)
        put_count_error(&rd, name, errs, cnt);
    if (cnt->messages == before && status == 0)
        map_no_message(mw, name, head, head_len, errs, cnt);
    flush_out(&line, out);
    cg_buf_free(&line);
    cg_buf_free(&fhs);
    cg_buf_free(&bhs);
    free(buf);
    return status;
}

int cg_cli_map_file(cg_mapping_worker_t *mw, cg_hl7_msg_t *msg, const char *path, int trace,
                    FILE *out, FILE *errs, cg_cli_map_counts_t *cnt)
{
    if (!strcmp(path, "-")) {
        return map_stream(mw, msg, "-", 0, trace, out, errs, cnt);
    }
    int fd = open(path, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        fprintf(errs, "%s: cannot open: %m\n", path);
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) { /* a pipe or a device: read it as a stream */
        int rc = map_stream(mw, msg, path, fd, trace, out, errs, cnt);
        close(fd);
        return rc;
    }
    if (st.st_size == 0) {
        close(fd);
        map_no_message(mw, path, "", 0, errs, cnt);
        return 0;
    }
    /* mapped, not read: the file's pages are the message buffers, and map_reader gives them back
     * behind itself, so memory does not grow with the file */
    char *buf = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (buf == MAP_FAILED) {
        fprintf(errs, "%s: cannot map: %m\n", path);
        return -1;
    }
    madvise(buf, (size_t)st.st_size, MADV_SEQUENTIAL);
    cg_hl7_reader_t rd;
    cg_hl7_reader_init(&rd, buf, (size_t)st.st_size);
    cg_buf_t line;
    cg_buf_init(&line);
    size_t before = cnt->messages;
    if (is_xml(buf, (size_t)st.st_size))
        map_xml(mw, path, buf, (size_t)st.st_size, trace, out, errs, cnt, &line);
    else {
        map_reader(mw, msg, path, &rd, 0, buf, trace, out, errs, cnt, &line);
        put_count_error(&rd, path, errs, cnt);
    }
    if (cnt->messages == before) /* madvise above gave no page back: none was mapped */
        map_no_message(mw, path, buf, (size_t)st.st_size, errs, cnt);
    flush_out(&line, out);
    cg_buf_free(&line);
    munmap(buf, (size_t)st.st_size);
    return 0;
}

/* --for NAME --config FILE: the subscriber's policy compiled as `run` compiles it, its key from
 * the config or derived from this command's site key. */
static int release_for(const map_opts_t *o, const cg_mapping_t *m, cg_config_t **cfg,
                       cg_subscribers_t **subs)
{
    if (!(*cfg = cg_cli_load_config(o->config)))
        return CG_EXIT_FAILURE;
    cg_error_t errs[32];
    size_t n = 0;
    if (!(*subs = cg_subscribers_load(*cfg, m, errs, 32, &n))) {
        cg_cli_print_errors(stderr, errs, n, 32);
        return CG_EXIT_FAILURE;
    }
    for (size_t i = 0; i < (*subs)->n; i++)
        if (!strcmp((*subs)->v[i].name, o->for_sub))
            rel.sub = &(*subs)->v[i];
    if (!rel.sub) {
        fprintf(stderr, "cohortgate map: %s declares no subscriber '%s'\n", o->config, o->for_sub);
        return CG_EXIT_USAGE;
    }
    rel.subs = *subs;
    if (!(rel.scratch = cg_release_scratch_new())) {
        fprintf(stderr, "cohortgate map: out of memory\n");
        return CG_EXIT_FAILURE;
    }
    return CG_EXIT_OK;
}

int cg_cli_map(int argc, char **argv)
{
    static const struct option opts[] = {
        {"spec", required_argument, NULL, 's'},
        {"vocab", required_argument, NULL, 'v'},
        {"athena", required_argument, NULL, 'a'},
        {"key-file", required_argument, NULL, 'k'},
        {"date-shift", required_argument, NULL, 'd'},
        {"utc-offset", required_argument, NULL, 'u'},
        {"message-id", required_argument, NULL, 'i'},
        {"charset", required_argument, NULL, 'c'},
        {"cohorts", required_argument, NULL, 'C'},
        {"trace", no_argument, NULL, 't'},
        {"ids-as-strings", no_argument, NULL, 'I'},
        {"quiet", no_argument, NULL, 'q'},
        {"param", required_argument, NULL, 'P'},
        {"strict", no_argument, NULL, 'S'},
        {"for", required_argument, NULL, 'F'},
        {"max-message-ms", required_argument, NULL, 'M'},
        {"max-message-mb", required_argument, NULL, 'B'},
        {"config", required_argument, NULL, 'G'},
        CG_CLI_AUTHORITY_OPTIONS,
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    map_opts_t o = {.max_ms = CG_MAPPING_DEFAULT_MAX_MESSAGE_MS,
                    .max_mb = CG_MAPPING_DEFAULT_MAX_MESSAGE_MB};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "s:tqh", opts, NULL)) != -1) {
        switch (c) {
        case 's':
            if (cg_cli_layers_add(&o.specs, "map", "--spec", optarg))
                return CG_EXIT_USAGE;
            break;
        case 'v':
            if (cg_cli_layers_add(&o.vocab, "map", "--vocab", optarg))
                return CG_EXIT_USAGE;
            break;
        case 'a':
            o.athena = optarg;
            break;
        case 'k':
            o.key_file = optarg;
            break;
        case 'd': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || v < 0 || v > CG_PSEUDO_DATE_SHIFT_MAX) {
                fprintf(stderr, "cohortgate map: --date-shift takes days from 0 to %d\n",
                        CG_PSEUDO_DATE_SHIFT_MAX);
                return CG_EXIT_USAGE;
            }
            o.date_shift = (int)v;
            break;
        }
        case 'u':
            if (strlen(optarg) != 6 || (optarg[0] != '+' && optarg[0] != '-') || optarg[3] != ':') {
                fprintf(stderr, "cohortgate map: --utc-offset is +HH:MM or -HH:MM\n");
                return CG_EXIT_USAGE;
            }
            o.utc_offset = optarg;
            break;
        case 'i':
            if (strcmp(optarg, "keyed") && strcmp(optarg, "plain")) {
                fprintf(stderr, "cohortgate map: --message-id is keyed or plain\n");
                return CG_EXIT_USAGE;
            }
            o.message_id_plain = !strcmp(optarg, "plain");
            break;
        case 'c':
            o.charset = optarg;
            break;
        case 'C':
            o.cohorts = optarg;
            break;
        case 't':
            o.trace = 1;
            break;
        case 'I':
            o.ids_as_strings = 1;
            break;
        case 'P':
            if (cg_cli_parse_param("map", optarg, o.params, &o.n_params, CG_CLI_MAX_PARAMS))
                return CG_EXIT_USAGE;
            break;
        case CG_CLI_OPT_AUTH_ALIAS:
        case CG_CLI_OPT_AUTH_DEFAULT:
        case CG_CLI_OPT_AUTH_MISSING:
            if (cg_cli_parse_authority("map", c, optarg, &o.auth))
                return CG_EXIT_USAGE;
            break;
        case 'F':
            o.for_sub = optarg;
            break;
        case 'M':
        case 'B': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || !*optarg || v < 0 || v > (c == 'M' ? 3600000 : 1048576)) {
                fprintf(stderr, "cohortgate map: %s takes a number from 0 to %d\n",
                        c == 'M' ? "--max-message-ms" : "--max-message-mb",
                        c == 'M' ? 3600000 : 1048576);
                return CG_EXIT_USAGE;
            }
            *(c == 'M' ? &o.max_ms : &o.max_mb) = v;
            break;
        }
        case 'G':
            o.config = optarg;
            break;
        case 'S':
            o.strict = 1;
            break;
        case 'q':
            o.quiet = 1;
            break;
        case 'h':
            usage(stdout);
            return CG_EXIT_OK;
        default:
            usage(stderr);
            return CG_EXIT_USAGE;
        }
    }
    if (!o.specs.n || optind >= argc) {
        fprintf(stderr, "cohortgate map: %s\n\n",
                o.specs.n ? "no INPUT given (- for stdin)" : "--spec is required");
        usage(stderr);
        return CG_EXIT_USAGE;
    }

    if (!o.for_sub != !o.config) {
        fprintf(stderr, "cohortgate map: --for NAME and --config FILE go together\n\n");
        usage(stderr);
        return CG_EXIT_USAGE;
    }
    cg_hl7_options_t hl7;
    cg_hl7_options_default(&hl7);
    if (o.charset) {
        /* refused up front, not once per message */
        char name[64];
        iconv_t cd = cg_hl7_charset_iconv_name(o.charset, strlen(o.charset), name, sizeof(name))
                         ? iconv_open("UTF-8", name)
                         : (iconv_t)-1;
        if (cd == (iconv_t)-1) {
            fprintf(stderr, "cohortgate map: --charset: character set '%s' is not supported\n",
                    o.charset);
            return CG_EXIT_USAGE;
        }
        iconv_close(cd);
        hl7.default_charset = o.charset;
    }

    int status = CG_EXIT_FAILURE;
    char errstr[512];
    cg_error_t errs[64];
    size_t n_errs = 0;
    cg_mapping_worker_t *mw = NULL;
    cg_hl7_msg_t *msg = NULL;
    cg_config_t *cfg = NULL;
    cg_subscribers_t *subs = NULL;
    cg_mapping_opts_t mo = {.athena = o.athena,
                            .cohorts = o.cohorts,
                            .key_file = o.key_file,
                            .date_shift_days = o.date_shift,
                            .message_id_plain = o.message_id_plain,
                            .source_utc_offset = o.utc_offset,
                            .max_message_ms = (unsigned)o.max_ms,
                            .max_message_memory = (size_t)o.max_mb << 20,
                            .hl7 = &hl7,
                            .params = o.params,
                            .n_params = o.n_params,
                            .authorities = cg_cli_authority_opts(&o.auth)};
    cg_cli_layers_opts(&o.specs, &o.vocab, &mo);
    cg_mapping_t *m = cg_mapping_load(&mo, errs, 64, &n_errs);
    if (!m) {
        cg_cli_print_errors(stderr, errs, n_errs, 64);
        goto done;
    }
    /* --strict: what check --spec warns about is refused, so a CI job fails on it */
    if (o.strict && cg_cli_print_spec_warnings(stderr, cg_mapping_specs(m), 1)) {
        fprintf(stderr, "cohortgate map: --strict: the specs have warnings (see above)\n");
        goto done;
    }
    if (!(mw = cg_mapping_worker_new(m, errstr, sizeof(errstr))) || !(msg = cg_hl7_msg_new(&hl7))) {
        fprintf(stderr, "cohortgate map: %s\n", mw ? "out of memory" : errstr);
        goto done;
    }
    if (o.for_sub && (status = release_for(&o, m, &cfg, &subs)) != CG_EXIT_OK)
        goto done;
    cg_mapping_worker_set_trace(mw, o.trace);
    cg_cli_map_counts_t cnt = {.progress = !o.quiet};
    int io_failed = 0, flags = (o.trace ? CG_ROW_ENCODE_TRACE : 0) |
                               (o.ids_as_strings ? CG_ROW_ENCODE_IDS_AS_STRINGS : 0);
    for (int i = optind; i < argc; i++)
        io_failed |= cg_cli_map_file(mw, msg, argv[i], flags, stdout, stderr, &cnt) != 0;
    fflush(stdout);
    if (!o.quiet && isatty(2))
        progress(&cnt, 1);
    status = cnt.failed || io_failed ? CG_EXIT_FAILURE : CG_EXIT_OK;
    if (rel.sub) {
        fprintf(stderr, "cohortgate map: released to %s: %zu record(s); withheld:", rel.sub->name,
                rel.released);
        for (int w = 1; w < CG_RELEASE__COUNT; w++)
            fprintf(stderr, "%s %zu %s", w > 1 ? "," : "", rel.withheld[w],
                    cg_release_outcome_name((cg_release_outcome_t)w));
        fprintf(stderr, " (policy %s)\n", cg_policy_version(rel.sub->policy));
    }
    goto done;

done:
    cg_release_scratch_destroy(rel.scratch);
    memset(&rel, 0, sizeof(rel));
    cg_subscribers_destroy(subs);
    cg_config_destroy(cfg);
    cg_hl7_msg_destroy(msg);
    cg_mapping_worker_destroy(mw);
    cg_mapping_destroy(m);
    return status;
}
