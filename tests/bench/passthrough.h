/* passthrough.h - what the two halves of cg_passthrough share: the plan of records per input
 * (passthrough_plan.c: made from a gateway run's output, loaded before the timed run) and the
 * run over it (cg_passthrough.c). */
#ifndef CG_BENCH_PASSTHROUGH_H
#define CG_BENCH_PASSTHROUGH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct hdr {
    char *name;
    void *value;
    ssize_t len; /* -1: no value */
} hdr_t;

typedef struct rec {
    uint32_t topic, key, hdrs, val_len;
} rec_t;

typedef struct plan {
    char **topics;
    size_t n_topics;
    char **keys; /* [0] NULL: no key */
    size_t *key_len, n_keys;
    hdr_t **hdrs;
    size_t *n_hdr, n_hdrs;
    rec_t *recs;
    size_t n_recs;
    /* per input partition: the records of offset o are recs[first[o] .. first[o + 1]) */
    struct plan_part {
        uint32_t *first;
        int64_t n_off; /* offsets covered */
    } * parts;
    int n_parts;
    uint32_t max_val;
} plan_t;

/* Exits with status 1 after printing "cg_passthrough: " and fmt with arg. */
void pt_die(const char *fmt, const char *arg) __attribute__((noreturn));
/* realloc that exits when out of memory. */
void *pt_xrealloc(void *p, size_t n);

/* `cg_passthrough plan`: writes PLAN from the outputs of a gateway run (see cg_passthrough.c);
 * the exit status. */
int pt_plan_make(const char *boot, const char *input, const char *prefix, const char *out);
/* Reads PLAN into pl, exiting on a malformed one. */
void pt_plan_load(plan_t *pl, const char *path);

#endif
