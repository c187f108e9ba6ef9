/* sink_stream.c - the versioned measurement stream of the sink's interruption tests (see
 * sink_stream.h). */
#include "sink_stream.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

void pt_stream_run_new(pt_run_t *r, const char *prefix, int partitions, int txn_max)
{
    pt_run_new(r, prefix, "records", partitions);
    pt_write_config(r, r->config, txn_max, 200, ", \"batch_rows\": 300", "");
}

int pt_stream_sink(const pt_run_t *r, const char *extra, int idle_exit)
{
    char log[400];
    snprintf(log, sizeof(log), "%s/sink.log", r->dir);
    return pt_sink(r->config, extra, idle_exit, log);
}

/* a source value longer than varchar(50): refused by the database */
#define BAD(i)                                                                                     \
    ((i) >= PT_STREAM_INPUTS - PT_STREAM_IDS && (i) % (PT_STREAM_IDS / PT_STREAM_BAD) == 7)

void pt_stream_produce(const pt_run_t *r, int from, int to)
{
    char long_src[80];
    memset(long_src, 'x', 60);
    long_src[60] = '\0';
    rd_kafka_t *p = tk_producer();
    for (int i = from; i < to; i++) {
        int id = i % PT_STREAM_IDS, person = id % 200;
        char buf[1024], key[32];
        snprintf(buf, sizeof(buf),
                 "{\"standard\":\"omop-cdm-5.4\",\"table\":\"measurement\",\"op\":\"upsert\","
                 "\"row\":{\"measurement_id\":%d,\"person_id\":%d,\"measurement_concept_id\":"
                 "3004410,\"measurement_date\":\"2024-03-14\",\"measurement_type_concept_id\":"
                 "32856,\"value_as_number\":%d,\"measurement_source_value\":\"%s\"}}",
                 900000000 + id, 700000000 + person, i, BAD(i) ? long_src : "4548-4");
        snprintf(key, sizeof(key), "%d", person);
        pt_produce(p, r->topic, key, buf);
    }
    pt_producer_close(p);
}

void pt_stream_feed(const pt_run_t *r)
{
    pt_stream_produce(r, 0, PT_STREAM_INPUTS);
    assert_int_equal(pt_stream_sink(r, "--init", 0), 0);
}

void pt_stream_check(const pt_run_t *r)
{
    assert_int_equal(pt_committed(r), PT_STREAM_INPUTS);
    assert_int_equal(pt_q_int("SELECT count(*) FROM %s.cg_rejects", r->schema), PT_STREAM_BAD);
    assert_int_equal(pt_q_int("SELECT count(DISTINCT (topic, partition, \"offset\")) FROM "
                              "%s.cg_rejects",
                              r->schema),
                     PT_STREAM_BAD);
    assert_int_equal(pt_q_int("SELECT count(*) FROM %s.cg_rejects WHERE sqlstate = '22001' AND "
                              "table_name = 'measurement'",
                              r->schema),
                     PT_STREAM_BAD);
    assert_int_equal(pt_q_int("SELECT count(*) FROM %s.measurement", r->schema), PT_STREAM_IDS);
    int wrong = 0;
    char sql[512];
    snprintf(sql, sizeof(sql),
             "SELECT m.source_id - 900000000, x.value_as_number FROM %s.measurement x JOIN "
             "%s.cg_id_map m ON m.id = x.measurement_id",
             r->schema, r->schema);
    PGresult *res = PQexec(pt_pg, sql);
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    for (int i = 0; i < PQntuples(res); i++) {
        int id = atoi(PQgetvalue(res, i, 0)), val = atoi(PQgetvalue(res, i, 1)), want = -1;
        for (int k = id; k < PT_STREAM_INPUTS; k += PT_STREAM_IDS)
            if (!BAD(k))
                want = k;
        wrong += val != want;
    }
    PQclear(res);
    assert_int_equal(wrong, 0);
    /* compact ids: an aborted transaction leaves a gap (a sequence gives nothing back), at most
     * its new ids, but ids are never reused (each is drawn from the sequence once) */
    long long ids = pt_q_int("SELECT count(*) FROM %s.cg_id_map", r->schema);
    assert_int_equal(pt_q_int("SELECT count(DISTINCT id) FROM %s.cg_id_map", r->schema), ids);
    assert_true(ids >= PT_STREAM_IDS + 200);
    assert_true(pt_q_int("SELECT max(id) FROM %s.cg_id_map", r->schema) - ids < 4 * 2 * 200);
}

long long pt_consumed_in(const char *log)
{
    FILE *f = fopen(log, "r");
    char line[2048];
    long long n = -1;
    while (f && fgets(line, sizeof(line), f)) {
        const char *p = strstr(line, "\"gateway.stopped\"");
        p = p ? strstr(p, "consumed ") : NULL;
        if (p)
            n = strtoll(p + 9, NULL, 10);
    }
    if (f)
        fclose(f);
    return n;
}
