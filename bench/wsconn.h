/*
 * wsconn.h: wsclient.h's functions on a connection (output, frame parser,
 * handshake, the epoll loop step). Included once, after the program's
 * `struct conn` (WS_CONN_FIELDS first) and its `opt` (WS_OPT_FIELDS first)
 * are complete.
 */
#ifndef WSCONN_H
#define WSCONN_H

#include <getopt.h>

#include "wsclient.h"

/* Sets the WS_LONG_OPTIONS option `ch` from optarg; returns 0 if `ch` is not one. */
static int common_option(int ch) {
    switch (ch) {
    case 'h': opt.host = optarg; break;
    case 'p': opt.port = atoi(optarg); break;
    case 'n': opt.conns = atoi(optarg); break;
    case 'w': opt.inflight = atoi(optarg); break;
    case 's': opt.size = (size_t)strtoull(optarg, NULL, 10); break;
    case 'd': opt.duration = atof(optarg); break;
    case 'W': opt.warmup = atof(optarg); break;
    case 'o': opt.open_concurrency = atoi(optarg); break;
    case 't': opt.timeout = atof(optarg); break;
    default: return 0;
    }
    return 1;
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

/* Sends what is queued: first the rest of a partly sent pre-built frame, then
 * the ad-hoc buffer, then further copies. Returns -1 if the connection died. */
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

/* Reads one frame header byte by byte as it comes; returns 1 once it is whole. */
static int parse_header(struct conn *c, const unsigned char **p, size_t *n) {
    size_t take = (size_t)(c->hdr_need - c->hdr_len);
    if (take > *n) take = *n;
    memcpy(c->hdr + c->hdr_len, *p, take);
    c->hdr_len += (int)take;
    *p += take;
    *n -= take;
    if (c->hdr_len == 2) {
        int len7 = c->hdr[1] & 0x7f;
        c->hdr_need = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + (c->hdr[1] & 0x80 ? 4 : 0);
    }
    if (c->hdr_len < c->hdr_need) return 0;
    uint64_t len = c->hdr[1] & 0x7f;
    if (len == 126) {
        len = ((uint64_t)c->hdr[2] << 8) | c->hdr[3];
    } else if (len == 127) {
        len = 0;
        for (int i = 0; i < 8; i++) len = (len << 8) | c->hdr[2 + i];
    }
    c->fin = (c->hdr[0] & 0x80) != 0;
    c->opcode = c->hdr[0] & 0x0f;
    c->payload_left = len;
    c->ctl_len = 0;
    c->hdr_len = 0;
    c->hdr_need = 2;
    if (c->opcode != OP_CONT && c->opcode < 8) {
        c->msg_len = 0;
        c->msg_opcode = c->opcode;
    }
    return 1;
}

/* Incremental frame parser (RFC 6455 section 5.2): payloads go to on_payload
 * as they arrive (control frames into c->ctl), never copied here. */
static void feed_frames(struct conn *c, const unsigned char *p, size_t n) {
    while (n > 0 && c->fd >= 0) {
        if (!c->in_payload) {
            if (!parse_header(c, &p, &n)) continue;
            if (c->opcode >= 8 && c->payload_left > 125) {
                conn_fail(c); /* RFC 6455 section 5.5: control frames carry <= 125 bytes */
                return;
            }
            c->in_payload = c->payload_left > 0;
            if (c->in_payload) continue;
        } else {
            size_t take = c->payload_left < n ? (size_t)c->payload_left : n;
            if (c->opcode >= 8) {
                memcpy(c->ctl + c->ctl_len, p, take);
                c->ctl_len += (int)take;
            } else {
                on_payload(c, p, take);
                c->msg_len += take;
            }
            c->payload_left -= take;
            p += take;
            n -= take;
            if (c->payload_left > 0) continue;
            c->in_payload = 0;
        }
        if (c->opcode >= 8) on_control(c);
        else if (c->fin) on_message(c);
    }
}

/* Collects the handshake response; on a 101, hands over and parses what follows. */
static void feed_handshake(struct conn *c, const unsigned char *p, size_t n) {
    if (!c->hs && !(c->hs = malloc(HS_MAX))) die("malloc");
    size_t room = HS_MAX - 1 - c->hs_len, take = n < room ? n : room;
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
    /* Bytes after the head (already in c->hs) are the first frames. */
    size_t head = (size_t)(end + 4 - c->hs), extra_len = c->hs_len - head;
    unsigned char extra[HS_MAX];
    memcpy(extra, c->hs + head, extra_len);
    free(c->hs);
    c->hs = NULL;
    c->hs_len = 0;
    on_upgraded(c);
    if (extra_len) feed_frames(c, extra, extra_len);
    if (take < n) feed_frames(c, p + take, n - take);
}

/* A non-blocking connect() finished: 1 (and the connection failed) if it did not succeed. */
static int connect_failed(struct conn *c) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) conn_fail(c);
    return err != 0;
}

/* The opening handshake request (RFC 6455 section 4.1) for path on host:port. */
static void queue_upgrade(struct conn *c, const char *path, const char *host, int port) {
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     path, host, port);
    out_append(c, req, (size_t)n);
}

/* One epoll_wait; a NULL pointer is stdin (idle modes: EOF sets `finished`). */
static void poll_once(int timeout_ms) {
    struct epoll_event evs[512];
    int n = epoll_wait(ep, evs, 512, timeout_ms);
    if (n < 0 && errno != EINTR) die("epoll_wait");
    for (int i = 0; i < n; i++) {
        if (evs[i].data.ptr == NULL) {
            char b[256];
            if (read(0, b, sizeof b) <= 0) finished = 1;
            continue;
        }
        handle_event(evs[i].data.ptr, evs[i].events);
    }
}

/* Idle modes: prints "ready", then keeps every connection (pings answered)
 * until stdin reaches EOF; the window is that time. */
static void hold_until_eof(void) {
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    printf("ready\n");
    fflush(stdout);
    if (epoll_ctl(ep, EPOLL_CTL_ADD, 0, &ev) < 0) die("epoll_ctl stdin");
    begin_window(NULL);
    while (!finished) poll_once(100);
    end_window(NULL);
}

#endif /* WSCONN_H */
