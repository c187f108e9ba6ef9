/* xml_arena.h - the per-document arenas libxml2 allocates a parse and its tree in, through
 * allocator hooks installed once (xml_arena.c); internal to the XML decoder (xml.c). */
#ifndef CG_XML_ARENA_H
#define CG_XML_ARENA_H

typedef struct xml_arena_chunk xml_arena_chunk_t;

/* Zero-initialized: empty. */
typedef struct xml_arena {
    xml_arena_chunk_t *head; /* allocations come from head; older chunks follow */
    char *last;              /* the newest block in head (extended or taken back in place) */
} xml_arena_t;

/* The arena this thread's libxml2 allocations go to from now on; NULL: the heap. */
void cg_xml_arena_use(xml_arena_t *a);
/* Drops every block (the largest chunk up to a limit is kept for the next parse). */
void cg_xml_arena_reset(xml_arena_t *a);
/* Frees every chunk. */
void cg_xml_arena_destroy(xml_arena_t *a);
/* Whether parses may use arenas: the hooks are the ones installed (someone may have replaced
 * them with xmlMemSetup since; then trees are ordinary heap trees). */
int cg_xml_arenas_usable(void);

#endif
