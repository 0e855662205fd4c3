"""The live-correction web page: watch a run, type corrections, pause / resume / stop / emergency-stop.

    from embodied.live import LiveSession
    from embodied.web import serve

    session = LiveSession(on_estop=robot.emergency_stop)
    server = serve(session, port=8765)  # 127.0.0.1 only; another host needs token=make_token()
    print("open", server.page_url)
    Runner(robot, policy, channels=[session], monitor=session, ...).run_episode()
    server.stop()

FastAPI and uvicorn come with the 'embodied[hardware]' extra; they are
imported when the app is built, not with this package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from embodied.web.app import WebServer

__all__ = ["WebServer", "create_app", "make_token", "serve"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from embodied.web import app

        return getattr(app, name)
    raise AttributeError(f"module 'embodied.web' has no attribute {name!r}")
