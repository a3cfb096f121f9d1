"""The FastAPI application factory and ``main()`` (``vocalis serve``).

``create_app(settings)`` wires the database, the model, metrics, error handlers, one router per
resource and a lifespan that migrates the database, loads the model and runs the outbox relay.
Later additions plug in the same way: a ``routes/stream.py`` router goes into
:data:`vocalis.service.routes.ROUTERS` and a ``static/`` folder next to this file is served at ``/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from vocalis import __version__
from vocalis.errors import ModelError, VocalisError
from vocalis.notify.base import Notifier
from vocalis.notify.relay import Outcome, RelayWorker, RetryPolicy
from vocalis.service import openapi
from vocalis.service.errors import field_message, status_and_code
from vocalis.service.metrics import Metrics, MetricsMiddleware
from vocalis.service.model import ModelHolder
from vocalis.service.security import verify_token
from vocalis.service.settings import Settings
from vocalis.storage import repositories as repo
from vocalis.storage.db import make_engine, make_session_factory
from vocalis.storage.migrate import migrate

log = logging.getLogger("vocalis.service")
STATIC_DIR = Path(__file__).resolve().parent / "static"
HOUSEKEEPING_SECONDS = 6 * 3600
COUNTDOWN_SWEEP_SECONDS = 10.0  # how often countdown alerts a dead server left are looked for


def error_response(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    """The one error shape: ``{"error": {"code", "message", ...}}``."""
    return JSONResponse({"error": {"code": code, "message": message, **extra}}, status_code=status)


def _cut(text: str, limit: int = 500) -> str:
    """An error message never echoes megabytes of the request back."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(VocalisError)
    async def vocalis_error(request: Request, exc: VocalisError) -> JSONResponse:
        status, code = status_and_code(exc)
        if status >= 500:
            log.error("%s on %s %s: %s", type(exc).__name__, request.method, request.url.path, exc)
        return error_response(status, code, str(exc))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()[:20]
        details = [
            {"loc": [str(p) for p in e.get("loc", ())][:8],
             "msg": _cut(str(e.get("msg", "")).removeprefix("Value error, "))}
            for e in errors
        ]
        # "field: rule"; a rule about the whole body (a model validator) needs no "body:" prefix
        message = "; ".join(
            f"body is not valid JSON (at character {d['loc'][1]})" if e.get("type") == "json_invalid" and len(d["loc"]) > 1
            else field_message(d["loc"][1:], str(d["msg"]))
            for d, e in zip(details, errors))
        return error_response(422, "validation_error", message, details=details)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
                413: "payload_too_large"}.get(exc.status_code, f"http_{exc.status_code}")
        message = str(exc.detail)
        if exc.status_code == 400 and message == "There was an error parsing the body":  # FastAPI's words
            code, message = "invalid_body", "the request body is not JSON text (it must be UTF-8 encoded JSON)"
        resp = error_response(exc.status_code, code, message)
        if exc.headers:
            resp.headers.update(exc.headers)
        return resp

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "internal server error")


class RedactTokens(logging.Filter):
    """Hide credentials in logged URLs: uvicorn logs each request's path with its query string, and
    the WebSocket takes ``?token=`` (browsers cannot send headers), which may be a long-lived API key.

    >>> r = logging.LogRecord("uvicorn.error", 20, "", 0, '%s - "WebSocket %s" [accepted]',
    ...                       ("1.2.3.4:5", "/v1/stream?token=vk_abc_secret&sample_rate=16000"), None)
    >>> RedactTokens().filter(r) and r.getMessage()
    '1.2.3.4:5 - "WebSocket /v1/stream?token=***&sample_rate=16000" [accepted]'
    """

    PATTERN = re.compile(r"((?:^|[?&])(?:token|api_key|access_token)=)[^&\s\"']+", re.I)

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(self.PATTERN.sub(r"\1***", a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.msg, str):
            record.msg = self.PATTERN.sub(r"\1***", record.msg)
        return True


def install_log_redaction() -> None:
    """Add :class:`RedactTokens` to uvicorn's loggers (once per process)."""
    for name in ("uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())


class JsonBodyLimit:
    """Pure ASGI middleware: a JSON request body larger than ``max_bytes`` is a 413 before it is
    parsed (FastAPI would read any size into memory). Audio and evidence uploads are not JSON and
    have their own streaming limits (``max_upload_bytes``, ``max_evidence_bytes``)."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        if b"json" not in headers.get(b"content-type", b"").lower():
            await self.app(scope, receive, send)
            return
        rule = f"a JSON body must be at most {self.max_bytes} bytes"
        declared = headers.get(b"content-length", b"").strip()
        if declared.isdigit() and int(declared) > self.max_bytes:
            await error_response(413, "payload_too_large", f"content-length={int(declared)}: {rule}")(
                scope, receive, send)
            return
        seen = 0

        async def counted() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:  # a chunked body: FastAPI re-raises an HTTPException as is
                    raise HTTPException(413, f"body of more than {self.max_bytes} bytes: {rule}")
            return message

        await self.app(scope, counted, send)


def _db_counts(app: FastAPI) -> dict[str, dict[str, int]]:
    with app.state.session_factory() as session:
        return {"deliveries": repo.delivery_counts(session), "alerts": repo.alert_counts(session)}


def create_app(settings: Settings | None = None, *, notifiers: Mapping[str, Notifier] | None = None) -> FastAPI:
    """Build the app. ``notifiers`` replaces the ones built from ``settings`` (tests use fakes)."""
    settings = settings or Settings()
    install_log_redaction()
    engine = make_engine(settings.database_url)
    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.migrate_on_startup:
            await asyncio.to_thread(migrate, settings.database_url)
        settings.evidence_root.mkdir(parents=True, exist_ok=True)
        settings.resolved_secret_key()
        if settings.preload_model:
            try:
                await asyncio.to_thread(app.state.model.get)
            except ModelError as e:
                log.error("model not loaded: %s", e)
        from vocalis.service.notifiers import build_notifiers, close_notifiers
        from vocalis.service.retention import purge_expired, purge_wellbeing

        active = dict(notifiers) if notifiers is not None else build_notifiers(settings)

        def on_outcome(outcome: Outcome, status: str | None) -> None:
            result = "sent" if outcome.error is None else ("retry" if status == "pending" else "failed")
            metrics.deliveries.labels(outcome.claim.delivery.channel, result).inc()

        worker = None
        if settings.relay_enabled:
            worker = RelayWorker(
                app.state.session_factory, active, poll_seconds=settings.relay_poll_seconds,
                policy=RetryPolicy(
                    max_attempts=settings.relay_max_attempts, backoff_base=settings.relay_backoff_base_seconds,
                    backoff_max=settings.relay_backoff_max_seconds, lease_seconds=settings.relay_lease_seconds,
                    batch_size=settings.relay_batch_size,
                ),
                on_outcome=on_outcome, flush_seconds=settings.relay_flush_seconds,
            )
            await worker.start()
        app.state.relay = worker
        app.state.notifiers = active

        async def housekeeping() -> None:
            while True:
                try:
                    await asyncio.to_thread(purge_expired, app.state.session_factory, settings.evidence_root,
                                            settings.retention_days)
                except Exception:
                    log.exception("retention purge failed")
                try:
                    await asyncio.to_thread(purge_wellbeing, settings.wellbeing_db_path, settings.wellbeing_retention)
                except Exception:
                    log.exception("wellbeing retention purge failed")
                await asyncio.sleep(HOUSEKEEPING_SECONDS)

        async def abandoned_countdowns() -> None:
            from vocalis.service.routes.stream import confirm_abandoned_countdowns

            while True:
                try:
                    await confirm_abandoned_countdowns(app)
                except Exception:
                    log.exception("confirming abandoned countdown alerts failed")
                await asyncio.sleep(COUNTDOWN_SWEEP_SECONDS)

        keepers = [asyncio.create_task(housekeeping(), name="vocalis-housekeeping"),
                   asyncio.create_task(abandoned_countdowns(), name="vocalis-abandoned-countdowns")]
        try:
            yield
        finally:
            from vocalis.service.routes.stream import close_streams

            await close_streams(app)  # no-op under `vocalis serve`, which closed them before the connections
            for keeper in keepers:
                keeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await keeper
            if worker is not None:
                await worker.stop(flush=True)
            app.state.relay = None
            if notifiers is None:
                close_notifiers(active)
            engine.dispose()

    app = FastAPI(
        title="Vocalis",
        version=__version__,
        summary="Hears emotion and distress in a voice; alerts your contacts.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.session_factory = make_session_factory(engine)
    app.state.model = ModelHolder(settings.model_path)
    app.state.metrics = metrics
    app.state.relay = None
    # for the WebSocket route (``?token=``): token -> user id, raising AuthError
    app.state.verify_token = lambda token: verify_token(token, settings.resolved_secret_key())
    metrics.add_db_gauges(lambda: _db_counts(app))

    _install_error_handlers(app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=settings.cors_origins, allow_credentials=False,
            allow_methods=["*"], allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(JsonBodyLimit, max_bytes=settings.max_json_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    from vocalis.service.routes import ROUTERS

    for router in ROUTERS:
        app.include_router(router)
    openapi.install(app)
    if STATIC_DIR.is_dir():
        from fastapi.staticfiles import StaticFiles

        app.mount("/", StaticFiles(directory=STATIC_DIR, html=True), name="static")
    return app


def main(host: str = "127.0.0.1", port: int = 8000, *, log_level: str = "info", workers: int = 1) -> None:
    """Run the service with uvicorn; configuration comes from ``VOCALIS_*`` environment variables.

    One process (the default) shuts down gracefully on SIGTERM (:mod:`vocalis.service.server`):
    live streams close with 1001 after their countdowns, then the outbox is flushed. With
    ``workers > 1`` uvicorn's own supervisor runs the workers and streams close with its 1012.
    """
    if workers > 1:
        import uvicorn

        uvicorn.run("vocalis.service.app:create_app", factory=True, host=host, port=port, log_level=log_level,
                    workers=workers, proxy_headers=True)
        return
    from vocalis.service.server import serve

    serve("vocalis.service.app:create_app", host, port, log_level=log_level)


if __name__ == "__main__":  # pragma: no cover
    main()
