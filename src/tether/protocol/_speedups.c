/*
 * Optional C accelerator for tether's sans-I/O core (see speedups.py).
 *
 * The receive hot loop lives here: unmasking payloads (RFC 6455 §5.3),
 * splitting a buffer into frames (§5.2) and a UTF-8 validator (§8.1); and,
 * in _http_head.c and _handshake.c, the common case of the handshake's
 * request head and of its checks and 101.  Every
 * protocol decision that depends on connection state stays in Python; these
 * functions only report what the bytes say, and speedups.py holds a
 * pure-Python twin of each one that the tests compare them against.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

/* Unmasking a payload this large takes long enough (tens of microseconds)
 * that letting other threads run during it is worth the GIL round trip. */
#define RELEASE_GIL_AT 65536

/* parse_frames() stop reasons; mirrored as STOP_* in speedups.py. */
enum {
    STOP_NEED_DATA = 0,  /* fewer bytes than a whole header at pos */
    STOP_BATCH = 1,      /* max_frames frames returned; more may follow */
    STOP_HEADER = 2,     /* header at pos parsed; payload incomplete or over max_len */
    STOP_BAD_LENGTH = 3, /* 64-bit length with its most significant bit set */
    STOP_BAD_MASK = 4,   /* MASK bit differs from expect_mask */
};

#include "_mask.h"
#include "_http_head.h"
#include "_handshake.h"

/* Get a read-only C-contiguous view of obj; a non-contiguous memoryview is
 * copied first, so every bytes-like object the Python twin takes works. */
static int
get_view(PyObject *obj, Py_buffer *view, PyObject **copy)
{
    *copy = NULL;
    if (PyObject_GetBuffer(obj, view, PyBUF_SIMPLE) == 0) {
        return 0;
    }
    if (!PyErr_ExceptionMatches(PyExc_BufferError) || !PyMemoryView_Check(obj)) {
        return -1;
    }
    PyErr_Clear();
    *copy = PyBytes_FromObject(obj);
    if (*copy == NULL) {
        return -1;
    }
    if (PyObject_GetBuffer(*copy, view, PyBUF_SIMPLE) < 0) {
        Py_CLEAR(*copy);
        return -1;
    }
    return 0;
}

static void
release_view(Py_buffer *view, PyObject *copy)
{
    PyBuffer_Release(view);
    Py_XDECREF(copy);
}

/* get_view() for the bytes of obj from pos to *end, *end clamped to its
 * length. A pos beyond *end is a ValueError, and the view is released. */
static int
get_range(PyObject *obj, Py_buffer *view, PyObject **copy, Py_ssize_t pos, Py_ssize_t *end)
{
    if (get_view(obj, view, copy) < 0) {
        return -1;
    }
    if (*end > view->len) {
        *end = view->len;
    }
    if (pos > *end) {
        release_view(view, *copy);
        PyErr_SetString(PyExc_ValueError, "pos is beyond end");
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(apply_mask_doc,
"apply_mask(data, mask, /)\n--\n\n"
"XOR bytes-like ``data`` with the repeated 4-byte ``mask`` (RFC 6455 5.3).");

static PyObject *
apply_mask(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer data, mask;
    PyObject *copy, *result = NULL;

    (void)module;
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError,
                     "apply_mask() takes exactly 2 arguments (%zd given)", nargs);
        return NULL;
    }
    if (get_view(args[0], &data, &copy) < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(args[1], &mask, PyBUF_SIMPLE) < 0) {
        release_view(&data, copy);
        return NULL;
    }
    if (mask.len != 4) {
        PyErr_SetString(PyExc_ValueError, "mask must be 4 bytes");
        goto done;
    }
    result = PyBytes_FromStringAndSize(NULL, data.len);
    if (result == NULL) {
        goto done;
    }
    if (data.len >= RELEASE_GIL_AT) {
        /* Safe without the GIL: our buffer export keeps a bytearray from
         * being resized or freed, and result is not shared yet. */
        Py_BEGIN_ALLOW_THREADS
        xor_mask(data.buf, (unsigned char *)PyBytes_AS_STRING(result),
                 (size_t)data.len, mask.buf);
        Py_END_ALLOW_THREADS
    }
    else {
        xor_mask(data.buf, (unsigned char *)PyBytes_AS_STRING(result),
                 (size_t)data.len, mask.buf);
    }
done:
    PyBuffer_Release(&mask);
    release_view(&data, copy);
    return result;
}

/*
 * Length of the longest prefix of s made of whole, valid UTF-8 characters,
 * provided the bytes after it are the start of a character that more bytes
 * could complete; -1 when some byte makes the text invalid whatever follows.
 *
 * The byte ranges are the grammar of RFC 3629 §4, which is what RFC 6455 §8.1
 * means by UTF-8: it rules out overlong forms (C0, C1, E0 80-9F, F0 80-8F),
 * UTF-16 surrogates (ED A0-BF) and code points above U+10FFFF (F4 90-BF,
 * F5-FF).  Checking the second byte's range as soon as it arrives is what
 * lets a fragmented message fail on the fragment that holds the bad byte.
 */
static Py_ssize_t
utf8_prefix(const unsigned char *s, Py_ssize_t n)
{
    Py_ssize_t i = 0;

    while (i < n) {
        unsigned char c = s[i];
        unsigned char lo = 0x80, hi = 0xBF;
        Py_ssize_t need, k;

        if (c < 0x80) {
            /* Runs of ASCII are checked a word at a time. */
            uint64_t w;
            i++;
            while (n - i >= 8) {
                memcpy(&w, s + i, 8);
                if (w & UINT64_C(0x8080808080808080)) {
                    break;
                }
                i += 8;
            }
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
        }
        else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            if (c == 0xE0) {
                lo = 0xA0; /* below: overlong */
            }
            else if (c == 0xED) {
                hi = 0x9F; /* above: surrogates */
            }
        }
        else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            if (c == 0xF0) {
                lo = 0x90; /* below: overlong */
            }
            else if (c == 0xF4) {
                hi = 0x8F; /* above: beyond U+10FFFF */
            }
        }
        else {
            return -1; /* continuation byte, C0, C1 or F5-FF as a lead */
        }
        if (i + 1 >= n) {
            return i;
        }
        if (s[i + 1] < lo || s[i + 1] > hi) {
            return -1;
        }
        for (k = 2; k <= need; k++) {
            if (i + k >= n) {
                return i;
            }
            if ((s[i + k] & 0xC0) != 0x80) {
                return -1;
            }
        }
        i += need + 1;
    }
    return n;
}

PyDoc_STRVAR(utf8_valid_prefix_doc,
"utf8_valid_prefix(data, /)\n--\n\n"
"Check bytes-like ``data`` as UTF-8 (RFC 6455 8.1, RFC 3629 4).\n\n"
"Return -1 if no bytes appended to ``data`` could make it valid; otherwise\n"
"the length of its longest prefix of whole characters (``len(data)`` when\n"
"it is complete, less when it ends in 1-3 bytes of an unfinished character).");

static PyObject *
utf8_valid_prefix(PyObject *module, PyObject *arg)
{
    Py_buffer data;
    PyObject *copy;
    Py_ssize_t n;

    (void)module;
    if (get_view(arg, &data, &copy) < 0) {
        return NULL;
    }
    n = utf8_prefix(data.buf, data.len);
    release_view(&data, copy);
    return PyLong_FromSsize_t(n);
}

/* A non-negative Python int as Py_ssize_t; larger values saturate, which is
 * what "no limit" callers pass (e.g. 1 << 62 on a 32-bit build). */
static int
as_size(PyObject *obj, const char *name, Py_ssize_t *out)
{
    int overflow;
    long long value = PyLong_AsLongLongAndOverflow(obj, &overflow);

    if (value == -1 && PyErr_Occurred()) {
        return -1;
    }
    /* On overflow, value is -1 and overflow gives the sign. */
    if (overflow < 0 || (overflow == 0 && value < 0)) {
        PyErr_Format(PyExc_ValueError, "%s must not be negative", name);
        return -1;
    }
    if (overflow > 0 || value > (long long)PY_SSIZE_T_MAX) {
        *out = PY_SSIZE_T_MAX;
    }
    else {
        *out = (Py_ssize_t)value;
    }
    return 0;
}

PyDoc_STRVAR(parse_frames_doc,
"parse_frames(buf, pos, end, expect_mask, max_frames, max_len, /)\n--\n\n"
"Split the complete frames at the start of ``buf[pos:end]`` (RFC 6455 5.2).\n\n"
"Return ``(frames, pos, stop, b0, length)``: ``frames`` lists\n"
"``(first_header_byte, unmasked_payload)`` for at most ``max_frames``\n"
"frames, ``pos`` is where parsing stopped and ``stop`` says why (see\n"
"speedups.STOP_*).  On STOP_HEADER, ``b0`` and ``length`` describe the frame\n"
"at ``pos``, whose header is complete but whose payload is not, or whose\n"
"length exceeds ``max_len``: the caller checks that header before waiting.\n"
"Opcodes, RSV bits and limits are not checked here.");

static PyObject *
parse_frames(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer view;
    PyObject *copy, *frames = NULL, *result = NULL;
    const unsigned char *p;
    Py_ssize_t pos, end, max_frames, max_len, count = 0;
    int expect_mask, stop = STOP_NEED_DATA, b0_out = 0;
    uint64_t length_out = 0;

    (void)module;
    if (nargs != 6) {
        PyErr_Format(PyExc_TypeError,
                     "parse_frames() takes exactly 6 arguments (%zd given)", nargs);
        return NULL;
    }
    if (as_size(args[1], "pos", &pos) < 0 || as_size(args[2], "end", &end) < 0
        || as_size(args[4], "max_frames", &max_frames) < 0
        || as_size(args[5], "max_len", &max_len) < 0) {
        return NULL;
    }
    expect_mask = PyObject_IsTrue(args[3]);
    if (expect_mask < 0) {
        return NULL;
    }
    if (get_range(args[0], &view, &copy, pos, &end) < 0) {
        return NULL;
    }
    frames = PyList_New(0);
    if (frames == NULL) {
        goto done;
    }
    p = view.buf;
    for (;;) {
        Py_ssize_t avail = end - pos, head;
        uint64_t length;
        unsigned char b0, b1;
        PyObject *payload, *item;
        int masked;

        if (count >= max_frames) {
            stop = STOP_BATCH;
            break;
        }
        if (avail < 2) {
            stop = STOP_NEED_DATA;
            break;
        }
        b0 = p[pos];
        b1 = p[pos + 1];
        length = b1 & 0x7F;
        head = 2;
        /* §5.2: 126 means a 16-bit length follows, 127 a 64-bit one, both in
         * network byte order. */
        if (length == 126) {
            head = 4;
            if (avail < head) {
                stop = STOP_NEED_DATA;
                break;
            }
            length = ((uint64_t)p[pos + 2] << 8) | p[pos + 3];
        }
        else if (length == 127) {
            int j;
            head = 10;
            if (avail < head) {
                stop = STOP_NEED_DATA;
                break;
            }
            length = 0;
            for (j = 2; j < 10; j++) {
                length = (length << 8) | p[pos + j];
            }
            if (length >> 63) {
                /* §5.2: the most significant bit MUST be 0. */
                stop = STOP_BAD_LENGTH;
                break;
            }
        }
        masked = (b1 & 0x80) != 0;
        if (masked != expect_mask) {
            /* §5.1: clients mask every frame, servers none. */
            stop = STOP_BAD_MASK;
            break;
        }
        /* Compared as unsigned: length may be anything below 2**63. */
        if (masked) {
            head += 4;
        }
        if (length > (uint64_t)max_len || avail < head
            || (uint64_t)(avail - head) < length) {
            stop = STOP_HEADER;
            b0_out = b0;
            length_out = length;
            break;
        }
        payload = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)length);
        if (payload == NULL) {
            goto done;
        }
        if (masked) {
            xor_mask(p + pos + head, (unsigned char *)PyBytes_AS_STRING(payload),
                     (size_t)length, p + pos + head - 4);
        }
        else {
            memcpy(PyBytes_AS_STRING(payload), p + pos + head, (size_t)length);
        }
        item = PyTuple_New(2);
        if (item == NULL) {
            Py_DECREF(payload);
            goto done;
        }
        /* Values below 256 are CPython's cached small ints: no allocation. */
        PyTuple_SET_ITEM(item, 0, PyLong_FromLong(b0));
        PyTuple_SET_ITEM(item, 1, payload);
        if (PyList_Append(frames, item) < 0) {
            Py_DECREF(item);
            goto done;
        }
        Py_DECREF(item);
        pos += head + (Py_ssize_t)length;
        count++;
    }
    result = Py_BuildValue("(OniiK)", frames, pos, stop, b0_out,
                           (unsigned long long)length_out);
done:
    Py_XDECREF(frames);
    release_view(&view, copy);
    return result;
}

/*
 * Assembler: one frame payload too large for a single read (RFC 6455 §5.2),
 * unmasked chunk by chunk straight into the bytes object that becomes the
 * message, so the received bytes are copied once instead of being kept in a
 * growing buffer and copied again (and again for every read they straddle).
 *
 * The bytes object is private until take() hands it out complete: nothing
 * else can see it while it is being written, which is what makes filling a
 * bytes object in place legitimate.
 */
typedef struct {
    PyObject_HEAD
    PyObject *payload; /* the bytes being filled; NULL once taken */
    Py_ssize_t length;
    Py_ssize_t filled;
    unsigned char key[4];
    int masked;
} Assembler;

static PyObject *
assembler_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    Assembler *self;
    Py_ssize_t length;
    Py_buffer mask;

    if (!PyArg_ParseTuple(args, "ny*:Assembler", &length, &mask)) {
        return NULL;
    }
    if (kwds != NULL && PyDict_GET_SIZE(kwds) != 0) {
        PyBuffer_Release(&mask);
        PyErr_SetString(PyExc_TypeError, "Assembler() takes no keyword arguments");
        return NULL;
    }
    if (length < 0 || (mask.len != 0 && mask.len != 4)) {
        PyBuffer_Release(&mask);
        PyErr_SetString(PyExc_ValueError,
                        "length must not be negative and mask must be 0 or 4 bytes");
        return NULL;
    }
    self = (Assembler *)type->tp_alloc(type, 0);
    if (self == NULL) {
        PyBuffer_Release(&mask);
        return NULL;
    }
    self->masked = mask.len == 4;
    if (self->masked) {
        memcpy(self->key, mask.buf, 4);
    }
    PyBuffer_Release(&mask);
    self->length = length;
    self->filled = 0;
    self->payload = PyBytes_FromStringAndSize(NULL, length);
    if (self->payload == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static void
assembler_dealloc(Assembler *self)
{
    Py_XDECREF(self->payload);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

PyDoc_STRVAR(assembler_feed_doc,
"feed(buf, pos, end, /)\n--\n\n"
"Take the payload's next bytes from ``buf[pos:end]``, unmasking them; return\n"
"the position after the bytes taken (``end``, or where the payload ends).");

static PyObject *
assembler_feed(Assembler *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer view;
    PyObject *copy;
    Py_ssize_t pos, end, n;

    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError,
                     "feed() takes exactly 3 arguments (%zd given)", nargs);
        return NULL;
    }
    if (self->payload == NULL) {
        PyErr_SetString(PyExc_ValueError, "the payload was already taken");
        return NULL;
    }
    if (as_size(args[1], "pos", &pos) < 0 || as_size(args[2], "end", &end) < 0) {
        return NULL;
    }
    if (get_range(args[0], &view, &copy, pos, &end) < 0) {
        return NULL;
    }
    n = end - pos;
    if (n > self->length - self->filled) {
        n = self->length - self->filled;
    }
    if (n > 0) {
        unsigned char *dst =
            (unsigned char *)PyBytes_AS_STRING(self->payload) + self->filled;
        const unsigned char *src = (const unsigned char *)view.buf + pos;
        if (self->masked) {
            /* §5.3: the key phase follows the offset within the payload. */
            unsigned char key[4];
            int j;
            for (j = 0; j < 4; j++) {
                key[j] = self->key[(self->filled + j) & 3];
            }
            xor_mask(src, dst, (size_t)n, key);
        }
        else {
            memcpy(dst, src, (size_t)n);
        }
        self->filled += n;
    }
    release_view(&view, copy);
    return PyLong_FromSsize_t(pos + n);
}

PyDoc_STRVAR(assembler_take_doc,
"take(/)\n--\n\n"
"Return the whole unmasked payload as bytes; only once it is complete.");

static PyObject *
assembler_take(Assembler *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *payload = self->payload;

    if (payload == NULL || self->filled != self->length) {
        PyErr_SetString(PyExc_ValueError, "the payload is not complete");
        return NULL;
    }
    self->payload = NULL; /* the reference moves to the caller */
    return payload;
}

static PyObject *
assembler_missing(Assembler *self, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(self->length - self->filled);
}

static PyMethodDef assembler_methods[] = {
    {"feed", (PyCFunction)(void (*)(void))assembler_feed, METH_FASTCALL,
     assembler_feed_doc},
    {"take", (PyCFunction)assembler_take, METH_NOARGS, assembler_take_doc},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef assembler_getset[] = {
    {"missing", (getter)assembler_missing, NULL,
     "Payload bytes still to come.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(assembler_doc,
"Assembler(length, mask, /)\n--\n\n"
"Collect one frame payload of ``length`` bytes across reads, unmasking it\n"
"with the 4-byte ``mask`` (or copying it when ``mask`` is empty).");

static PyTypeObject Assembler_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tether.protocol._speedups.Assembler",
    .tp_basicsize = sizeof(Assembler),
    .tp_dealloc = (destructor)assembler_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = assembler_doc,
    .tp_methods = assembler_methods,
    .tp_getset = assembler_getset,
    .tp_new = assembler_new,
};

static PyMethodDef speedups_methods[] = {
    {"apply_mask", (PyCFunction)(void (*)(void))apply_mask, METH_FASTCALL,
     apply_mask_doc},
    {"utf8_valid_prefix", utf8_valid_prefix, METH_O, utf8_valid_prefix_doc},
    {"parse_frames", (PyCFunction)(void (*)(void))parse_frames, METH_FASTCALL,
     parse_frames_doc},
    {"parse_request", (PyCFunction)(void (*)(void))tether_parse_request, METH_FASTCALL,
     PyDoc_STR(TETHER_PARSE_REQUEST_DOC)},
    {"accept_plain", (PyCFunction)(void (*)(void))tether_accept_plain, METH_FASTCALL,
     PyDoc_STR(TETHER_ACCEPT_PLAIN_DOC)},
    {NULL, NULL, 0, NULL},
};

static int
speedups_exec(PyObject *module)
{
    if (PyModule_AddIntConstant(module, "STOP_NEED_DATA", STOP_NEED_DATA) < 0
        || PyModule_AddIntConstant(module, "STOP_BATCH", STOP_BATCH) < 0
        || PyModule_AddIntConstant(module, "STOP_HEADER", STOP_HEADER) < 0
        || PyModule_AddIntConstant(module, "STOP_BAD_LENGTH", STOP_BAD_LENGTH) < 0
        || PyModule_AddIntConstant(module, "STOP_BAD_MASK", STOP_BAD_MASK) < 0) {
        return -1;
    }
    if (PyType_Ready(&Assembler_Type) < 0) {
        return -1;
    }
    Py_INCREF(&Assembler_Type);
    if (PyModule_AddObject(module, "Assembler", (PyObject *)&Assembler_Type) < 0) {
        Py_DECREF(&Assembler_Type);
        return -1;
    }
    return 0;
}

static PyModuleDef_Slot speedups_slots[] = {
    {Py_mod_exec, speedups_exec},
#ifdef Py_GIL_DISABLED
    /* Nothing here keeps state between calls, so no GIL is needed. */
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "tether.protocol._speedups",
    .m_doc = "C versions of tether's receive hot loop; see tether.protocol.speedups.",
    .m_size = 0,
    .m_methods = speedups_methods,
    .m_slots = speedups_slots,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModuleDef_Init(&speedups_module);
}
