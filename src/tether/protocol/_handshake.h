/* The plain opening handshake of _handshake.c, registered by _speedups.c. */
#ifndef TETHER_HANDSHAKE_H
#define TETHER_HANDSHAKE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

PyObject *tether_accept_plain(PyObject *module, PyObject *const *args, Py_ssize_t nargs);

#define TETHER_ACCEPT_PLAIN_DOC \
    "accept_plain(items, prefix, suffix, /)\n--\n\n" \
    "The common case of ServerHandshake.accept for a GET request whose\n" \
    "headers are ``items`` (names and values alternating): when its Upgrade,\n" \
    "Connection, Host, Sec-WebSocket-Version and Sec-WebSocket-Key pass the\n" \
    "checks of RFC 6455 §4.2.1 and it offers no subprotocol and no extension,\n" \
    "(the Sec-WebSocket-Accept value, prefix + that value + suffix); None for\n" \
    "anything else, which ServerHandshake.accept then judges."

#endif
