/*
 * Optional C accelerator for the asyncio layer's direct writes (see _direct.py).
 *
 * send(): send(2) on a socket the event loop owns, without blocking and
 * without SIGPIPE.  Python has no send() on a bare file descriptor (a
 * socket.socket made from one would close it when collected), and os.write()
 * is write(2), which costs more in the kernel than send(2) on a socket (the
 * VFS write path).  _direct.py falls back to os.write() without this module.
 *
 * fanout(): the loop of tether.broadcast over its connections, for the common
 * case of each (Connection.write_shared's direct write) without a Python
 * frame per delivery; every other case goes to the caller's fallback.
 */

#include "_capi.h"

#include <errno.h>
#include <limits.h>
#include <sys/socket.h>
#include <sys/types.h>

/* Attribute and method names, interned once at import (sendnow_exec). */
static PyObject *str_fd, *str_out, *str_protocol, *str_state, *str_sending_fragmented,
    *str_transport, *str_is_closing, *str_get_write_buffer_size, *str_write;

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0 /* where it is missing, Python ignores SIGPIPE anyway */
#endif

/* A non-blocking send(2) of what fits (no wait to release the GIL for): the
 * bytes sent, or -1 with errno set. */
static ssize_t
send_some(int fd, const void *buf, size_t len)
{
    ssize_t sent;
    do {
        sent = send(fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    } while (sent < 0 && errno == EINTR);
    return sent;
}

PyDoc_STRVAR(send_doc,
"send(fd, data, /) -> int\n\n"
"Send what the socket's buffer takes of data now; how many bytes (0 when\n"
"the buffer is full). Any other error raises OSError.");

static PyObject *
send_now(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (check_nargs("send", nargs, 2) < 0) {
        return NULL;
    }
    long fd = PyLong_AsLong(args[0]);
    if (fd == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (fd < 0 || fd > INT_MAX) {
        PyErr_SetString(PyExc_ValueError, "not a file descriptor");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[1], &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    ssize_t sent = send_some((int)fd, view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    if (sent >= 0) {
        return PyLong_FromSsize_t(sent);
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
        return PyLong_FromLong(0);
    }
    return PyErr_SetFromErrno(PyExc_OSError);
}

/* Send what the socket takes of frame now, the rest (or all of it, on a full
 * buffer or an error, which the transport then meets and reports) to the
 * transport: _direct.send_now.  0, or -1 with an exception set. */
static int
send_or_queue(int fd, PyObject *transport, PyObject *frame)
{
    const char *buf = PyBytes_AS_STRING(frame);
    Py_ssize_t len = PyBytes_GET_SIZE(frame);
    ssize_t sent = send_some(fd, buf, (size_t)len);
    if (sent == len) {
        return 0;
    }
    PyObject *rest;
    if (sent <= 0) {
        rest = Py_NewRef(frame);
    } else {
        rest = PyBytes_FromStringAndSize(buf + sent, len - sent);
        if (rest == NULL) {
            return -1;
        }
    }
    PyObject *res = PyObject_CallMethodOneArg(transport, str_write, rest);
    Py_DECREF(rest);
    if (res == NULL) {
        return -1;
    }
    Py_DECREF(res);
    return 0;
}

/* Connection.write_shared's direct write, when every one of its conditions
 * holds in the cheapest form: a known socket descriptor (set by write_shared
 * on the first broadcast frame, only for a server connection on a transport
 * that may be written past), nothing queued by the connection, the core OPEN
 * and not mid-fragment, the transport open with nothing buffered (so below
 * any write_high_water).  1 when written, 0 when the caller's fallback must
 * decide, -1 with an exception set. */
static int
write_direct(PyObject *conn, PyObject *frame, PyObject *open_state)
{
    int result = 0;
    PyObject *protocol = NULL, *value = NULL, *transport = NULL;
    PyObject *fd_obj = PyObject_GetAttr(conn, str_fd);
    if (fd_obj == NULL) {
        return -1;
    }
    long fd = PyLong_AsLong(fd_obj);
    Py_DECREF(fd_obj);
    if (fd == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (fd < 0 || fd > INT_MAX) {
        return 0;
    }
#define GET(target, obj, name)                  \
    do {                                        \
        Py_XDECREF(target);                     \
        (target) = PyObject_GetAttr(obj, name); \
        if ((target) == NULL) {                 \
            result = -1;                        \
            goto done;                          \
        }                                       \
    } while (0)
    GET(value, conn, str_out);
    int queued = PyObject_IsTrue(value);
    if (queued != 0) {
        result = queued < 0 ? -1 : 0;
        goto done;
    }
    GET(protocol, conn, str_protocol);
    if (protocol == Py_None) {
        goto done;
    }
    GET(value, protocol, str_state);
    if (value != open_state) {
        goto done;
    }
    GET(value, protocol, str_sending_fragmented);
    if (value != Py_False) {
        goto done;
    }
    GET(transport, conn, str_transport);
    if (transport == Py_None) {
        goto done;
    }
    Py_SETREF(value, PyObject_CallMethodNoArgs(transport, str_is_closing));
    if (value == NULL) {
        result = -1;
        goto done;
    }
    if (value != Py_False) {
        goto done;
    }
    Py_SETREF(value, PyObject_CallMethodNoArgs(transport, str_get_write_buffer_size));
    if (value == NULL) {
        result = -1;
        goto done;
    }
    int buffered = PyObject_IsTrue(value);
    if (buffered != 0) {
        result = buffered < 0 ? -1 : 0;
        goto done;
    }
    result = send_or_queue((int)fd, transport, frame) < 0 ? -1 : 1;
#undef GET
done:
    Py_XDECREF(value);
    Py_XDECREF(protocol);
    Py_XDECREF(transport);
    return result;
}

PyDoc_STRVAR(fanout_doc,
"fanout(connections, frame, open_state, fallback, /) -> (int, object)\n\n"
"Write frame (bytes) to each connection, straight to its socket where\n"
"Connection.write_shared would, else by fallback(connection), which answers\n"
"whether it was written; how many were, and the last one written to (None).");

static PyObject *
fanout(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (check_nargs("fanout", nargs, 4) < 0) {
        return NULL;
    }
    PyObject *frame = args[1], *open_state = args[2], *fallback = args[3];
    if (!PyBytes_CheckExact(frame)) {
        PyErr_SetString(PyExc_TypeError, "fanout() frame must be bytes");
        return NULL;
    }
    PyObject *it = PyObject_GetIter(args[0]);
    if (it == NULL) {
        return NULL;
    }
    Py_ssize_t sent = 0;
    PyObject *last = Py_NewRef(Py_None), *conn;
    while ((conn = PyIter_Next(it)) != NULL) {
        int written = write_direct(conn, frame, open_state);
        if (written == 0) {
            PyObject *answer = PyObject_CallOneArg(fallback, conn);
            written = answer == NULL ? -1 : PyObject_IsTrue(answer);
            Py_XDECREF(answer);
        }
        if (written < 0) {
            Py_DECREF(conn);
            goto error;
        }
        if (written) {
            sent++;
            Py_SETREF(last, conn);
        } else {
            Py_DECREF(conn);
        }
    }
    if (PyErr_Occurred()) {
        goto error;
    }
    Py_DECREF(it);
    PyObject *result = Py_BuildValue("(nN)", sent, last);
    return result;
error:
    Py_DECREF(it);
    Py_DECREF(last);
    return NULL;
}

static PyMethodDef sendnow_methods[] = {
    {"send", (PyCFunction)(void (*)(void))send_now, METH_FASTCALL, send_doc},
    {"fanout", (PyCFunction)(void (*)(void))fanout, METH_FASTCALL, fanout_doc},
    {NULL, NULL, 0, NULL},
};

static int
sendnow_exec(PyObject *Py_UNUSED(module))
{
    static const tether_name names[] = {
        {&str_fd, "_fd"},
        {&str_out, "_out"},
        {&str_protocol, "protocol"},
        {&str_state, "state"},
        {&str_sending_fragmented, "sending_fragmented"},
        {&str_transport, "transport"},
        {&str_is_closing, "is_closing"},
        {&str_get_write_buffer_size, "get_write_buffer_size"},
        {&str_write, "write"},
    };
    return intern_names(names, sizeof(names) / sizeof(names[0]));
}

static PyModuleDef_Slot sendnow_slots[] = {
    {Py_mod_exec, sendnow_exec},
#ifdef Py_GIL_DISABLED
    /* Nothing here keeps state between calls, so no GIL is needed. */
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef sendnow_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "tether._sendnow",
    .m_doc = "send(2) on a bare socket file descriptor; see tether._direct.",
    .m_size = 0,
    .m_methods = sendnow_methods,
    .m_slots = sendnow_slots,
};

PyMODINIT_FUNC
PyInit__sendnow(void)
{
    return PyModuleDef_Init(&sendnow_module);
}
