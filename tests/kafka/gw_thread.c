/* gw_thread.c - the in-process gateway thread of gw_thread.h. */
#include "gw_thread.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <unistd.h>

static void *run(void *arg)
{
    gw_thread_t *t = arg;
    t->rc = cg_gateway_run(t->gw, t->err, sizeof(t->err));
    return NULL;
}

void gw_thread_start(gw_thread_t *t)
{
    assert_int_equal(pthread_create(&t->th, NULL, run, t), 0);
}

void gw_thread_stop(gw_thread_t *t)
{
    cg_gateway_stop(t->gw);
    pthread_join(t->th, NULL);
}

void gw_thread_reload(gw_thread_t *t, uint64_t want_failures)
{
    cg_gateway_stats_t st;
    cg_gateway_get_stats(t->gw, &st);
    uint64_t before = st.reloads;
    cg_gateway_reload(t->gw);
    for (int i = 0; i < 300 && st.reloads == before; i++) {
        usleep(100000);
        cg_gateway_get_stats(t->gw, &st);
    }
    assert_int_equal(st.reloads, before + 1);
    assert_int_equal(st.reload_failures, want_failures);
}
