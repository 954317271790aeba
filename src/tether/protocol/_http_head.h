/* The request head parser of _http_head.c, registered by _speedups.c. */
#ifndef TETHER_HTTP_HEAD_H
#define TETHER_HTTP_HEAD_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

PyObject *tether_parse_request(PyObject *module, PyObject *const *args, Py_ssize_t nargs);

#define TETHER_PARSE_REQUEST_DOC \
    "parse_request(buf, max_bytes, max_count, shared, /)\n--\n\n" \
    "The common case of http.parse_request: None while the head is not whole\n" \
    "(and under max_bytes), (method, target, names and values alternating,\n" \
    "bytes used) for a well-formed HTTP/1.1 request head, and False for\n" \
    "anything else, which the Python parser then judges (and rejects with\n" \
    "its message).  ``shared`` maps the header names and values that most\n" \
    "requests repeat to one str each, returned instead of a copy."

#endif
