/*
 * What the two sources of tether._hotpath share (_hotpath.c: the module and
 * the read step; _hotpath_send.c: the send step): attribute names interned
 * once at import, and three small attribute readers.
 */

#ifndef TETHER_HOTPATH_H
#define TETHER_HOTPATH_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

extern PyObject *str_get_buffer, *str_protocol, *str_deflate, *str_sending_fragmented,
    *str_metrics, *str_count_sends, *str_out, *str_out_size, *str_write_high_water,
    *str_flush, *str_flush_scheduled, *str_schedule_flush, *str_listener,
    *str_writing_paused, *str_messages, *str_queued_bytes, *str_rate, *str_limits,
    *str_max_queue, *str_max_queue_bytes, *str_state, *str_close_sent, *str_is_client,
    *str_reader, *str_buf, *str_asm, *str_msg_opcode, *str_closed, *str_max_whole,
    *str_on_message, *str_message_failed, *str_append, *str_missing, *str_read_max;

/* Read attribute name of obj as a C long / bool / identity test. -1 with an
 * exception set on failure. */
static inline int
attr_long(PyObject *obj, PyObject *name, long *out)
{
    PyObject *value = PyObject_GetAttr(obj, name);
    if (value == NULL) {
        return -1;
    }
    *out = PyLong_AsLong(value);
    Py_DECREF(value);
    return (*out == -1 && PyErr_Occurred()) ? -1 : 0;
}

static inline int
attr_is(PyObject *obj, PyObject *name, PyObject *expected)
{
    PyObject *value = PyObject_GetAttr(obj, name);
    if (value == NULL) {
        return -1;
    }
    int same = value == expected;
    Py_DECREF(value);
    return same;
}

static inline int
attr_true(PyObject *obj, PyObject *name)
{
    PyObject *value = PyObject_GetAttr(obj, name);
    if (value == NULL) {
        return -1;
    }
    int truth = PyObject_IsTrue(value);
    Py_DECREF(value);
    return truth;
}

/* A TypeError unless a METH_FASTCALL function got exactly want arguments. */
static inline int
check_nargs(const char *name, Py_ssize_t nargs, Py_ssize_t want)
{
    if (nargs == want) {
        return 0;
    }
    PyErr_Format(PyExc_TypeError, "%s() takes exactly %zd arguments (%zd given)", name, want, nargs);
    return -1;
}

/* _hotpath_send.c */
extern const char send_doc[];
PyObject *send_whole(PyObject *module, PyObject *const *args, Py_ssize_t nargs);

#endif
