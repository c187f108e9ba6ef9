/* mllp_test_util.h - an in-process MLLP listener (`cohortgate listen`: the engine in
 * pass-through mode with the MLLP source and the Kafka sink) and a small MLLP client, for the
 * tests that talk to the listener against a real broker. */
#ifndef CG_MLLP_TEST_UTIL_H
#define CG_MLLP_TEST_UTIL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "cg_config.h"
#include "cg_gateway.h"

/* The listener's limits that the tests' hostile peers run into */
#define MT_FRAME_LIMIT  (1 << 20)
#define MT_READ_TIMEOUT 1000
#define MT_IDLE_TIMEOUT 1500

typedef struct listener {
    cg_config_t *cfg;
    cg_gateway_t *gw;
    pthread_t th;
    cg_err_t rc;
    int port;
    char topic[128];
} mt_listener_t;

int64_t mt_now_ms(void);
int mt_free_port(void);
/* A connection to 127.0.0.1:port, or -1. */
int mt_connect(int port);
/* Starts a listener on a free port writing to a fresh topic (created when bootstrap is the test
 * broker's); extra_listen and extra_kafka are JSON members added to "listen" and "kafka". */
void mt_listener_start(mt_listener_t *l, const char *bootstrap, const char *extra_listen,
                       const char *extra_kafka);
void mt_listener_stop(mt_listener_t *l);
int mt_send_frame(int fd, const char *msg, size_t len);
/* Reads one framed ACK into buf (without framing) within timeout_ms; its length, or -1 on a
 * timeout, -2 when the listener closed the connection. */
int mt_read_ack(int fd, char *buf, size_t size, int timeout_ms);
/* Field n (>= 3) of the first segment seg of an HL7 message, split on its MSH-1 by hand. */
void mt_field_of(const char *msg, size_t len, const char *seg, int n, char *out, size_t size);
/* An ADT^A08 with MSH-10 ctrl and patient name. */
size_t mt_make_adt(char *buf, size_t size, const char *ctrl, const char *name);
/* 1 when the listener closes fd within ms. */
int mt_closed_within(int fd, int ms);
/* Sends one ADT on fd; its MSA-1 into code ("" when no ACK came within 5 s). */
void mt_send_one(int fd, const char *ctrl, char *code, size_t size);

#endif
