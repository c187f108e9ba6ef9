/* mllp_frame.c - MLLP framing (cg_mllp.h): a byte-at-a-time state machine over whatever a read()
 * returned, so a frame may arrive in any number of pieces and pieces may hold several frames. */
#include "cg_mllp.h"

#include <string.h>

/* AFTER_END: a frame was handed out and its CR has not come yet; DONE: it has */
enum { OUTSIDE = 0, INSIDE, AFTER_END, DONE };

void cg_mllp_framer_init(cg_mllp_framer_t *f, size_t max_bytes)
{
    memset(f, 0, sizeof(*f));
    f->max_bytes = max_bytes;
    cg_buf_init(&f->frame);
}

void cg_mllp_framer_free(cg_mllp_framer_t *f)
{
    cg_buf_free(&f->frame);
}

int cg_mllp_framer_in_frame(const cg_mllp_framer_t *f)
{
    return f->state == INSIDE;
}

cg_mllp_event_t cg_mllp_framer_feed(cg_mllp_framer_t *f, const char *buf, size_t len, size_t *used)
{
    size_t i = 0;
    if (f->state == AFTER_END || f->state == DONE) { /* the last call handed out a frame */
        if (f->state == AFTER_END && len && buf[0] == CG_MLLP_CR) /* its CR came in this piece */
            i++;
        cg_buf_reset(&f->frame);
        f->state = OUTSIDE;
    }
    while (i < len) {
        if (f->state == OUTSIDE) {
            /* garbage before a start byte: skipped in one go, counted */
            const char *sb = memchr(buf + i, CG_MLLP_SB, len - i);
            size_t skip = sb ? (size_t)(sb - (buf + i)) : len - i;
            f->junk += skip;
            i += skip;
            if (!sb)
                break;
            i++;
            f->state = INSIDE;
            continue;
        }
        /* inside: copy up to the next end or start byte (two memchr: a byte loop over every
         * message was the listener's costliest own code) */
        const char *eb = memchr(buf + i, CG_MLLP_EB, len - i);
        size_t n = eb ? (size_t)(eb - (buf + i)) : len - i;
        const char *sb = memchr(buf + i, CG_MLLP_SB, n);
        if (sb)
            n = (size_t)(sb - (buf + i));
        if (f->frame.len + n > f->max_bytes) {
            *used = i;
            return CG_MLLP_TOO_BIG;
        }
        if (n && cg_buf_append(&f->frame, buf + i, n) != CG_OK) {
            *used = i;
            return CG_MLLP_TOO_BIG; /* out of memory: the same remedy, drop the peer */
        }
        i += n;
        if (i == len)
            break;
        if (buf[i] == CG_MLLP_SB) { /* a new frame before this one ended: it is abandoned */
            f->junk += f->frame.len + 1;
            cg_buf_reset(&f->frame);
            i++;
            continue;
        }
        /* the end byte; its CR is taken now when it is here, else by the next call */
        i++;
        f->state = AFTER_END;
        if (i < len && buf[i] == CG_MLLP_CR) {
            i++;
            f->state = DONE;
        }
        f->frames++;
        *used = i;
        return CG_MLLP_FRAME;
    }
    *used = len;
    return CG_MLLP_MORE;
}
