"""A chat server written for python-socketio 5, the way its users write one.

Run it with uvicorn::

    uvicorn psio_chat:app --port 8000

Clients connect with ``auth={"token": "letmein"}``, log in with a nick (kept
in their session), join and leave rooms, say something to a room, send a
private message to a nick, and get an acknowledgement for each. The others in
a room hear when someone joins, leaves or disconnects.

Its port to tether is tether_chat.py, next to it.
tests/examples/migrating/test_chat.py runs both under uvicorn and drives them
with the official socket.io-client through the same scenario.
"""

import socketio

TOKEN = "letmein"

sio = socketio.AsyncServer(async_mode="asgi")
app = socketio.ASGIApp(sio)

# The sid of each logged-in nick, for private messages.
users: dict[str, str] = {}


@sio.event
async def connect(sid, environ, auth):
    if not auth or auth.get("token") != TOKEN:
        raise socketio.exceptions.ConnectionRefusedError("bad token")
    await sio.save_session(sid, {"nick": None})


async def nick_of(sid):
    session = await sio.get_session(sid)
    return session["nick"]


@sio.event
async def login(sid, nick):
    if not isinstance(nick, str) or not 0 < len(nick) <= 20:
        return {"ok": False, "error": "bad nick"}
    if nick in users:
        return {"ok": False, "error": "nick taken"}
    async with sio.session(sid) as session:
        if session["nick"] is not None:
            return {"ok": False, "error": "already logged in"}
        session["nick"] = nick
    users[nick] = sid
    return {"ok": True, "nick": nick}


@sio.event
async def whoami(sid):
    return {"nick": await nick_of(sid)}


@sio.event
async def join(sid, room):
    nick = await nick_of(sid)
    if nick is None:
        return {"ok": False, "error": "log in first"}
    await sio.enter_room(sid, room)
    presence = {"room": room, "nick": nick, "joined": True}
    await sio.emit("presence", presence, room=room, skip_sid=sid)
    return {"ok": True, "room": room}


@sio.event
async def leave(sid, room):
    if room not in sio.rooms(sid):
        return {"ok": False, "error": f"not in {room}"}
    await sio.leave_room(sid, room)
    presence = {"room": room, "nick": await nick_of(sid), "joined": False}
    await sio.emit("presence", presence, room=room)
    return {"ok": True, "room": room}


@sio.event
async def say(sid, data):
    room = data.get("room")
    if room not in sio.rooms(sid) or room == sid:
        return {"ok": False, "error": f"not in {room}"}
    message = {"room": room, "nick": await nick_of(sid), "text": data.get("text")}
    await sio.emit("message", message, room=room, skip_sid=sid)
    return {"ok": True}


@sio.event
async def dm(sid, data):
    nick = await nick_of(sid)
    if nick is None:
        return {"ok": False, "error": "log in first"}
    to = users.get(data.get("to"))
    if to is None:
        return {"ok": False, "error": "no such user"}
    await sio.emit("dm", {"from": nick, "text": data.get("text")}, to=to)
    return {"ok": True}


@sio.event
async def disconnect(sid, reason):
    # Still in its rooms, with its session, while this handler runs.
    nick = await nick_of(sid)
    if nick is None:
        return
    del users[nick]
    for room in sio.rooms(sid):
        if room != sid:
            presence = {"room": room, "nick": nick, "joined": False}
            await sio.emit("presence", presence, room=room, skip_sid=sid)
