/* cli_map.c - `cohortgate map`: dry-run mapping specs on files, records as NDJSON on stdout.
 * The integration engineer's loop: edit a spec, map a sample, read the rows (and --trace). */
#include "cg_cli.h"
#include "cg_hl7.h"
#include "cg_pseudo.h"
#include "cg_record.h"
#include "cg_spec.h"
#include "cg_vocab.h"

#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
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
        "Map HL7 v2 files (several messages a file, batches and MLLP framing are fine; - for\n"
        "stdin) with the given specs and print one JSON record envelope a line. Errors go to\n"
        "stderr as INPUT: message N: STAGE: REASON; the exit status is 1 if any message\n"
        "failed, and the other messages are still mapped.\n\n"
        "options:\n"
        "  -s, --spec FILE|DIR   a spec, or a folder of *.json specs (every matching spec\n"
        "                        applies to a message)\n"
        "      --vocab DIR       vocabulary tables (*.csv); default: the vocab/ folder beside\n"
        "                        the spec file or inside the spec folder\n"
        "      --athena DIR      also load OHDSI Athena CONCEPT.csv and CONCEPT_RELATIONSHIP.csv\n"
        "      --key-file FILE   pseudonym key (at least 32 bytes); default: the environment\n"
        "                        variable COHORTGATE_PSEUDONYM_KEY. Without a key, map refuses\n"
        "                        to run rather than emit unkeyed pseudonyms.\n"
        "      --date-shift N    shift each patient's dates by a keyed offset in [-N, N] days\n"
        "      --utc-offset +HH:MM  offset written for HL7 times that carry none\n"
        "  -t, --trace           add, for every column, the rule and source path behind it\n"
        "  -q, --quiet           no progress on stderr\n"
        "  -h, --help            show this help\n");
}

typedef struct map_opts {
    const char *spec, *vocab, *athena, *key_file, *utc_offset;
    int date_shift, trace, quiet;
} map_opts_t;

static void progress(const cg_cli_map_counts_t *c, int final)
{
    static time_t last;
    time_t now = time(NULL);
    if (!final && now == last)
        return;
    last = now;
    fprintf(stderr, "\rcohortgate map: %zu message(s), %zu row(s), %zu failed, %.1f MB%s",
            c->messages, c->rows, c->failed, c->bytes / 1e6, final ? "\n" : "");
}

size_t cg_cli_map_buffer(cg_mapper_t *mp, cg_hl7_msg_t *msg, const char *name, const char *buf,
                         size_t len, int trace, FILE *out, FILE *errs, cg_cli_map_counts_t *cnt)
{
    cg_hl7_reader_t rd;
    cg_hl7_reader_init(&rd, buf, len);
    cg_buf_t line;
    cg_buf_init(&line);
    size_t failed = 0;
    int tty = cnt->progress && isatty(2);
    while (cg_hl7_reader_more(&rd)) {
        cg_hl7_error_t he;
        size_t start = rd.pos;
        cnt->messages++;
        cg_err_t rc = cg_hl7_reader_next(&rd, msg, &he);
        cnt->bytes += rd.pos - start;
        if (rc) {
            char where[384];
            failed++;
            fprintf(errs, "%s: message %zu: decode: %s\n", name, he.message,
                    cg_hl7_error_location(&he, where, sizeof(where)));
            continue;
        }
        const cg_map_row_t *rows;
        size_t n;
        cg_map_error_t me;
        rc = cg_mapper_map_msg(mp, msg, &rows, &n, &me);
        if (rc) {
            failed++;
            fprintf(errs, "%s: message %zu: %s: %s%s%s%s\n", name, cg_hl7_msg_number(msg),
                    me.stage ? me.stage : "map", me.rule[0] ? "rule " : "", me.rule,
                    me.rule[0] ? ": " : "", me.reason);
            continue;
        }
        cg_record_source_t src = {.message_id = n ? rows[0].message_id : (cg_slice_t){"", 0}};
        for (size_t i = 0; i < n; i++) {
            cg_buf_reset(&line);
            cg_map_row_envelope(&rows[i], &src, NULL, 0, &line);
            if (trace) {
                line.len--; /* reopen the envelope for "trace" */
                cg_buf_puts(&line, ",\"trace\":");
                cg_buf_append(&line, rows[i].trace_json.ptr, rows[i].trace_json.len);
                cg_buf_putc(&line, '}');
            }
            cg_buf_putc(&line, '\n');
            fwrite(line.data, 1, line.len, out);
        }
        cnt->rows += n;
        if (tty)
            progress(cnt, 0);
    }
    cnt->failed += failed;
    cg_buf_free(&line);
    return failed;
}

int cg_cli_map_file(cg_mapper_t *mp, cg_hl7_msg_t *msg, const char *path, int trace, FILE *out,
                    FILE *errs, cg_cli_map_counts_t *cnt)
{
    if (!strcmp(path, "-")) {
        cg_buf_t in;
        cg_buf_init(&in);
        char chunk[65536];
        size_t n;
        while ((n = fread(chunk, 1, sizeof(chunk), stdin)) > 0)
            cg_buf_append(&in, chunk, n);
        cg_cli_map_buffer(mp, msg, "-", in.data ? in.data : "", in.len, trace, out, errs, cnt);
        cg_buf_free(&in);
        return 0;
    }
    int fd = open(path, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        fprintf(errs, "%s: cannot open: %m\n", path);
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if (st.st_size == 0) {
        close(fd);
        return 0;
    }
    /* mapped, not read: the file's pages are the message buffers and the kernel drops them as
     * we move on, so memory does not grow with the file */
    char *buf = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (buf == MAP_FAILED) {
        fprintf(errs, "%s: cannot map: %m\n", path);
        return -1;
    }
    madvise(buf, (size_t)st.st_size, MADV_SEQUENTIAL);
    cg_cli_map_buffer(mp, msg, path, buf, (size_t)st.st_size, trace, out, errs, cnt);
    munmap(buf, (size_t)st.st_size);
    return 0;
}

static char *default_vocab_dir(const char *spec)
{
    char tmp[PATH_MAX], *dir;
    struct stat st;
    snprintf(tmp, sizeof(tmp), "%s", spec);
    if (stat(spec, &st) == 0 && S_ISDIR(st.st_mode))
        dir = tmp;
    else
        dir = dirname(tmp);
    char *out = malloc(PATH_MAX);
    if (out)
        snprintf(out, PATH_MAX, "%s/vocab", dir);
    return out;
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
        {"trace", no_argument, NULL, 't'},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    map_opts_t o = {0};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "s:tqh", opts, NULL)) != -1) {
        switch (c) {
        case 's':
            o.spec = optarg;
            break;
        case 'v':
            o.vocab = optarg;
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
        case 't':
            o.trace = 1;
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
    if (!o.spec || optind >= argc) {
        fprintf(stderr, "cohortgate map: %s\n\n",
                o.spec ? "no INPUT given (- for stdin)" : "--spec is required");
        usage(stderr);
        return CG_EXIT_USAGE;
    }

    char errstr[512];
    cg_pseudo_key_t *key = cg_pseudo_key_load(o.key_file, NULL, errstr, sizeof(errstr));
    if (!key) {
        fprintf(stderr, "cohortgate map: %s\n", errstr);
        return CG_EXIT_FAILURE;
    }
    cg_pseudo_t *pseudo = cg_pseudo_new(key, o.date_shift, errstr, sizeof(errstr));
    cg_pseudo_key_destroy(key);
    if (!pseudo) {
        fprintf(stderr, "cohortgate map: %s\n", errstr);
        return CG_EXIT_FAILURE;
    }

    int status = CG_EXIT_FAILURE;
    char *vocab_dir = o.vocab ? NULL : default_vocab_dir(o.spec);
    cg_vocab_t *vocab = cg_vocab_new();
    cg_specset_t *ss = NULL;
    cg_mapper_t *mp = NULL;
    cg_hl7_msg_t *msg = cg_hl7_msg_new(NULL);
    cg_error_t errs[64];
    size_t n_errs = 0;
    if (!vocab || !msg) {
        fprintf(stderr, "cohortgate map: out of memory\n");
        goto done;
    }
    struct stat st;
    const char *vdir = o.vocab ? o.vocab : vocab_dir;
    if (o.vocab || (vdir && stat(vdir, &st) == 0)) {
        if (cg_vocab_load_csv_dir(vocab, vdir, errs, 64, &n_errs) != CG_OK || n_errs)
            goto report;
    }
    if (o.athena) {
        if (cg_vocab_load_athena(vocab, o.athena, NULL, 0, &errs[0]) != CG_OK) {
            n_errs = 1;
            goto report;
        }
    }
    cg_spec_env_t env = {.vocab = vocab, .pseudo = pseudo, .source_utc_offset = o.utc_offset};
    ss = cg_specset_load(o.spec, &env, errs, 64, &n_errs);
    if (!ss)
        goto report;
    mp = cg_mapper_new(ss, &env, errstr, sizeof(errstr));
    if (!mp) {
        fprintf(stderr, "cohortgate map: %s\n", errstr);
        goto done;
    }
    cg_mapper_set_trace(mp, o.trace);
    cg_cli_map_counts_t cnt = {.progress = !o.quiet};
    int io_failed = 0;
    for (int i = optind; i < argc; i++)
        io_failed |= cg_cli_map_file(mp, msg, argv[i], o.trace, stdout, stderr, &cnt) != 0;
    fflush(stdout);
    if (!o.quiet && isatty(2))
        progress(&cnt, 1);
    status = cnt.failed || io_failed ? CG_EXIT_FAILURE : CG_EXIT_OK;
    goto done;

report:
    for (size_t i = 0; i < n_errs && i < 64; i++)
        fprintf(stderr, "%s:%d:%d: error: %s\n", errs[i].file, errs[i].line, errs[i].column,
                errs[i].text);
    if (n_errs > 64)
        fprintf(stderr, "… and %zu more error(s)\n", n_errs - 64);
done:
    cg_mapper_destroy(mp);
    cg_specset_destroy(ss);
    cg_hl7_msg_destroy(msg);
    cg_vocab_destroy(vocab);
    cg_pseudo_destroy(pseudo);
    free(vocab_dir);
    return status;
}
