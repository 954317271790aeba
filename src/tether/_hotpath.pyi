"""Type stub for the optional C extension; see ``_hotpath.c`` and its callers,
:mod:`tether._websocket` (receive, buffer_for) and :mod:`tether.connection`
(send, held_back)."""

def receive(
    stream: object,
    protocol: object,
    scratch: memoryview,
    start: int,
    nbytes: int,
    open_state: object,
    /,
) -> tuple[int, int, int]: ...
def buffer_for(
    stream: object, protocol: object, scratch: memoryview, min_read: int, /
) -> memoryview: ...
def send(stream: object, message: object, open_state: object, vectored_at: int, /) -> bool: ...
def held_back(protocol: object, /) -> bool: ...
