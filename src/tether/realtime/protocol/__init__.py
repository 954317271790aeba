"""The realtime layer's sans-I/O bottom: bytes and packets, no sockets, no asyncio.

* :mod:`.engineio`: Engine.IO v4 packets, WebSocket frames and long-polling
  payloads, the open handshake and the upgrade probe;
* :mod:`.socketio`: Socket.IO v5 packets, their text form and their binary
  attachments (where a Socket.IO packet is decoded);
* :mod:`.rooms`: which sockets are in which rooms, and whom a broadcast
  reaches (where a room broadcast is chosen);
* :mod:`.checks`: the input checks both codecs share (sizes against a limit,
  strict JSON).

Both codecs define a ``Packet`` and a ``PacketType``; import the modules, not
the names, to keep them apart::

    from tether.realtime.protocol import engineio, socketio
"""
