/*
 * wsclient.h: the WebSocket client core that bench/loadgen.c (raw WebSocket)
 * and bench/sioload.c (Socket.IO over WebSocket) share. Header-only: each
 * program includes it, defines its `struct conn` starting with WS_CONN_FIELDS,
 * then includes wsconn.h (the functions on a connection), and defines the
 * hooks declared below.
 *
 * What it holds: one epoll set, one 256 KiB read buffer for every connection,
 * masked client frames (RFC 6455 section 5.2), an ad-hoc output buffer per
 * connection plus K pre-built copies of one frame sent from a contiguous
 * buffer (one send() carries many), an incremental frame parser that hands
 * payload bytes to the program without copying them, and the HTTP/1.1 101
 * check of the opening handshake (the accept key is not verified: loopback,
 * and SHA-1 would add to every handshake's client-side cost).
 */
#ifndef WSCLIENT_H
#define WSCLIENT_H

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

enum { OP_CONT = 0, OP_TEXT = 1, OP_BINARY = 2, OP_CLOSE = 8, OP_PING = 9, OP_PONG = 10 };

#define RBUF_SIZE (256 * 1024)
#define HS_MAX 8192

/* The fields the shared functions use; first in each program's struct conn. */
#define WS_CONN_FIELDS                                                                     \
    int fd, state, want_out;                                                               \
    char *hs; /* handshake response accumulator (only while waiting for the 101) */       \
    size_t hs_len;                                                                         \
    char *out; /* ad-hoc bytes to send: handshake, pongs, control and program frames */   \
    size_t out_len, out_off, out_cap;                                                      \
    uint64_t rep_pending; /* copies of the pre-built frame still to send */                \
    size_t rep_off;       /* bytes of the current copy already sent */                     \
    unsigned char hdr[14];                                                                 \
    int hdr_len, hdr_need, in_payload, opcode, msg_opcode, fin;                            \
    uint64_t payload_left, msg_len;                                                        \
    unsigned char ctl[125];                                                                \
    int ctl_len

/* The options both programs take, first in each program's `opt` (which adds
 * its own), parsed by common_option(); the defaults are WS_OPT_DEFAULTS. */
#define WS_OPT_FIELDS                                                                      \
    int conns, inflight, open_concurrency;                                                 \
    size_t size;                                                                           \
    double duration, warmup, timeout;                                                      \
    const char *host;                                                                      \
    int port
#define WS_OPT_DEFAULTS                                                                    \
    .conns = 1, .inflight = 32, .open_concurrency = 50, .size = 16, .duration = 5.0,       \
    .warmup = 1.0, .timeout = 60.0, .host = "127.0.0.1", .port = 0
#define WS_LONG_OPTIONS                                                                    \
    {"host", required_argument, 0, 'h'}, {"port", required_argument, 0, 'p'},              \
        {"conns", required_argument, 0, 'n'}, {"inflight", required_argument, 0, 'w'},     \
        {"size", required_argument, 0, 's'}, {"duration", required_argument, 0, 'd'},      \
        {"warmup", required_argument, 0, 'W'}, {"open-concurrency", required_argument, 0, 'o'}, \
        {"timeout", required_argument, 0, 't'}

struct conn;
/* Hooks each program defines. */
static void conn_fail(struct conn *c);                     /* the connection died */
static void on_upgraded(struct conn *c);                   /* the 101 arrived */
static void on_payload(struct conn *c, const unsigned char *p, size_t n); /* data bytes */
static void on_message(struct conn *c);                    /* a whole data message */
static void on_control(struct conn *c);                    /* a whole control frame */
static void handle_event(struct conn *c, uint32_t events); /* epoll readiness */

static int ep;
static unsigned char rbuf[RBUF_SIZE];
static char *repbuf; /* K contiguous copies of the pre-built frame */
static size_t rep_flen, rep_len;
static uint64_t rng = 0x9E3779B97F4A7C15ULL;
static int finished; /* stdin reached EOF (idle modes) */
static uint64_t t_window_start, t_window_end; /* the measured window */
static struct rusage ru_start, ru_end;        /* this process's CPU time at its ends */

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static double tv(struct timeval t) { return (double)t.tv_sec + (double)t.tv_usec / 1e6; }

/* Starts the measured window; prints `say` (the harness reads its CPU samples then). */
static void begin_window(const char *say) {
    getrusage(RUSAGE_SELF, &ru_start);
    t_window_start = now_ns();
    if (say) {
        printf("%s\n", say);
        fflush(stdout);
    }
}

static void end_window(const char *say) {
    t_window_end = now_ns();
    getrusage(RUSAGE_SELF, &ru_end);
    if (say) {
        printf("%s\n", say);
        fflush(stdout);
    }
}

/* Seconds of CPU (user + system) this process used in the window. */
static double window_cpu(void) {
    return tv(ru_end.ru_utime) - tv(ru_start.ru_utime) + tv(ru_end.ru_stime) -
           tv(ru_start.ru_stime);
}

/* Every fatal error is one JSON line on stdout, which the harness reads. */
static void fatal(const char *what, const char *detail) {
    printf("{\"error\": \"%s: %s\"}\n", what, detail);
    fflush(stdout);
    exit(1);
}

static void die(const char *what) { fatal(what, strerror(errno)); }

static uint32_t rand32(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)rng;
}

/* Writes one masked frame (RFC 6455 section 5.2) into dst; returns its length. */
static size_t build_frame(unsigned char *dst, int opcode, const void *payload, size_t n) {
    size_t h = 0;
    dst[h++] = (unsigned char)(0x80 | opcode);
    if (n < 126) {
        dst[h++] = (unsigned char)(0x80 | n);
    } else if (n < 65536) {
        dst[h++] = 0x80 | 126;
        dst[h++] = (unsigned char)(n >> 8);
        dst[h++] = (unsigned char)n;
    } else {
        dst[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--) dst[h++] = (unsigned char)((uint64_t)n >> (8 * i));
    }
    uint32_t key = rand32() | 1;
    unsigned char k[4] = {(unsigned char)(key >> 24), (unsigned char)(key >> 16),
                          (unsigned char)(key >> 8), (unsigned char)key};
    memcpy(dst + h, k, 4);
    h += 4;
    const unsigned char *src = payload;
    for (size_t i = 0; i < n; i++) dst[h + i] = src[i] ^ k[i & 3];
    return h + n;
}

/* SIGPIPE ignored, a fresh seed for the mask keys, the epoll set. */
static void ws_init(void) {
    signal(SIGPIPE, SIG_IGN);
    rng ^= now_ns() ^ ((uint64_t)getpid() << 32);
    if ((ep = epoll_create1(EPOLL_CLOEXEC)) < 0) die("epoll_create1");
}

/* repbuf: k contiguous copies of one frame of flen bytes. */
static void fill_repbuf(const void *frame, size_t flen, size_t k) {
    rep_flen = flen;
    rep_len = k * flen;
    if (!(repbuf = malloc(rep_len))) die("malloc");
    for (size_t i = 0; i < k; i++) memcpy(repbuf + i * flen, frame, flen);
}

#endif /* WSCLIENT_H */
