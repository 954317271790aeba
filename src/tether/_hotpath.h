/*
 * What the two sources of tether._hotpath share (_hotpath.c: the module and
 * the read step; _hotpath_send.c: the send step): the attribute names
 * interned once at import.  The helpers are _capi.h's.
 */

#ifndef TETHER_HOTPATH_H
#define TETHER_HOTPATH_H

#include "_capi.h"

extern PyObject *str_get_buffer, *str_protocol, *str_deflate, *str_sending_fragmented,
    *str_metrics, *str_count_sends, *str_out, *str_out_size, *str_write_high_water,
    *str_flush, *str_flush_scheduled, *str_schedule_flush, *str_listener,
    *str_writing_paused, *str_messages, *str_queued_bytes, *str_rate, *str_limits,
    *str_max_queue, *str_max_queue_bytes, *str_state, *str_close_sent, *str_is_client,
    *str_reader, *str_buf, *str_asm, *str_msg_opcode, *str_closed, *str_max_whole,
    *str_on_message, *str_message_failed, *str_append, *str_missing;

/* _hotpath_send.c */
extern const char send_doc[];
PyObject *send_whole(PyObject *module, PyObject *const *args, Py_ssize_t nargs);

#endif
