"""The FastAPI app behind the live-correction page, and a server that runs it beside the control loop.

Routes (all of them behind the token when there is one):

- ``GET /``: the page (embodied/web/static/index.html, with its app.js and style.css under /static);
- ``GET /api/state``: `LiveSession.snapshot()` as JSON;
- ``GET /api/frames/{camera}.jpg``: the camera's latest frame (header X-Frame-Seq: its sequence number);
- ``POST /api/command``: one message (below) as a JSON body; 400 with {"error": ...} when it is malformed;
- ``WS /ws``: the server pushes ``{"type": "state", ...snapshot}`` whenever the session changes (at most
  `MAX_PUSH_HZ` times a second); the client sends messages and gets ``{"type": "ack", ...}`` or
  ``{"type": "error", "error": why}`` back. A malformed message never closes the socket.

Messages: ``{"type": "correction", "text": "a bit more to the left", "level": "motion"}`` (level
optional), ``{"type": "pause"}``, ``{"type": "resume"}``, ``{"type": "stop"}``, ``{"type": "estop"}``.

Who may connect: without a token the server binds only to the loopback interface and also refuses
requests whose Host is not a loopback name (DNS rebinding) and WebSockets or POSTs from pages of
another origin (a web site open in the same browser must not drive the robot). With a token, every
request carries it: ``?token=``, header ``X-Embodied-Token`` or ``Authorization: Bearer``; opening the
page with ``?token=`` also sets a SameSite=Strict cookie so that its own assets and frames carry it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hmac
import json
import secrets
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

try:
    import uvicorn
    from fastapi import FastAPI, Request, WebSocket
    from fastapi.responses import FileResponse, JSONResponse, Response
    from fastapi.staticfiles import StaticFiles
    from starlette.websockets import WebSocketDisconnect
except ImportError as e:  # pragma: no cover - depends on the install
    raise ImportError("the live web page needs FastAPI and uvicorn: pip install 'embodied[hardware]'") from e

from embodied.live import COMMANDS, EStopHookError, LiveSession

if TYPE_CHECKING:
    from typing_extensions import Self

STATIC_DIR = Path(__file__).parent / "static"
DEFAULT_PORT = 8765
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
MIN_TOKEN_CHARS = 16
MAX_MESSAGE_BYTES = 64 * 1024  # a correction is a sentence; anything bigger is refused by the WebSocket layer
MAX_PUSH_HZ = 10.0
TOKEN_COOKIE = "embodied_token"


def make_token() -> str:
    """A random token fit for `serve(..., token=...)` (32 URL-safe characters)."""
    return secrets.token_urlsafe(24)


class MessageError(ValueError):
    """A viewer's message that cannot be obeyed; the text says what to send instead."""


def apply_message(session: LiveSession, message: Any) -> dict[str, Any]:
    """Obey one viewer message (see the module docstring); return the ack, raise MessageError if malformed."""
    if not isinstance(message, dict):
        raise MessageError('a message is a JSON object such as {"type": "pause"}')
    kind = message.get("type")
    if kind == "correction":
        if "text" not in message:
            raise MessageError('a correction message needs its words: {"type": "correction", "text": "..."}')
        try:
            record = session.put_correction(message["text"], source="web", level=message.get("level", "motion"))
        except (ValueError, TypeError) as e:
            raise MessageError(str(e)) from e
        return {"type": "ack", "command": "correction", "correction": record.to_dict()}
    if kind in COMMANDS:
        try:
            session.command(kind)
        except EStopHookError as e:
            raise MessageError(str(e)) from e
        return {"type": "ack", "command": kind}
    raise MessageError(f"unknown message type {kind!r}; send one of {('correction', *COMMANDS)}")


def _check_token(token: str | None) -> None:
    if token is not None and (not isinstance(token, str) or len(token) < MIN_TOKEN_CHARS):
        raise ValueError(f"the token must be a string of at least {MIN_TOKEN_CHARS} characters; "
                         "make one with embodied.web.make_token()")


def _given_token(request: Request | WebSocket) -> str | None:
    auth = request.headers.get("authorization", "")
    bearer = auth[7:].strip() if auth.lower().startswith("bearer ") else None
    return (request.query_params.get("token") or request.headers.get("x-embodied-token") or bearer
            or request.cookies.get(TOKEN_COOKIE))


def _host_name(host_header: str) -> str:
    return urlsplit(f"//{host_header}").hostname or ""


def _refusal(request: Request | WebSocket, token: str | None, *, check_origin: bool) -> str | None:
    """Why this request may not proceed, or None when it may."""
    if token is not None:
        given = _given_token(request)
        if given is None or not hmac.compare_digest(given.encode(), token.encode()):
            return "missing or wrong token: open the page with ?token=<the token the server printed>"
    elif _host_name(request.headers.get("host", "")) not in LOOPBACK_HOSTS:
        return "this server answers only to 127.0.0.1/localhost; serve with a token to reach it from elsewhere"
    origin = request.headers.get("origin")
    if check_origin and origin and urlsplit(origin).netloc != request.headers.get("host"):
        return f"requests from pages of another origin ({origin}) may not steer the robot"
    return None


def create_app(session: LiveSession, token: str | None = None) -> FastAPI:
    """The app for one session; with a token, every HTTP and WebSocket request must carry it."""
    _check_token(token)
    app = FastAPI(title="embodied live", docs_url=None, redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def guard(request: Request, call_next):
        why = _refusal(request, token, check_origin=request.method not in ("GET", "HEAD"))
        if why is not None:
            status = 401 if token is not None and "token" in why else 403
            return JSONResponse({"error": why}, status_code=status, headers={"WWW-Authenticate": "Bearer"})
        response = await call_next(request)
        if token is not None and request.query_params.get("token"):
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
        return response

    @app.get("/")
    def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-store"})

    @app.get("/api/state")
    def state() -> dict[str, Any]:
        return session.snapshot()

    @app.get("/api/frames/{camera}.jpg")
    def frame(camera: str) -> Response:  # sync: encoding runs in the thread pool, not on the event loop
        try:
            seq, data = session.jpeg(camera)
        except KeyError as e:
            return JSONResponse({"error": str(e.args[0])}, status_code=404)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store", "X-Frame-Seq": str(seq)})

    @app.post("/api/command")
    async def command(request: Request) -> Response:
        try:
            message = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError):
            return JSONResponse({"type": "error", "error": "the body must be one JSON object"}, status_code=400)
        return _answer(session, message, lambda reply, status: JSONResponse(reply, status_code=status))

    @app.websocket("/ws")
    async def live(websocket: WebSocket) -> None:
        why = _refusal(websocket, token, check_origin=True)
        if why is not None:
            await websocket.close(code=1008, reason=why[:120])  # before accept: the handshake gets HTTP 403
            return
        await websocket.accept()
        await _serve_socket(session, websocket)

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def _answer(session: LiveSession, message: Any, respond):
    try:
        return respond(apply_message(session, message), 200)
    except MessageError as e:
        return respond({"type": "error", "error": str(e)}, 400)


async def _serve_socket(session: LiveSession, websocket: WebSocket) -> None:
    """Push state on every change and answer messages, until the viewer goes."""
    send_lock = asyncio.Lock()

    async def send(data: dict[str, Any]) -> None:
        async with send_lock:
            await websocket.send_text(json.dumps(data))

    async def push() -> None:
        seen = -1
        while True:
            version = await session.changed(seen, timeout=5.0)
            if version != seen:
                snap = session.snapshot()
                seen = snap["version"]
                await send({"type": "state", **snap})
            await asyncio.sleep(1.0 / MAX_PUSH_HZ)

    pusher = asyncio.create_task(push())
    try:
        while True:
            event = await websocket.receive()
            if event["type"] == "websocket.disconnect":
                return
            text = event.get("text")
            if text is None:
                await send({"type": "error", "error": "send text frames holding JSON, not binary"})
                continue
            try:
                message = json.loads(text)
            except json.JSONDecodeError as e:
                await send({"type": "error", "error": f"not JSON ({e.msg} at character {e.pos})"})
                continue
            await send(_answer(session, message, lambda reply, status: reply))
    except (WebSocketDisconnect, RuntimeError):  # the viewer left mid-send
        return
    finally:
        pusher.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await pusher


@dataclasses.dataclass
class WebServer:
    """A running page server. url: where to open it on this machine; page_url adds the token."""

    host: str
    port: int
    token: str | None
    _server: Any
    _thread: threading.Thread

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "", "::") else self.host
        return f"http://[{host}]:{self.port}/" if ":" in host else f"http://{host}:{self.port}/"

    @property
    def page_url(self) -> str:
        return self.url + (f"?token={quote(self.token)}" if self.token else "")

    def stop(self, timeout: float = 5.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(session: LiveSession, host: str = "127.0.0.1", port: int = DEFAULT_PORT, token: str | None = None,
          *, start_timeout: float = 10.0) -> WebServer:
    """Serve the page for `session` from a background thread; return once it accepts connections.

    host: 127.0.0.1 / localhost / ::1 without a token; any other address (e.g. 0.0.0.0 to reach the
    page from another machine) needs `token` (see make_token). port 0 picks a free port (see .port).
    """
    _check_token(token)
    if host not in LOOPBACK_HOSTS and token is None:
        raise ValueError(
            f"refusing to serve the live page on {host!r} without a token: anyone who reaches that address "
            "could steer the robot. Pass token=embodied.web.make_token() and open the page with ?token=..., "
            "or serve on host='127.0.0.1'"
        )
    sock = _bind("127.0.0.1" if host == "localhost" else host, port)
    config = uvicorn.Config(create_app(session, token), log_level="warning", access_log=False, lifespan="off",
                            ws_max_size=MAX_MESSAGE_BYTES, timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="embodied-web", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise RuntimeError(f"the live page server did not start on {host}:{port} within {start_timeout} s")
        time.sleep(0.01)
    return WebServer(host, sock.getsockname()[1], token, server, thread)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise OSError(e.errno, f"cannot serve the live page on {host}:{port} ({e.strerror}); "
                               "pick another port, or port=0 for any free one") from e
    return sock
