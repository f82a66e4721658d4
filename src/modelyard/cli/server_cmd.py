"""``modelyard server``: the control plane, the model gateway and the replica runtime."""

from __future__ import annotations

import os
from pathlib import Path

import click

from modelyard import settings

__all__ = ["server"]


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", type=click.IntRange(1, 65535), default=8765, show_default=True)
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Modelyard home (database, keys, builds, logs); default $MODELYARD_HOME.",
)
@click.option(
    "--database-url", default=None, help="postgresql://... (default: SQLite in the home)."
)
@click.option(
    "--public-metrics",
    is_flag=True,
    help="Serve /metrics without an API key (for Prometheus scrapers that send none).",
)
@click.option(
    "--url",
    default=None,
    help="URL clients and replicas use to reach this server (default http://HOST:PORT).",
)
@click.option(
    "--runtime",
    type=click.Choice(["local", "ray"]),
    default=None,
    help="Where replicas and job runs go: local processes, or a Ray cluster (docs/ray.md); "
    "default $MODELYARD_RUNTIME, else local.",
)
@click.option(
    "--ray-address",
    default=None,
    help="The Ray head's GCS address HOST:PORT for --runtime ray (default $MODELYARD_RAY_ADDRESS).",
)
@click.option(
    "--log-level",
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    default="info",
    show_default=True,
)
def server(
    host: str,
    port: int,
    home: Path | None,
    database_url: str | None,
    public_metrics: bool,
    url: str | None,
    log_level: str,
    **where: str | None,
) -> None:
    """Run the Modelyard server: REST API under /api/v1, POST /model, /metrics, dashboard.

    The dashboard is at /ui/ (the start prints its URL): sign in with an admin or user API key.

    Binds to 127.0.0.1 unless told otherwise. The first start creates the home, the database and
    an admin API key (written to HOME/admin.key, mode 0600, and printed once). A restart brings
    every active deployment back.
    """
    from modelyard.server import ServerConfig, run_server

    chosen = home if home is not None else settings.home()
    # Builds, replicas and runs read MODELYARD_HOME: make them agree with --home.
    os.environ["MODELYARD_HOME"] = str(chosen.expanduser().resolve())
    config = ServerConfig(
        home=chosen.expanduser(),
        host=host,
        port=port,
        database_url=database_url or settings.get("database_url"),
        public_metrics=public_metrics,
        url=url,
        # --runtime and --ray-address (in ``where``), else their settings.
        runtime=where.get("runtime") or settings.get("runtime"),
        ray_address=where.get("ray_address") or settings.get("ray_address"),
    )
    click.echo(f"Dashboard: {config.base_url}/ui/ (sign in with an admin or user API key)")
    run_server(config, log_level=log_level)
