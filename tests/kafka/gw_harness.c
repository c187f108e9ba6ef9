/* gw_harness.c - the gateway as a process against the real broker (see gw_harness.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "gw_harness.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- the oracle ---- */

static int *oracle_rows;
static int oracle_n;

void gw_oracle_init(int n)
{
    if (oracle_n >= n)
        return;
    char dir[] = "/tmp/cg-oracle-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char in[300], out[300], err[300];
    snprintf(in, sizeof(in), "%s/in.hl7", dir);
    snprintf(out, sizeof(out), "%s/out.ndjson", dir);
    snprintf(err, sizeof(err), "%s/err.txt", dir);
    FILE *f = fopen(in, "wb");
    assert_non_null(f);
    char buf[1024];
    for (int i = 0; i < n; i++) {
        tk_gen_kind_t kind;
        size_t len = tk_gen_input(i, 1, buf, sizeof(buf), &kind);
        if (kind == TK_GEN_JUNK) /* not HL7: no rows, and it would not split from its neighbours */
            continue;
        fwrite(buf, 1, len, f);
        fputc('\n', f);
    }
    fclose(f);
    char *argv[] = {CG_GATEWAY_BIN,
                    "map",
                    "--quiet",
                    "--message-id", /* records are told apart by their inputs' MSH-10 */
                    "plain",
                    "--spec",
                    CG_SOURCE_DIR "/specs",
                    "--key-file",
                    CG_SOURCE_DIR "/config/demo/pseudonym.key",
                    in,
                    NULL};
    pid_t pid = tk_spawn(argv, out, err);
    assert_true(pid > 0);
    int st;
    assert_int_equal(tk_wait_pid(pid, GW_HANG_MS, &st), 0);
    /* status 1: some messages failed to map, on purpose */
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) <= 1);
    free(oracle_rows);
    oracle_rows = calloc((size_t)n, sizeof(*oracle_rows));
    f = fopen(out, "rb");
    assert_non_null(f);
    static char line[65536];
    size_t total = 0;
    while (fgets(line, sizeof(line), f)) {
        const char *m = strstr(line, "\"message_id\":\"G");
        assert_non_null(m);
        int i = atoi(m + strlen("\"message_id\":\"G"));
        assert_true(i >= 0 && i < n);
        oracle_rows[i]++;
        total++;
    }
    fclose(f);
    unlink(in);
    unlink(out);
    unlink(err);
    rmdir(dir);
    oracle_n = n;
    int dead = 0;
    for (int i = 0; i < n; i++)
        dead += oracle_rows[i] == 0;
    printf("oracle: `cohortgate map` makes %zu rows of %d inputs; %d inputs have none (junk or "
           "unmappable: dead letters)\n",
           total, n, dead);
    assert_true(total > (size_t)n && dead > 0 && dead < n / 4);
}

int gw_expected_rows(int i)
{
    assert_true(i >= 0 && i < oracle_n);
    return oracle_rows[i];
}

/* ---- processes of the current run ---- */

#define MAX_PIDS 16
static pid_t pids[MAX_PIDS];
static char pid_logs[MAX_PIDS][300]; /* each one's log, for a failure's message */
static size_t n_pids;

static void track(pid_t pid, const char *log)
{
    if (n_pids < MAX_PIDS) {
        snprintf(pid_logs[n_pids], sizeof(pid_logs[0]), "%s", log);
        pids[n_pids++] = pid;
    }
}

static void print_tail(const char *path, int lines);

/* Forgets pid; when failed, prints the end of its log first. */
static void untrack(pid_t pid, int failed)
{
    for (size_t i = 0; i < n_pids; i++)
        if (pids[i] == pid) {
            if (failed)
                print_tail(pid_logs[i], 20);
            pids[i] = pids[n_pids - 1];
            memcpy(pid_logs[i], pid_logs[n_pids - 1], sizeof(pid_logs[0]));
            n_pids--;
            return;
        }
}

static rd_kafka_t *query; /* metadata and watermarks */

void gw_run_init(gw_run_t *r, const char *what, int partitions, int n_inputs)
{
    memset(r, 0, sizeof(*r));
    r->started_ms = tk_now_ms();
    char prefix[64];
    snprintf(prefix, sizeof(prefix), "cg-it-%s", what);
    tk_unique_name(r->name, sizeof(r->name), prefix);
    snprintf(r->in, sizeof(r->in), "%s.raw", r->name);
    snprintf(r->out, sizeof(r->out), "%s.records", r->name);
    snprintf(r->dlq, sizeof(r->dlq), "%s.dlq", r->name);
    snprintf(r->dir, sizeof(r->dir), "/tmp/%s-XXXXXX", prefix);
    assert_non_null(mkdtemp(r->dir));
    snprintf(r->config, sizeof(r->config), "%s/cohortgate.json", r->dir);
    r->partitions = partitions;
    r->n_inputs = n_inputs;
    assert_int_equal(tk_create_topic(r->in, partitions), 0);
    assert_int_equal(tk_create_topic(r->out, 3), 0);
    assert_int_equal(tk_create_topic(r->dlq, 3), 0);
    if (!query)
        query = tk_query_handle();
    gw_oracle_init(n_inputs);
}

int gw_gateway_knows(const char *key)
{
    static char *ref;
    if (!ref) {
        char path[] = "/tmp/cg-reference-XXXXXX";
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        close(fd);
        char *argv[] = {CG_GATEWAY_BIN, "check", "--reference", NULL};
        pid_t pid = tk_spawn(argv, path, "/dev/null");
        int st;
        assert_true(pid > 0);
        assert_int_equal(tk_wait_pid(pid, GW_HANG_MS, &st), 0);
        FILE *f = fopen(path, "rb");
        assert_non_null(f);
        ref = calloc(1, 1 << 20);
        size_t n = fread(ref, 1, (1 << 20) - 1, f);
        ref[n] = '\0';
        fclose(f);
        unlink(path);
    }
    char want[128];
    snprintf(want, sizeof(want), "| `%s` |", key);
    return strstr(ref, want) != NULL;
}

void gw_write_config(gw_run_t *r, const char *semantics, const char *specs_dir, const char *extra)
{
    /* settings the gateway may not have yet */
    char drain[64] = "", metrics[96] = "", session[64] = "";
    if (r->session_timeout_ms >= 0)
        snprintf(session, sizeof(session), ", \"session.timeout.ms\": %d",
                 r->session_timeout_ms > 0 ? r->session_timeout_ms : 6000);
    if (gw_gateway_knows("delivery.drain_timeout_ms"))
        snprintf(drain, sizeof(drain), ", \"drain_timeout_ms\": %d",
                 r->drain_timeout_ms > 0 ? r->drain_timeout_ms : GW_DRAIN_TIMEOUT_MS);
    if (gw_gateway_knows("metrics.listen")) /* a free port: gateways run side by side */
        snprintf(metrics, sizeof(metrics), "\"metrics\": {\"listen\": \"127.0.0.1:0\"},\n  ");
    FILE *f = fopen(r->config, "w");
    assert_non_null(f);
    fprintf(f,
            "{\n"
            "  \"group_id\": \"%s\",\n"
            "  \"inputs\": [{\"topic\": \"%s\", \"format\": \"hl7v2\"}],\n"
            "  \"output\": {\"topic\": \"%s\", \"dead_letter_topic\": \"%s\"},\n"
            "  \"mapping\": {\"specs\": \"%s\", \"vocab\": \"%s/specs/vocab\"},\n"
            "  \"pseudonym\": {\"key_file\": \"%s/config/demo/pseudonym.key\", "
            "\"message_id\": \"plain\"},\n"
            "  \"cohorts\": {\"path\": \"%s/specs/cohorts\", \"topic\": "
            "\"%s.cohort.{cohort}.{table}\"},\n"
            "  \"delivery\": {\"semantics\": \"%s\", \"commit_interval_ms\": 200%s},\n"
            "  \"log\": {\"level\": \"info\"},\n"
            "  %s%s%s"
            "\"kafka\": {\"bootstrap.servers\": \"%s\"%s}\n"
            "}\n",
            r->name, r->in, r->out, r->dlq, specs_dir ? specs_dir : CG_SOURCE_DIR "/specs",
            CG_SOURCE_DIR, CG_SOURCE_DIR, CG_SOURCE_DIR, r->name, semantics, drain, metrics,
            extra ? extra : "", extra ? ",\n  " : "", tk_bootstrap(), session);
    fclose(f);
}

const char *gw_log_path(gw_run_t *r, const char *log_name, char *buf, size_t n)
{
    snprintf(buf, n, "%s/%s", r->dir, log_name);
    return buf;
}

int gw_check_config(gw_run_t *r, char *err, size_t err_size)
{
    char out[300], errp[300];
    gw_log_path(r, "check.out", out, sizeof(out));
    gw_log_path(r, "check.err", errp, sizeof(errp));
    unlink(errp);
    char *argv[] = {CG_GATEWAY_BIN, "check", "-c", r->config, NULL};
    pid_t pid = tk_spawn(argv, out, errp);
    assert_true(pid > 0);
    int st;
    assert_int_equal(tk_wait_pid(pid, GW_HANG_MS, &st), 0);
    err[0] = '\0';
    FILE *f = fopen(errp, "rb");
    if (f) {
        size_t n = fread(err, 1, err_size - 1, f);
        err[n] = '\0';
        fclose(f);
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

pid_t gw_start(gw_run_t *r, const char *log_name, const char *const *extra_args)
{
    char log[300];
    gw_log_path(r, log_name, log, sizeof(log));
    char *argv[16] = {CG_GATEWAY_BIN, "run", "-c", r->config};
    size_t n = 4;
    for (size_t i = 0; extra_args && extra_args[i] && n + 1 < 16; i++)
        argv[n++] = (char *)extra_args[i];
    argv[n] = NULL;
    pid_t pid = tk_spawn(argv, log, NULL);
    assert_true(pid > 0);
    track(pid, log);
    return pid;
}

static void print_tail(const char *path, int lines)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return;
    static char ring[40][1200];
    int n = 0;
    while (fgets(ring[n % 40], sizeof(ring[0]), f))
        n++;
    fclose(f);
    if (lines > 40)
        lines = 40;
    fprintf(stderr, "---- last lines of %s ----\n", path);
    for (int i = n > lines ? n - lines : 0; i < n; i++)
        fputs(ring[i % 40], stderr);
}

static int running(pid_t pid)
{
    int st;
    return waitpid(pid, &st, WNOHANG) == 0;
}

void gw_wait_log(gw_run_t *r, pid_t pid, const char *log_name, const char *needle, int count)
{
    char log[300];
    gw_log_path(r, log_name, log, sizeof(log));
    int64_t until = tk_now_ms() + GW_HANG_MS;
    while (tk_file_count(log, needle) < count) {
        if (pid > 0 && !running(pid)) {
            untrack(pid, 1);
            fail_msg("the gateway (pid %d) ended before its log showed %s", (int)pid, needle);
        }
        if (tk_now_ms() > until) {
            print_tail(log, 20);
            fail_msg("%s: no %d x '%s' after %d ms", log, count, needle, GW_HANG_MS);
        }
        usleep(20000);
    }
}

void gw_assert_running(pid_t pid)
{
    int st;
    if (waitpid(pid, &st, WNOHANG) != pid)
        return;
    untrack(pid, 1);
    if (WIFSIGNALED(st))
        fail_msg("the gateway (pid %d) died of signal %d (%s)", (int)pid, WTERMSIG(st),
                 strsignal(WTERMSIG(st)));
    fail_msg("the gateway (pid %d) exited with status %d", (int)pid, WEXITSTATUS(st));
}

int gw_wait_exit(pid_t pid, int timeout_ms)
{
    int st;
    if (tk_wait_pid(pid, timeout_ms, &st) != 0) {
        untrack(pid, 1);
        fail_msg("the gateway (pid %d) was still running %d ms later", (int)pid, timeout_ms);
    }
    int failed = WIFSIGNALED(st) || WEXITSTATUS(st) != 0;
    untrack(pid, failed);
    if (WIFSIGNALED(st))
        fail_msg("the gateway (pid %d) was killed by signal %d (%s)", (int)pid, WTERMSIG(st),
                 strsignal(WTERMSIG(st)));
    if (failed)
        fprintf(stderr, "the gateway (pid %d) exited with status %d\n", (int)pid, WEXITSTATUS(st));
    return WEXITSTATUS(st);
}

void gw_signal(pid_t pid, int sig)
{
    assert_int_equal(kill(pid, sig), 0);
    if (sig == SIGKILL) {
        int st;
        assert_int_equal(tk_wait_pid(pid, GW_HANG_MS, &st), 0);
        assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
        untrack(pid, 0);
    }
}

static int64_t outputs_now(gw_run_t *r)
{
    int64_t a = tk_topic_end(query, r->out), b = tk_topic_end(query, r->dlq);
    return a < 0 || b < 0 ? 0 : a + b;
}

void gw_wait_outputs(gw_run_t *r, int64_t n)
{
    int64_t until = tk_now_ms() + GW_HANG_MS;
    while (outputs_now(r) < n) {
        if (tk_now_ms() > until)
            fail_msg("fewer than %lld records on %s and %s after %d ms", (long long)n, r->out,
                     r->dlq, GW_HANG_MS);
        usleep(20000);
    }
}

void gw_committed(gw_run_t *r, int64_t *out)
{
    assert_int_equal(tk_committed(r->name, r->in, r->partitions, out), 0);
}

void gw_wait_committed_end(gw_run_t *r, int n_inputs)
{
    int64_t until = tk_now_ms() + GW_HANG_MS, end = -1, committed = -1;
    for (;;) {
        if (tk_group_lag(r->name, r->in, r->partitions, &end, &committed) == 0 && end == n_inputs &&
            committed == end)
            return;
        if (tk_now_ms() > until)
            fail_msg("group %s: committed %lld of %lld (want %d) after %d ms", r->name,
                     (long long)committed, (long long)end, n_inputs, GW_HANG_MS);
        usleep(100000);
    }
}

/* ---- the feeder thread ---- */

static struct feeder {
    pthread_t th;
    int running;
    volatile int stop;
    gw_run_t *r;
    int from, to, rate, rc;
} feeder;

static void *feed_main(void *arg)
{
    struct feeder *f = arg;
    rd_kafka_t *p = tk_producer();
    f->rc = tk_produce_inputs(p, f->r->in, f->from, f->to, 1, f->rate, &f->stop);
    rd_kafka_destroy(p);
    return NULL;
}

void gw_feed_start(gw_run_t *r, int from, int to, int rate)
{
    assert_false(feeder.running);
    feeder.r = r;
    feeder.from = from;
    feeder.to = to;
    feeder.rate = rate;
    feeder.stop = 0;
    feeder.rc = 0;
    assert_int_equal(pthread_create(&feeder.th, NULL, feed_main, &feeder), 0);
    feeder.running = 1;
}

void gw_feed_join(void)
{
    if (!feeder.running)
        return;
    pthread_join(feeder.th, NULL);
    feeder.running = 0;
    assert_int_equal(feeder.rc, 0);
}

void gw_feed(gw_run_t *r, int from, int to)
{
    rd_kafka_t *p = tk_producer();
    int rc = tk_produce_inputs(p, r->in, from, to, 1, 0, NULL);
    rd_kafka_destroy(p);
    assert_int_equal(rc, 0);
}

/* ---- reconciliation ---- */

typedef struct rec {
    int input;
    const char *topic;
    const tk_msg_t *m;
} rec_t;

static int cmp_rec(const void *a, const void *b)
{
    const rec_t *x = a, *y = b;
    if (x->input != y->input)
        return x->input < y->input ? -1 : 1;
    size_t n = x->m->value_len < y->m->value_len ? x->m->value_len : y->m->value_len;
    int c = memcmp(x->m->value, y->m->value, n);
    if (c)
        return c;
    if (x->m->value_len != y->m->value_len)
        return x->m->value_len < y->m->value_len ? -1 : 1;
    return strcmp(x->topic, y->topic);
}

/* The input a record came from, by its cg.source.* headers. */
static int source_input(gw_run_t *r, const tk_msg_t *m, int **at, const int64_t *n_at)
{
    char hb[64];
    assert_non_null(tk_header(m, "cg.source.topic", hb, sizeof(hb)));
    assert_string_equal(hb, r->in);
    assert_non_null(tk_header(m, "cg.source.partition", hb, sizeof(hb)));
    int p = atoi(hb);
    assert_true(p >= 0 && p < r->partitions);
    assert_non_null(tk_header(m, "cg.source.offset", hb, sizeof(hb)));
    long long off = atoll(hb);
    assert_true(off >= 0 && off < n_at[p]);
    return at[p][off];
}

/* Topics a row must be on: each of its cohorts' topics, or the records topic when none. */
static size_t expected_topics(gw_run_t *r, const char *value, char out[][192], size_t max)
{
    const char *t = strstr(value, "\"table\":\"");
    assert_non_null(t);
    t += strlen("\"table\":\"");
    int tl = (int)(strchr(t, '"') - t);
    const char *c = strstr(value, "\"cohorts\":[");
    assert_non_null(c);
    c += strlen("\"cohorts\":[");
    size_t n = 0;
    while (*c == '"' && n < max) {
        const char *e = strchr(c + 1, '"');
        snprintf(out[n++], 192, "%s.cohort.%.*s.%.*s", r->name, (int)(e - c - 1), c + 1, tl, t);
        c = e + 1;
        if (*c == ',')
            c++;
    }
    if (n == 0)
        snprintf(out[n++], 192, "%s", r->out);
    return n;
}

void gw_reconcile(gw_run_t *r, const char *label, const int64_t *committed, gw_recon_t *out)
{
    memset(out, 0, sizeof(*out));
    int n = r->n_inputs;
    /* the input and every output topic of the run, read in one go */
    char prefix[128];
    snprintf(prefix, sizeof(prefix), "%s.", r->name);
    char **topics;
    size_t n_topics = tk_list_topics(query, prefix, &topics);
    tk_msg_t *msgs[64];
    size_t n_msgs[64];
    assert_true(n_topics <= 64);
    assert_int_equal(tk_read_many((const char *const *)topics, n_topics, msgs, n_msgs), 0);
    tk_msg_t *in = NULL;
    size_t n_in = 0;
    for (size_t t = 0; t < n_topics; t++)
        if (!strcmp(topics[t], r->in)) {
            in = msgs[t];
            n_in = n_msgs[t];
        }
    assert_int_equal(n_in, n);
    int *at[64];
    int64_t n_at[64] = {0};
    assert_true(r->partitions <= 64);
    for (size_t j = 0; j < n_in; j++)
        if (in[j].offset + 1 > n_at[in[j].partition])
            n_at[in[j].partition] = in[j].offset + 1;
    for (int p = 0; p < r->partitions; p++) {
        at[p] = malloc(((size_t)n_at[p] + 1) * sizeof(int));
        for (int64_t o = 0; o < n_at[p]; o++)
            at[p][o] = -1;
    }
    int *due = calloc((size_t)n, sizeof(int)); /* the input must have its output */
    int *part = calloc((size_t)n, sizeof(int));
    for (size_t j = 0; j < n_in; j++) {
        assert_non_null(in[j].key);
        int i = atoi(in[j].key + 1);
        assert_true(i >= 0 && i < n);
        at[in[j].partition][in[j].offset] = i;
        part[i] = in[j].partition;
        due[i] = !committed || in[j].offset < committed[in[j].partition];
        out->committed_inputs += committed && due[i];
    }

    size_t n_rec = 0, cap = 1024;
    rec_t *recs = malloc(cap * sizeof(*recs));
    int *dead = calloc((size_t)n, sizeof(int));
    int *has_output = calloc((size_t)n, sizeof(int));
    char hb[64];
    for (size_t t = 0; t < n_topics; t++) {
        if (!strcmp(topics[t], r->in))
            continue;
        for (size_t j = 0; j < n_msgs[t]; j++) {
            const tk_msg_t *m = &msgs[t][j];
            int i = source_input(r, m, at, n_at);
            assert_true(i >= 0);
            has_output[i] = 1;
            if (!strcmp(topics[t], r->dlq)) {
                /* a dead letter: the original key and bytes, error headers */
                assert_non_null(m->key);
                assert_int_equal(atoi(m->key + 1), i);
                char want[1024];
                size_t len = tk_gen_input(i, 1, want, sizeof(want), NULL);
                assert_int_equal(m->value_len, len);
                if (len)
                    assert_memory_equal(m->value, want, len);
                assert_non_null(tk_header(m, "cg.error.stage", hb, sizeof(hb)));
                assert_non_null(tk_header(m, "cg.error.code", hb, sizeof(hb)));
                dead[i]++;
                out->dead_letters++;
                continue;
            }
            /* a record: its envelope names the input's control id */
            assert_non_null(m->value);
            const char *mid = strstr(m->value, "\"message_id\":\"G");
            assert_non_null(mid);
            assert_int_equal(atoi(mid + strlen("\"message_id\":\"G")), i);
            assert_int_equal(m->key_len, 40); /* the pseudonym */
            if (n_rec == cap)
                recs = realloc(recs, (cap *= 2) * sizeof(*recs));
            recs[n_rec++] = (rec_t){i, topics[t], m};
            out->records++;
        }
    }
    qsort(recs, n_rec, sizeof(*recs), cmp_rec);

    int *distinct = calloc((size_t)n, sizeof(int));
    int *replayed = calloc((size_t)n, sizeof(int));
    int *lost = calloc((size_t)n, sizeof(int));
    for (size_t a = 0; a < n_rec;) {
        /* one distinct row: the same input and value, on one or more topics */
        size_t b = a + 1;
        while (b < n_rec && recs[b].input == recs[a].input &&
               recs[b].m->value_len == recs[a].m->value_len &&
               !memcmp(recs[b].m->value, recs[a].m->value, recs[a].m->value_len))
            b++;
        int i = recs[a].input;
        distinct[i]++;
        out->distinct_rows++;
        char want[8][192];
        size_t n_want = expected_topics(r, recs[a].m->value, want, 8);
        for (size_t k = a; k < b; k++) {
            int ok = 0;
            for (size_t w = 0; w < n_want; w++)
                ok |= !strcmp(want[w], recs[k].topic);
            if (!ok)
                fail_msg("input %d: a row on %s, which its cohorts do not name: %s", i,
                         recs[k].topic, recs[k].m->value);
            if (k > a && !strcmp(recs[k].topic, recs[k - 1].topic)) {
                out->duplicates++;
                replayed[i] = 1;
            }
        }
        for (size_t w = 0; w < n_want; w++) {
            int seen = 0;
            for (size_t k = a; k < b; k++)
                seen |= !strcmp(want[w], recs[k].topic);
            if (!seen) {
                fprintf(stderr, "input %d: a row missing from %s\n", i, want[w]);
                lost[i] = 1;
            }
        }
        a = b;
    }
    for (int i = 0; i < n; i++) {
        int want = gw_expected_rows(i);
        if (!due[i]) {
            if (has_output[i])
                fail_msg("input %d (partition %d) is at or above the committed offset but has "
                         "output: committed offsets are behind what was delivered",
                         i, part[i]);
            continue;
        }
        out->delivered_inputs += has_output[i];
        if (want == 0) {
            if (distinct[i])
                fail_msg("input %d should be dead-lettered but has %d row(s)", i, distinct[i]);
            if (dead[i] == 0)
                lost[i] = 1;
            if (dead[i] > 1) {
                out->duplicates += (size_t)dead[i] - 1;
                replayed[i] = 1;
            }
        } else {
            if (dead[i])
                fail_msg("input %d was dead-lettered but maps to %d row(s)", i, want);
            if (distinct[i] > want)
                fail_msg("input %d: %d distinct rows, the oracle says %d", i, distinct[i], want);
            if (distinct[i] < want) {
                if (distinct[i])
                    fprintf(stderr, "input %d: %d of its %d rows\n", i, distinct[i], want);
                lost[i] = 1;
            }
        }
        out->lost += lost[i];
        out->replayed += replayed[i];
    }
    int shown = 0;
    for (int i = 0; i < n && shown < 10; i++)
        if (due[i] && lost[i]) {
            int64_t o = -1;
            for (int64_t k = 0; k < n_at[part[i]]; k++)
                if (at[part[i]][k] == i)
                    o = k;
            fprintf(stderr, "%s: input %d (partition %d offset %lld) lost\n", label, i, part[i],
                    (long long)o);
            shown++;
        }
    if (out->lost) {
        /* what tells a skipped input from a lost record: where the group stands, and each
         * instance's partition.started lines in its log */
        int64_t c[64];
        gw_committed(r, c);
        for (int p = 0; p < r->partitions; p++)
            fprintf(stderr, "%s: partition %d: %lld input(s), committed offset %lld\n", label, p,
                    (long long)n_at[p], (long long)c[p]);
        for (size_t t = 0; t < n_topics; t++)
            fprintf(stderr, "%s: %zu message(s) on %s\n", label, n_msgs[t], topics[t]);
    }
    printf("%s: %d inputs%s -> %zu records (%zu distinct rows) + %zu dead letters on %zu "
           "topics; lost %d; duplicates %zu (over %d replayed inputs)\n",
           label, committed ? out->committed_inputs : n,
           committed ? " below the committed offsets" : "", out->records, out->distinct_rows,
           out->dead_letters, n_topics - 1, out->lost, out->duplicates, out->replayed);
    fflush(stdout);

    free(distinct);
    free(replayed);
    free(lost);
    free(recs);
    free(dead);
    free(has_output);
    free(due);
    free(part);
    for (int p = 0; p < r->partitions; p++)
        free(at[p]);
    for (size_t t = 0; t < n_topics; t++)
        tk_msgs_free(msgs[t], n_msgs[t]);
    tk_strv_free(topics, n_topics);
}

long gw_log_last_int(gw_run_t *r, const char *log_name, const char *needle)
{
    char log[300];
    gw_log_path(r, log_name, log, sizeof(log));
    FILE *f = fopen(log, "rb");
    if (!f)
        return -1;
    char line[4096];
    long v = -1;
    while (fgets(line, sizeof(line), f)) {
        const char *p = strstr(line, needle);
        if (p)
            v = strtol(p + strlen(needle), NULL, 10);
    }
    fclose(f);
    return v;
}

static int rm_tree(const char *path)
{
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
    return system(cmd);
}

void gw_run_end(gw_run_t *r)
{
    if (feeder.running) {
        feeder.stop = 1;
        pthread_join(feeder.th, NULL);
        feeder.running = 0;
    }
    for (size_t i = 0; i < n_pids; i++) {
        int st;
        kill(pids[i], SIGKILL);
        tk_wait_pid(pids[i], 10000, &st);
    }
    n_pids = 0;
    if (!r->dir[0])
        return;
    printf("(%s: %lld ms)\n", r->name, (long long)(tk_now_ms() - r->started_ms));
    if (r->passed && !getenv("CG_TEST_KEEP")) /* CG_TEST_KEEP=1 keeps it anyway */
        rm_tree(r->dir);
    else
        fprintf(stderr, "the config and the gateway logs are kept in %s\n", r->dir);
}

void gw_case_kill_restart(gw_run_t *r, const char *what, int no_duplicates)
{
    const int n = GW_KILL_INPUTS;
    const char *idle[] = {"--idle-exit", "2000", NULL};
    /* first gateway: killed once it has put out a tenth of the records, with the feed still
     * streaming (the second half is produced only after the kill, so not all output exists) */
    pid_t a = gw_start(r, "gw1.log", NULL);
    gw_wait_log(r, a, "gw1.log", "partition.assigned", 1);
    gw_feed_start(r, 0, n / 2, GW_FEED_RATE);
    gw_wait_outputs(r, n / 10);
    gw_signal(a, SIGKILL);
    int64_t at_kill = outputs_now(r), c[64], committed = 0;
    gw_committed(r, c);
    for (int p = 0; p < r->partitions; p++)
        committed += c[p] > 0 ? c[p] : 0;
    gw_feed_join();
    printf("%s: SIGKILL with %lld record(s) on %s and %s, %lld input(s) committed\n", what,
           (long long)at_kill, r->out, r->dlq, (long long)committed);
    gw_feed(r, n / 2, n);
    /* second gateway: takes over once the dead member's session has expired, stops when idle */
    pid_t b = gw_start(r, "gw2.log", idle);
    assert_int_equal(gw_wait_exit(b, GW_HANG_MS), 0);
    gw_wait_committed_end(r, n);
    gw_recon_t rc;
    gw_reconcile(r, what, NULL, &rc);
    assert_int_equal(rc.lost, 0);
    if (no_duplicates)
        assert_int_equal(rc.duplicates, 0);
}
