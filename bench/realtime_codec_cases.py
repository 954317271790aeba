"""The cases of bench/realtime_codec.py, run in a child process against the
tether first on ``PYTHONPATH`` (a ``src/`` directory of one tree).

    python bench/realtime_codec_cases.py time ITERATIONS
        prints {"<case>": <ns per operation>, ...} as JSON, one timed run of each case
    python bench/realtime_codec_cases.py run CASE ITERATIONS
        runs CASE ITERATIONS times and nothing else (for callgrind)

Each case is one event through the sans-I/O codecs, with every check a
server makes: *decode* is an Engine.IO WebSocket frame (and its attachment
frames) to the Socket.IO packet's arguments; *encode* is an event (or ack)
and its arguments to the Engine.IO frames to send. The ``general`` encode
cases use only what both trees have (``Packet.event``/``Packet.ack``,
``JsonParser.encode``, ``engineio.encode_packet``); the ``helper`` cases use
the encode-once helpers (``JsonParser.encode_event``/``encode_ack``,
``engineio.encode_message``) and are skipped where the tree lacks them.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

from tether.realtime.protocol import engineio, parsers, socketio

MAX_PAYLOAD = 1_000_000
MAX_ATTACHMENTS = 10
ACK_ID = 12345

ECHO_ARG = "x" * 16
CHAT = {
    "id": "m-0f3a9c2e7b",
    "room": "general",
    "user": {"name": "alice", "id": 4711},
    "text": "Are we still on for the release review at three? I have the notes.",
    "ts": 1764757200123,
    "mentions": ["bob", "carol"],
}
BLOB = bytes(range(256)) * 4


def _frames(packet: socketio.Packet) -> list[str | bytes]:
    text, attachments = socketio.encode(packet)
    return ["4" + text, *attachments]


# (name, frames in as the WebSocket delivers them, how the reply is emitted)
SHAPES: dict[str, tuple[list[str | bytes], tuple[str, tuple[Any, ...], str, int | None]]] = {
    "echo": (
        _frames(socketio.Packet.event("echo", ECHO_ARG)),
        ("event", ("echo", ECHO_ARG), "/", None),
    ),
    "ack": (
        _frames(socketio.Packet.event("echo", ECHO_ARG, id=ACK_ID)),
        ("ack", (ECHO_ARG,), "/", ACK_ID),
    ),
    "chat": (
        _frames(socketio.Packet.event("message", CHAT, namespace="/chat")),
        ("event", ("message", CHAT), "/chat", None),
    ),
    "binary": (
        _frames(socketio.Packet.event("file", {"name": "a", "data": BLOB})),
        ("event", ("file", {"name": "a", "data": BLOB}), "/", None),
    ),
}


def decode_case(frames: list[str | bytes]) -> Callable[[], Any]:
    parser = parsers.JsonParser()
    decoder = parser.decoder(max_payload=MAX_PAYLOAD, max_attachments=MAX_ATTACHMENTS)
    decode_packet = engineio.decode_packet

    def run() -> Any:
        packet = None
        for frame in frames:
            packet = decoder.feed(decode_packet(frame, max_payload=MAX_PAYLOAD).data)
        assert packet is not None
        return packet.data[1:] if packet.id is None else packet.data

    return run


def encode_general(reply: tuple[str, tuple[Any, ...], str, int | None]) -> Callable[[], Any]:
    parser = parsers.JsonParser()
    kind, args, namespace, ack_id = reply
    Message, MESSAGE, encode_packet = (
        engineio.Packet,
        engineio.PacketType.MESSAGE,
        engineio.encode_packet,
    )
    Packet = socketio.Packet

    if kind == "event":

        def run() -> Any:
            packet = Packet.event(*args, namespace=namespace, id=ack_id)
            return [encode_packet(Message(MESSAGE, m)) for m in parser.encode(packet)]

    else:

        def run() -> Any:
            packet = Packet.ack(ack_id, *args, namespace=namespace)  # type: ignore[arg-type]
            return [encode_packet(Message(MESSAGE, m)) for m in parser.encode(packet)]

    return run


def encode_helper(reply: tuple[str, tuple[Any, ...], str, int | None]) -> Callable[[], Any] | None:
    parser: Any = parsers.JsonParser()
    if not hasattr(parser, "encode_event"):
        return None
    kind, args, namespace, ack_id = reply
    encode_message = engineio.encode_message  # type: ignore[attr-defined]
    if kind == "event":
        name, rest = args[0], args[1:]

        def run() -> Any:
            return [encode_message(m) for m in parser.encode_event(name, rest, namespace, ack_id)]

    else:

        def run() -> Any:
            return [encode_message(m) for m in parser.encode_ack(ack_id, args, namespace)]

    return run


def cases() -> dict[str, Callable[[], Any]]:
    found: dict[str, Callable[[], Any]] = {}
    for shape, (frames, reply) in SHAPES.items():
        found[f"{shape} decode"] = decode_case(frames)
        found[f"{shape} encode"] = encode_general(reply)
        helper = encode_helper(reply)
        if helper is not None:
            found[f"{shape} encode (helper)"] = helper
    return found


def timed(run: Callable[[], Any], iterations: int) -> float:
    for _ in range(min(iterations, 1000)):  # warm-up: caches, the specializing interpreter
        run()
    clock = time.perf_counter_ns
    start = clock()
    for _ in range(iterations):
        run()
    return (clock() - start) / iterations


def main() -> None:
    mode = sys.argv[1]
    if mode == "time":
        iterations = int(sys.argv[2])
        print(json.dumps({name: timed(run, iterations) for name, run in cases().items()}))
    elif mode == "run":
        name, iterations = sys.argv[2], int(sys.argv[3])
        run = cases().get(name)
        if run is not None:
            for _ in range(iterations):
                run()
        print(json.dumps({"found": run is not None}))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
