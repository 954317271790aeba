/*
 * Optional C accelerator for the common case of a socket read (see
 * _websocket.WebSocketStream.buffer_updated).
 *
 * receive(): the whole, small, unfragmented text and binary frames at the
 * front of the loop's scratch buffer, unmasked, decoded and handed on
 * without a Python frame per message: to the connection's MessageHandler
 * (on_message), or into its bounded message queue for recv().  It stops at
 * the first frame that is anything else (a control frame, a fragment, a
 * compressed or oversized frame, invalid UTF-8, bytes that do not complete a
 * frame) and leaves those bytes, untouched, to the core's parser, which then
 * does exactly what it does without this module.  Every check that would
 * take that parser off its own shortcut (reader.Reader._parse) sends the
 * whole read there instead, so the two agree on everything they both see.
 *
 * It reads the private state of the asyncio layer and of the core's reader
 * (the names below): those modules and this one change together, and the
 * tests run both with and without it.
 */

#include <stdint.h>
#include <string.h>

#include "_hotpath.h"
#include "protocol/_mask.h"

/* The attribute and method names of _hotpath.h, interned at import. */
PyObject *str_get_buffer, *str_protocol, *str_deflate, *str_sending_fragmented,
    *str_metrics, *str_count_sends, *str_out, *str_out_size, *str_write_high_water,
    *str_flush, *str_flush_scheduled, *str_schedule_flush, *str_listener,
    *str_writing_paused, *str_messages, *str_queued_bytes, *str_rate, *str_limits,
    *str_max_queue, *str_max_queue_bytes, *str_state, *str_close_sent, *str_is_client,
    *str_reader, *str_buf, *str_asm, *str_msg_opcode, *str_closed, *str_max_whole,
    *str_on_message, *str_message_failed, *str_append, *str_missing;

/* tether.exceptions.ConnectionClosed and collections.deque, set at import. */
static PyObject *connection_closed, *deque_type;

/* Whether the core may be skipped for this read: the connection open with no
 * close frame sent, and its reader with nothing of a frame or a message in
 * progress (so a frame starts where the C step begins: at the front of the
 * scratch buffer, or right after the large frame the core just completed).
 * Sets *masked (§5.1: a server's peer masks) and *max_whole (the reader's own
 * bound for its shortcut); when 0 because the reader is collecting a large
 * frame across reads, *missing to the bytes that frame still needs.  1, 0,
 * or -1. */
static int
core_idle(PyObject *protocol, PyObject *open_state, int *masked, Py_ssize_t *max_whole,
          Py_ssize_t *missing)
{
    int ok = attr_is(protocol, str_state, open_state);
    if (ok <= 0) {
        return ok;
    }
    if ((ok = attr_is(protocol, str_close_sent, Py_None)) <= 0) {
        return ok;
    }
    int client = attr_true(protocol, str_is_client);
    if (client < 0) {
        return -1;
    }
    *masked = !client;
    PyObject *reader = PyObject_GetAttr(protocol, str_reader);
    if (reader == NULL) {
        return -1;
    }
    long opcode = 0, whole = 0;
    /* Bytes held back go in front of this read: the core's. */
    int pending = attr_true(reader, str_buf);
    ok = pending < 0 ? -1 : !pending;
    if (ok == 1) {
        ok = attr_is(reader, str_asm, Py_None);
        if (ok == 0) {
            /* _asm: (first header byte, the Assembler collecting the payload) */
            PyObject *collecting = PyObject_GetAttr(reader, str_asm);
            long left = 0;
            if (collecting == NULL || !PyTuple_Check(collecting) || PyTuple_GET_SIZE(collecting) != 2
                || attr_long(PyTuple_GET_ITEM(collecting, 1), str_missing, &left) < 0) {
                ok = -1;
            }
            Py_XDECREF(collecting);
            *missing = (Py_ssize_t)left;
        }
    }
    if (ok == 1) {
        int closed = attr_true(reader, str_closed);
        ok = closed < 0 ? -1 : !closed;
    }
    if (ok == 1) {
        ok = attr_long(reader, str_msg_opcode, &opcode) < 0 ? -1 : opcode == 0;
    }
    if (ok == 1) {
        ok = attr_long(reader, str_max_whole, &whole) < 0 ? -1 : 1;
    }
    Py_DECREF(reader);
    *max_whole = (Py_ssize_t)whole;
    return ok;
}

/* Whether delivering to listener may go on after a callback: the stream
 * still listens to it, can write, and the core is still open. */
static int
may_deliver(PyObject *stream, PyObject *protocol, PyObject *listener, PyObject *open_state)
{
    int ok = attr_is(stream, str_listener, listener);
    if (ok == 1) {
        int paused = attr_true(stream, str_writing_paused);
        ok = paused < 0 ? -1 : !paused;
    }
    if (ok == 1) {
        ok = attr_is(protocol, str_state, open_state);
    }
    if (ok == 1) {
        ok = attr_is(protocol, str_close_sent, Py_None);
    }
    return ok;
}

/* Call listener.on_message(stream, message).  A ConnectionClosed (a reply
 * that raced with the close) is dropped; any other exception goes to
 * stream._message_failed(exc), which logs it and fails the connection, as
 * WebSocketStream._deliver does.  0, or -1 with an exception set. */
static int
deliver(PyObject *listener, PyObject *stream, PyObject *message)
{
    PyObject *args[3] = {listener, stream, message};
    PyObject *res = PyObject_VectorcallMethod(
        str_on_message, args, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    if (res != NULL) {
        Py_DECREF(res);
        return 0;
    }
    if (PyErr_ExceptionMatches(connection_closed)) {
        PyErr_Clear();
        return 0;
    }
    if (!PyErr_ExceptionMatches(PyExc_Exception)) {
        return -1; /* KeyboardInterrupt, SystemExit: not ours to catch */
    }
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL) {
        PyException_SetTraceback(value, tb);
    }
    res = PyObject_CallMethodOneArg(stream, str_message_failed, value);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    if (res == NULL) {
        return -1;
    }
    Py_DECREF(res);
    return 0;
}

PyDoc_STRVAR(receive_doc,
"receive(stream, protocol, scratch, start, nbytes, open_state, /) -> (pos, count, full)\n\n"
"Hand on the whole small text and binary messages at the front of\n"
"scratch[start:nbytes]: to stream's listener if it has one, else into its\n"
"queue.  start: where a frame starts (0, or the end of the large frame the\n"
"core just completed).  pos: where the messages handed on end (what follows\n"
"is left as it was for the core's parser); count: the messages handed on;\n"
"full: whether they filled the queue.  (start, 0, 0) when the core must\n"
"parse the rest of this read; (n, -1, 0) when it is collecting a large\n"
"frame that the first n bytes complete (start 0 only): those are the core's,\n"
"and the C step may go on from n.");

static PyObject *
receive(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (check_nargs("receive", nargs, 6) < 0) {
        return NULL;
    }
    PyObject *stream = args[0], *protocol = args[1], *open_state = args[5];
    Py_ssize_t start = PyLong_AsSsize_t(args[3]);
    if (start == -1 && PyErr_Occurred()) {
        return NULL;
    }
    Py_ssize_t nbytes = PyLong_AsSsize_t(args[4]);
    if (nbytes == -1 && PyErr_Occurred()) {
        return NULL;
    }
    Py_ssize_t pos = start, count = 0;
    PyObject *listener = NULL, *messages = NULL, *result = NULL;
    Py_buffer view = {0};
    int masked = 1;
    Py_ssize_t max_whole = 0, missing = 0;
    Py_ssize_t room = PY_SSIZE_T_MAX, budget = PY_SSIZE_T_MAX, queued = 0, queue_bytes = 0;

    int ok = attr_is(stream, str_rate, Py_None);
    if (ok == 1) {
        ok = core_idle(protocol, open_state, &masked, &max_whole, &missing);
    }
    if (ok == 0 && start == 0 && missing > 0 && missing < nbytes) {
        /* The large frame the core collects ends inside this read: it takes
         * those bytes, and then the caller calls again from where it ends. */
        pos = missing;
        count = -1;
    }
    if (ok <= 0) {
        goto done;
    }
    listener = PyObject_GetAttr(stream, str_listener);
    if (listener == NULL) {
        ok = -1;
        goto done;
    }
    /* Queue mode: room in number and in bytes, as _feed gives the core. */
    if (listener == Py_None) {
        long max_queue, max_bytes, queued_l;
        PyObject *limits = PyObject_GetAttr(stream, str_limits);
        if (limits == NULL) {
            ok = -1;
            goto done;
        }
        ok = attr_long(limits, str_max_queue, &max_queue) == 0
             && attr_long(limits, str_max_queue_bytes, &max_bytes) == 0
             && attr_long(stream, str_queued_bytes, &queued_l) == 0;
        Py_DECREF(limits);
        if (!ok) {
            ok = -1;
            goto done;
        }
        messages = PyObject_GetAttr(stream, str_messages);
        if (messages == NULL) {
            ok = -1;
            goto done;
        }
        Py_ssize_t held = PyObject_Size(messages);
        if (held < 0) {
            ok = -1;
            goto done;
        }
        queued = (Py_ssize_t)queued_l;
        queue_bytes = (Py_ssize_t)max_bytes;
        room = (Py_ssize_t)max_queue - held;
        budget = queue_bytes - queued;
        if (room <= 0 || budget <= 0) {
            goto done; /* full: the core holds the read back */
        }
        if (Py_TYPE(messages) != (PyTypeObject *)deque_type) {
            /* The shared empty queue of a connection that never had a
             * message wait: this one gets its own (as _feed does). */
            Py_SETREF(messages, PyObject_CallNoArgs(deque_type));
            if (messages == NULL || PyObject_SetAttr(stream, str_messages, messages) < 0) {
                ok = -1;
                goto done;
            }
        }
    }
    else {
        /* As _feed: a listener gets messages only while nothing waits
         * before them and the peer reads our replies. */
        ok = attr_true(stream, str_messages);
        if (ok == 0) {
            int paused = attr_true(stream, str_writing_paused);
            ok = paused < 0 ? -1 : !paused;
        }
        else if (ok == 1) {
            ok = 0;
        }
        if (ok <= 0) {
            goto done;
        }
    }
    if (PyObject_GetBuffer(args[2], &view, PyBUF_WRITABLE) < 0) {
        ok = -1;
        goto done;
    }
    if (start < 0 || nbytes < start || nbytes > view.len) {
        PyErr_SetString(PyExc_ValueError, "start and nbytes are not within the scratch buffer");
        ok = -1;
        goto done;
    }
    unsigned char *buf = view.buf;
    while (count < room && budget > 0 && nbytes - pos >= 2) {
        unsigned char b0 = buf[pos], b1 = buf[pos + 1];
        /* FIN, no RSV bits, text or binary; the MASK bit as §5.1 wants. */
        if ((b0 != 0x81 && b0 != 0x82) || ((b1 >> 7) != masked)) {
            break;
        }
        Py_ssize_t head = 2;
        uint64_t length = b1 & 0x7F;
        if (length == 126) {
            if (nbytes - pos < 4) {
                break;
            }
            length = ((uint64_t)buf[pos + 2] << 8) | buf[pos + 3];
            head = 4;
        }
        else if (length == 127) {
            if (nbytes - pos < 10) {
                break;
            }
            length = 0;
            for (int i = 2; i < 10; i++) {
                length = (length << 8) | buf[pos + i];
            }
            head = 10;
        }
        if (length > (uint64_t)max_whole) {
            break; /* also a 64-bit length with its top bit set: the core fails it */
        }
        const unsigned char *key = buf + pos + head;
        if (masked) {
            head += 4;
        }
        Py_ssize_t n = (Py_ssize_t)length;
        if (nbytes - pos - head < n) {
            break; /* incomplete: the core keeps it */
        }
        unsigned char *payload = buf + pos + head;
        PyObject *message;
        if (b0 == 0x81) {
            if (masked) {
                xor_mask(payload, payload, (size_t)n, key);
            }
            message = PyUnicode_DecodeUTF8((const char *)payload, n, NULL);
            if (message == NULL) {
                if (masked) {
                    xor_mask(payload, payload, (size_t)n, key); /* as it was */
                }
                if (PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
                    PyErr_Clear(); /* §8.1: the core fails it with 1007 */
                    break;
                }
                ok = -1;
                goto done;
            }
        }
        else {
            message = PyBytes_FromStringAndSize(NULL, n);
            if (message == NULL) {
                ok = -1;
                goto done;
            }
            if (masked) {
                xor_mask(payload, (unsigned char *)PyBytes_AS_STRING(message), (size_t)n, key);
            }
            else {
                memcpy(PyBytes_AS_STRING(message), payload, (size_t)n);
            }
        }
        pos += head + n;
        count++;
        if (messages != NULL) {
            budget -= head + n;
            queued += PyUnicode_Check(message) ? PyUnicode_GET_LENGTH(message) : n;
            PyObject *res = PyObject_CallMethodOneArg(messages, str_append, message);
            Py_DECREF(message);
            if (res == NULL) {
                ok = -1;
                goto done;
            }
            Py_DECREF(res);
            continue;
        }
        int failed = deliver(listener, stream, message);
        Py_DECREF(message);
        if (failed < 0) {
            ok = -1;
            goto done;
        }
        if ((ok = may_deliver(stream, protocol, listener, open_state)) <= 0) {
            break;
        }
    }
    if (ok >= 0 && messages != NULL && count > 0) {
        PyObject *value = PyLong_FromSsize_t(queued);
        if (value == NULL || PyObject_SetAttr(stream, str_queued_bytes, value) < 0) {
            ok = -1;
        }
        Py_XDECREF(value);
    }
done:
    if (view.obj != NULL) {
        PyBuffer_Release(&view);
    }
    if (ok >= 0 || !PyErr_Occurred()) {
        /* Whether the queue is full now (_queue_full): reading pauses. */
        int full = messages != NULL && count > 0 && (count >= room || queued >= queue_bytes);
        result = Py_BuildValue("(nni)", pos, count, full);
    }
    Py_XDECREF(listener);
    Py_XDECREF(messages);
    return result;
}

PyDoc_STRVAR(buffer_for_doc,
"buffer_for(stream, protocol, scratch, min_read, /) -> memoryview\n\n"
"protocol.get_buffer(scratch) when the core holds bytes back; else the\n"
"front of scratch, as much of it as the stream's queue has bytes left for\n"
"(stream.limits.max_queue_bytes - stream._queued_bytes), but at least\n"
"min_read: scratch itself when that is all of it (the usual case).");

static PyObject *
buffer_for(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (check_nargs("buffer_for", nargs, 4) < 0) {
        return NULL;
    }
    PyObject *stream = args[0], *protocol = args[1], *scratch = args[2];
    PyObject *reader = PyObject_GetAttr(protocol, str_reader);
    if (reader == NULL) {
        return NULL;
    }
    int pending = attr_true(reader, str_buf);
    Py_DECREF(reader);
    if (pending < 0) {
        return NULL;
    }
    if (pending) {
        return PyObject_CallMethodOneArg(protocol, str_get_buffer, scratch);
    }
    long max_bytes = 0, queued = 0;
    PyObject *limits = PyObject_GetAttr(stream, str_limits);
    if (limits == NULL) {
        return NULL;
    }
    int failed = attr_long(limits, str_max_queue_bytes, &max_bytes) < 0
                 || attr_long(stream, str_queued_bytes, &queued) < 0;
    Py_DECREF(limits);
    Py_ssize_t size = PyObject_Size(scratch);
    Py_ssize_t min_read = PyLong_AsSsize_t(args[3]);
    if (failed || size < 0 || (min_read == -1 && PyErr_Occurred())) {
        return NULL;
    }
    Py_ssize_t room = (Py_ssize_t)(max_bytes - queued);
    if (room < min_read) {
        room = min_read;
    }
    if (room >= size) {
        return Py_NewRef(scratch);
    }
    return PySequence_GetSlice(scratch, 0, room);
}

PyDoc_STRVAR(held_back_doc,
"held_back(protocol, /) -> bool\n\n"
"Whether the core holds received bytes back unparsed (protocol.pending_bytes).");

static PyObject *
held_back(PyObject *Py_UNUSED(module), PyObject *protocol)
{
    PyObject *reader = PyObject_GetAttr(protocol, str_reader);
    if (reader == NULL) {
        return NULL;
    }
    int pending = attr_true(reader, str_buf);
    Py_DECREF(reader);
    return pending < 0 ? NULL : PyBool_FromLong(pending);
}

static PyMethodDef hotpath_methods[] = {
    {"held_back", held_back, METH_O, held_back_doc},
    {"buffer_for", (PyCFunction)(void (*)(void))buffer_for, METH_FASTCALL, buffer_for_doc},
    {"receive", (PyCFunction)(void (*)(void))receive, METH_FASTCALL, receive_doc},
    {"send", (PyCFunction)(void (*)(void))send_whole, METH_FASTCALL, send_doc},
    {NULL, NULL, 0, NULL},
};

static PyObject *
import_attr(const char *module, const char *name)
{
    PyObject *mod = PyImport_ImportModule(module);
    if (mod == NULL) {
        return NULL;
    }
    PyObject *value = PyObject_GetAttrString(mod, name);
    Py_DECREF(mod);
    return value;
}

static int
hotpath_exec(PyObject *Py_UNUSED(module))
{
    static const tether_name names[] = {
        {&str_get_buffer, "get_buffer"},
        {&str_protocol, "protocol"},
        {&str_deflate, "deflate"},
        {&str_sending_fragmented, "sending_fragmented"},
        {&str_metrics, "metrics"},
        {&str_count_sends, "count_sends"},
        {&str_out, "_out"},
        {&str_out_size, "_out_size"},
        {&str_write_high_water, "write_high_water"},
        {&str_flush, "flush"},
        {&str_flush_scheduled, "_flush_scheduled"},
        {&str_schedule_flush, "_schedule_flush"},
        {&str_listener, "_listener"},
        {&str_writing_paused, "_writing_paused"},
        {&str_messages, "_messages"},
        {&str_queued_bytes, "_queued_bytes"},
        {&str_rate, "_rate"},
        {&str_limits, "limits"},
        {&str_max_queue, "max_queue"},
        {&str_max_queue_bytes, "max_queue_bytes"},
        {&str_state, "state"},
        {&str_close_sent, "close_sent"},
        {&str_is_client, "is_client"},
        {&str_reader, "_reader"},
        {&str_buf, "_buf"},
        {&str_asm, "_asm"},
        {&str_msg_opcode, "_msg_opcode"},
        {&str_closed, "_closed"},
        {&str_max_whole, "_max_whole"},
        {&str_on_message, "on_message"},
        {&str_message_failed, "_message_failed"},
        {&str_append, "append"},
        {&str_missing, "missing"},
    };
    if (intern_names(names, sizeof(names) / sizeof(names[0])) < 0) {
        return -1;
    }
    if (connection_closed == NULL) {
        connection_closed = import_attr("tether.exceptions", "ConnectionClosed");
        if (connection_closed == NULL) {
            return -1;
        }
    }
    if (deque_type == NULL) {
        deque_type = import_attr("collections", "deque");
        if (deque_type == NULL) {
            return -1;
        }
    }
    return 0;
}

static PyModuleDef_Slot hotpath_slots[] = {
    {Py_mod_exec, hotpath_exec},
    {0, NULL},
};

static struct PyModuleDef hotpath_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "tether._hotpath",
    .m_doc = "The common case of a socket read in C; see tether._websocket.",
    .m_size = 0,
    .m_methods = hotpath_methods,
    .m_slots = hotpath_slots,
};

PyMODINIT_FUNC
PyInit__hotpath(void)
{
    return PyModuleDef_Init(&hotpath_module);
}
