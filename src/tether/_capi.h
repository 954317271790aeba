/*
 * What the asyncio layer's C modules (_sendnow.c, and _hotpath.c with
 * _hotpath_send.c through _hotpath.h) share: the table of attribute names
 * each interns once at import, a fast-call argument count check, and three
 * small attribute readers.
 */

#ifndef TETHER_CAPI_H
#define TETHER_CAPI_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* One entry of a module's name table: where the interned name goes. */
typedef struct {
    PyObject **slot;
    const char *name;
} tether_name;

/* Intern every name of the table not interned yet (a module's exec slot
 * may run more than once: the names live as long as the process).  0, or -1
 * with an exception set. */
static inline int
intern_names(const tether_name *names, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (*names[i].slot == NULL) {
            *names[i].slot = PyUnicode_InternFromString(names[i].name);
            if (*names[i].slot == NULL) {
                return -1;
            }
        }
    }
    return 0;
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

#endif
