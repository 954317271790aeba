/*
 * The send step of tether._hotpath (see _hotpath.c for the module):
 * Connection.send_nowait's and send's common case, a str or bytes framed the
 * server's plain way (§5.2: FIN, unmasked, uncompressed) and queued as
 * HTTPStream._write queues it, without a Python frame.
 */

#include <stdint.h>
#include <string.h>

#include "_hotpath.h"

/* Whether stream's core frames a whole message the server's plain way: open,
 * no close frame sent, not a client (§5.3: unmasked), no permessage-deflate,
 * not mid-fragment (§5.4), and nothing counts the messages sent. */
static int
plain_sender(PyObject *stream, PyObject *open_state)
{
    PyObject *protocol = PyObject_GetAttr(stream, str_protocol);
    if (protocol == NULL) {
        return -1;
    }
    int ok = protocol != Py_None;
    if (ok == 1) {
        ok = attr_is(protocol, str_state, open_state);
    }
    if (ok == 1) {
        ok = attr_is(protocol, str_close_sent, Py_None);
    }
    if (ok == 1) {
        int client = attr_true(protocol, str_is_client);
        ok = client < 0 ? -1 : !client;
    }
    if (ok == 1) {
        ok = attr_is(protocol, str_deflate, Py_None);
    }
    if (ok == 1) {
        int fragmenting = attr_true(protocol, str_sending_fragmented);
        ok = fragmenting < 0 ? -1 : !fragmenting;
    }
    Py_DECREF(protocol);
    if (ok == 1) {
        PyObject *metrics = PyObject_GetAttr(stream, str_metrics);
        if (metrics == NULL) {
            return -1;
        }
        int counting = attr_true(metrics, str_count_sends);
        Py_DECREF(metrics);
        ok = counting < 0 ? -1 : !counting;
    }
    return ok;
}

/* §5.2: a FIN frame of opcode carrying payload, unmasked. */
static PyObject *
plain_frame(unsigned char opcode, const char *payload, Py_ssize_t n)
{
    Py_ssize_t head = n < 126 ? 2 : n < 0x10000 ? 4 : 10;
    PyObject *frame = PyBytes_FromStringAndSize(NULL, head + n);
    if (frame == NULL) {
        return NULL;
    }
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(frame);
    out[0] = 0x80 | opcode;
    if (head == 2) {
        out[1] = (unsigned char)n;
    }
    else if (head == 4) {
        out[1] = 126;
        out[2] = (unsigned char)(n >> 8);
        out[3] = (unsigned char)n;
    }
    else {
        out[1] = 127;
        for (int i = 0; i < 8; i++) {
            out[2 + i] = (unsigned char)((uint64_t)n >> (56 - 8 * i));
        }
    }
    memcpy(out + head, payload, (size_t)n);
    return frame;
}

/* HTTPStream._write(frame): queued for the end-of-iteration flush, flushed
 * at once past write_high_water.  0, or -1 with an exception set. */
static int
queue_frame(PyObject *stream, PyObject *frame)
{
    PyObject *out = PyObject_GetAttr(stream, str_out);
    if (out == NULL) {
        return -1;
    }
    int first = !(PyList_CheckExact(out) && PyList_GET_SIZE(out) > 0);
    int ok;
    if (first) {
        PyObject *list = PyList_New(1);
        if (list == NULL) {
            Py_DECREF(out);
            return -1;
        }
        PyList_SET_ITEM(list, 0, Py_NewRef(frame));
        ok = PyObject_SetAttr(stream, str_out, list);
        Py_DECREF(list);
    }
    else {
        ok = PyList_Append(out, frame);
    }
    Py_DECREF(out);
    long size, high;
    PyObject *limits = NULL;
    if (ok < 0 || attr_long(stream, str_out_size, &size) < 0
        || (limits = PyObject_GetAttr(stream, str_limits)) == NULL) {
        return -1;
    }
    ok = attr_long(limits, str_write_high_water, &high);
    Py_DECREF(limits);
    if (ok < 0) {
        return -1;
    }
    size += (long)PyBytes_GET_SIZE(frame);
    PyObject *value = PyLong_FromLong(size);
    if (value == NULL) {
        return -1;
    }
    ok = PyObject_SetAttr(stream, str_out_size, value);
    Py_DECREF(value);
    if (ok < 0) {
        return -1;
    }
    PyObject *res;
    if (size > high) {
        res = PyObject_CallMethodNoArgs(stream, str_flush);
    }
    else if (first) {
        int scheduled = attr_true(stream, str_flush_scheduled);
        if (scheduled != 0) {
            return scheduled < 0 ? -1 : 0;
        }
        res = PyObject_CallMethodNoArgs(stream, str_schedule_flush);
    }
    else {
        return 0;
    }
    if (res == NULL) {
        return -1;
    }
    Py_DECREF(res);
    return 0;
}

const char send_doc[] =
"send(stream, message, open_state, vectored_at, /) -> bool\n\n"
"Frame message (str: text, bytes: binary) and queue it as\n"
"Connection.send_nowait does, when its core's plain frame applies (open,\n"
"server side, uncompressed, not mid-fragment, sends not counted) and it is\n"
"under vectored_at bytes.  False, with nothing done, when it does not.";

PyObject *
send_whole(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (check_nargs("send", nargs, 4) < 0) {
        return NULL;
    }
    PyObject *stream = args[0], *message = args[1];
    Py_ssize_t vectored_at = PyLong_AsSsize_t(args[3]);
    if (vectored_at == -1 && PyErr_Occurred()) {
        return NULL;
    }
    int text = PyUnicode_CheckExact(message);
    if (!text && !PyBytes_CheckExact(message)) {
        Py_RETURN_FALSE;
    }
    int ok = plain_sender(stream, args[2]);
    if (ok <= 0) {
        return ok < 0 ? NULL : Py_NewRef(Py_False);
    }
    const char *payload;
    Py_ssize_t n;
    if (text) {
        payload = PyUnicode_AsUTF8AndSize(message, &n);
        if (payload == NULL) {
            return NULL; /* lone surrogates: str.encode() raises the same */
        }
    }
    else {
        payload = PyBytes_AS_STRING(message);
        n = PyBytes_GET_SIZE(message);
    }
    if (n >= vectored_at) {
        Py_RETURN_FALSE; /* a vectored write, without copying the payload */
    }
    unsigned char opcode = text ? 0x1 : 0x2;
    PyObject *frame = plain_frame(opcode, payload, n);
    if (frame == NULL) {
        return NULL;
    }
    ok = queue_frame(stream, frame);
    Py_DECREF(frame);
    return ok < 0 ? NULL : Py_NewRef(Py_True);
}
