/*
 * loadgen: the one WebSocket load generator of tether's benchmark suite.
 *
 * One thread, epoll, non-blocking sockets. It speaks just enough RFC 6455 as a
 * client to drive every server the same way: an HTTP/1.1 upgrade (the status
 * must be 101; the accept key is not checked, see below), masked frames out,
 * 7/16/64-bit payload lengths in, pings answered with pongs, no extensions.
 * It must cost less per message than any server it measures, so:
 *
 *   - echo mode pre-builds one masked frame and sends copies of it from a
 *     contiguous buffer (one send() carries many frames);
 *   - received payloads are never copied, only counted (except the <= 125
 *     bytes of a control frame);
 *   - one 256 KiB read buffer is shared by every connection.
 *
 * The mask key of the pre-built frame is random but fixed for the run: servers
 * unmask every frame whatever the key, so their work is the same (RFC 6455
 * section 5.3 asks clients for fresh keys to defeat proxy cache poisoning,
 * which is moot on loopback). The accept key is not verified for the same
 * reason: verifying it would add SHA-1 to the client side of every handshake.
 *
 * Modes (all print one JSON line on stdout at the end):
 *   echo     N connections, W messages of S bytes in flight on each
 *            (--raw: plain TCP, no handshake, no framing: S-byte chunks)
 *   reqresp  N connections, one S-byte message in flight on each; latency
 *   fanout   N receivers + 1 trigger; the trigger sends "fanout:<N>", the
 *            server sends a 64-byte message to every other connection; the
 *            next trigger goes out once all N deliveries arrived
 *   connect  C at a time: connect, handshake, close frame, wait for the
 *            server's close frame, close the socket
 *   idle     open N connections, print "ready", hold them until stdin EOF
 *
 * Timed modes run --warmup seconds, print "start", run --duration seconds,
 * print "stop", then print the JSON. The harness samples the server's CPU time
 * at "start" and "stop"; the JSON has this process's own CPU time over the
 * same window (getrusage), so both CPU% can be shown side by side.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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

enum mode { M_ECHO, M_REQRESP, M_FANOUT, M_CONNECT, M_IDLE };
enum state { S_FREE, S_CONNECTING, S_HANDSHAKE, S_OPEN, S_CLOSING };
enum { OP_CONT = 0, OP_TEXT = 1, OP_BINARY = 2, OP_CLOSE = 8, OP_PING = 9, OP_PONG = 10 };

#define RBUF_SIZE (256 * 1024)
#define HS_MAX 8192
#define FANOUT_SIZE 64

struct conn {
    int fd;
    int state;
    int trigger;          /* fanout: the connection that sends triggers */
    int want_out;         /* EPOLLOUT is registered */
    char *hs;             /* handshake response accumulator (only while in S_HANDSHAKE) */
    size_t hs_len;
    char *out;            /* ad-hoc bytes to send: handshake, pongs, close, reqresp frames */
    size_t out_len, out_off, out_cap;
    uint64_t rep_pending; /* echo: copies of the pre-built frame still to send */
    size_t rep_off;       /* echo: bytes of the current copy already sent */
    unsigned char hdr[14];
    int hdr_len, hdr_need, in_payload;
    uint64_t payload_left, frame_len, msg_len;
    int opcode, fin, masked;
    unsigned char ctl[125];
    int ctl_len;
    uint64_t raw_bytes;   /* --raw: bytes received so far */
    uint64_t t_start;     /* reqresp: send time; connect: connect() time (ns) */
};

static struct {
    int mode, raw, conns, inflight, concurrency, open_concurrency;
    size_t size;
    double duration, warmup, timeout;
    const char *host;
    int port;
    const char *path;
} opt = {M_ECHO, 0, 1, 32, 1, 50, 16, 5.0, 1.0, 60.0, "127.0.0.1", 0, "/"};

static int ep;
static struct conn *conns;
static int nconns;
static unsigned char rbuf[RBUF_SIZE];
static char *repbuf;      /* K contiguous copies of the echo frame */
static size_t rep_flen, rep_len;
static uint64_t rng = 0x9E3779B97F4A7C15ULL;

/* Counters; reset when the measured window starts. */
static uint64_t n_msgs, n_bytes, n_errors, n_timeouts, n_done;
static uint64_t *lat;     /* latencies in ns */
static size_t lat_len, lat_cap;
static int measuring, finished;
static uint64_t t_window_start, t_window_end;
static struct rusage ru_start, ru_end;
static int n_open, n_connecting, n_started;
static uint64_t round_start, round_got;
static int round_sent;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static uint32_t rand32(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)rng;
}

static void die(const char *what) {
    printf("{\"error\": \"%s: %s\"}\n", what, strerror(errno));
    fflush(stdout);
    exit(1);
}

static void record_latency(uint64_t ns) {
    if (lat_len == lat_cap) {
        lat_cap = lat_cap ? lat_cap * 2 : 65536;
        lat = realloc(lat, lat_cap * sizeof *lat);
        if (!lat) die("realloc");
    }
    lat[lat_len++] = ns;
}

static void out_append(struct conn *c, const void *p, size_t n) {
    if (c->out_off == c->out_len) c->out_off = c->out_len = 0;
    if (c->out_len + n > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 512;
        while (cap < c->out_len + n) cap *= 2;
        c->out = realloc(c->out, cap);
        if (!c->out) die("realloc");
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
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

static void queue_frame(struct conn *c, int opcode, const void *payload, size_t n) {
    unsigned char small[14 + 256];
    if (n <= 256) {
        out_append(c, small, build_frame(small, opcode, payload, n));
        return;
    }
    unsigned char *big = malloc(n + 14);
    if (!big) die("malloc");
    out_append(c, big, build_frame(big, opcode, payload, n));
    free(big);
}

static void set_events(struct conn *c, int want_out) {
    if (c->want_out == want_out) return;
    struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) die("epoll_ctl");
    c->want_out = want_out;
}

static void conn_reset(struct conn *c) {
    free(c->hs);
    c->hs = NULL;
    c->hs_len = 0;
    c->out_off = c->out_len = 0;
    c->rep_pending = c->rep_off = 0;
    c->hdr_len = 0;
    c->hdr_need = 2;
    c->in_payload = 0;
    c->msg_len = 0;
    c->raw_bytes = 0;
    c->want_out = 0;
}

static void conn_close(struct conn *c) {
    if (c->fd >= 0) close(c->fd);
    if (c->state == S_OPEN || c->state == S_CLOSING) n_open--;
    if (c->state == S_CONNECTING || c->state == S_HANDSHAKE) n_connecting--;
    c->fd = -1;
    c->state = S_FREE;
    conn_reset(c);
}

static void conn_fail(struct conn *c) {
    n_errors++;
    conn_close(c);
}

/* Sends what is queued: first the rest of a partly sent echo frame, then the
 * ad-hoc buffer, then further echo frames. Returns -1 if the connection died. */
static int conn_flush(struct conn *c) {
    for (;;) {
        const char *p;
        size_t n;
        int rep;
        if (c->rep_off > 0 || (c->out_off == c->out_len && c->rep_pending > 0)) {
            rep = 1;
            p = repbuf + c->rep_off;
            uint64_t left = c->rep_pending * rep_flen - c->rep_off;
            n = rep_len - c->rep_off;
            if (left < n) n = (size_t)left;
        } else if (c->out_off < c->out_len) {
            rep = 0;
            p = c->out + c->out_off;
            n = c->out_len - c->out_off;
        } else {
            set_events(c, 0);
            return 0;
        }
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                set_events(c, 1);
                return 0;
            }
            if (errno == EINTR) continue;
            conn_fail(c);
            return -1;
        }
        if (rep) {
            size_t total = c->rep_off + (size_t)w;
            c->rep_pending -= total / rep_flen;
            c->rep_off = total % rep_flen;
        } else {
            c->out_off += (size_t)w;
        }
    }
}

static int conn_start(struct conn *c) {
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)opt.port)};
    if (inet_pton(AF_INET, opt.host, &sa.sin_addr) != 1) {
        errno = EINVAL;
        die("inet_pton");
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    conn_reset(c);
    c->fd = fd;
    c->t_start = now_ns();
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS) {
        close(fd);
        c->fd = -1;
        n_errors++;
        return -1;
    }
    c->state = S_CONNECTING;
    n_connecting++;
    n_started++;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
    c->want_out = 1;
    return 0;
}

/* Called once a connection can carry messages (after the 101, or at once in --raw). */
static void on_open(struct conn *c) {
    n_connecting--;
    n_open++;
    c->state = S_OPEN;
    if (opt.mode == M_CONNECT) {
        unsigned char code[2] = {0x03, 0xE8}; /* 1000, normal closure */
        queue_frame(c, OP_CLOSE, code, 2);
        c->state = S_CLOSING;
    }
}

static void start_traffic(struct conn *c) {
    if (opt.mode == M_ECHO) {
        c->rep_pending += (uint64_t)opt.inflight;
    } else if (opt.mode == M_REQRESP) {
        c->t_start = now_ns();
        if (opt.raw) {
            out_append(c, repbuf, opt.size);
        } else {
            c->rep_pending = 1;
        }
    }
}

static void send_trigger(struct conn *t) {
    char msg[32];
    int n = snprintf(msg, sizeof msg, "fanout:%d", opt.conns);
    queue_frame(t, OP_TEXT, msg, (size_t)n);
    round_start = now_ns();
    round_got = 0;
    round_sent = 1;
    conn_flush(t);
}

static void window_start(void) {
    n_msgs = n_bytes = n_errors = n_timeouts = n_done = 0;
    lat_len = 0;
    measuring = 1;
    getrusage(RUSAGE_SELF, &ru_start);
    t_window_start = now_ns();
    printf("start\n");
    fflush(stdout);
}

static void on_message(struct conn *c, uint64_t len) {
    if (opt.mode == M_ECHO) {
        n_msgs++;
        n_bytes += len;
        if (len != opt.size) n_errors++;
        c->rep_pending++;
    } else if (opt.mode == M_REQRESP) {
        uint64_t t = now_ns();
        n_msgs++;
        n_bytes += len;
        if (measuring) record_latency(t - c->t_start);
        c->t_start = t;
        c->rep_pending++;
    } else if (opt.mode == M_FANOUT && !c->trigger) {
        n_msgs++;
        n_bytes += len;
        if (len != FANOUT_SIZE) n_errors++;
        round_got++;
    }
}

static void on_control(struct conn *c) {
    if (c->opcode == OP_PING) {
        queue_frame(c, OP_PONG, c->ctl, (size_t)c->ctl_len);
    } else if (c->opcode == OP_CLOSE) {
        if (c->state == S_CLOSING) {
            /* Our close was answered: the connect cycle is complete. Reset the
             * TCP connection instead of a FIN: thousands of cycles per second
             * would otherwise leave tens of thousands of TIME_WAIT sockets on
             * one of the two sides, and new connects start to collide with them
             * (1 s SYN retransmits) once the ephemeral ports wrap around. The
             * server has finished its closing handshake by now. */
            struct linger lin = {.l_onoff = 1, .l_linger = 0};
            setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lin, sizeof lin);
            if (measuring) {
                n_done++;
                record_latency(now_ns() - c->t_start);
            }
            conn_close(c);
        } else {
            conn_fail(c); /* the server closed a connection we were using */
        }
    }
}

/* Incremental frame parser (RFC 6455 section 5.2); payloads are only counted. */
static void feed_frames(struct conn *c, const unsigned char *p, size_t n) {
    while (n > 0 && c->fd >= 0) {
        if (!c->in_payload) {
            size_t take = (size_t)(c->hdr_need - c->hdr_len);
            if (take > n) take = n;
            memcpy(c->hdr + c->hdr_len, p, take);
            c->hdr_len += (int)take;
            p += take;
            n -= take;
            if (c->hdr_len == 2) {
                int len7 = c->hdr[1] & 0x7f;
                c->masked = (c->hdr[1] & 0x80) != 0;
                c->hdr_need = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + (c->masked ? 4 : 0);
            }
            if (c->hdr_len < c->hdr_need) continue;
            int len7 = c->hdr[1] & 0x7f;
            uint64_t len = (uint64_t)len7;
            if (len7 == 126) {
                len = ((uint64_t)c->hdr[2] << 8) | c->hdr[3];
            } else if (len7 == 127) {
                len = 0;
                for (int i = 0; i < 8; i++) len = (len << 8) | c->hdr[2 + i];
            }
            c->fin = (c->hdr[0] & 0x80) != 0;
            c->opcode = c->hdr[0] & 0x0f;
            c->frame_len = len;
            c->payload_left = len;
            c->ctl_len = 0;
            c->hdr_len = 0;
            c->hdr_need = 2;
            if (c->opcode >= 8 && len > 125) {
                conn_fail(c); /* RFC 6455 section 5.5: control frames carry <= 125 bytes */
                return;
            }
            c->in_payload = len > 0;
            if (c->in_payload) continue;
        } else {
            size_t take = c->payload_left < n ? (size_t)c->payload_left : n;
            if (c->opcode >= 8) {
                memcpy(c->ctl + c->ctl_len, p, take);
                c->ctl_len += (int)take;
            }
            c->payload_left -= take;
            p += take;
            n -= take;
            if (c->payload_left > 0) continue;
            c->in_payload = 0;
        }
        /* A whole frame is in. */
        if (c->opcode >= 8) {
            on_control(c);
            continue;
        }
        if (c->opcode != OP_CONT) c->msg_len = 0;
        c->msg_len += c->frame_len;
        if (c->fin) on_message(c, c->msg_len);
    }
}

static void feed_handshake(struct conn *c, const unsigned char *p, size_t n) {
    if (!c->hs) {
        c->hs = malloc(HS_MAX);
        if (!c->hs) die("malloc");
    }
    size_t room = HS_MAX - 1 - c->hs_len;
    size_t take = n < room ? n : room;
    memcpy(c->hs + c->hs_len, p, take);
    c->hs_len += take;
    c->hs[c->hs_len] = 0;
    char *end = strstr(c->hs, "\r\n\r\n");
    if (!end) {
        if (c->hs_len == HS_MAX - 1) conn_fail(c);
        return;
    }
    if (strncmp(c->hs, "HTTP/1.1 101", 12) != 0) {
        conn_fail(c);
        return;
    }
    size_t head = (size_t)(end + 4 - c->hs);
    /* Bytes after the head (already in c->hs) are the first frames. */
    size_t extra_len = c->hs_len - head;
    unsigned char extra[HS_MAX];
    memcpy(extra, c->hs + head, extra_len);
    free(c->hs);
    c->hs = NULL;
    c->hs_len = 0;
    on_open(c);
    start_traffic(c);
    if (extra_len) feed_frames(c, extra, extra_len);
    if (take < n) feed_frames(c, p + take, n - take);
}

static void on_raw_bytes(struct conn *c, size_t n) {
    uint64_t before = c->raw_bytes / opt.size;
    c->raw_bytes += n;
    uint64_t done = c->raw_bytes / opt.size - before;
    n_bytes += n;
    n_msgs += done;
    if (opt.mode == M_ECHO) {
        c->rep_pending += done;
    } else if (done) { /* reqresp */
        uint64_t t = now_ns();
        if (measuring) record_latency(t - c->t_start);
        c->t_start = t;
        out_append(c, repbuf, opt.size);
    }
}

static void on_readable(struct conn *c) {
    ssize_t r = recv(c->fd, rbuf, sizeof rbuf, 0);
    if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        conn_fail(c);
        return;
    }
    if (r < 0) return;
    if (c->state == S_HANDSHAKE) {
        feed_handshake(c, rbuf, (size_t)r);
    } else if (opt.raw) {
        on_raw_bytes(c, (size_t)r);
    } else {
        feed_frames(c, rbuf, (size_t)r);
    }
}

static void on_connected(struct conn *c) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) {
        conn_fail(c);
        return;
    }
    if (opt.raw) {
        on_open(c);
        start_traffic(c);
        return;
    }
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     opt.path, opt.host, opt.port);
    out_append(c, req, (size_t)n);
    c->state = S_HANDSHAKE;
}

static void handle_event(struct conn *c, uint32_t events) {
    if (c->state == S_CONNECTING) {
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
        on_connected(c);
        if (c->fd < 0) return;
    } else if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        on_readable(c);
        if (c->fd < 0) return;
    }
    conn_flush(c);
}

static double seconds(uint64_t ns) { return (double)ns / 1e9; }

static double tv(struct timeval t) { return (double)t.tv_sec + (double)t.tv_usec / 1e6; }

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double percentile_us(double q) {
    if (lat_len == 0) return 0.0;
    size_t i = (size_t)(q * (double)(lat_len - 1) + 0.5);
    return (double)lat[i] / 1e3;
}

static const char *mode_name(void) {
    static const char *names[] = {"echo", "reqresp", "fanout", "connect", "idle"};
    return names[opt.mode];
}

static void report(double open_s) {
    double elapsed = seconds(t_window_end - t_window_start);
    double cpu = tv(ru_end.ru_utime) - tv(ru_start.ru_utime) + tv(ru_end.ru_stime) -
                 tv(ru_start.ru_stime);
    qsort(lat, lat_len, sizeof *lat, cmp_u64);
    uint64_t count = opt.mode == M_CONNECT ? n_done : n_msgs;
    printf("{\"mode\": \"%s\", \"raw\": %s, \"conns\": %d, \"inflight\": %d, \"size\": %zu, "
           "\"concurrency\": %d, \"elapsed\": %.6f, \"count\": %llu, \"rate\": %.3f, "
           "\"bytes\": %llu, \"mb_per_s\": %.3f, \"p50_us\": %.1f, \"p99_us\": %.1f, "
           "\"errors\": %llu, \"timeouts\": %llu, \"open\": %d, \"open_s\": %.3f, "
           "\"cpu_s\": %.6f, \"cpu_pct\": %.1f}\n",
           mode_name(), opt.raw ? "true" : "false", opt.conns, opt.inflight, opt.size,
           opt.concurrency, elapsed, (unsigned long long)count,
           elapsed > 0 ? (double)count / elapsed : 0.0, (unsigned long long)n_bytes,
           elapsed > 0 ? (double)n_bytes / elapsed / 1e6 : 0.0, percentile_us(0.50),
           percentile_us(0.99), (unsigned long long)n_errors, (unsigned long long)n_timeouts,
           n_open, open_s, cpu, elapsed > 0 ? 100.0 * cpu / elapsed : 0.0);
    fflush(stdout);
}

/* Opens up to opt.open_concurrency connections at a time until nconns are open. */
static void fill_connections(int target) {
    for (int i = 0; i < nconns && n_started < target; i++) {
        if (n_connecting >= opt.open_concurrency) break;
        if (conns[i].state == S_FREE && conns[i].fd < 0 && !conns[i].t_start) conn_start(&conns[i]);
    }
}

static void poll_once(int timeout_ms) {
    struct epoll_event evs[512];
    int n = epoll_wait(ep, evs, 512, timeout_ms);
    if (n < 0 && errno != EINTR) die("epoll_wait");
    for (int i = 0; i < n; i++) {
        if (evs[i].data.ptr == NULL) {
            char b[256];
            ssize_t r = read(0, b, sizeof b);
            if (r <= 0) finished = 1;
            continue;
        }
        handle_event(evs[i].data.ptr, evs[i].events);
    }
}

/* Opens every connection; returns the seconds it took. */
static double open_all(void) {
    uint64_t t0 = now_ns(), deadline = t0 + (uint64_t)(opt.timeout * 1e9);
    int target = nconns;
    while (n_open < target) {
        fill_connections(target);
        if (n_connecting == 0 && n_started >= target) break; /* some failed */
        if (now_ns() > deadline) break;
        poll_once(10);
    }
    if (n_open < target) {
        printf("{\"error\": \"opened %d of %d connections (%llu errors)\"}\n", n_open, target,
               (unsigned long long)n_errors);
        fflush(stdout);
        exit(1);
    }
    return seconds(now_ns() - t0);
}

static void run_connect(void) {
    uint64_t t0 = now_ns();
    uint64_t warm_end = t0 + (uint64_t)(opt.warmup * 1e9);
    uint64_t end = warm_end + (uint64_t)(opt.duration * 1e9);
    int started_window = 0;
    for (;;) {
        uint64_t t = now_ns();
        if (!started_window && t >= warm_end) {
            window_start();
            started_window = 1;
        }
        if (t >= end) break;
        for (int i = 0; i < nconns; i++) {
            if (conns[i].state == S_FREE) conn_start(&conns[i]);
        }
        poll_once(5);
    }
    t_window_end = now_ns();
    getrusage(RUSAGE_SELF, &ru_end);
    printf("stop\n");
    fflush(stdout);
    report(0.0);
}

static void run_timed(void) {
    double open_s = open_all();
    uint64_t t0 = now_ns();
    uint64_t warm_end = t0 + (uint64_t)(opt.warmup * 1e9);
    uint64_t end = warm_end + (uint64_t)(opt.duration * 1e9);
    struct conn *trigger = opt.mode == M_FANOUT ? &conns[nconns - 1] : NULL;
    if (trigger) {
        /* Let every server finish registering the last connections. */
        uint64_t settle = now_ns() + 100000000ULL;
        while (now_ns() < settle) poll_once(5);
    }
    for (int i = 0; i < nconns; i++) conn_flush(&conns[i]);
    int started_window = 0;
    for (;;) {
        uint64_t t = now_ns();
        if (trigger) {
            int round_over = !round_sent || round_got >= (uint64_t)opt.conns;
            if (!round_over && t - round_start > 1000000000ULL) {
                n_timeouts++;
                round_over = 1;
            }
            if (round_over) {
                if (!started_window && t >= warm_end) {
                    window_start();
                    started_window = 1;
                    t = now_ns();
                    end = t + (uint64_t)(opt.duration * 1e9);
                }
                if (started_window && t >= end) break;
                if (trigger->fd < 0) break;
                send_trigger(trigger);
            }
        } else {
            if (!started_window && t >= warm_end) {
                window_start();
                started_window = 1;
            }
            if (started_window && t >= end) break;
        }
        if (n_open == 0) break;
        poll_once(1);
    }
    if (!started_window) {
        printf("{\"error\": \"every connection failed before the measured window (%llu errors)\"}\n",
               (unsigned long long)n_errors);
        fflush(stdout);
        exit(1);
    }
    t_window_end = now_ns();
    getrusage(RUSAGE_SELF, &ru_end);
    printf("stop\n");
    fflush(stdout);
    report(open_s);
}

static void run_idle(void) {
    double open_s = open_all();
    printf("ready\n");
    fflush(stdout);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, 0, &ev) < 0) die("epoll_ctl stdin");
    t_window_start = now_ns();
    getrusage(RUSAGE_SELF, &ru_start);
    while (!finished) poll_once(100);
    t_window_end = now_ns();
    getrusage(RUSAGE_SELF, &ru_end);
    report(open_s);
}

static void usage(void) {
    fprintf(stderr,
            "usage: loadgen MODE --port P [--host H] [--path /] [--conns N] [--inflight W]\n"
            "               [--size S] [--duration D] [--warmup D] [--concurrency C]\n"
            "               [--open-concurrency C] [--timeout S] [--raw]\n"
            "MODE: echo | reqresp | fanout | connect | idle\n");
    exit(2);
}

static void parse_args(int argc, char **argv) {
    static struct option longopts[] = {
        {"host", required_argument, 0, 'h'},     {"port", required_argument, 0, 'p'},
        {"path", required_argument, 0, 'P'},     {"conns", required_argument, 0, 'n'},
        {"inflight", required_argument, 0, 'w'}, {"size", required_argument, 0, 's'},
        {"duration", required_argument, 0, 'd'}, {"warmup", required_argument, 0, 'W'},
        {"concurrency", required_argument, 0, 'c'},
        {"open-concurrency", required_argument, 0, 'o'},
        {"timeout", required_argument, 0, 't'},  {"raw", no_argument, 0, 'r'},
        {0, 0, 0, 0}};
    if (argc < 2) usage();
    const char *m = argv[1];
    if (!strcmp(m, "echo")) opt.mode = M_ECHO;
    else if (!strcmp(m, "reqresp")) opt.mode = M_REQRESP;
    else if (!strcmp(m, "fanout")) opt.mode = M_FANOUT;
    else if (!strcmp(m, "connect")) opt.mode = M_CONNECT;
    else if (!strcmp(m, "idle")) opt.mode = M_IDLE;
    else usage();
    optind = 2;
    int ch;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (ch) {
        case 'h': opt.host = optarg; break;
        case 'p': opt.port = atoi(optarg); break;
        case 'P': opt.path = optarg; break;
        case 'n': opt.conns = atoi(optarg); break;
        case 'w': opt.inflight = atoi(optarg); break;
        case 's': opt.size = (size_t)strtoull(optarg, NULL, 10); break;
        case 'd': opt.duration = atof(optarg); break;
        case 'W': opt.warmup = atof(optarg); break;
        case 'c': opt.concurrency = atoi(optarg); break;
        case 'o': opt.open_concurrency = atoi(optarg); break;
        case 't': opt.timeout = atof(optarg); break;
        case 'r': opt.raw = 1; break;
        default: usage();
        }
    }
    if (opt.port <= 0 || opt.conns < 1 || opt.inflight < 1 || opt.size < 1 ||
        opt.concurrency < 1 || opt.open_concurrency < 1)
        usage();
    if (opt.raw && opt.mode != M_ECHO && opt.mode != M_REQRESP) usage();
}

/* Builds repbuf: the echo/reqresp frame (or raw chunk), copied K times. */
static void build_repbuf(void) {
    size_t size = opt.mode == M_REQRESP || opt.mode == M_ECHO ? opt.size : 1;
    unsigned char *payload = malloc(size);
    if (!payload) die("malloc");
    memset(payload, 'x', size);
    unsigned char *one = malloc(size + 14);
    if (!one) die("malloc");
    if (opt.raw) {
        memcpy(one, payload, size);
        rep_flen = size;
    } else {
        rep_flen = build_frame(one, OP_BINARY, payload, size);
    }
    size_t k = 65536 / rep_flen;
    if (k < 1) k = 1;
    if (opt.mode == M_ECHO && k > (size_t)opt.inflight) k = (size_t)opt.inflight;
    if (opt.mode != M_ECHO) k = 1;
    rep_len = k * rep_flen;
    repbuf = malloc(rep_len);
    if (!repbuf) die("malloc");
    for (size_t i = 0; i < k; i++) memcpy(repbuf + i * rep_flen, one, rep_flen);
    free(one);
    free(payload);
}

int main(int argc, char **argv) {
    parse_args(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    rng ^= (uint64_t)now_ns() ^ ((uint64_t)getpid() << 32);
    build_repbuf();
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1");
    if (opt.mode == M_CONNECT) {
        nconns = opt.concurrency;
    } else {
        nconns = opt.conns + (opt.mode == M_FANOUT ? 1 : 0);
    }
    conns = calloc((size_t)nconns, sizeof *conns);
    if (!conns) die("calloc");
    for (int i = 0; i < nconns; i++) {
        conns[i].fd = -1;
        conns[i].hdr_need = 2;
    }
    if (opt.mode == M_FANOUT) conns[nconns - 1].trigger = 1;
    switch (opt.mode) {
    case M_CONNECT: run_connect(); break;
    case M_IDLE: run_idle(); break;
    default: run_timed(); break;
    }
    return 0;
}
