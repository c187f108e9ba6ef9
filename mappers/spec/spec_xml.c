/* spec_xml.c - specs over XML documents (CDA R2 / C-CDA, vendor XML): which spec takes a
 * document, its id, rules over a foreach's nodes, XPath values and narrative references, and
 * cg_mapper_map_xml (cg_spec.h). The format's compiler side is spec_xml_format.c.
 */
#include "spec_mapper.h"

#include <libxml/tree.h>

#include <stdio.h>
#include <string.h>

cg_err_t cg_spec_xml_run_rule(cg_mapper_t *mp, const rule_t *r)
{
    mp->xnode = NULL;
    if (!r->has_foreach)
        return cg_spec_emit_row(mp, 1);
    void *const *nodes;
    size_t n = cg_xml_xpath_nodes(mp->xev, r->xforeach, NULL, &nodes);
    cg_err_t rc = CG_OK;
    for (size_t i = 0; i < n && !rc; i++) {
        mp->xnode = nodes[i];
        if ((rc = cg_spec_emit_row(mp, i + 1)))
            rc = cg_spec_entry_failed(mp, rc, i + 1);
    }
    mp->xnode = NULL;
    return rc;
}

cg_err_t cg_spec_xml_path_value(cg_mapper_t *mp, const expr_t *e, spec_val_t *out)
{
    cg_slice_t xv;
    *out = ABSENT;
    /* copied: the evaluator's buffer is reused by the next XPath */
    if (cg_xml_xpath_value(mp->xev, e->u.xpath, mp->xnode, &xv))
        *out = cg_spec_val_copy(mp, xv.ptr, xv.len);
    return CG_OK;
}

cg_err_t cg_spec_xml_reference(cg_mapper_t *mp, const spec_val_t *v, spec_val_t *out)
{
    /* originalText/reference/@value "#id" → the narrative text it points at */
    const void *n = mp->xev ? cg_xml_find_id(mp->xev, v->s, v->len) : NULL;
    if (!n)
        return CG_OK;
    cg_buf_reset(&mp->scratch);
    if (cg_xml_node_text(n, &mp->scratch) && !mp->scratch.failed)
        *out = cg_spec_val_copy(mp, mp->scratch.data, mp->scratch.len);
    return CG_OK;
}

static const xmlChar *attr_value(const xmlNode *n, const char *name)
{
    for (const xmlAttr *a = n->properties; a; a = a->next)
        if (!a->ns && !strcmp((const char *)a->name, name) && a->children &&
            a->children->type == XML_TEXT_NODE)
            return a->children->content;
    return NULL;
}

/* Whether spec s takes the document whose root element is root. */
static int document_matches(const spec_t *s, const xmlNode *root)
{
    if (strcmp((const char *)root->name, s->xml_root))
        return 0;
    if (!s->n_doc_templates)
        return 1;
    for (const xmlNode *c = root->children; c; c = c->next) {
        if (c->type != XML_ELEMENT_NODE || strcmp((const char *)c->name, "templateId"))
            continue;
        const xmlChar *r = attr_value(c, "root");
        for (size_t i = 0; r && i < s->n_doc_templates; i++)
            if (!strcmp((const char *)r, s->doc_templates[i]))
                return 1;
    }
    return 0;
}

/* The root's child element name as an II, "root^extension" (CDA II: the pair is the
 * identifier), or its attribute attr's value when attr is given; absent (ptr NULL) when the
 * document has no such element. */
static cg_err_t root_child(cg_mapper_t *mp, const xmlNode *root, const char *name, const char *attr,
                           cg_slice_t *out)
{
    *out = (cg_slice_t){NULL, 0};
    for (const xmlNode *c = root->children; c; c = c->next) {
        if (c->type != XML_ELEMENT_NODE || strcmp((const char *)c->name, name))
            continue;
        const char *r = (const char *)attr_value(c, attr ? attr : "root");
        const char *x = attr ? NULL : (const char *)attr_value(c, "extension");
        size_t rl = r ? strlen(r) : 0, xl = x ? strlen(x) : 0;
        char *p = cg_arena_alloc(&mp->arena, rl + xl + 2);
        if (!p)
            return cg_spec_fail(mp, CG_ERR_NOMEM, "out of memory");
        size_t n = 0;
        if (rl) {
            memcpy(p, r, rl);
            n = rl;
        }
        if (xl) {
            if (n)
                p[n++] = '^';
            memcpy(p + n, x, xl);
            n += xl;
        }
        p[n] = '\0';
        *out = (cg_slice_t){p, n};
        break;
    }
    return CG_OK;
}

/* The document's id (the spec's message_id, else the root's <id>) and its identity for rows
 * without an entry id: that id, setId, versionNumber and effectiveTime, and the patient (a
 * sample's id such as TT988 recurs in documents of different patients). */
static cg_err_t document_id(cg_mapper_t *mp, const spec_t *s, const xmlNode *root)
{
    cg_err_t rc;
    cg_slice_t id;
    if ((rc = root_child(mp, root, "id", NULL, &id)) ||
        (rc = root_child(mp, root, "setId", NULL, &mp->msg_key[1])) ||
        (rc = root_child(mp, root, "versionNumber", "value", &mp->msg_key[2])) ||
        (rc = root_child(mp, root, "effectiveTime", "value", &mp->msg_key[3])))
        return rc;
    mp->time_raw = mp->msg_key[3].ptr ? mp->msg_key[3] : (cg_slice_t){"", 0};
    mp->n_msg_key = 4;
    mp->msg_key_patient = 1;
    mp->message_id = id.ptr ? id : (cg_slice_t){"", 0};
    if (s->message_id) {
        spec_val_t v;
        mp->spec = s;
        if ((rc = cg_spec_eval_expr(mp, s->message_id, &v)))
            return rc;
        mp->message_id = v.present ? (cg_slice_t){v.s, v.len} : (cg_slice_t){"", 0};
    }
    mp->msg_key[0] = mp->message_id;
    return CG_OK;
}

cg_err_t cg_spec_xml_ready(cg_mapper_t *mp)
{
    if (!mp->xdoc) {
        cg_xml_options_t o;
        cg_xml_options_default(&o);
        if (mp->xml_opts_set)
            o = mp->xml_opts;
        if (!(mp->xdoc = cg_xml_doc_new(&o)))
            return CG_ERR_NOMEM;
    }
    if (!mp->xev && !(mp->xev = cg_xml_eval_new()))
        return CG_ERR_NOMEM;
    return CG_OK;
}

cg_err_t cg_spec_xml_run_specs(cg_mapper_t *mp, size_t *matched)
{
    cg_xml_eval_bind(mp->xev, mp->xdoc);
    const xmlNode *root = cg_xml_doc_root(mp->xdoc);
    mp->run_rule = cg_spec_xml_run_rule;
    mp->path_value = cg_spec_xml_path_value;
    mp->run_rules = NULL;
    mp->anchor_place = NULL;
    cg_err_t rc;
    for (size_t i = 0; root && i < mp->ss->n_specs; i++) {
        const spec_t *s = &mp->ss->specs[i];
        if (s->format->format != CG_INPUT_XML || !document_matches(s, root))
            continue;
        if ((rc = document_id(mp, s, root)) || (rc = cg_spec_try_spec(mp, s, matched)))
            return rc;
    }
    return CG_OK;
}

const char *cg_spec_xml_root_name(const cg_mapper_t *mp)
{
    const xmlNode *root = cg_xml_doc_root(mp->xdoc);
    return root ? (const char *)root->name : NULL;
}

void cg_spec_xml_no_spec(cg_mapper_t *mp)
{
    const xmlNode *root = cg_xml_doc_root(mp->xdoc);
    int n = snprintf(mp->err->text, sizeof(mp->err->text),
                     "no spec takes XML documents with root element <%s>",
                     root ? (const char *)root->name : "?");
    /* the templateIds say what the document is: name them for whoever writes the spec */
    const char *sep = " (templateIds: ";
    for (const xmlNode *c = root ? root->children : NULL; c && n > 0; c = c->next) {
        const xmlChar *r =
            c->type == XML_ELEMENT_NODE && !strcmp((const char *)c->name, "templateId")
                ? attr_value(c, "root")
                : NULL;
        if (!r || (size_t)n >= sizeof(mp->err->text))
            continue;
        n += snprintf(mp->err->text + n, sizeof(mp->err->text) - (size_t)n, "%s%s", sep,
                      (const char *)r);
        sep = " ";
    }
    if (*sep == ' ' && sep[1] == '\0' && (size_t)n < sizeof(mp->err->text))
        snprintf(mp->err->text + n, sizeof(mp->err->text) - (size_t)n, ")");
}

cg_err_t cg_mapper_map_xml(cg_mapper_t *mp, const char *buf, size_t len, const cg_row_t **rows,
                           size_t *n_rows, cg_error_t *err)
{
    *rows = NULL;
    *n_rows = 0;
    mp->quality_done = 0; /* a document that does not decode has no findings */
    mp->last = NULL;
    if (cg_spec_xml_ready(mp))
        return cg_spec_map_error(err, CG_ERR_NOMEM, "decode", "out of memory");
    cg_error_t xe;
    cg_err_t rc = cg_xml_parse(mp->xdoc, buf, len, &xe);
    if (rc)
        return cg_spec_decode_error(err, &xe);
    cg_error_t local;
    cg_spec_begin_message(mp, err, &local, rows, n_rows);
    mp->m = NULL;
    size_t matched = 0;
    if ((rc = cg_spec_xml_run_specs(mp, &matched)))
        return rc;
    /* a spec took it, so the root's name is one a spec names: a bounded label */
    if (cg_spec_select_outcome(mp, matched, cg_spec_xml_root_name(mp))) {
        cg_spec_xml_no_spec(mp);
        return CG_ERR_MAP;
    }
    cg_spec_finish_rows(mp, rows, n_rows);
    return CG_OK;
}
