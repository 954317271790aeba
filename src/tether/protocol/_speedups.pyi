"""Type stub for the optional C extension; see :mod:`tether.protocol.speedups`."""

STOP_NEED_DATA: int
STOP_BATCH: int
STOP_HEADER: int
STOP_BAD_LENGTH: int
STOP_BAD_MASK: int

def apply_mask(data: bytes | bytearray | memoryview, mask: bytes, /) -> bytes: ...
def utf8_valid_prefix(data: bytes | bytearray | memoryview, /) -> int: ...
def parse_frames(
    buf: bytes | bytearray | memoryview,
    pos: int,
    end: int,
    expect_mask: bool,
    max_frames: int,
    max_len: int,
    /,
) -> tuple[list[tuple[int, bytes]], int, int, int, int]: ...
def parse_request(
    buf: bytes | bytearray | memoryview, max_bytes: int, max_count: int, shared: dict[str, str], /
) -> tuple[str, str, list[str], int] | bool | None: ...

class Assembler:
    def __init__(self, length: int, mask: bytes | bytearray | memoryview, /) -> None: ...
    @property
    def missing(self) -> int: ...
    def feed(self, buf: bytes | bytearray | memoryview, pos: int, end: int, /) -> int: ...
    def take(self) -> bytes: ...
