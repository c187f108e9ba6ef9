/* spec_select.c - which HL7 v2 specs take a message, as a table compiled when the specs load:
 * a hash of (MSH-9.1, MSH-9.2) to the specs' indices, so that selection costs one probe per
 * message however many specs and message types a spec set declares (a hospital's feed has
 * dozens of types, and each needs a declared handling). */
#include "spec_mapper.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Up to 7 bytes as an integer (zero-padded); 0 when longer or empty, which no trigger has. */
static uint64_t pack(const char *s, size_t n)
{
    uint64_t v = 0;
    if (n == 0 || n > 7)
        return 0;
    memcpy(&v, s, n);
    return v;
}

static size_t slot_of(uint64_t type, uint64_t event, size_t mask)
{
    uint64_t h = (type * 0x9E3779B97F4A7C15ull) ^ (event * 0xC2B2AE3D27D4EB4Full);
    return (size_t)(h ^ (h >> 29)) & mask;
}

static select_entry_t *find(select_entry_t *sel, size_t mask, uint64_t type, uint64_t event)
{
    for (size_t i = slot_of(type, event, mask);; i = (i + 1) & mask)
        if (!sel[i].type || (sel[i].type == type && sel[i].event == event))
            return &sel[i];
}

/* Spec s takes messages of (type, event); event 0: it takes every event of the type. */
static int takes(const spec_t *s, uint64_t type, uint64_t event)
{
    for (size_t i = 0; i < s->n_triggers; i++) {
        const trigger_t *t = &s->triggers[i];
        uint64_t tt = pack(t->type, strlen(t->type)), te = pack(t->event, strlen(t->event));
        if (tt == type && (te == 0 || (event && te == event)))
            return 1;
    }
    return 0;
}

int cg_spec_select_build(cg_specset_t *ss)
{
    size_t n_keys = 0;
    for (size_t i = 0; i < ss->n_specs; i++)
        if (ss->specs[i].format->format == CG_INPUT_HL7V2)
            n_keys += ss->specs[i].n_triggers;
    size_t cap = 16;
    while (cap < 2 * n_keys + 2)
        cap *= 2;
    free(ss->sel);
    free(ss->sel_specs);
    ss->sel = calloc(cap, sizeof(*ss->sel));
    ss->sel_specs = calloc(n_keys * (ss->n_specs ? ss->n_specs : 1) + 1, sizeof(*ss->sel_specs));
    ss->sel_mask = cap - 1;
    if (!ss->sel || !ss->sel_specs)
        return -1;
    uint32_t used = 0;
    for (size_t i = 0; i < ss->n_specs; i++) {
        const spec_t *s = &ss->specs[i];
        for (size_t k = 0; s->format->format == CG_INPUT_HL7V2 && k < s->n_triggers; k++) {
            const trigger_t *t = &s->triggers[k];
            uint64_t type = pack(t->type, strlen(t->type)),
                     event = pack(t->event, strlen(t->event));
            select_entry_t *e = find(ss->sel, ss->sel_mask, type, event);
            if (e->type)
                continue; /* the key is listed already, with every spec that takes it */
            e->type = type;
            e->event = event;
            e->first = used;
            snprintf(e->label, sizeof(e->label), "%s%s%s", t->type, t->event[0] ? "^" : "",
                     t->event);
            for (size_t j = 0; j < ss->n_specs; j++)
                if (ss->specs[j].format->format == CG_INPUT_HL7V2 &&
                    takes(&ss->specs[j], type, event))
                    ss->sel_specs[used++] = (uint32_t)j;
            e->n = used - e->first;
        }
    }
    return 0;
}

const select_entry_t *cg_spec_select_hl7(const cg_specset_t *ss, cg_slice_t type, cg_slice_t event)
{
    uint64_t t = pack(type.ptr, type.len);
    if (!t || !ss->sel)
        return NULL;
    uint64_t ev = pack(event.ptr, event.len);
    select_entry_t *e = ev ? find(ss->sel, ss->sel_mask, t, ev) : NULL;
    if (!e || !e->type) /* no spec names this event: those that take every event of the type */
        e = find(ss->sel, ss->sel_mask, t, 0);
    return e->type ? e : NULL;
}
