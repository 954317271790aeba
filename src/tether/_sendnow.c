/*
 * Optional C accelerator for the asyncio layer's direct writes (see _direct.py).
 *
 * One function: send(2) on a socket the event loop owns, without blocking and
 * without SIGPIPE.  Python has no send() on a bare file descriptor (a
 * socket.socket made from one would close it when collected), and os.write()
 * is write(2), which costs more in the kernel than send(2) on a socket (the
 * VFS write path).  _direct.py falls back to os.write() without this module.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <limits.h>
#include <sys/socket.h>
#include <sys/types.h>

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0 /* where it is missing, Python ignores SIGPIPE anyway */
#endif

PyDoc_STRVAR(send_doc,
"send(fd, data, /) -> int\n\n"
"Send what the socket's buffer takes of data now; how many bytes (0 when\n"
"the buffer is full). Any other error raises OSError.");

static PyObject *
send_now(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "send() takes exactly 2 arguments");
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
    ssize_t sent;
    /* A non-blocking send of what fits: no wait to release the GIL for. */
    do {
        sent = send((int)fd, view.buf, (size_t)view.len, MSG_DONTWAIT | MSG_NOSIGNAL);
    } while (sent < 0 && errno == EINTR);
    PyBuffer_Release(&view);
    if (sent >= 0) {
        return PyLong_FromSsize_t(sent);
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
        return PyLong_FromLong(0);
    }
    return PyErr_SetFromErrno(PyExc_OSError);
}

static PyMethodDef sendnow_methods[] = {
    {"send", (PyCFunction)(void (*)(void))send_now, METH_FASTCALL, send_doc},
    {NULL, NULL, 0, NULL},
};

static PyModuleDef_Slot sendnow_slots[] = {
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
