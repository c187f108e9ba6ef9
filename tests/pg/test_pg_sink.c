/* test_pg_sink.c - `cohortgate sink` against the real broker and the real PostgreSQL server
 * (labels kafka and pg; skipped, exit 77, unless COHORTGATE_TEST_BOOTSTRAP and
 * COHORTGATE_TEST_PG are both set). Drives the built binary as a separate process. What stops
 * the sink mid-stream (kill -9, the server, TLS, SIGTERM) is test_pg_sink_faults.c.
 *
 *   golden:    every golden case's records (but the merge cases) on 3 partitions, keyed by
 *              person: each table holds one row per key whose newest record (by source time,
 *              then arrival) is an upsert, ids
 *              are compact integers, the offsets reach the topic's end; a second run changes
 *              nothing; a replay of everything (offsets removed) rewrites no row (xmin kept).
 *   lifecycle: the lifecycle and merge goldens on one partition: deleted rows are gone, a
 *              deleted visit is named by no row, merged persons own no row and have no person
 *              row, their rows belong to the survivor.
 *   rebalance: a second instance joins the group mid-stream (sink_stream.h's stream): its
 *              end state.
 *   metrics:   persons and measurements loaded once each, some refused: /metrics counts per
 *              table what the database holds, and the rejects cg_rejects holds; cdm_source
 *              holds one row, its first load today.
 */
#include "sink_stream.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <dirent.h>
#include <glob.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

/* ---- records ---- */

typedef struct rec {
    char *value;
    char key[32];
    char table[64];
    char op[16];
    char id[32]; /* the table's key value as text (person_id for death) */
    char merged[32];
    char *row;     /* the row object, keys sorted: equal rows, equal text */
    char time[40]; /* source.time; "" without */
} rec_t;

static const char *key_col(const char *table)
{
    static char buf[80];
    if (!strcmp(table, "death"))
        return "person_id";
    snprintf(buf, sizeof(buf), "%s_id", table);
    return buf;
}

static size_t load_records(const char *const *globs, size_t n_globs, const char *skip, rec_t **out)
{
    size_t n = 0, cap = 0;
    rec_t *v = NULL;
    for (size_t g = 0; g < n_globs; g++) {
        glob_t gl;
        if (glob(globs[g], 0, NULL, &gl))
            continue;
        for (size_t i = 0; i < gl.gl_pathc; i++) {
            if (skip && strstr(gl.gl_pathv[i], skip))
                continue;
            FILE *f = fopen(gl.gl_pathv[i], "r");
            char *line = NULL;
            size_t lcap = 0;
            ssize_t len;
            while (f && (len = getline(&line, &lcap, f)) > 0) {
                json_t *e = json_loads(line, 0, NULL);
                if (!e)
                    continue;
                if (n == cap) {
                    cap = cap ? cap * 2 : 64;
                    v = realloc(v, cap * sizeof(*v));
                }
                rec_t *r = &v[n++];
                memset(r, 0, sizeof(*r));
                while (len > 0 && line[len - 1] == '\n')
                    line[--len] = '\0';
                r->value = strdup(line);
                snprintf(r->table, sizeof(r->table), "%s",
                         json_string_value(json_object_get(e, "table")));
                snprintf(r->op, sizeof(r->op), "%s", json_string_value(json_object_get(e, "op")));
                json_t *row = json_object_get(e, "row");
                r->row = json_dumps(row, JSON_SORT_KEYS | JSON_COMPACT);
                snprintf(r->key, sizeof(r->key), "%lld",
                         (long long)json_integer_value(json_object_get(row, "person_id")));
                json_t *id = json_object_get(row, key_col(r->table));
                if (json_is_integer(id))
                    snprintf(r->id, sizeof(r->id), "%lld", (long long)json_integer_value(id));
                snprintf(r->time, sizeof(r->time), "%s",
                         json_string_value(json_object_get(json_object_get(e, "source"), "time"))
                             ?: "");
                json_t *m = json_object_get(row, "merged_person_id");
                if (json_is_integer(m))
                    snprintf(r->merged, sizeof(r->merged), "%lld",
                             (long long)json_integer_value(m));
                json_decref(e);
            }
            free(line);
            if (f)
                fclose(f);
        }
        globfree(&gl);
    }
    *out = v;
    return n;
}

/* Rewrites the record's 64-bit ids as strings of digits, as output.ids_as_strings writes them
 * (the ids beyond 32 bits: concept ids stay numbers). */
static void stringify_ids(rec_t *r)
{
    json_t *e = json_loads(r->value, 0, NULL);
    json_t *row = json_object_get(e, "row"), *v;
    const char *k;
    void *tmp;
    json_object_foreach_safe(row, tmp, k, v)
    {
        json_int_t x = json_integer_value(v);
        if (json_is_integer(v) && (x > INT32_MAX || x < INT32_MIN)) {
            char digits[32];
            snprintf(digits, sizeof(digits), "%" JSON_INTEGER_FORMAT, x);
            json_object_set_new(row, k, json_string(digits));
        }
    }
    free(r->value);
    r->value = json_dumps(e, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(e);
}

static void produce(const char *topic, const rec_t *v, size_t n)
{
    rd_kafka_t *p = tk_producer();
    for (size_t i = 0; i < n; i++)
        pt_produce(p, topic, v[i].key, v[i].value);
    pt_producer_close(p);
}

static void free_records(rec_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].value);
        free(v[i].row);
    }
    free(v);
}

/* Whether record i is the one of its (table, id) that holds: the newest by source time, of
 * those the last (README, "Order"; the records of one id here spell their times alike, so the
 * text orders them). */
static int is_last(const rec_t *v, size_t n, size_t i)
{
    for (size_t j = 0; j < n; j++) {
        if (j == i || strcmp(v[j].table, v[i].table) || strcmp(v[j].id, v[i].id))
            continue;
        int c = strcmp(v[j].time, v[i].time);
        if (c > 0 || (c == 0 && j > i))
            return 0;
    }
    return 1;
}

/* Whether a person delete (ADT A29) of record i's person arrives after it: it takes every row of
 * that person_id with it (README, "What goes out"), rows that no delete of their own names. */
static int person_deleted_after(const rec_t *v, size_t n, size_t i)
{
    for (size_t k = i + 1; k < n; k++)
        if (!strcmp(v[k].table, "person") && !strcmp(v[k].op, "delete") &&
            !strcmp(v[k].key, v[i].key))
            return 1;
    return 0;
}

/* A checksum of the OMOP tables the sink wrote; with xmin, equal only when no row was written
 * at all. */
static const char *const all_tables[] = {
    "person",      "visit_occurrence", "care_site",   "provider", "condition_occurrence",
    "measurement", "drug_exposure",    "observation", "death",    NULL};
/* the tables that no delete of the non-merge goldens reaches (a visit's delete rewrites the
 * rows that named it when history is replayed, even though the end state is the same) */
static const char *const upsert_only_tables[] = {"person", "care_site", "provider", "death", NULL};

static char *state_sum(const char *schema, const char *const *tables, int with_xmin)
{
    char sql[8192];
    size_t o = (size_t)snprintf(sql, sizeof(sql), "SELECT md5(");
    for (int i = 0; tables[i]; i++)
        o += (size_t)snprintf(sql + o, sizeof(sql) - o,
                              "%s coalesce((SELECT string_agg(%st::text, '|' ORDER "
                              "BY t::text) FROM %s.%s t), '')",
                              i ? " ||" : "", with_xmin ? "t.xmin::text || " : "", schema,
                              tables[i]);
    snprintf(sql + o, sizeof(sql) - o, ")");
    return pt_q_text(sql);
}

/* The gap in cg_id_map's integers the sink said it left at its stop (pg.id_gap), 0 when it
 * said none. */
static long long id_gap_said(const pt_run_t *r)
{
    char path[512], line[1024];
    snprintf(path, sizeof(path), "%s/sink.log", r->dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    long long n = 0;
    while (fgets(line, sizeof(line), f)) {
        const char *m = strstr(line, "\"event\":\"pg.id_gap\"");
        const char *msg = m ? strstr(m, "\"msg\":\"") : NULL;
        if (msg)
            n += strtoll(msg + 7, NULL, 10);
    }
    fclose(f);
    return n;
}

/* ---- the cases ---- */

static void test_golden(void **state)
{
    (void)state;
    pt_run_t r;
    pt_stream_run_new(&r, "cg-it-sink-golden", 3, 20);
    const char *globs[] = {CG_SOURCE_DIR "/tests/golden/*/expected.ndjson"};
    rec_t *v;
    size_t n = load_records(globs, 1, "merge", &v);
    assert_true(n > 50);
    produce(r.topic, v, n);
    /* and bytes that are no envelope, not even text: kept in cg_rejects, hex-encoded */
    rd_kafka_t *p = tk_producer();
    static const char junk[] = {'\xff', '\xfe', 0, 'M', 'S', 'H', '|'};
    assert_int_equal(rd_kafka_producev(p, RD_KAFKA_V_TOPIC(r.topic), RD_KAFKA_V_KEY("junk", 4),
                                       RD_KAFKA_V_VALUE((void *)junk, sizeof(junk)),
                                       RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
                     0);
    /* and ids that are not 64-bit integers: refused when staged, named by column */
    static const char *const bad_ids[] = {
        "{\"standard\":\"omop-cdm-5.4\",\"table\":\"measurement\",\"op\":\"upsert\",\"row\":"
        "{\"measurement_id\":\"12x\",\"person_id\":1}}",
        "{\"standard\":\"omop-cdm-5.4\",\"table\":\"measurement\",\"op\":\"upsert\",\"row\":"
        "{\"measurement_id\":1,\"person_id\":\"9223372036854775808\"}}",
    };
    for (size_t i = 0; i < 2; i++)
        assert_int_equal(rd_kafka_producev(p, RD_KAFKA_V_TOPIC(r.topic), RD_KAFKA_V_KEY("bad", 3),
                                           RD_KAFKA_V_VALUE((void *)bad_ids[i], strlen(bad_ids[i])),
                                           RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                           RD_KAFKA_V_END),
                         0);
    pt_producer_close(p);
    assert_int_equal(pt_stream_sink(&r, "--init", 0), 0);
    assert_int_equal(pt_stream_sink(&r, NULL, 1), 0);
    assert_int_equal(pt_q_int("SELECT count(*) FROM %s.cg_rejects WHERE sqlstate = 'CGENV' AND "
                              "record = 'hex:fffe004d53487c'",
                              r.schema),
                     1);
    assert_int_equal(pt_q_int("SELECT count(*) FROM %s.cg_rejects WHERE sqlstate = 'CGVAL' AND "
                              "reason IN ('measurement.measurement_id is not a 64-bit integer id', "
                              "'measurement.person_id is not a 64-bit integer id')",
                              r.schema),
                     2);

    /* every table: one row per key whose last record is an upsert, unless its person is
     * deleted after it */
    size_t rejects = 3;
    for (size_t i = 0; i < n; i++) {
        if (!strcmp(v[i].op, "retract"))
            continue; /* applied: these records carry no cg.document, so it finds no row */
        int seen = 0;
        for (size_t j = 0; j < i; j++)
            seen |= !strcmp(v[j].table, v[i].table);
        if (seen)
            continue;
        long long want = 0;
        for (size_t j = i; j < n; j++)
            if (!strcmp(v[j].table, v[i].table) && is_last(v, n, j) && !strcmp(v[j].op, "upsert") &&
                !person_deleted_after(v, n, j))
                want++;
        long long got = pt_q_int("SELECT count(*) FROM %s.%s", r.schema, v[i].table);
        if (got != want)
            fprintf(stderr, "%s: %lld row(s), expected %lld\n", v[i].table, got, want);
        assert_int_equal(got, want);
    }
    assert_int_equal(pt_q_int("SELECT count(*) FROM %s.cg_rejects", r.schema), (long long)rejects);
    /* ids are compact integers from the id map: no gap without an aborted transaction, but
     * for the ids a refused guess drew that no later row took, which the sink says at its stop
     * (which batches guess wrong depends on how the records fall into batches) */
    long long gap = pt_q_int("SELECT max(id) - count(*) FROM %s.cg_id_map", r.schema),
              said = id_gap_said(&r);
    fprintf(stderr, "cg_id_map: a gap of %lld id(s), %lld said by the sink\n", gap, said);
    assert_int_equal(gap, said);
    assert_true(pt_q_int("SELECT max(person_id) FROM %s.person", r.schema) <=
                pt_q_int("SELECT count(*) FROM %s.cg_id_map", r.schema));
    assert_int_equal(
        pt_q_int("SELECT count(*) FROM %s.measurement m WHERE NOT EXISTS (SELECT 1 FROM "
                 "%s.cg_id_map i WHERE i.id = m.person_id)",
                 r.schema, r.schema),
        0);
    /* Data Quality Dashboard style: one observation period per person, for persons only, and
     * every dated row of a person inside it */
    assert_true(pt_q_int("SELECT count(*) FROM %s.observation_period", r.schema) > 0);
    assert_int_equal(
        pt_q_int("SELECT count(*) - count(DISTINCT person_id) FROM %s.observation_period",
                 r.schema),
        0);
    assert_int_equal(
        pt_q_int("SELECT count(*) FROM %s.observation_period o WHERE NOT EXISTS (SELECT "
                 "1 FROM %s.person p WHERE p.person_id = o.person_id)",
                 r.schema, r.schema),
        0);
    const char *dated[][2] = {{"visit_occurrence", "visit_start_date"},
                              {"condition_occurrence", "condition_start_date"},
                              {"measurement", "measurement_date"},
                              {"drug_exposure", "drug_exposure_start_date"},
                              {"observation", "observation_date"}};
    for (size_t i = 0; i < sizeof(dated) / sizeof(dated[0]); i++)
        assert_int_equal(
            pt_q_int("SELECT count(*) FROM %s.%s x JOIN %s.person p ON p.person_id = "
                     "x.person_id WHERE NOT EXISTS (SELECT 1 FROM %s.observation_period "
                     "o WHERE o.person_id = x.person_id AND x.%s BETWEEN "
                     "o.observation_period_start_date AND "
                     "o.observation_period_end_date)",
                     r.schema, dated[i][0], r.schema, r.schema, dated[i][1]),
            0);
    /* the offsets reached the topic's end (the envelopes, the junk and the bad ids) */
    assert_int_equal(pt_q_int("SELECT sum(next_offset) FROM %s.cg_offsets", r.schema),
                     (long long)n + 3);

    /* a second run over the same topics changes nothing: no row is even written */
    char *before = state_sum(r.schema, all_tables, 1);
    char *before_vals = state_sum(r.schema, all_tables, 0);
    char snap[1024];
    snprintf(snap, sizeof(snap),
             "CREATE TABLE %s.cg_snap AS SELECT 'x'::text AS tbl, 0::bigint AS "
             "k, ''::text AS x LIMIT 0",
             r.schema);
    PQclear(PQexec(pt_pg, snap));
    for (int t = 0; upsert_only_tables[t]; t++) {
        snprintf(snap, sizeof(snap),
                 "INSERT INTO %s.cg_snap SELECT '%s', %s, xmin::text FROM %s.%s", r.schema,
                 upsert_only_tables[t], key_col(upsert_only_tables[t]), r.schema,
                 upsert_only_tables[t]);
        PQclear(PQexec(pt_pg, snap));
    }
    assert_int_equal(pt_stream_sink(&r, NULL, 1), 0);
    char *after = state_sum(r.schema, all_tables, 1);
    assert_string_equal(before, after);
    free(after);
    /* a replay of everything (no stored offsets) ends in the same state, and rewrites no row
     * that no delete reaches: an upsert writes a row only when it changed */
    PQclear(PQexec(pt_pg, "BEGIN"));
    char sql[256];
    snprintf(sql, sizeof(sql), "DELETE FROM %s.cg_offsets", r.schema);
    PQclear(PQexec(pt_pg, sql));
    PQclear(PQexec(pt_pg, "COMMIT"));
    assert_int_equal(pt_stream_sink(&r, NULL, 1), 0);
    after = state_sum(r.schema, all_tables, 0);
    assert_string_equal(before_vals, after);
    free(after);
    /* in the tables no delete reaches, the replay wrote only rows whose key had versions that
     * differ (it passes through the older ones); every other row kept its xmin */
    for (int t = 0; upsert_only_tables[t]; t++) {
        const char *tn = upsert_only_tables[t];
        long long multi = 0;
        for (size_t i = 0; i < n; i++) {
            if (strcmp(v[i].table, tn) || !is_last(v, n, i))
                continue;
            for (size_t j = 0; j < i; j++)
                if (!strcmp(v[j].table, tn) && !strcmp(v[j].id, v[i].id) &&
                    strcmp(v[j].row, v[i].row)) {
                    multi++;
                    break;
                }
        }
        long long rows = pt_q_int("SELECT count(*) FROM %s.%s", r.schema, tn);
        long long kept = pt_q_int("SELECT count(*) FROM %s.%s t JOIN %s.cg_snap s ON s.tbl = '%s' "
                                  "AND s.k = t.%s AND s.x = t.xmin::text",
                                  r.schema, tn, r.schema, tn, key_col(tn));
        fprintf(stderr, "%s: %lld row(s), %lld kept by the replay, %lld with several versions\n",
                tn, rows, kept, multi);
        assert_true(rows > 0);
        assert_true(kept >= rows - multi);
    }
    assert_int_equal(pt_q_int("SELECT sum(next_offset) FROM %s.cg_offsets", r.schema),
                     (long long)n + 3);
    /* the replay's reject went in again: a replay past the stored offsets is a new delivery */
    assert_int_equal(pt_q_int("SELECT count(*) FROM %s.cg_rejects", r.schema),
                     2 * (long long)rejects);
    free(before);
    free(before_vals);
    free_records(v, n);
    pt_run_end(&r);
}

static void test_lifecycle(void **state)
{
    (void)state;
    pt_run_t r;
    pt_stream_run_new(&r, "cg-it-sink-life", 1, 1000);
    const char *globs[] = {CG_SOURCE_DIR "/tests/golden/lifecycle_*/expected.ndjson",
                           CG_SOURCE_DIR "/tests/golden/adt_a40_merge/expected.ndjson"};
    rec_t *v;
    size_t n = load_records(globs, 2, NULL, &v);
    /* every other record with its ids as strings (output.ids_as_strings): the sink reads both */
    for (size_t i = 1; i < n; i += 2)
        stringify_ids(&v[i]);
    produce(r.topic, v, n);
    assert_int_equal(pt_stream_sink(&r, "--init", 0), 0);
    assert_int_equal(pt_stream_sink(&r, NULL, 1), 0);
    int deletes = 0, merges = 0, moved = 0;
    for (size_t i = 0; i < n; i++) {
        if (!strcmp(v[i].op, "delete") && is_last(v, n, i)) {
            deletes++;
            assert_int_equal(pt_q_int("SELECT count(*) FROM %s.%s t JOIN %s.cg_id_map m ON m.id = "
                                      "t.%s WHERE m.source_id = %s",
                                      r.schema, v[i].table, r.schema, key_col(v[i].table), v[i].id),
                             0);
            if (!strcmp(v[i].table, "visit_occurrence")) /* no row names it */
                assert_int_equal(pt_q_int("SELECT count(*) FROM %s.condition_occurrence t JOIN "
                                          "%s.cg_id_map m ON m.id = t.visit_occurrence_id WHERE "
                                          "m.source_id = %s",
                                          r.schema, r.schema, v[i].id),
                                 0);
        }
        if (!strcmp(v[i].op, "merge")) {
            merges++;
            const char *tables[] = {"person",      "visit_occurrence", "condition_occurrence",
                                    "measurement", "observation",      "observation_period",
                                    NULL};
            for (int t = 0; tables[t]; t++)
                assert_int_equal(pt_q_int("SELECT count(*) FROM %s.%s t JOIN %s.cg_id_map m ON "
                                          "m.id = t.person_id WHERE m.source_id = %s",
                                          r.schema, tables[t], r.schema, v[i].merged),
                                 0);
            /* what the merged person had now belongs to the survivor */
            moved += (int)pt_q_int("SELECT count(*) FROM %s.visit_occurrence t JOIN %s.cg_id_map m "
                                   "ON m.id = t.person_id WHERE m.source_id = %s",
                                   r.schema, r.schema, v[i].key);
        }
    }
    /* one observation period per person, after the merges too */
    assert_int_equal(
        pt_q_int("SELECT count(*) - count(DISTINCT person_id) FROM %s.observation_period",
                 r.schema),
        0);
    assert_true(deletes > 0);
    assert_true(merges > 0);
    assert_true(moved > 0);
    assert_int_equal(pt_q_int("SELECT count(*) FROM %s.cg_person_merge", r.schema) > 0, 1);
    free_records(v, n);
    pt_run_end(&r);
}

/* Two instances in one group: the second joins mid-stream and takes partitions over; the first
 * commits what it holds of them before they go, the second starts where the database says. */
static void test_rebalance(void **state)
{
    (void)state;
    pt_run_t r;
    pt_stream_run_new(&r, "cg-it-sink-rebal", 4, 10); /* small transactions: a longer stream */
    pt_stream_feed(&r);
    pid_t a = pt_sink_start(&r, "sink-a.log", 3000);
    pt_wait_committed(&r, PT_STREAM_INPUTS / 10);
    pid_t b = pt_sink_start(&r, "sink-b.log", 3000);
    char log[400];
    snprintf(log, sizeof(log), "%s/sink-a.log", r.dir);
    pt_wait_exit(a, log);
    snprintf(log, sizeof(log), "%s/sink-b.log", r.dir);
    pt_wait_exit(b, log);
    int assigned_b = tk_file_count(log, "partition.assigned");
    long long consumed_b = pt_consumed_in(log);
    snprintf(log, sizeof(log), "%s/sink-a.log", r.dir);
    fprintf(stderr,
            "the second instance was assigned %d partition(s) and consumed %lld input(s), the "
            "first consumed %lld (revoked %d partition(s))\n",
            assigned_b, consumed_b, pt_consumed_in(log), tk_file_count(log, "partition.revoked"));
    assert_true(consumed_b > 0); /* it joined mid-stream */
    assert_true(assigned_b > 0);
    pt_stream_check(&r);
    pt_run_end(&r);
}

/* GET /metrics from 127.0.0.1:port; the body (malloc'ed), or NULL. */
static char *scrape(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct timeval tv = {30, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a))) {
        close(fd);
        return NULL;
    }
    static const char req[] = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    assert_int_equal(send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL), (ssize_t)sizeof(req) - 1);
    size_t cap = 1 << 16, len = 0;
    char *out = malloc(cap);
    for (;;) {
        if (len + 1 >= cap)
            out = realloc(out, cap *= 2);
        ssize_t n = recv(fd, out + len, cap - len - 1, 0);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    out[len] = '\0';
    if (strncmp(out, "HTTP/1.1 200", 12)) {
        free(out);
        return NULL;
    }
    return out;
}

/* The sample of the series written as series (name and labels, as rendered); -1 when absent. */
static long long sample(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *line = text; line && *line;
         line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
        if (!strncmp(line, series, n) && line[n] == ' ')
            return strtoll(line + n + 1, NULL, 10);
    return -1;
}

/* The port of the metrics endpoint, from the metrics.listening line of the log. */
static int metrics_port(const char *log)
{
    int64_t until = tk_now_ms() + PT_HANG_MS;
    while (tk_now_ms() < until) {
        FILE *f = fopen(log, "r");
        char line[2048];
        int port = 0;
        while (f && fgets(line, sizeof(line), f)) {
            const char *p = strstr(line, "\"metrics.listening\"");
            p = p ? strstr(p, "http://127.0.0.1:") : NULL;
            if (p)
                port = atoi(p + strlen("http://127.0.0.1:"));
        }
        if (f)
            fclose(f);
        if (port > 0)
            return port;
        usleep(50000);
    }
    fail_msg("no metrics.listening in %s", log);
    return -1;
}

#define M_PERSONS 200
#define M_MEAS    1000
#define M_BAD     10 /* measurements the database refuses (source value too long) */

static void test_metrics(void **state)
{
    (void)state;
    pt_run_t r;
    pt_stream_run_new(&r, "cg-it-sink-metrics", 2, 100);
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "sed -i 's/\"listen\": \"off\"/\"listen\": \"127.0.0.1:0\"/' '%s'",
             r.config);
    assert_int_equal(system(cmd), 0);
    size_t n = M_PERSONS + M_MEAS;
    rec_t *v = calloc(n, sizeof(*v));
    char long_src[80];
    memset(long_src, 'x', 60);
    long_src[60] = '\0';
    for (size_t i = 0; i < n; i++) {
        char buf[1024];
        int person = (int)(i < M_PERSONS ? i : (i - M_PERSONS) % M_PERSONS);
        if (i < M_PERSONS)
            snprintf(buf, sizeof(buf),
                     "{\"standard\":\"omop-cdm-5.4\",\"table\":\"person\",\"op\":\"upsert\","
                     "\"row\":{\"person_id\":%d,\"gender_concept_id\":8507,\"year_of_birth\":"
                     "1970,\"race_concept_id\":0,\"ethnicity_concept_id\":0}}",
                     700000000 + person);
        else
            snprintf(buf, sizeof(buf),
                     "{\"standard\":\"omop-cdm-5.4\",\"table\":\"measurement\",\"op\":"
                     "\"upsert\",\"row\":{\"measurement_id\":%zu,\"person_id\":%d,"
                     "\"measurement_concept_id\":3004410,\"measurement_date\":\"2024-03-14\","
                     "\"measurement_type_concept_id\":32856,\"measurement_source_value\":"
                     "\"%s\"}}",
                     900000000 + i, 700000000 + person,
                     (i - M_PERSONS) % (M_MEAS / M_BAD) == 3 ? long_src : "4548-4");
        v[i].value = strdup(buf);
        snprintf(v[i].key, sizeof(v[i].key), "%d", person);
    }
    produce(r.topic, v, n);
    free_records(v, n);
    assert_int_equal(pt_stream_sink(&r, "--init", 0), 0);
    char log[400];
    snprintf(log, sizeof(log), "%s/sink-1.log", r.dir);
    pid_t pid = pt_sink_start(&r, "sink-1.log", 0);
    pt_wait_committed(&r, (long long)n);
    int port = metrics_port(log);
    long long persons = pt_q_int("SELECT count(*) FROM %s.person", r.schema);
    long long meas = pt_q_int("SELECT count(*) FROM %s.measurement", r.schema);
    long long rejects = pt_q_int("SELECT count(*) FROM %s.cg_rejects WHERE table_name = "
                                 "'measurement' AND sqlstate = '22001'",
                                 r.schema);
    assert_int_equal(persons, M_PERSONS);
    assert_int_equal(meas, M_MEAS - M_BAD);
    assert_int_equal(rejects, M_BAD);
    /* the counters move at the commit, just after the offsets are visible: a few scrapes */
    char *m = NULL;
    long long m_persons = -1, m_meas = -1, m_rejects = -1;
    for (int tries = 0; tries < 100; tries++) {
        free(m);
        m = scrape(port);
        assert_non_null(m);
        m_persons = sample(m, "cohortgate_sink_rows_total{table=\"person\",result=\"upserted\"}");
        m_meas = sample(m, "cohortgate_sink_rows_total{table=\"measurement\",result=\"upserted\"}");
        m_rejects =
            sample(m, "cohortgate_sink_rejects_total{table=\"measurement\",reason=\"22001\"}");
        if (m_persons == persons && m_meas == meas && m_rejects == rejects)
            break;
        usleep(50000);
    }
    fprintf(stderr, "/metrics: person %lld, measurement %lld, rejects %lld; %lld batch(es)\n",
            m_persons, m_meas, m_rejects,
            sample(m, "cohortgate_sink_batches_total{result=\"committed\"}"));
    assert_int_equal(m_persons, persons);
    assert_int_equal(m_meas, meas);
    assert_int_equal(m_rejects, rejects);
    assert_int_equal(
        sample(m, "cohortgate_sink_rows_total{table=\"measurement\",result=\"deleted\"}"), -1);
    long long batches = sample(m, "cohortgate_sink_batches_total{result=\"committed\"}");
    assert_true(batches >= 1);
    assert_true(sample(m, "cohortgate_sink_batch_seconds_count") >= 1);
    assert_true(sample(m, "cohortgate_sink_batch_seconds_bucket{le=\"+Inf\"}") >= 1);
    assert_true(sample(m, "cohortgate_sink_batches_total{result=\"aborted\"}") >= 0);
    free(m);
    /* the group gets the database's positions too (in the background, after each commit), so
     * that its lag shows: in the cluster's tools, and as the lag gauge once statistics came
     * (every 5 s) */
    long long in_group = -1;
    for (int tries = 0; tries < 100 && in_group != (long long)n; tries++) {
        int64_t c[2];
        assert_int_equal(tk_committed(r.name, r.topic, 2, c), 0);
        in_group = (c[0] > 0 ? c[0] : 0) + (c[1] > 0 ? c[1] : 0);
        if (in_group != (long long)n)
            usleep(50000);
    }
    assert_int_equal(in_group, (long long)n);
    char lag0[300], lag1[300];
    snprintf(lag0, sizeof(lag0), "cohortgate_consumer_lag{topic=\"%s\",partition=\"0\"}", r.topic);
    snprintf(lag1, sizeof(lag1), "cohortgate_consumer_lag{topic=\"%s\",partition=\"1\"}", r.topic);
    long long l0 = -1, l1 = -1;
    for (int tries = 0; tries < 160 && (l0 != 0 || l1 != 0); tries++) {
        m = scrape(port);
        assert_non_null(m);
        l0 = sample(m, lag0);
        l1 = sample(m, lag1);
        free(m);
        if (l0 != 0 || l1 != 0)
            usleep(50000);
    }
    fprintf(stderr, "group committed %lld; consumer lag %lld and %lld\n", in_group, l0, l1);
    assert_int_equal(l0, 0);
    assert_int_equal(l1, 0);
    pt_sink_stop(pid, log);
    /* cdm_source: one row, the first load's date today */
    assert_int_equal(
        pt_q_int("SELECT count(*) FROM %s.cdm_source WHERE cdm_version = 'v5.4' AND "
                 "cdm_version_concept_id = 756265 AND source_release_date = "
                 "current_date AND cdm_release_date = current_date AND "
                 "cdm_source_abbreviation = left('%s', 25) AND vocabulary_version = ''",
                 r.schema, r.schema),
        1);
    assert_int_equal(pt_q_int("SELECT count(*) FROM %s.cdm_source", r.schema), 1);
    assert_int_equal(
        pt_q_int("SELECT count(*) FROM %s.cg_sink_meta WHERE key = 'first_load_date'", r.schema),
        1);
    pt_run_end(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden),
        cmocka_unit_test(test_lifecycle),
        cmocka_unit_test(test_rebalance),
        cmocka_unit_test(test_metrics),
    };
    return PT_RUN_TESTS(tests);
}
