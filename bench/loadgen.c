/*
 * loadgen: the one WebSocket load generator of tether's benchmark suite.
 * Its WebSocket client core (frames, output buffers, parser, handshake, epoll
 * step) is wsclient.h and wsconn.h, shared with sioload.c (Socket.IO).
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
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>

#include "wsclient.h"

enum mode { M_ECHO, M_REQRESP, M_FANOUT, M_CONNECT, M_IDLE };
enum state { S_FREE, S_CONNECTING, S_HANDSHAKE, S_OPEN, S_CLOSING };

#define FANOUT_SIZE 64

struct conn {
    WS_CONN_FIELDS;
    int trigger;          /* fanout: the connection that sends triggers */
    uint64_t raw_bytes;   /* --raw: bytes received so far */
    uint64_t t_start;     /* reqresp: send time; connect: connect() time (ns) */
};

static struct {
    WS_OPT_FIELDS;
    int mode, raw, concurrency;
    const char *path;
} opt = {WS_OPT_DEFAULTS, .mode = M_ECHO, .raw = 0, .concurrency = 1, .path = "/"};

#include "wsconn.h"


static struct conn *conns;
static int nconns;

/* Counters; reset when the measured window starts. */
static uint64_t n_msgs, n_bytes, n_errors, n_timeouts, n_done;
static uint64_t *lat;     /* latencies in ns */
static size_t lat_len, lat_cap;
static int measuring;
static int n_open, n_connecting, n_started;
static uint64_t round_start, round_got;
static int round_sent;

static void record_latency(uint64_t ns) {
    if (lat_len == lat_cap) {
        lat_cap = lat_cap ? lat_cap * 2 : 65536;
        lat = realloc(lat, lat_cap * sizeof *lat);
        if (!lat) die("realloc");
    }
    lat[lat_len++] = ns;
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
    begin_window("start");
}

static void on_message(struct conn *c) {
    uint64_t len = c->msg_len;
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

static void on_payload(struct conn *c, const unsigned char *p, size_t n) {
    (void)c, (void)p, (void)n; /* payloads are only counted */
}

/* The 101 arrived: the connection can carry messages. */
static void on_upgraded(struct conn *c) {
    on_open(c);
    start_traffic(c);
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
    if (connect_failed(c)) return;
    if (opt.raw) {
        on_open(c);
        start_traffic(c);
        return;
    }
    queue_upgrade(c, opt.path, opt.host, opt.port);
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
    double cpu = window_cpu();
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
    end_window("stop");
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
    end_window("stop");
    report(open_s);
}

static void run_idle(void) {
    double open_s = open_all();
    hold_until_eof();
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
    static struct option longopts[] = {WS_LONG_OPTIONS,
                                       {"path", required_argument, 0, 'P'},
                                       {"concurrency", required_argument, 0, 'c'},
                                       {"raw", no_argument, 0, 'r'},
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
        if (common_option(ch)) continue;
        switch (ch) {
        case 'P': opt.path = optarg; break;
        case 'c': opt.concurrency = atoi(optarg); break;
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
    fill_repbuf(one, rep_flen, k);
    free(one);
    free(payload);
}

int main(int argc, char **argv) {
    parse_args(argc, argv);
    ws_init();
    build_repbuf();
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
