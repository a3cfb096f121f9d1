"""``vocalis serve``: uvicorn with a graceful shutdown for live streams.

On SIGTERM/SIGINT uvicorn stops listening, asks every connection to shut down (a WebSocket gets
1012) and then runs the app's lifespan shutdown. :class:`GracefulServer` first stops listening and
calls :func:`vocalis.service.routes.stream.close_streams`, so live streams end the way the stream
protocol says: running countdowns finish or are confirmed, then ``error {code: "going_away"}`` and
close code 1001. The lifespan shutdown that follows flushes the alert outbox (the relay attempts
every pending delivery once more; the rest stays in the database for the next start).
"""

from __future__ import annotations

import logging
import socket
from typing import Any

import uvicorn

log = logging.getLogger("vocalis.service")


def find_app(app: Any, depth: int = 16) -> Any:
    """The innermost app below uvicorn's wrappers (each keeps the next in ``.app``) that has ``state``."""
    found = None
    for _ in range(depth):
        if app is None:
            break
        if hasattr(app, "state") and hasattr(app, "router"):
            found = app
        app = getattr(app, "app", None)
    return found


class GracefulServer(uvicorn.Server):
    """A uvicorn server that closes the app's live streams (1001) before its connections."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:  # stop accepting first (uvicorn closes them again: harmless)
            server.close()
        app = find_app(self.config.loaded_app)
        if app is not None and not self.force_exit:
            from vocalis.service.routes.stream import close_streams

            try:
                await close_streams(app)
            except Exception:
                log.exception("closing live streams failed")
        await super().shutdown(sockets)


def serve(app: Any, host: str = "127.0.0.1", port: int = 8000, *, log_level: str = "info") -> None:
    """Run ``app`` (an ASGI app or ``"module:factory"`` with ``factory=True`` semantics) in one process."""
    factory = isinstance(app, str)
    # no permessage-deflate: live-stream frames are PCM/Opus audio that does not compress, and zlib on
    # every frame cost ~3 % of the server's CPU with 50 streams
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, proxy_headers=True, factory=factory,
                            ws_per_message_deflate=False)
    GracefulServer(config).run()
