/*
 * sioload: a Socket.IO load client in C, for bench/realtime.py.
 *
 * bench/loadgen.c drives raw WebSocket servers; this one speaks Socket.IO v5
 * over Engine.IO v4's WebSocket transport (no long-polling first: the client
 * asks for transport=websocket, as socket.io-client does with
 * transports: ["websocket"]), so that one C process can drive tether, socket.io
 * on Node and python-socketio alike and cost far less per event than any of
 * them. Over that transport every Engine.IO packet is one text frame:
 *
 *   server "0{...}"  Engine.IO open           client "40"        Socket.IO CONNECT (namespace /)
 *   server "40{...}" CONNECT accepted         client "42[...]"   EVENT
 *   server "2"       ping                     client "3"         pong
 *
 * One thread, epoll, non-blocking sockets, no extensions offered (so no
 * permessage-deflate, whatever the server's default). Sent events are copies
 * of one pre-built masked frame (one send() carries many); received messages
 * are only classified by their first bytes and counted, never copied whole.
 * The mask key is fixed for the run (loopback: RFC 6455 section 5.3's reason
 * for fresh keys does not apply) and the 101's accept key is not checked.
 *
 * Modes (each prints one JSON line on stdout at the end):
 *   echo    N connections, W events in flight on each: 42["echo","<S chars>"];
 *           the server emits "echo" back with the same argument, and each
 *           event received sends the next one.
 *   fanout  N receivers, each sends 42["join"] once and waits for "joined";
 *           one more connection (the trigger) sends 42["fanout","<S chars>"]
 *           and the server emits "msg" with it to the room of N. At most R
 *           rounds are in flight (a round is done when N more deliveries came).
 *   idle    open N connections up to the Socket.IO CONNECT, print "ready",
 *           answer pings until stdin reaches EOF.
 *
 * Timed modes open every connection, run --warmup seconds, print "start",
 * run --duration seconds, print "stop", then print the JSON (with this
 * process's own CPU time over the window, from getrusage).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>

#include "wsclient.h"

enum mode { M_ECHO, M_FANOUT, M_IDLE };
static const char *const MODE_NAMES[] = {"echo", "fanout", "idle"};
/* After the TCP connect: the 101, the Engine.IO open packet, the Socket.IO
 * CONNECT answer, the "joined" event (fan-out receivers), then ready. */
enum state { S_FREE, S_CONNECTING, S_HANDSHAKE, S_EIO_OPEN, S_SIO_CONNECT, S_JOINING, S_READY };

#define PREFIX 16 /* bytes of each message kept to classify it */
#define STALL_NS 2000000000ULL

struct conn {
    WS_CONN_FIELDS;
    int trigger;
    char pre[PREFIX];
};

static struct {
    WS_OPT_FIELDS;
    int mode, rounds;
} opt = {WS_OPT_DEFAULTS, .mode = M_ECHO, .rounds = 4};

#include "wsconn.h"


static const char PATH[] = "/socket.io/?EIO=4&transport=websocket";
static int nconns;
static struct conn *conns;
static char *event; /* the trigger's fan-out event */
static size_t event_len, expect_len; /* expect_len: the payload of an echo or a delivery */

static uint64_t n_msgs, n_bytes, n_errors, n_unexpected;
static int measuring, n_ready, n_started, n_connecting;
static uint64_t last_progress;
static uint64_t fan_sent, fan_got; /* since the start, not reset with the window */

static void conn_fail(struct conn *c) {
    n_errors++;
    if (c->fd >= 0) close(c->fd);
    if (c->state == S_READY) n_ready--;
    else if (c->state != S_FREE) n_connecting--;
    c->fd = -1;
    c->state = S_FREE;
}

static void conn_start(struct conn *c) {
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)opt.port)};
    if (inet_pton(AF_INET, opt.host, &sa.sin_addr) != 1) fatal("inet_pton", opt.host);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    n_started++;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS) {
        close(fd);
        n_errors++;
        return;
    }
    c->fd = fd;
    c->state = S_CONNECTING;
    c->hdr_need = 2;
    n_connecting++;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
    c->want_out = 1;
}

static void on_ready(struct conn *c) {
    c->state = S_READY;
    n_connecting--;
    n_ready++;
    if (opt.mode == M_ECHO) c->rep_pending += (uint64_t)opt.inflight;
}

static int starts(const struct conn *c, const char *prefix) {
    size_t n = strlen(prefix);
    return c->msg_len >= n && memcmp(c->pre, prefix, n) == 0;
}

/* A whole text message (Engine.IO packet) arrived: only its first bytes are in c->pre. */
static void on_packet(struct conn *c) {
    if (c->msg_len == 1 && c->pre[0] == '2') { /* Engine.IO ping: pong */
        queue_frame(c, OP_TEXT, "3", 1);
        return;
    }
    switch (c->state) {
    case S_EIO_OPEN:
        if (!starts(c, "0{")) break;
        queue_frame(c, OP_TEXT, "40", 2);
        c->state = S_SIO_CONNECT;
        return;
    case S_SIO_CONNECT:
        if (!starts(c, "40")) break;
        if (opt.mode == M_FANOUT && !c->trigger) {
            queue_frame(c, OP_TEXT, "42[\"join\"]", 10);
            c->state = S_JOINING;
        } else {
            on_ready(c);
        }
        return;
    case S_JOINING:
        if (!starts(c, "42[\"joined\"")) break;
        on_ready(c);
        return;
    case S_READY:
        if (!starts(c, "42[")) break;
        n_msgs++;
        n_bytes += c->msg_len;
        if (c->msg_len != expect_len) n_errors++;
        if (opt.mode == M_ECHO) c->rep_pending++;
        else if (opt.mode == M_FANOUT) fan_got++;
        last_progress = now_ns();
        return;
    default:
        break;
    }
    /* Anything else (a Socket.IO DISCONNECT "41", an Engine.IO close "1", a
     * CONNECT_ERROR "44"...) ends the connection: the server gave up on it. */
    n_unexpected++;
    conn_fail(c);
}

static void on_control(struct conn *c) {
    if (c->opcode == OP_PING) queue_frame(c, OP_PONG, c->ctl, (size_t)c->ctl_len);
    else if (c->opcode == OP_CLOSE) conn_fail(c);
}

static void on_payload(struct conn *c, const unsigned char *p, size_t n) {
    if (c->msg_len < PREFIX) {
        size_t keep = PREFIX - (size_t)c->msg_len;
        memcpy(c->pre + c->msg_len, p, n < keep ? n : keep);
    }
}

static void on_message(struct conn *c) {
    if (c->msg_opcode != OP_TEXT) { /* no binary attachments in these workloads */
        n_unexpected++;
        conn_fail(c);
        return;
    }
    on_packet(c);
}

static void on_upgraded(struct conn *c) { c->state = S_EIO_OPEN; }

static void handle_event(struct conn *c, uint32_t events) {
    if (c->state == S_CONNECTING) {
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
        if (connect_failed(c)) return;
        queue_upgrade(c, PATH, opt.host, opt.port);
        c->state = S_HANDSHAKE;
    } else if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        ssize_t r = recv(c->fd, rbuf, sizeof rbuf, 0);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            conn_fail(c);
            return;
        }
        if (r > 0 && c->state == S_HANDSHAKE) feed_handshake(c, rbuf, (size_t)r);
        else if (r > 0) feed_frames(c, rbuf, (size_t)r);
    }
    conn_flush(c);
}

/* Opens every connection, at most opt.open_concurrency at a time, up to ready. */
static double open_all(void) {
    uint64_t t0 = now_ns(), deadline = t0 + (uint64_t)(opt.timeout * 1e9);
    while (n_ready < nconns) {
        for (int i = n_started; i < nconns && n_connecting < opt.open_concurrency; i++)
            conn_start(&conns[i]);
        if (n_connecting == 0 && n_started >= nconns) break; /* some failed */
        if (now_ns() > deadline) break;
        poll_once(10);
    }
    if (n_ready < nconns) {
        char detail[160];
        snprintf(detail, sizeof detail, "%d of %d ready (%llu errors, %llu unexpected packets)",
                 n_ready, nconns, (unsigned long long)n_errors, (unsigned long long)n_unexpected);
        fatal("open", detail);
    }
    return (double)(now_ns() - t0) / 1e9;
}

static void report(double open_s) {
    double elapsed = (double)(t_window_end - t_window_start) / 1e9;
    double cpu = window_cpu();
    printf("{\"mode\": \"%s\", \"conns\": %d, \"inflight\": %d, \"rounds\": %d, \"size\": %zu, "
           "\"elapsed\": %.6f, \"count\": %llu, \"rate\": %.3f, \"bytes\": %llu, "
           "\"errors\": %llu, \"unexpected\": %llu, \"ready\": %d, \"open_s\": %.3f, "
           "\"cpu_s\": %.6f, \"cpu_pct\": %.1f}\n",
           MODE_NAMES[opt.mode], opt.conns, opt.inflight, opt.rounds, opt.size, elapsed,
           (unsigned long long)n_msgs, elapsed > 0 ? (double)n_msgs / elapsed : 0.0,
           (unsigned long long)n_bytes, (unsigned long long)n_errors,
           (unsigned long long)n_unexpected, n_ready, open_s, cpu,
           elapsed > 0 ? 100.0 * cpu / elapsed : 0.0);
    fflush(stdout);
}

/* Fan-out: sends triggers while fewer than opt.rounds rounds are incomplete. */
static void pump_triggers(struct conn *t) {
    uint64_t n = (uint64_t)opt.conns;
    while (t->fd >= 0 && fan_sent - fan_got / n < (uint64_t)opt.rounds) {
        if (fan_sent * n == fan_got) last_progress = now_ns(); /* nothing was in flight */
        out_append(t, event, event_len);
        fan_sent++;
    }
    conn_flush(t);
}

/* The timed modes: warm-up, then the measured window between "start" and "stop". */
static void run_timed(void) {
    struct conn *trigger = opt.mode == M_FANOUT ? &conns[nconns - 1] : NULL;
    for (int i = 0; i < nconns; i++) conn_flush(&conns[i]);
    uint64_t t0 = now_ns(), warm_end = t0 + (uint64_t)(opt.warmup * 1e9);
    uint64_t end = warm_end + (uint64_t)(opt.duration * 1e9);
    last_progress = t0;
    while (!measuring || now_ns() < end) {
        uint64_t t = now_ns();
        if (!measuring && t >= warm_end) {
            n_msgs = n_bytes = n_errors = n_unexpected = 0;
            measuring = 1;
            begin_window("start");
        }
        if (trigger) pump_triggers(trigger);
        if (n_ready < nconns) fatal("run", "the server closed a connection");
        if (now_ns() - last_progress > STALL_NS) fatal("run", "no event for 2 s: the server stalled");
        poll_once(1);
    }
    end_window("stop");
}

static void usage(void) {
    fprintf(stderr,
            "usage: sioload MODE --port P [--host H] [--conns N] [--inflight W] [--rounds R]\n"
            "               [--size S] [--duration D] [--warmup D] [--open-concurrency C]\n"
            "               [--timeout S]\n"
            "MODE: echo | fanout | idle\n");
    exit(2);
}

static void parse_args(int argc, char **argv) {
    static struct option longopts[] = {
        WS_LONG_OPTIONS, {"rounds", required_argument, 0, 'r'}, {0, 0, 0, 0}};
    if (argc < 2) usage();
    opt.mode = -1;
    for (int m = M_ECHO; m <= M_IDLE; m++)
        if (!strcmp(argv[1], MODE_NAMES[m])) opt.mode = m;
    if (opt.mode < 0) usage();
    optind = 2;
    for (int ch; (ch = getopt_long(argc, argv, "", longopts, NULL)) != -1;) {
        if (common_option(ch)) continue;
        if (ch != 'r') usage();
        opt.rounds = atoi(optarg); /* --rounds */
    }
    if (opt.port <= 0 || opt.conns < 1 || opt.inflight < 1 || opt.rounds < 1 || opt.size < 1 ||
        opt.size > 100000 || opt.open_concurrency < 1)
        usage();
}

/* The events sent (the echo frame copied K times, the trigger's frame) and the
 * payload length of what comes back: 42["echo","x..."] or 42["msg","x..."]. */
static void build_events(void) {
    char *arg = malloc(opt.size + 1), *text = malloc(opt.size + 32);
    if (!arg || !text) die("malloc");
    memset(arg, 'x', opt.size);
    arg[opt.size] = 0;
    int n = snprintf(text, opt.size + 32, "42[\"%s\",\"%s\"]",
                     opt.mode == M_FANOUT ? "fanout" : "echo", arg);
    expect_len = (size_t)n - (opt.mode == M_FANOUT ? strlen("fanout") - strlen("msg") : 0);
    event = malloc((size_t)n + 14);
    if (!event) die("malloc");
    event_len = build_frame((unsigned char *)event, OP_TEXT, text, (size_t)n);
    fill_repbuf(event, event_len, opt.mode == M_ECHO ? (size_t)opt.inflight : 1);
    free(arg);
    free(text);
}

int main(int argc, char **argv) {
    parse_args(argc, argv);
    ws_init();
    build_events();
    nconns = opt.conns + (opt.mode == M_FANOUT ? 1 : 0);
    if (!(conns = calloc((size_t)nconns, sizeof *conns))) die("calloc");
    for (int i = 0; i < nconns; i++) conns[i].fd = -1;
    if (opt.mode == M_FANOUT) conns[nconns - 1].trigger = 1;
    double open_s = open_all();
    if (opt.mode == M_IDLE) hold_until_eof();
    else run_timed();
    report(open_s);
    return 0;
}
