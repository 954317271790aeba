"""Low-level per-message callbacks: :class:`MessageHandler`.

The friendly API runs a coroutine per connection that awaits each message.
For the last bit of speed, a :class:`MessageHandler` is called straight from
the event loop's ``data_received`` for every message: no coroutine is resumed
per message and nothing waits in a queue.
"""

from __future__ import annotations

from .connection import Connection, Message

__all__ = ["MessageHandler"]


class MessageHandler:
    """Subclass it and pass an instance where a handler coroutine goes::

        class Echo(tether.MessageHandler):
            def on_message(self, connection, message):
                connection.send_nowait(message)

        async with tether.serve(Echo(), "127.0.0.1", 8765) as server:
            ...

    The methods run inside the event loop and must not block. Replies go out
    with :meth:`Connection.send_nowait`. Backpressure is automatic: while a
    connection's write buffer is above ``write_high_water``, reading from it
    pauses, so a peer that sends faster than it reads cannot grow our memory.
    An exception raised by ``on_message`` closes that connection with 1011.

    A server calls these methods straight from the connection's event-loop
    callbacks, with no task per connection (``on_close`` from the moment TCP
    is gone), unless a subclass overrides :meth:`__call__`: that one then
    runs as any handler coroutine does.
    """

    def on_open(self, connection: Connection) -> None:
        """The opening handshake is done."""

    def on_message(self, connection: Connection, message: Message) -> None:
        """A message arrived: ``str`` for text, ``bytes`` for binary."""

    def on_close(self, connection: Connection) -> None:
        """The connection is closed (``connection.close_code`` says how)."""

    async def __call__(self, connection: Connection) -> None:
        connection.listen(self)
        self.on_open(connection)
        try:
            await connection.wait_closed()
        finally:
            self.on_close(connection)
