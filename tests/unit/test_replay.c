/* test_replay.c - the golden lifecycle feeds, mapped through the shipped bundle and applied in
 * order to an in-memory database the way README.md ("What goes out") tells a consumer to:
 * upsert replaces the row with its id unless the stored version is newer by source time, delete
 * retracts it (a person delete retracts all of the person's rows, a visit delete clears the
 * visit_occurrence_id of rows that name it), merge moves the merged person's rows to the
 * survivor, retract drops the rows whose current version came from the replaced document (or,
 * for an order retraction, from the cancelled order: meta order_id). The
 * final state is compared with one written by hand, rows named by content and person label (the
 * ids are 63-bit hashes), so what is checked is what a research database would hold. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cg_buf.h"
#include "cg_mapping.h"
#include "cg_pseudo.h"

#define KEY_FILE   CG_SOURCE_DIR "/tests/golden/key"
#define GOLDEN     CG_SOURCE_DIR "/tests/golden/"
#define MAX_ROWS   64
#define MAX_MERGES 8

typedef struct entry {
    char table[48];
    int64_t id, person_id, visit_id; /* visit_id: its visit_occurrence_id, 0 when none */
    int64_t care_site_id;            /* a visit's care_site_id, 0 when none */
    char message_id[96];             /* the source document or message of this version */
    char order_id[32];               /* its meta order_id: the order it came from, "" none */
    char time[40];                   /* its source time */
    char summary[256];               /* "table col=value ..." of a few telling columns */
} entry_t;

typedef struct db {
    entry_t rows[MAX_ROWS];
    size_t n;
    int64_t merged[MAX_MERGES], survivor[MAX_MERGES]; /* merges seen, for late rows */
    size_t n_merges;
} db_t;

static cg_mapping_t *bundle;
static cg_pseudo_t *pseudo;
static cg_mapping_worker_t *worker;

/* The columns a summary shows per table (what a reader of the research database would check). */
static const char *const shown[][5] = {
    {"person", "year_of_birth", NULL},
    {"visit_occurrence", "visit_start_date", "visit_end_date", "visit_end_datetime",
     "discharged_to_source_value"},
    {"care_site", "care_site_source_value", NULL},
    {"provider", "provider_source_value", NULL},
    {"condition_occurrence", "condition_source_value", "condition_start_date", NULL},
    {"measurement", "measurement_source_value", "value_as_number", NULL},
    {"drug_exposure", "drug_source_value", NULL},
    {"observation", "observation_source_value", "value_source_value", NULL},
    {"death", "death_date", NULL},
};

static int64_t int_value(const cg_row_t *r, const char *col)
{
    const cg_value_t *v = cg_row_value_named(r, col);
    if (!v || v->kind != CG_VALUE_INTEGER)
        return 0;
    char buf[24];
    snprintf(buf, sizeof(buf), "%.*s", (int)v->len, v->ptr);
    return strtoll(buf, NULL, 10);
}

static void text_value(const cg_row_t *r, const char *col, char *out, size_t n)
{
    const cg_value_t *v = cg_row_value_named(r, col);
    snprintf(out, n, "%.*s", v && v->ptr ? (int)v->len : 0, v && v->ptr ? v->ptr : "");
}

static void summarize(const cg_row_t *r, char *out, size_t n)
{
    size_t o = (size_t)snprintf(out, n, "%s", r->table->name);
    for (size_t t = 0; t < sizeof(shown) / sizeof(shown[0]); t++) {
        if (strcmp(shown[t][0], r->table->name))
            continue;
        for (size_t c = 1; c < 5 && shown[t][c]; c++) {
            const cg_value_t *v = cg_row_value_named(r, shown[t][c]);
            if (!v || v->kind == CG_VALUE_ABSENT)
                continue;
            o += (size_t)snprintf(out + o, n - o, " %s=%.*s", shown[t][c],
                                  v->kind == CG_VALUE_NULL ? 4 : (int)v->len,
                                  v->kind == CG_VALUE_NULL ? "null" : v->ptr);
        }
    }
}

static entry_t *find(db_t *db, const char *table, int64_t id)
{
    for (size_t i = 0; i < db->n; i++)
        if (db->rows[i].id == id && !strcmp(db->rows[i].table, table))
            return &db->rows[i];
    return NULL;
}

static void drop(db_t *db, size_t i)
{
    db->rows[i] = db->rows[--db->n];
}

static void apply(db_t *db, const cg_row_t *r)
{
    const char *table = r->table->name;
    int64_t person = int_value(r, "person_id");
    for (size_t m = 0; m < db->n_merges; m++) /* a late row of a merged person */
        if (person && person == db->merged[m])
            person = db->survivor[m];
    int64_t id = r->table->pk ? int_value(r, r->table->pk->name) : person;
    char time[40];
    snprintf(time, sizeof(time), "%.*s", (int)r->source_time.len, r->source_time.ptr);
    switch ((cg_row_op_t)r->op) {
    case CG_ROW_UPSERT: {
        entry_t *e = find(db, table, id);
        if (e && strcmp(e->time, time) > 0) /* stale: a newer version is applied already */
            return;
        if (!e) {
            assert_true(db->n < MAX_ROWS);
            e = &db->rows[db->n++];
        }
        memset(e, 0, sizeof(*e));
        snprintf(e->table, sizeof(e->table), "%s", table);
        e->id = id;
        e->person_id = person;
        e->visit_id = strcmp(table, "visit_occurrence") ? int_value(r, "visit_occurrence_id") : 0;
        e->care_site_id = strcmp(table, "visit_occurrence") ? 0 : int_value(r, "care_site_id");
        snprintf(e->message_id, sizeof(e->message_id), "%.*s", (int)r->message_id.len,
                 r->message_id.ptr);
        snprintf(e->time, sizeof(e->time), "%s", time);
        const cg_row_meta_t *order = cg_row_meta(r, CG_ROW_META_ORDER_ID);
        if (order)
            snprintf(e->order_id, sizeof(e->order_id), "%.*s", (int)order->value.len,
                     order->value.ptr);
        summarize(r, e->summary, sizeof(e->summary));
        return;
    }
    case CG_ROW_DELETE:
        for (size_t i = db->n; i-- > 0;) {
            entry_t *e = &db->rows[i];
            if (e->id == id && !strcmp(e->table, table))
                drop(db, i);
            else if (!strcmp(table, "person") && e->person_id == id)
                drop(db, i); /* the person and all of its rows */
            else if (!strcmp(table, "visit_occurrence") && e->visit_id == id)
                e->visit_id = 0; /* ON DELETE SET NULL */
        }
        return;
    case CG_ROW_MERGE: {
        int64_t merged = int_value(r, "merged_person_id");
        assert_true(merged != 0 && person != 0 && db->n_merges < MAX_MERGES);
        for (size_t m = 0; m < db->n_merges; m++) /* A -> B, then B -> C: A's rows go to C */
            if (db->survivor[m] == merged)
                db->survivor[m] = person;
        db->merged[db->n_merges] = merged;
        db->survivor[db->n_merges++] = person;
        for (size_t i = db->n; i-- > 0;) {
            entry_t *e = &db->rows[i];
            if (!strcmp(e->table, "person") && e->id == merged)
                drop(db, i);
            else if (e->person_id == merged)
                e->person_id = person;
        }
        return;
    }
    case CG_ROW_RETRACT: {
        int order = !strcmp(table, CG_ROW_ORDER_RETRACTION);
        char what[96];
        text_value(r, order ? "order_id" : "replaced_document_id", what, sizeof(what));
        assert_true(what[0] != '\0');
        for (size_t i = db->n; i-- > 0;)
            if (db->rows[i].person_id == person &&
                !strcmp(order ? db->rows[i].order_id : db->rows[i].message_id, what))
                drop(db, i);
        return;
    }
    }
    fail_msg("unknown op %d", r->op);
}

/* Maps one input (a message or document) and applies its records. */
static void feed_one(db_t *db, cg_input_format_t fmt, const char *buf, size_t len)
{
    const cg_row_t *rows;
    size_t n;
    cg_error_t err;
    cg_err_t rc = cg_mapping_worker_map(worker, fmt, buf, len, &rows, &n, &err);
    if (rc) {
        char text[1024];
        fail_msg("map: %s", cg_error_format(&err, text, sizeof(text)));
    }
    for (size_t i = 0; i < n; i++)
        apply(db, &rows[i]);
}

/* The messages of an HL7 v2 file: each starts with a segment "MSH|" at a segment boundary. */
static size_t split_hl7(char *buf, size_t len, const char **starts, size_t *lens, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i + 4 <= len; i++) {
        if ((i == 0 || buf[i - 1] == '\r' || buf[i - 1] == '\n') && !memcmp(buf + i, "MSH|", 4)) {
            assert_true(n < max);
            starts[n++] = buf + i;
        }
    }
    for (size_t k = 0; k < n; k++)
        lens[k] = (size_t)((k + 1 < n ? starts[k + 1] : buf + len) - starts[k]);
    return n;
}

static char *slurp(const char *path, size_t *len)
{
    cg_buf_t b;
    cg_buf_init(&b);
    if (cg_buf_read_file(&b, path) != CG_OK)
        fail_msg("cannot read %s", path);
    *len = b.len;
    return b.data;
}

/* Applies the messages of a case's input.hl7 in the order given by order (-1 ends it; NULL:
 * file order). */
static void feed_hl7(db_t *db, const char *dir, const int *order)
{
    char path[512];
    snprintf(path, sizeof(path), GOLDEN "%s/input.hl7", dir);
    size_t len;
    char *buf = slurp(path, &len);
    const char *starts[16];
    size_t lens[16];
    size_t n = split_hl7(buf, len, starts, lens, 16);
    for (size_t k = 0; order ? order[k] >= 0 : k < n; k++) {
        size_t i = order ? (size_t)order[k] : k;
        assert_true(i < n);
        feed_one(db, CG_INPUT_HL7V2, starts[i], lens[i]);
    }
    free(buf);
}

static void feed_xml(db_t *db, const char *dir, const char *file)
{
    char path[512];
    snprintf(path, sizeof(path), GOLDEN "%s/%s", dir, file);
    size_t len;
    char *buf = slurp(path, &len);
    feed_one(db, CG_INPUT_XML, buf, len);
    free(buf);
}

/* A person's label: "authority/id" for the pseudonyms of the identifiers the feeds use. */
static const char *const people[][2] = {
    {"GENHOSP", "100234"},
    {"GENHOSP", "900111"},
    {"GENHOSP", "100777"},
    {"GENHOSP", "300555"},
    {"HOSPA", "555"},
    {"HOSPB", "777"},
    {"2.16.840.1.113883.19.5.99999.2", "MRN-4711"},
    {"2.16.840.1.113883.19.5.99999.2", "MRN-1"},
    {"2.16.840.1.113883.19.5.99999.2", "MRN-2"},
};

static void person_label(int64_t person_id, char *out, size_t n)
{
    snprintf(out, n, "%s", person_id ? "unknown" : "-");
    for (size_t i = 0; person_id && i < sizeof(people) / sizeof(people[0]); i++) {
        cg_pseudo_person_t p;
        cg_slice_t a = {people[i][0], strlen(people[i][0])},
                   id = {people[i][1], strlen(people[i][1])};
        assert_int_equal(cg_pseudo_person(pseudo, a, id, &p), CG_OK);
        if (p.person_id == person_id)
            snprintf(out, n, "%s/%s", people[i][0], people[i][1]);
    }
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The state as sorted lines "person-label | summary [| visit=ok|null|dangling]", a visit's with
 * "| care_site=" the source value of the care_site row its care_site_id names (null, dangling). */
static void check_state(db_t *db, const char *const *want)
{
    char *got[MAX_ROWS];
    for (size_t i = 0; i < db->n; i++) {
        entry_t *e = &db->rows[i];
        char who[96], line[512];
        person_label(e->person_id, who, sizeof(who));
        int n = snprintf(line, sizeof(line), "%s | %s", who, e->summary);
        if (!strcmp(e->table, "condition_occurrence") || !strcmp(e->table, "measurement"))
            snprintf(line + n, sizeof(line) - (size_t)n, " | visit=%s",
                     !e->visit_id                                ? "null"
                     : find(db, "visit_occurrence", e->visit_id) ? "ok"
                                                                 : "dangling");
        if (!strcmp(e->table, "visit_occurrence")) {
            const entry_t *c = e->care_site_id ? find(db, "care_site", e->care_site_id) : NULL;
            const char *v = c ? strstr(c->summary, "care_site_source_value=") : NULL;
            snprintf(line + n, sizeof(line) - (size_t)n, " | care_site=%s",
                     v                 ? v + strlen("care_site_source_value=")
                     : e->care_site_id ? "dangling"
                                       : "null");
        }
        got[i] = strdup(line);
    }
    qsort(got, db->n, sizeof(got[0]), cmp_str);
    size_t nw = 0;
    while (want[nw])
        nw++;
    const char **w = malloc((nw + 1) * sizeof(*w));
    memcpy(w, want, (nw + 1) * sizeof(*w));
    qsort(w, nw, sizeof(w[0]), cmp_str);
    int ok = nw == db->n;
    for (size_t i = 0; ok && i < nw; i++)
        ok = !strcmp(w[i], got[i]);
    if (!ok) {
        for (size_t i = 0; i < db->n; i++)
            print_message("  got:  %s\n", got[i]);
        for (size_t i = 0; i < nw; i++)
            print_message("  want: %s\n", w[i]);
    }
    for (size_t i = 0; i < db->n; i++)
        free(got[i]);
    free(w);
    assert_true(ok);
}

/* check_state of the lines of a and then of b (both NULL-terminated). */
static void check_state_of(db_t *db, const char *const *a, const char *const *b)
{
    const char *all[MAX_ROWS + 1];
    size_t n = 0;
    for (const char *const *l = a; *l; l++)
        all[n++] = *l;
    for (const char *const *l = b; *l; l++)
        all[n++] = *l;
    all[n] = NULL;
    check_state(db, all);
}

static int setup(void **state)
{
    (void)state;
    cg_mapping_opts_t o = {.specs = CG_SOURCE_DIR "/specs", .no_key = 1};
    cg_error_t errs[4];
    size_t n = 0;
    char errstr[256];
    bundle = cg_mapping_load(&o, errs, 4, &n);
    cg_pseudo_key_t *key = cg_pseudo_key_load(KEY_FILE, NULL, errstr, sizeof(errstr));
    pseudo = key ? cg_pseudo_new(key, 0, errstr, sizeof(errstr)) : NULL;
    cg_pseudo_key_destroy(key);
    worker = bundle && pseudo ? cg_mapping_worker_new_keyed(bundle, pseudo, errstr, sizeof(errstr))
                              : NULL;
    return worker ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    cg_mapping_worker_destroy(worker);
    cg_mapping_destroy(bundle);
    cg_pseudo_destroy(pseudo);
    return 0;
}

/* preliminary -> final -> corrected -> deleted: one row throughout, none at the end. */
static void test_result_lifecycle(void **state)
{
    (void)state;
    db_t db = {0};
    const int upto_corrected[] = {0, 1, 2, -1};
    feed_hl7(&db, "lifecycle_result", upto_corrected);
    const char *const corrected[] = {
        "GENHOSP/100234 | measurement measurement_source_value=4548-4 value_as_number=6.9 | "
        "visit=null",
        NULL};
    check_state(&db, corrected);
    feed_hl7(&db, "lifecycle_result", (const int[]){3, -1});
    const char *const none[] = {NULL};
    check_state(&db, none);

    /* the correction arrives before the final result it corrects: the final is stale */
    db_t late = {0};
    feed_hl7(&late, "lifecycle_result", (const int[]){0, 2, 1, -1});
    check_state(&late, corrected);
}

/* A visit cancelled: A01 -> A11 (cancel admit), A05 (pre-admit, with its reason) -> A27 (cancel
 * pending admit). The visit is gone, its diagnosis stays without a visit. */
static void test_visit_cancelled(void **state)
{
    (void)state;
    static const struct {
        const char *dir, *care_site, *diagnosis;
    } cases[] = {
        {"lifecycle_a01_a11", "GENHOSP/4W",
         "condition_source_value=E11.9 condition_start_date=2024-03-14"},
        {"lifecycle_a05_a27", "GENHOSP/5E",
         "condition_source_value=K80.20 condition_start_date=2024-06-12"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        db_t db = {0};
        feed_hl7(&db, cases[i].dir, NULL);
        char care_site[128], diagnosis[256];
        snprintf(care_site, sizeof(care_site), "- | care_site care_site_source_value=%s",
                 cases[i].care_site);
        snprintf(diagnosis, sizeof(diagnosis),
                 "GENHOSP/100234 | condition_occurrence %s | visit=null", cases[i].diagnosis);
        const char *const want[] = {"GENHOSP/100234 | person year_of_birth=1967", care_site,
                                    "- | provider provider_source_value=1234", diagnosis, NULL};
        check_state(&db, want);
    }
}

/* A01 -> A08 -> A03 -> A13: one visit, updated, discharged, discharge cancelled. */
static void test_cancel_discharge(void **state)
{
    (void)state;
    db_t db = {0};
    feed_hl7(&db, "lifecycle_a01_a08_a03_a13", NULL);
    const char *const want[] = {
        "GENHOSP/100234 | person year_of_birth=1967",
        "GENHOSP/100234 | visit_occurrence visit_start_date=2024-03-14 visit_end_date=2024-03-14 "
        "visit_end_datetime=null discharged_to_source_value=null | care_site=GENHOSP/5E",
        "- | care_site care_site_source_value=GENHOSP/4W",
        "- | care_site care_site_source_value=GENHOSP/5E",
        "- | provider provider_source_value=1234",
        "GENHOSP/100234 | condition_occurrence condition_source_value=E11.9 "
        "condition_start_date=2024-03-15 | visit=ok",
        NULL};
    check_state(&db, want);
}

/* An order cancelled: an RDE new order -> ORC-1 CA; an order with two ask-at-order-entry
 * observations -> cancelled by the filler, ORC-1 OC. Nothing is left. */
static void test_order_cancel(void **state)
{
    (void)state;
    static const char *const rde[] = {"GENHOSP/100234 | drug_exposure drug_source_value=860975",
                                      NULL};
    static const char *const orm[] = {
        "GENHOSP/100234 | measurement measurement_source_value=29463-7 value_as_number=68.2 | "
        "visit=null",
        "GENHOSP/100234 | measurement measurement_source_value=49541-6 | visit=null", NULL};
    static const struct {
        const char *dir;
        const char *const *ordered;
    } cases[] = {{"lifecycle_order_cancel", rde}, {"lifecycle_order_cancel_oc", orm}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        db_t db = {0};
        feed_hl7(&db, cases[i].dir, (const int[]){0, -1});
        check_state(&db, cases[i].ordered);
        feed_hl7(&db, cases[i].dir, (const int[]){1, -1});
        check_state(&db, (const char *const[]){NULL});
    }
}

/* A lab's results of two orders in one ORU; the first order is cancelled by its placer (ORC-1
 * CA) in an ORM that repeats none of its results: its two results go, the other order's stays. */
static void test_order_cancel_results(void **state)
{
    (void)state;
    db_t db = {0};
    feed_hl7(&db, "lifecycle_order_cancel_results", (const int[]){0, -1});
    static const char *const potassium =
        "GENHOSP/100234 | measurement measurement_source_value=2823-3 value_as_number=4.1 | "
        "visit=null";
    check_state(
        &db, (const char *const[]){"GENHOSP/100234 | measurement measurement_source_value=2345-7 "
                                   "value_as_number=98 | visit=null",
                                   "GENHOSP/100234 | measurement measurement_source_value=2951-2 "
                                   "value_as_number=139 | visit=null",
                                   potassium, NULL});
    feed_hl7(&db, "lifecycle_order_cancel_results", (const int[]){1, -1});
    check_state(&db, (const char *const[]){potassium, NULL});
}

/* Two reports; the CBC's results are withdrawn (OBX-11 W, wrong patient): its three rows go,
 * the other report's glucose stays. */
static void test_result_withdrawn(void **state)
{
    (void)state;
    db_t db = {0};
    const char *const kept[] = {
        "GENHOSP/100234 | measurement measurement_source_value=2345-7 value_as_number=98 | "
        "visit=null",
        NULL};
    feed_hl7(&db, "lifecycle_result_withdrawn", (const int[]){0, 1, -1});
    check_state_of(&db, kept,
                   (const char *const[]){
                       "GENHOSP/100234 | measurement measurement_source_value=718-7 "
                       "value_as_number=13.2 | visit=null",
                       "GENHOSP/100234 | measurement measurement_source_value=6690-2 "
                       "value_as_number=7.4 | visit=null",
                       "GENHOSP/100234 | observation observation_source_value=8251-1", NULL});
    feed_hl7(&db, "lifecycle_result_withdrawn", (const int[]){2, -1});
    check_state(&db, kept);
}

/* A01 on 4W -> A02 to the ICU -> A12 (cancel transfer): the visit is on 4W again. */
static void test_cancel_transfer(void **state)
{
    (void)state;
    db_t db = {0};
    const char *const sites[] = {"GENHOSP/100234 | person year_of_birth=1967",
                                 "- | care_site care_site_source_value=GENHOSP/4W",
                                 "- | care_site care_site_source_value=GENHOSP/ICU",
                                 "- | provider provider_source_value=1234", NULL};
    feed_hl7(&db, "lifecycle_a02_a12", (const int[]){0, 1, -1});
    check_state_of(
        &db, sites,
        (const char *const[]){
            "GENHOSP/100234 | visit_occurrence visit_start_date=2024-06-10 "
            "visit_end_date=2024-06-10 visit_end_datetime=null discharged_to_source_value=null | "
            "care_site=GENHOSP/ICU",
            NULL});
    feed_hl7(&db, "lifecycle_a02_a12", (const int[]){2, -1});
    check_state_of(
        &db, sites,
        (const char *const[]){
            "GENHOSP/100234 | visit_occurrence visit_start_date=2024-06-10 "
            "visit_end_date=2024-06-10 visit_end_datetime=null discharged_to_source_value=null | "
            "care_site=GENHOSP/4W",
            NULL});
}

/* A28 (a person added in error, with an allergy) -> A29 (delete person): nothing of 300555 is
 * left; another patient's rows (an A05's) stay. */
static void test_delete_person(void **state)
{
    (void)state;
    db_t db = {0};
    const char *const other[] = {
        "GENHOSP/100234 | person year_of_birth=1967",
        "GENHOSP/100234 | visit_occurrence visit_start_date=2024-06-17 visit_end_date=2024-06-17 "
        "visit_end_datetime=null discharged_to_source_value=null | care_site=GENHOSP/5E",
        "- | care_site care_site_source_value=GENHOSP/5E",
        "- | provider provider_source_value=1234",
        "GENHOSP/100234 | condition_occurrence condition_source_value=K80.20 "
        "condition_start_date=2024-06-12 | visit=ok",
        NULL};
    feed_hl7(&db, "lifecycle_a05_a27", (const int[]){0, -1});
    feed_hl7(&db, "lifecycle_a28_a29", (const int[]){0, -1});
    check_state_of(
        &db, other,
        (const char *const[]){
            "GENHOSP/300555 | person year_of_birth=1981",
            "GENHOSP/300555 | observation observation_source_value=7980 value_source_value=7980",
            NULL});
    feed_hl7(&db, "lifecycle_a28_a29", (const int[]){1, -1});
    check_state(&db, other);
}

/* 900111 and 100234 admitted; A40 merges 900111 into 100234; A47 re-keys 100234 as 100777:
 * every clinical row ends with 100777, one person row. */
static void test_merge_and_rekey(void **state)
{
    (void)state;
    db_t db = {0};
    feed_hl7(&db, "lifecycle_merge_a40_a47", NULL);
    const char *const want[] = {
        "GENHOSP/100777 | person year_of_birth=1967",
        "GENHOSP/100777 | visit_occurrence visit_start_date=2024-03-01 visit_end_date=2024-03-01 "
        "visit_end_datetime=null discharged_to_source_value=null | care_site=GENHOSP/ED",
        "GENHOSP/100777 | visit_occurrence visit_start_date=2024-03-14 visit_end_date=2024-03-14 "
        "visit_end_datetime=null discharged_to_source_value=null | care_site=GENHOSP/4W",
        "GENHOSP/100777 | condition_occurrence condition_source_value=J18.9 "
        "condition_start_date=2024-03-01 | visit=ok",
        "- | care_site care_site_source_value=GENHOSP/ED",
        "- | care_site care_site_source_value=GENHOSP/4W",
        "- | provider provider_source_value=1234",
        NULL};
    check_state(&db, want);
}

/* A C-CDA document and its replacement: the replaced version's rows are retracted, entries the
 * new version keeps (by entry id) come back, the one it dropped stays gone. Both with the
 * records' message ids keyed (the default: the retraction's replaced_document_id is keyed
 * alike) and plain (pseudonym.message_id "plain"). */
static void test_document_replacement(void **state)
{
    (void)state;
    cg_mapping_opts_t o = {.specs = CG_SOURCE_DIR "/specs", .no_key = 1, .message_id_plain = 1};
    cg_error_t errs[4];
    size_t n = 0;
    char errstr[256];
    cg_mapping_t *plain_bundle = cg_mapping_load(&o, errs, 4, &n);
    assert_non_null(plain_bundle);
    cg_mapping_worker_t *keyed = worker, *plain = cg_mapping_worker_new_keyed(
                                             plain_bundle, pseudo, errstr, sizeof(errstr));
    assert_non_null(plain);
    for (int mode = 0; mode < 2; mode++) {
        worker = mode ? plain : keyed;
        db_t db = {0};
        feed_xml(&db, "lifecycle_ccda_replace", "1-original.xml");
        for (size_t i = 0; i < db.n; i++) /* keyed: 40 hex digits, never the document's id */
            if (mode)
                assert_non_null(strstr(db.rows[i].message_id, "^DOC-100"));
            else
                assert_int_equal(strspn(db.rows[i].message_id, "0123456789abcdef"), 40);
        feed_xml(&db, "lifecycle_ccda_replace", "2-replacement.xml");
        const char *const want[] = {
            "2.16.840.1.113883.19.5.99999.2/MRN-4711 | person year_of_birth=1975",
            "2.16.840.1.113883.19.5.99999.2/MRN-4711 | condition_occurrence "
            "condition_source_value=E11.65 condition_start_date=2023-09-05 | visit=null",
            "2.16.840.1.113883.19.5.99999.2/MRN-4711 | condition_occurrence "
            "condition_source_value=J45.909 condition_start_date=2021-03-01 | visit=null",
            NULL};
        check_state(&db, want);
    }
    worker = keyed;
    cg_mapping_worker_destroy(plain);
    cg_mapping_destroy(plain_bundle);
}

/* Reused ids never make one fact overwrite another's. */
static void test_collisions(void **state)
{
    (void)state;
    db_t db = {0};
    feed_hl7(&db, "collision_msh10_two_facilities", NULL);
    const char *const msh10[] = {
        "HOSPA/555 | measurement measurement_source_value=4548-4 value_as_number=7.1 | visit=null",
        "HOSPA/555 | measurement measurement_source_value=2160-0 value_as_number=0.9 | visit=null",
        "HOSPB/777 | measurement measurement_source_value=4548-4 value_as_number=5.4 | visit=null",
        "HOSPB/777 | measurement measurement_source_value=2160-0 value_as_number=1.1 | visit=null",
        NULL};
    check_state(&db, msh10);

    db_t docs = {0};
    feed_xml(&docs, "collision_ccda_same_document_id", "1-first.xml");
    feed_xml(&docs, "collision_ccda_same_document_id", "2-second.xml");
    const char *const ccda[] = {
        "2.16.840.1.113883.19.5.99999.2/MRN-1 | person year_of_birth=1975",
        "2.16.840.1.113883.19.5.99999.2/MRN-2 | person year_of_birth=1975",
        "2.16.840.1.113883.19.5.99999.2/MRN-1 | condition_occurrence condition_source_value=E11.9 "
        "condition_start_date=2023-09-05 | visit=null",
        "2.16.840.1.113883.19.5.99999.2/MRN-1 | condition_occurrence condition_source_value=I10 "
        "condition_start_date=2022-01-01 | visit=null",
        "2.16.840.1.113883.19.5.99999.2/MRN-2 | condition_occurrence condition_source_value=E11.9 "
        "condition_start_date=2023-09-05 | visit=null",
        "2.16.840.1.113883.19.5.99999.2/MRN-2 | condition_occurrence condition_source_value=I10 "
        "condition_start_date=2022-01-01 | visit=null",
        NULL};
    check_state(&docs, ccda);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_result_lifecycle),     cmocka_unit_test(test_visit_cancelled),
        cmocka_unit_test(test_cancel_discharge),     cmocka_unit_test(test_order_cancel),
        cmocka_unit_test(test_order_cancel_results), cmocka_unit_test(test_merge_and_rekey),
        cmocka_unit_test(test_document_replacement), cmocka_unit_test(test_collisions),
        cmocka_unit_test(test_result_withdrawn),     cmocka_unit_test(test_cancel_transfer),
        cmocka_unit_test(test_delete_person),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
