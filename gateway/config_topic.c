/* config_topic.c - topic names from the config's templates (cg_config.h); a file of its own, so
 * that the plug-ins that name topics depend on nothing else of the config's loader. */
#include "cg_config.h"

#include <stdio.h>
#include <string.h>

void cg_config_topic_name(const char *tmpl, const char *cohort, const char *table, char *out,
                          size_t size)
{
    size_t o = 0;
    for (const char *t = tmpl; *t && o + 1 < size;) {
        const char *sub = NULL;
        size_t skip = 1;
        if (cohort && !strncmp(t, "{cohort}", 8)) {
            sub = cohort;
            skip = 8;
        } else if (table && !strncmp(t, "{table}", 7)) {
            sub = table;
            skip = 7;
        }
        if (sub)
            o += (size_t)snprintf(out + o, size - o, "%s", sub);
        else
            out[o++] = *t;
        t += skip;
        if (o >= size)
            o = size - 1;
    }
    out[o] = '\0';
}
