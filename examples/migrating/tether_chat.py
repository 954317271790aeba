"""psio_chat.py ported to tether: the same chat, on tether's by-sid API.

Run it with uvicorn::

    uvicorn tether_chat:app --port 8000

Clients connect with ``auth={"token": "letmein"}``, log in with a nick (kept
in their session), join and leave rooms, say something to a room, send a
private message to a nick, and get an acknowledgement for each. The others in
a room hear when someone joins, leaves or disconnects.

What differs from psio_chat.py, and why:

* the import, and the two lines that make the server and its ASGI app;
* each handler gets the socket, not its sid (``socket.sid`` is the sid);
* the token is checked in a middleware (``sio.use``), raising tether's
  ``ConnectionRefused``: a connect handler runs once the client is connected,
  so refusing there would disconnect it instead.

tests/examples/migrating/test_chat.py runs both under uvicorn and drives them
with the official socket.io-client through the same scenario.
"""

from tether import realtime

TOKEN = "letmein"

sio = realtime.Server()
app = sio.asgi_app()

# The sid of each logged-in nick, for private messages.
users: dict[str, str] = {}


@sio.use
def check_token(socket, auth):
    # Refused here, the client gets connect_error; refused in the connect
    # handler, it would get connect and then disconnect.
    if not auth or auth.get("token") != TOKEN:
        raise realtime.ConnectionRefused("bad token")


@sio.event
async def connect(socket, auth):
    await sio.save_session(socket.sid, {"nick": None})


async def nick_of(sid):
    session = await sio.get_session(sid)
    return session["nick"]


@sio.event
async def login(socket, nick):
    if not isinstance(nick, str) or not 0 < len(nick) <= 20:
        return {"ok": False, "error": "bad nick"}
    if nick in users:
        return {"ok": False, "error": "nick taken"}
    async with sio.session(socket.sid) as session:
        if session["nick"] is not None:
            return {"ok": False, "error": "already logged in"}
        session["nick"] = nick
    users[nick] = socket.sid
    return {"ok": True, "nick": nick}


@sio.event
async def whoami(socket):
    return {"nick": await nick_of(socket.sid)}


@sio.event
async def join(socket, room):
    nick = await nick_of(socket.sid)
    if nick is None:
        return {"ok": False, "error": "log in first"}
    await sio.enter_room(socket.sid, room)
    presence = {"room": room, "nick": nick, "joined": True}
    await sio.emit("presence", presence, room=room, skip_sid=socket.sid)
    return {"ok": True, "room": room}


@sio.event
async def leave(socket, room):
    if room not in sio.rooms(socket.sid):
        return {"ok": False, "error": f"not in {room}"}
    await sio.leave_room(socket.sid, room)
    presence = {"room": room, "nick": await nick_of(socket.sid), "joined": False}
    await sio.emit("presence", presence, room=room)
    return {"ok": True, "room": room}


@sio.event
async def say(socket, data):
    room = data.get("room")
    if room not in sio.rooms(socket.sid) or room == socket.sid:
        return {"ok": False, "error": f"not in {room}"}
    message = {"room": room, "nick": await nick_of(socket.sid), "text": data.get("text")}
    await sio.emit("message", message, room=room, skip_sid=socket.sid)
    return {"ok": True}


@sio.event
async def dm(socket, data):
    nick = await nick_of(socket.sid)
    if nick is None:
        return {"ok": False, "error": "log in first"}
    to = users.get(data.get("to"))
    if to is None:
        return {"ok": False, "error": "no such user"}
    await sio.emit("dm", {"from": nick, "text": data.get("text")}, to=to)
    return {"ok": True}


@sio.event
async def disconnect(socket, reason):
    # Still in its rooms, with its session, while this handler runs.
    nick = await nick_of(socket.sid)
    if nick is None:
        return
    del users[nick]
    for room in sio.rooms(socket.sid):
        if room != socket.sid:
            presence = {"room": room, "nick": nick, "joined": False}
            await sio.emit("presence", presence, room=room, skip_sid=socket.sid)
