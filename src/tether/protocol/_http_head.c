/*
 * The common case of the HTTP/1.1 request head parser (http.parse_request,
 * RFC 7230 §3), for the opening handshake of every connection (RFC 6455
 * §4.2.1).  It accepts only what the Python parser accepts in the same way,
 * and for anything else (a head over the limits, a malformed line, bytes
 * the Python parser decodes with replacement) it returns False: the Python
 * parser then raises with its message, or parses what is unusual but valid.
 * tests/protocol/test_http_head.py compares the two on random heads.
 */

#include "_http_head.h"

#include <string.h>

/* RFC 7230 §3.2.6 tchar. */
static int
is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
        return 1;
    }
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* RFC 7230 §3.2: field-value octets (visible, space, tab, obs-text). */
static int
is_vchar(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

/* The str of p[0:n] (Latin-1), the shared one when ``shared`` has it. */
static PyObject *
text(const unsigned char *p, Py_ssize_t n, PyObject *shared)
{
    PyObject *s = PyUnicode_DecodeLatin1((const char *)p, n, NULL);
    if (s == NULL) {
        return NULL;
    }
    PyObject *found = PyDict_GetItemWithError(shared, s);
    if (found != NULL) {
        Py_INCREF(found);
        Py_DECREF(s);
        return found;
    }
    if (PyErr_Occurred()) {
        Py_DECREF(s);
        return NULL;
    }
    return s;
}

/* Append name and value of the header line p[0:n]; 1 done, 0 not the plain
 * case, -1 error. */
static int
header_line(const unsigned char *p, Py_ssize_t n, PyObject *items, PyObject *shared)
{
    Py_ssize_t colon = 0;
    while (colon < n && is_tchar(p[colon])) {
        colon++;
    }
    /* §3.2.4: no whitespace between the name and the colon. */
    if (colon == 0 || colon == n || p[colon] != ':') {
        return 0;
    }
    Py_ssize_t start = colon + 1, end = n;
    for (Py_ssize_t i = start; i < n; i++) {
        if (!is_vchar(p[i])) {
            return 0;
        }
    }
    while (start < end && (p[start] == ' ' || p[start] == '\t')) {
        start++;
    }
    while (end > start && (p[end - 1] == ' ' || p[end - 1] == '\t')) {
        end--;
    }
    PyObject *name = text(p, colon, shared);
    if (name == NULL) {
        return -1;
    }
    int failed = PyList_Append(items, name);
    Py_DECREF(name);
    if (failed) {
        return -1;
    }
    PyObject *value = text(p + start, end - start, shared);
    if (value == NULL) {
        return -1;
    }
    failed = PyList_Append(items, value);
    Py_DECREF(value);
    return failed ? -1 : 1;
}

static PyObject *
not_here(void)
{
    Py_RETURN_FALSE;
}

PyObject *
tether_parse_request(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 4) {
        PyErr_Format(PyExc_TypeError, "parse_request() takes exactly 4 arguments (%zd given)",
                     nargs);
        return NULL;
    }
    Py_ssize_t max_bytes = PyLong_AsSsize_t(args[1]);
    Py_ssize_t max_count = PyLong_AsSsize_t(args[2]);
    if ((max_bytes == -1 || max_count == -1) && PyErr_Occurred()) {
        return NULL;
    }
    PyObject *shared = args[3];
    if (!PyDict_Check(shared)) {
        PyErr_SetString(PyExc_TypeError, "shared must be a dict");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    const unsigned char *p = view.buf;
    Py_ssize_t len = view.len, scan = len < max_bytes ? len : max_bytes, end = -1;
    PyObject *result = NULL, *items = NULL, *method = NULL, *target = NULL;

    /* The blank line must end within max_bytes (http._find_head). */
    for (Py_ssize_t i = 0; i + 4 <= scan; i++) {
        if (p[i] == '\r' && p[i + 1] == '\n' && p[i + 2] == '\r' && p[i + 3] == '\n') {
            end = i;
            break;
        }
    }
    if (end < 0) {
        if (len >= max_bytes) {
            result = not_here(); /* too large: the Python parser says so */
        }
        else {
            result = Py_None;
            Py_INCREF(result);
        }
        goto done;
    }
    /* The request line: METHOD SP target SP HTTP/1.1 (§3.1.1). */
    Py_ssize_t line_end = 0;
    while (line_end < end && !(p[line_end] == '\r' && p[line_end + 1] == '\n')) {
        line_end++;
    }
    Py_ssize_t m = 0;
    while (m < line_end && p[m] >= 'A' && p[m] <= 'Z') {
        m++;
    }
    if (m == 0 || m >= line_end || p[m] != ' ') {
        result = not_here();
        goto done;
    }
    Py_ssize_t t = m + 1, t_end = t;
    /* Printable ASCII only; the Python parser decodes anything else with
     * replacement, and rejects whitespace. */
    while (t_end < line_end && p[t_end] > 0x20 && p[t_end] < 0x7f) {
        t_end++;
    }
    if (t_end == t || line_end - t_end != 9 || memcmp(p + t_end, " HTTP/1.1", 9) != 0) {
        result = not_here();
        goto done;
    }
    items = PyList_New(0);
    if (items == NULL) {
        goto done;
    }
    Py_ssize_t count = 0, pos = line_end + 2;
    if (line_end < end) {
        while (pos <= end) {
            Py_ssize_t stop = pos;
            while (stop < end && !(p[stop] == '\r' && p[stop + 1] == '\n')) {
                stop++;
            }
            if (++count > max_count) {
                result = not_here(); /* too many lines: the Python parser says so */
                goto done;
            }
            int got = header_line(p + pos, stop - pos, items, shared);
            if (got < 0) {
                goto done;
            }
            if (got == 0) {
                result = not_here();
                goto done;
            }
            pos = stop + 2;
        }
    }
    method = PyUnicode_DecodeASCII((const char *)p, m, NULL);
    target = method == NULL ? NULL : PyUnicode_DecodeASCII((const char *)p + t, t_end - t, NULL);
    if (target != NULL) {
        result = Py_BuildValue("(OOOn)", method, target, items, end + 4);
    }

done:
    Py_XDECREF(method);
    Py_XDECREF(target);
    Py_XDECREF(items);
    PyBuffer_Release(&view);
    return result;
}
