/*
 * The common case of the server's opening handshake (RFC 6455 §4.2.1 and
 * §4.2.2) for ServerHandshake.accept_encoded: the checks of a request that
 * negotiates nothing, its Sec-WebSocket-Accept value and its 101, in one
 * call.  Only success is decided here: for anything else (a check that
 * fails, a subprotocol or extension offered, a byte outside printable
 * ASCII) it returns None and ServerHandshake.accept judges the request, with
 * its messages.  tests/protocol/test_handshake_plain.py compares the two.
 */

#include "_handshake.h"

#include <stdint.h>
#include <string.h>

/* §4.2.2: the accept value is base64(SHA-1(key + this GUID)). */
static const char GUID[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
#define GUID_LEN 36
/* §4.1: a base64-encoded 16-byte value, 22 characters and "==". */
#define KEY_LEN 24
#define ACCEPT_LEN 28

static uint32_t
rol(uint32_t x, int n)
{
    return (x << n) | (x >> (32 - n));
}

/* The message schedule of one 64-byte block (FIPS 180-4 §6.1.2, step 1). */
static void
sha1_schedule(uint32_t w[80], const unsigned char *p)
{
    for (int i = 0; i < 16; i++) {
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16
               | (uint32_t)p[4 * i + 2] << 8 | (uint32_t)p[4 * i + 3];
    }
    for (int i = 16; i < 80; i++) {
        w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    }
}

/* One block's 80 rounds on the hash (steps 2 to 4).  A loop per round
 * function, not a test of i in one loop: the branches cost more than the
 * rounds, and this is most of a plain handshake's cost. */
#define SHA1_STEP(f, k)                                   \
    do {                                                  \
        uint32_t t = rol(a, 5) + (f) + e + (k) + w[i];    \
        e = d;                                            \
        d = c;                                            \
        c = rol(b, 30);                                   \
        b = a;                                            \
        a = t;                                            \
    } while (0)

static void
sha1_compress(uint32_t h[5], const uint32_t w[80])
{
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    int i = 0;
    for (; i < 20; i++) {
        SHA1_STEP((b & c) | (~b & d), 0x5A827999);
    }
    for (; i < 40; i++) {
        SHA1_STEP(b ^ c ^ d, 0x6ED9EBA1);
    }
    for (; i < 60; i++) {
        SHA1_STEP((b & c) | (b & d) | (c & d), 0x8F1BBCDC);
    }
    for (; i < 80; i++) {
        SHA1_STEP(b ^ c ^ d, 0xCA62C1D6);
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
}

/* SHA-1 of the key and the GUID (60 bytes: two blocks once padded, §5.1.1).
 * The second block is the same for every key (zeros, then the length), so
 * its schedule is computed once. */
static void
sha1_key(const unsigned char *key, unsigned char digest[20])
{
    static uint32_t second[80];
    static int second_ready = 0;
    unsigned char m[128];
    size_t n = KEY_LEN + GUID_LEN;
    memcpy(m, key, KEY_LEN);
    memcpy(m + KEY_LEN, GUID, GUID_LEN);
    memset(m + n, 0, sizeof(m) - n);
    m[n] = 0x80;
    uint64_t bits = (uint64_t)n * 8;
    for (int i = 0; i < 8; i++) {
        m[127 - i] = (unsigned char)(bits >> (8 * i));
    }
    if (!second_ready) {
        sha1_schedule(second, m + 64);  /* under the GIL: computed once */
        second_ready = 1;
    }
    uint32_t w[80];
    uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    sha1_schedule(w, m);
    sha1_compress(h, w);
    sha1_compress(h, second);
    for (int i = 0; i < 5; i++) {
        digest[4 * i] = (unsigned char)(h[i] >> 24);
        digest[4 * i + 1] = (unsigned char)(h[i] >> 16);
        digest[4 * i + 2] = (unsigned char)(h[i] >> 8);
        digest[4 * i + 3] = (unsigned char)h[i];
    }
}

/* Base64 (RFC 4648 §4) of the 20-byte digest: 28 characters, one "=". */
static void
base64_digest(const unsigned char d[20], char out[ACCEPT_LEN])
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    int o = 0;
    for (int i = 0; i < 18; i += 3) {
        uint32_t v = (uint32_t)d[i] << 16 | (uint32_t)d[i + 1] << 8 | d[i + 2];
        out[o++] = alphabet[v >> 18];
        out[o++] = alphabet[(v >> 12) & 63];
        out[o++] = alphabet[(v >> 6) & 63];
        out[o++] = alphabet[v & 63];
    }
    uint32_t v = (uint32_t)d[18] << 16 | (uint32_t)d[19] << 8;
    out[o++] = alphabet[v >> 18];
    out[o++] = alphabet[(v >> 12) & 63];
    out[o++] = alphabet[(v >> 6) & 63];
    out[o] = '=';
}

/* The bytes of a str made of one-byte characters, else NULL. */
static const unsigned char *
latin1(PyObject *s, Py_ssize_t *n)
{
    if (!PyUnicode_Check(s) || PyUnicode_READY(s) < 0
        || PyUnicode_KIND(s) != PyUnicode_1BYTE_KIND) {
        return NULL;
    }
    *n = PyUnicode_GET_LENGTH(s);
    return PyUnicode_1BYTE_DATA(s);
}

/* Whether p[0:n] is ``lower`` (lower-case ASCII) in any case. */
static int
same_name(const unsigned char *p, Py_ssize_t n, const char *lower)
{
    Py_ssize_t k = (Py_ssize_t)strlen(lower);
    if (n != k) {
        return 0;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = p[i];
        if (c >= 'A' && c <= 'Z') {
            c += 'a' - 'A';
        }
        if (c != (unsigned char)lower[i]) {
            return 0;
        }
    }
    return 1;
}

/* Whether the comma-separated list p[0:n] (RFC 7230 §7) has the token
 * ``lower`` in any case: 1 yes, 0 no, -1 a byte this step leaves to Python
 * (whose str.strip() trims more than spaces and tabs). */
static int
has_token(const unsigned char *p, Py_ssize_t n, const char *lower)
{
    int found = 0;
    Py_ssize_t start = 0;
    for (Py_ssize_t i = 0; i <= n; i++) {
        if (i < n) {
            unsigned char c = p[i];
            if (c != ' ' && c != '\t' && (c < 0x21 || c > 0x7e)) {
                return -1;
            }
            if (c != ',') {
                continue;
            }
        }
        Py_ssize_t a = start, b = i;
        while (a < b && (p[a] == ' ' || p[a] == '\t')) {
            a++;
        }
        while (b > a && (p[b - 1] == ' ' || p[b - 1] == '\t')) {
            b--;
        }
        if (same_name(p + a, b - a, lower)) {
            found = 1;
        }
        start = i + 1;
    }
    return found;
}

static int
is_key_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
           || c == '+' || c == '/';
}

PyObject *
tether_accept_plain(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "accept_plain() takes 3 arguments");
        return NULL;
    }
    PyObject *items = args[0], *prefix = args[1], *suffix = args[2];
    if (!PyList_Check(items) || !PyBytes_Check(prefix) || !PyBytes_Check(suffix)) {
        PyErr_SetString(PyExc_TypeError, "accept_plain(list, bytes, bytes)");
        return NULL;
    }
    Py_ssize_t count = PyList_GET_SIZE(items);
    int upgrade = 0, connection = 0, hosts = 0, versions = 0, keys = 0;
    const unsigned char *key = NULL;
    for (Py_ssize_t i = 0; i + 1 < count; i += 2) {
        Py_ssize_t n = 0, m = 0;
        const unsigned char *name = latin1(PyList_GET_ITEM(items, i), &n);
        const unsigned char *value = latin1(PyList_GET_ITEM(items, i + 1), &m);
        if (name == NULL || value == NULL) {
            if (PyErr_Occurred()) {
                return NULL;
            }
            Py_RETURN_NONE;
        }
        /* Most header lines are none of these: the first letter rules them out. */
        unsigned char first = n ? (name[0] | 0x20) : 0;
        if (first != 'u' && first != 'c' && first != 'h' && first != 's') {
            continue;
        }
        if (same_name(name, n, "upgrade")) {
            int t = has_token(value, m, "websocket");
            if (t < 0) {
                Py_RETURN_NONE;
            }
            upgrade |= t;
        }
        else if (same_name(name, n, "connection")) {
            int t = has_token(value, m, "upgrade");
            if (t < 0) {
                Py_RETURN_NONE;
            }
            connection |= t;
        }
        else if (same_name(name, n, "host")) {
            hosts++;
        }
        else if (same_name(name, n, "sec-websocket-version")) {
            versions++;
            if (m != 2 || value[0] != '1' || value[1] != '3') {
                Py_RETURN_NONE;
            }
        }
        else if (same_name(name, n, "sec-websocket-key")) {
            keys++;
            key = value;
            if (m != KEY_LEN || value[22] != '=' || value[23] != '=') {
                Py_RETURN_NONE;
            }
            for (int k = 0; k < 22; k++) {
                if (!is_key_char(value[k])) {
                    Py_RETURN_NONE;
                }
            }
        }
        else if (same_name(name, n, "sec-websocket-protocol")
                 || same_name(name, n, "sec-websocket-extensions")) {
            Py_RETURN_NONE; /* negotiated by ServerHandshake.accept */
        }
    }
    if (count % 2 || !upgrade || !connection || hosts != 1 || versions != 1 || keys != 1) {
        Py_RETURN_NONE;
    }
    unsigned char digest[20];
    char accept[ACCEPT_LEN];
    sha1_key(key, digest);
    base64_digest(digest, accept);
    Py_ssize_t np = PyBytes_GET_SIZE(prefix), ns = PyBytes_GET_SIZE(suffix);
    PyObject *head = PyBytes_FromStringAndSize(NULL, np + ACCEPT_LEN + ns);
    if (head == NULL) {
        return NULL;
    }
    char *out = PyBytes_AS_STRING(head);
    memcpy(out, PyBytes_AS_STRING(prefix), np);
    memcpy(out + np, accept, ACCEPT_LEN);
    memcpy(out + np + ACCEPT_LEN, PyBytes_AS_STRING(suffix), ns);
    PyObject *value = PyUnicode_DecodeASCII(accept, ACCEPT_LEN, NULL);
    if (value == NULL) {
        Py_DECREF(head);
        return NULL;
    }
    PyObject *result = PyTuple_Pack(2, value, head);
    Py_DECREF(value);
    Py_DECREF(head);
    return result;
}
