"""The server application: FastAPI for the control plane, raw routes for the hot path.

``create_app(config)`` returns an ASGI app whose lifespan opens every part (see
``modelyard.web.services``) and closes them in reverse order; tests drive it in-process with
``httpx.ASGITransport`` inside ``app.router.lifespan_context(app)``, ``run_server`` serves it
with uvicorn (uvloop, httptools) and stops cleanly on SIGTERM/SIGINT.

Public routes (no API key): ``/healthz``, ``/openapi.json`` and ``/docs`` (the API's description
is not a secret: the project is open source), and ``/metrics`` only with ``public_metrics``.
The dashboard (``modelyard.ui``, under ``/ui``) serves its sign-in page and static files to
anyone and every other page only to a signed-in session.
Every other route needs a key; ``POST /model`` and the predict routes skip the check only for a
model whose ``auth_required`` setting is off.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI

from modelyard import ui
from modelyard.homedir import make_private_file
from modelyard.server import (
    alerts_api,
    audit_api,
    cluster_api,
    connections_api,
    experiments_api,
    gateway_routes,
    insights_api,
    jobs_api,
    keys,
    metrics_api,
    models,
    monitors_api,
    openapi_paths,
    ops,
    people_api,
    secrets_api,
    uploads_api,
)
from modelyard.server.body_limit import BodyLimit, BodyLimits
from modelyard.server.follow import LogFollows
from modelyard.version import package_version
from modelyard.web.audit import AuditRecorder, AuditTrail
from modelyard.web.errors import install_error_handlers
from modelyard.web.home import SERVER_FILE
from modelyard.web.services import ServerConfig, open_services

__all__ = ["PUBLIC_PATHS", "create_app"]

PUBLIC_PATHS = frozenset({"/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect"})

log = logging.getLogger("modelyard.server")


def create_app(config: ServerConfig) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = await open_services(config)
        app.state.services = services
        app.state.replica_metrics = ops.replica_registry(services)
        home = services.first_start.home
        _write_server_file(home, config)
        if services.first_start.admin_token is not None:
            _announce_admin_key(home, services.first_start.admin_token)
        if services.first_start.admin_password is not None:
            _announce_admin_password(home, services.first_start.admin_password)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                (home / SERVER_FILE).unlink()
            await asyncio.to_thread(app.state.audit_recorder.close)  # before the store closes
            await services.close()

    app = FastAPI(
        title="Modelyard",
        version=package_version(),
        description=(
            "Control plane of a Modelyard server. Send `Authorization: Bearer <API key>`. "
            "Model calls: `POST /model`, `POST /api/v1/models/{name}/predict` and "
            "`.../predict_batch` (see docs/rest.md)."
        ),
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    install_error_handlers(app)
    # Every request body capped by route (see body_limit): 413 before a byte too many is held.
    app.add_middleware(BodyLimit, limits=BodyLimits())
    # Every state-changing request recorded once answered, on the recorder's thread (web.audit);
    # inside ModelCalls, so the model calls never pass through it.
    recorder = AuditRecorder()
    app.state.audit_recorder = recorder
    app.add_middleware(AuditTrail, recorder=recorder)
    # The model calls answered before any of the above (their own body limits): the hot path.
    app.add_middleware(gateway_routes.ModelCalls)
    app.state.log_follows = LogFollows()  # ?follow=true streams, bounded per key and in all
    # The same handlers as routes too (named; served even without ModelCalls), before FastAPI's.
    for route in [*gateway_routes.routes(), *ops.routes()]:
        app.router.routes.append(route)
    app.include_router(models.router)
    app.include_router(keys.router)
    app.include_router(metrics_api.router)
    app.include_router(alerts_api.router)
    app.include_router(monitors_api.router)
    app.include_router(insights_api.router)
    app.include_router(jobs_api.router)
    app.include_router(experiments_api.router)
    app.include_router(people_api.router)
    app.include_router(audit_api.router)
    app.include_router(uploads_api.router)
    app.include_router(secrets_api.router)
    app.include_router(connections_api.router)
    app.include_router(cluster_api.router)
    # The dashboard under /ui: its sign-in page and static files are its only public paths.
    ui.mount(app)
    openapi_paths.install(app)  # the raw model-call routes, described in /openapi.json too
    return app


def _write_server_file(home: Path, config: ServerConfig) -> None:
    """``server.json``: where the CLI on this machine finds the server (removed at shutdown)."""
    text = json.dumps({"url": config.base_url, "pid": os.getpid()}) + "\n"
    path = home / SERVER_FILE
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)  # a crashed start's leftover would keep its own mode
    make_private_file(tmp)  # 0600 like every file in the home
    tmp.write_text(text)
    os.replace(tmp, path)


def _announce_admin_password(home: Path, password: str) -> None:
    sys.stdout.write(
        "Created user 'admin' (server admin) for the dashboard's sign-in; its password (shown "
        f"only this once; also in {home / 'admin.password'}, mode 0600):\n\n    {password}\n\n"
    )
    sys.stdout.flush()


def _announce_admin_key(home: Path, token: str) -> None:
    sys.stdout.write(
        f"Created the admin API key (shown only this once; also in {home / 'admin.key'}, "
        f"mode 0600):\n\n    {token}\n\n"
    )
    sys.stdout.flush()
