/* xml_arena.c - the tree arenas of the XML decoder (xml_arena.h, used by xml.c).
 *
 * libxml2 allocates through xmlMalloc/xmlRealloc/xmlFree/xmlMemStrdup, which point at hooks
 * here (installed once, xmlMemSetup). While a thread parses, a thread-local pointer names the
 * arena of that parse: the parser context, its dictionary, the input and encoder state and the
 * whole tree are bump-allocated there. xmlFree of a block inside that arena is a no-op (or
 * takes the last block back); anything else (no arena active, or a block from before) goes to
 * the allocator the hooks replaced, so blocks libxml2 allocated before or outside a parse stay
 * ordinary heap blocks and other threads are unaffected. The parse context is freed at the end
 * of the parse with the arena still active; the tree lives until the document is dropped,
 * which releases the one heap resource it holds (its dictionary's mutex, via xmlDictFree) and
 * resets the arena. Nothing else may free tree nodes: the tree is read-only (cg_xml.h), and
 * evaluation (XPath) allocates on the heap, since no arena is active then. Under ASan, unused
 * and released arena memory is poisoned and blocks have red zones, so overflows and reads of a
 * dropped tree are still caught. */

#include "xml_arena.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/xmlmemory.h>

#if defined(__SANITIZE_ADDRESS__)
#define CG_XML_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CG_XML_ASAN 1
#endif
#endif
#ifdef CG_XML_ASAN
#include <sanitizer/asan_interface.h>
#define POISON(p, n)   ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#define REDZONE        16 /* poisoned gap after each block: overflows are caught */
#else
#define POISON(p, n)   ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#define REDZONE        0
#endif

struct xml_arena_chunk {
    struct xml_arena_chunk *next;
    size_t size; /* bytes of data after this header */
    size_t used;
    size_t pad; /* keeps the data 16-byte aligned */
};
typedef struct xml_arena_chunk arena_chunk_t;

typedef xml_arena_t arena_t;

#define ARENA_HDR        16                 /* before each block: its size */
#define ARENA_MIN_CHUNK  ((size_t)64 << 10) /* a typical C-CDA tree needs a few hundred KB */
#define ARENA_MAX_GROWTH ((size_t)8 << 20)  /* chunks double up to this, bigger only on demand */
#define ARENA_RETAIN     ((size_t)4 << 20)  /* largest chunk kept across resets */
#define ARENA_ALIGN(n)   (((n) + 15) & ~(size_t)15)
#define CHUNK_DATA(c)    ((char *)(c) + sizeof(arena_chunk_t))

static _Thread_local arena_t *active_arena;
static xmlFreeFunc sys_free;
static xmlMallocFunc sys_malloc;
static xmlReallocFunc sys_realloc;
static xmlStrdupFunc sys_strdup;

static arena_chunk_t *arena_owner(const arena_t *a, const void *p)
{
    const char *q = p;
    for (arena_chunk_t *c = a->head; c; c = c->next)
        if (q >= CHUNK_DATA(c) && q < CHUNK_DATA(c) + c->size)
            return c;
    return NULL;
}

static void *arena_alloc(arena_t *a, size_t n)
{
    if (n > ((size_t)1 << 40))
        return NULL;
    size_t need = ARENA_HDR + ARENA_ALIGN(n) + REDZONE;
    arena_chunk_t *c = a->head;
    if (!c || c->size - c->used < need) {
        size_t size = c ? c->size * 2 : ARENA_MIN_CHUNK;
        if (size > ARENA_MAX_GROWTH)
            size = ARENA_MAX_GROWTH;
        if (size < need)
            size = need;
        /* plain malloc: chunks are ours, not libxml2's */
        arena_chunk_t *nc = malloc(sizeof(*nc) + size);
        if (!nc)
            return NULL;
        *nc = (arena_chunk_t){.next = c, .size = size};
        POISON(CHUNK_DATA(nc), size);
        a->head = c = nc;
    }
    char *blk = CHUNK_DATA(c) + c->used;
    UNPOISON(blk, ARENA_HDR);
    memcpy(blk, &n, sizeof(n));
    c->used += need;
    a->last = blk + ARENA_HDR;
    UNPOISON(a->last, n);
    return a->last;
}

static size_t arena_block_size(const char *p)
{
    size_t n;
    memcpy(&n, p - ARENA_HDR, sizeof(n));
    return n;
}

static void arena_release(arena_t *a, arena_chunk_t *c, char *p)
{
    size_t n = arena_block_size(p);
    if (p == a->last && c == a->head) {
        c->used = (size_t)(p - ARENA_HDR - CHUNK_DATA(c)); /* the newest block: take it back */
        a->last = NULL;
        POISON(p - ARENA_HDR, ARENA_HDR + ARENA_ALIGN(n) + REDZONE);
    } else {
        POISON(p, n); /* a later use is caught under ASan */
    }
}

static void *arena_realloc(arena_t *a, arena_chunk_t *c, char *p, size_t n)
{
    size_t old = arena_block_size(p);
    if (p == a->last && c == a->head && n <= ((size_t)1 << 40)) {
        size_t off = (size_t)(p - CHUNK_DATA(c));
        size_t need = ARENA_ALIGN(n) + REDZONE;
        if (c->size - off >= need) { /* the newest block grows (or shrinks) in place */
            memcpy(p - ARENA_HDR, &n, sizeof(n));
            if (n < old)
                POISON(p + n, old - n);
            c->used = off + need;
            UNPOISON(p, n);
            return p;
        }
    }
    char *q = arena_alloc(a, n);
    if (!q)
        return NULL;
    memcpy(q, p, old < n ? old : n);
    POISON(p, old);
    return q;
}

/* Keeps the largest chunk that is not too large, empty and poisoned; frees the rest. */
void cg_xml_arena_reset(xml_arena_t *a)
{
    arena_chunk_t *keep = NULL;
    for (arena_chunk_t *c = a->head, *next; c; c = next) {
        next = c->next;
        if (c->size <= ARENA_RETAIN && (!keep || c->size > keep->size)) {
            free(keep);
            keep = c;
        } else {
            free(c);
        }
    }
    if (keep) {
        keep->next = NULL;
        keep->used = 0;
        POISON(CHUNK_DATA(keep), keep->size);
    }
    a->head = keep;
    a->last = NULL;
}

void cg_xml_arena_destroy(xml_arena_t *a)
{
    for (arena_chunk_t *c = a->head, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    a->head = NULL;
    a->last = NULL;
}

static void *hook_malloc(size_t n)
{
    arena_t *a = active_arena;
    return a ? arena_alloc(a, n) : sys_malloc(n);
}

static void *hook_realloc(void *p, size_t n)
{
    arena_t *a = active_arena;
    if (!a)
        return sys_realloc(p, n);
    if (!p)
        return arena_alloc(a, n);
    arena_chunk_t *c = arena_owner(a, p);
    /* a heap block (made before the parse) stays on the heap */
    return c ? arena_realloc(a, c, p, n) : sys_realloc(p, n);
}

static void hook_free(void *p)
{
    arena_t *a = active_arena;
    arena_chunk_t *c = a && p ? arena_owner(a, p) : NULL;
    if (c)
        arena_release(a, c, p);
    else
        sys_free(p);
}

static char *hook_strdup(const char *s)
{
    arena_t *a = active_arena;
    if (!a)
        return sys_strdup(s);
    size_t n = strlen(s) + 1;
    char *p = arena_alloc(a, n);
    if (p)
        memcpy(p, s, n);
    return p;
}

static pthread_once_t hooks_once = PTHREAD_ONCE_INIT;

/* The hooks wrap whatever allocator libxml2 had (its default: malloc and friends). */
static void install_hooks(void)
{
    if (xmlMemGet(&sys_free, &sys_malloc, &sys_realloc, &sys_strdup) != 0 || !sys_free ||
        !sys_malloc || !sys_realloc || !sys_strdup)
        return;
    xmlMemSetup(hook_free, hook_malloc, hook_realloc, hook_strdup);
}

/* Installed before main, while the process has one thread; the once also covers a library
 * loaded later. */
__attribute__((constructor)) static void install_hooks_early(void)
{
    pthread_once(&hooks_once, install_hooks);
}

/* Whether parses may use arenas: our hooks are the ones installed (someone may have replaced
 * them with xmlMemSetup since; then trees are ordinary heap trees). */
int cg_xml_arenas_usable(void)
{
    pthread_once(&hooks_once, install_hooks);
    xmlFreeFunc f;
    xmlMallocFunc m;
    xmlReallocFunc r;
    xmlStrdupFunc s;
    return xmlMemGet(&f, &m, &r, &s) == 0 && f == hook_free && m == hook_malloc &&
           r == hook_realloc && s == hook_strdup;
}

void cg_xml_arena_use(xml_arena_t *a)
{
    active_arena = a;
}
