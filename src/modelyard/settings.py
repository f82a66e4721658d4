"""Every setting declared once: name, environment variable, default and help.

The table drives the environment lookups, ``modelyard store info`` and the docs, so a setting is
never documented in one place and read differently in another.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelyard.errors import InvalidInput

__all__ = [
    "SETTINGS",
    "Setting",
    "get",
    "home",
    "parse_bool",
    "parse_duration_ms",
    "parse_size_bytes",
]

_DURATION_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_SIZE_UNITS = {"": 1, "B": 1, "K": 1024, "KB": 1024, "M": 1024**2, "MB": 1024**2, "G": 1024**3}


def parse_duration_ms(text: str, name: str = "duration") -> int:
    """``'30s'``, ``'5m'``, ``'30d'``, ``'250ms'`` (or ``0``) as milliseconds.

    A bare number other than 0 is refused: people mean seconds or minutes as often as
    milliseconds (``--every 5``), and a guess would be a silent wrong answer.
    """
    raw = str(text).strip()
    for unit in sorted(_DURATION_UNITS, key=len, reverse=True):
        if raw.endswith(unit) and raw[: -len(unit)].strip().replace(".", "", 1).isdigit():
            return int(float(raw[: -len(unit)]) * _DURATION_UNITS[unit])
    if raw.replace(".", "", 1).isdigit():
        if float(raw) == 0:
            return 0
        raise InvalidInput(
            f"{name}={text!r} has no unit; add a unit (30s, 5m, 1h; also 250ms, 7d), "
            f"e.g. {raw}s or {raw}m"
        )
    raise InvalidInput(
        f"{name}={text!r} is not a duration; "
        "use a number with a unit such as 250ms, 30s, 5m, 2h, 30d"
    )


def parse_size_bytes(text: str, name: str = "size") -> int:
    """``'1MB'``, ``'512K'``, ``'1048576'``."""
    raw = str(text).strip().upper()
    number = raw.rstrip("BKMG")
    unit = raw[len(number) :]
    if not number.replace(".", "", 1).isdigit() or unit not in _SIZE_UNITS:
        raise InvalidInput(f"{name}={text!r} is not a size; use bytes or a unit such as 512K, 1MB")
    return int(float(number) * _SIZE_UNITS[unit])


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def parse_bool(text: str, name: str = "flag") -> bool:
    """``true/false``, ``yes/no``, ``on/off``, ``1/0`` (any case)."""
    raw = str(text).strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise InvalidInput(f"{name}={text!r} is not a boolean; use true or false (also 1/0, yes/no)")


def _parse_port(text: str, name: str) -> int:
    raw = str(text).strip()
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise InvalidInput(f"{name}={text!r} is not a port; use a number from 1 to 65535")
    return int(raw)


PASSWORD_HASHES = ("rfc9106-low-memory", "fast")


def _parse_password_hash(text: str) -> str:
    raw = str(text).strip().lower()
    if raw not in PASSWORD_HASHES:
        raise InvalidInput(
            f"MODELYARD_PASSWORD_HASH={text!r} is not a password hashing profile; accepted: "
            f"{', '.join(PASSWORD_HASHES)}"
        )
    return raw


def _parse_count(text: str, name: str) -> int:
    raw = str(text).strip()
    if not raw.isdigit() or int(raw) < 1:
        raise InvalidInput(f"{name}={text!r} is not a count; use a whole number >= 1")
    return int(raw)


_RUNTIMES = ("local", "ray")


def _parse_runtime(text: str) -> str:
    value = text.strip().lower()
    if value not in _RUNTIMES:
        raise InvalidInput(f"MODELYARD_RUNTIME={text!r} is not a runtime; use local or ray")
    return value


@dataclass(frozen=True)
class Setting:
    name: str
    env: str
    default: str | None
    help: str
    parse: Callable[[str], Any] = str
    # A credential: ``modelyard settings`` shows whether it is set, never its value.
    secret: bool = False


SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in [
        Setting(
            "home", "MODELYARD_HOME", "~/.modelyard", "Folder for the embedded database and keys."
        ),
        Setting(
            "database_url",
            "MODELYARD_DATABASE_URL",
            None,
            "postgresql://... selects PostgreSQL; unset: SQLite at $MODELYARD_HOME/modelyard.db.",
        ),
        Setting("url", "MODELYARD_URL", None, "A Modelyard server; set, the SDK talks to it."),
        Setting("api_key", "MODELYARD_API_KEY", None, "API key for MODELYARD_URL.", secret=True),
        Setting(
            "secrets_key",
            "MODELYARD_SECRETS_KEY",
            None,
            "Fernet key(s) that encrypt project secrets in the database, comma-separated for "
            "rotation (the first encrypts, all decrypt); unset: <home>/secrets.key, created "
            "(mode 0600) at the first secret. Keep it out of the database's backups.",
            secret=True,
        ),
        Setting(
            "admin_key_file",
            "MODELYARD_ADMIN_KEY_FILE",
            None,
            "A file holding an admin API key minted elsewhere (e.g. a mounted Kubernetes Secret): "
            "at start the server registers it for user admin unless the database knows it, and "
            "writes no <home>/admin.key; unset: the first start mints one into <home>/admin.key.",
        ),
        Setting(
            "cli_config",
            "MODELYARD_CONFIG",
            "~/.config/modelyard/config.json",
            "The CLI's own settings (a JSON file, mode 0600): the default project that "
            "'modelyard projects use' sets and every --project falls back to.",
        ),
        Setting(
            "max_record_bytes",
            "MODELYARD_MAX_RECORD_BYTES",
            "1MB",
            "Largest metrics payload accepted for one record.",
            lambda v: parse_size_bytes(v, "MODELYARD_MAX_RECORD_BYTES"),
        ),
        Setting(
            "max_request_bytes",
            "MODELYARD_MAX_REQUEST_BYTES",
            "2MB",
            "Largest request body the server reads on control-plane routes (keys, models, jobs, "
            "delayed, aggregate and run metrics, dashboard), and never less than one record "
            "(MODELYARD_MAX_RECORD_BYTES) plus 64 KiB; larger: 413. Model calls have their "
            "model's max_body_bytes.",
            lambda v: parse_size_bytes(v, "MODELYARD_MAX_REQUEST_BYTES"),
        ),
        Setting(
            "max_batch_bytes",
            "MODELYARD_MAX_BATCH_BYTES",
            "64MB",
            "Largest request body of POST /api/v1/metrics/predictions (batches of up to 10,000 "
            "records); larger: 413.",
            lambda v: parse_size_bytes(v, "MODELYARD_MAX_BATCH_BYTES"),
        ),
        Setting(
            "raw_horizon",
            "MODELYARD_RAW_HORIZON",
            "30d",
            "Raw prediction records older than this are rolled up into buckets.",
            lambda v: parse_duration_ms(v, "MODELYARD_RAW_HORIZON"),
        ),
        Setting(
            "flush_interval",
            "MODELYARD_FLUSH_INTERVAL",
            "200ms",
            "Longest time a buffered prediction record waits before it is written.",
            lambda v: parse_duration_ms(v, "MODELYARD_FLUSH_INTERVAL"),
        ),
        Setting(
            "journal_fsync_interval",
            "MODELYARD_JOURNAL_FSYNC_INTERVAL",
            "20ms",
            "How often the server's prediction journal is fsynced: a machine crash loses at most "
            "this much of answered predictions (a process crash loses none). 0: fsync before "
            "each answer (slower).",
            lambda v: parse_duration_ms(v, "MODELYARD_JOURNAL_FSYNC_INTERVAL"),
        ),
        Setting(
            "journal_max_bytes",
            "MODELYARD_JOURNAL_MAX_BYTES",
            "1G",
            "Largest size of the server's prediction journal (<home>/journal): records the store "
            "has not committed yet. Full, predictions are refused (HTTP 507), never answered "
            "unrecorded.",
            lambda v: parse_size_bytes(v, "MODELYARD_JOURNAL_MAX_BYTES"),
        ),
        Setting(
            "tech_interval",
            "MODELYARD_TECH_INTERVAL",
            "60s",
            "How often the server's gateway writes its tech.* aggregates (latency, errors, "
            "replicas) per deployment.",
            lambda v: parse_duration_ms(v, "MODELYARD_TECH_INTERVAL"),
        ),
        Setting(
            "sync_interval",
            "MODELYARD_SYNC_INTERVAL",
            "2s",
            "How often a server compares the registry's active deployments and replica counts "
            "with what it runs, and applies deploys, rollbacks, scales, stops and deletes made "
            "through other servers on the same database; 0: only at start.",
            lambda v: parse_duration_ms(v, "MODELYARD_SYNC_INTERVAL"),
        ),
        Setting(
            "label_streams",
            "MODELYARD_LABEL_STREAMS",
            "on",
            "Whether the server consumes the NATS JetStream and RabbitMQ label streams monitors "
            "name in their labels: source (looking for new and changed monitors every "
            "MODELYARD_SYNC_INTERVAL); off: nothing consumes them.",
            lambda v: parse_bool(v, "MODELYARD_LABEL_STREAMS"),
        ),
        Setting(
            "log_follow_per_key",
            "MODELYARD_LOG_FOLLOW_PER_KEY",
            "4",
            "Most logs one API key may follow (?follow=true) at once; beyond, 429.",
            lambda v: _parse_count(v, "MODELYARD_LOG_FOLLOW_PER_KEY"),
        ),
        Setting(
            "log_follow_total",
            "MODELYARD_LOG_FOLLOW_TOTAL",
            "32",
            "Most followed logs the server streams at once, over all keys; beyond, 429.",
            lambda v: _parse_count(v, "MODELYARD_LOG_FOLLOW_TOTAL"),
        ),
        Setting(
            "log_max_bytes",
            "MODELYARD_LOG_MAX_BYTES",
            "10MB",
            "A replica or run log reaching this size is rotated: copied to <name>.log.<n> (n one "
            "more than the newest copy's) and emptied, about once a second; 0: never rotate.",
            lambda v: parse_size_bytes(v, "MODELYARD_LOG_MAX_BYTES"),
        ),
        Setting(
            "log_backups",
            "MODELYARD_LOG_BACKUPS",
            "5",
            "Rotated copies kept per replica or run log; beyond this count the oldest (lowest "
            "numbered) is deleted.",
            lambda v: _parse_count(v, "MODELYARD_LOG_BACKUPS"),
        ),
        Setting(
            "http_header_timeout",
            "MODELYARD_HTTP_HEADER_TIMEOUT",
            "10s",
            "A request's whole header section must arrive within this time of the connection "
            "opening (or of the request's first byte on a kept-alive one); else 408 and close.",
            lambda v: parse_duration_ms(v, "MODELYARD_HTTP_HEADER_TIMEOUT"),
        ),
        Setting(
            "http_body_timeout",
            "MODELYARD_HTTP_BODY_TIMEOUT",
            "30s",
            "Longest wait for the next part of a request body the server is reading; else the "
            "connection is closed.",
            lambda v: parse_duration_ms(v, "MODELYARD_HTTP_BODY_TIMEOUT"),
        ),
        Setting(
            "http_max_connections",
            "MODELYARD_HTTP_MAX_CONNECTIONS",
            "1000",
            "Most client connections the server holds open at once; one more gets 503 and is "
            "closed at once.",
            lambda v: _parse_count(v, "MODELYARD_HTTP_MAX_CONNECTIONS"),
        ),
        Setting(
            "deployment_crn",
            "MODELYARD_DEPLOYMENT_CRN",
            None,
            "Identity of the running deployment (set in replicas; else a local identity).",
        ),
        Setting("build_crn", "MODELYARD_BUILD_CRN", None, "Identity of the running build."),
        Setting("model_crn", "MODELYARD_MODEL_CRN", None, "Identity of the running model."),
        Setting(
            "run_history",
            "MODELYARD_RUN_HISTORY",
            "30d",
            "Job runs older than this (and their logs) are deleted by maintenance-run-history.",
            lambda v: parse_duration_ms(v, "MODELYARD_RUN_HISTORY"),
        ),
        Setting(
            "password_hash",
            "MODELYARD_PASSWORD_HASH",
            "rfc9106-low-memory",
            "argon2id cost of new password hashes: rfc9106-low-memory (3 passes over 64 MiB, "
            "about 0.1 s) or fast (1 pass over 8 MiB: for test suites and throwaway demos only, "
            "never for real users). Stored hashes keep their own cost and are made again at the "
            "next sign-in.",
            _parse_password_hash,
        ),
        Setting(
            "audit_retention",
            "MODELYARD_AUDIT_RETENTION",
            "365d",
            "Audit log entries older than this are deleted by maintenance-run-history.",
            lambda v: parse_duration_ms(v, "MODELYARD_AUDIT_RETENTION"),
        ),
        Setting(
            "monitor_memory_rows",
            "MODELYARD_MONITOR_MEMORY_ROWS",
            "1000000",
            "A monitor window with more raw predictions than this is streamed in chunks through "
            "mergeable accumulators instead of held in memory (docs/monitors.md).",
            lambda v: _parse_count(v, "MODELYARD_MONITOR_MEMORY_ROWS"),
        ),
        Setting(
            "runtime",
            "MODELYARD_RUNTIME",
            "local",
            "Where the server runs replicas and job runs: local (processes on this machine) or "
            "ray (Ray Serve and Ray Jobs on the cluster at MODELYARD_RAY_ADDRESS; needs "
            "pip install 'modelyard[ray]').",
            _parse_runtime,
        ),
        Setting(
            "ray_address",
            "MODELYARD_RAY_ADDRESS",
            None,
            "The Ray head's GCS address HOST:PORT (e.g. 127.0.0.1:6379) for MODELYARD_RUNTIME=ray.",
        ),
        Setting(
            "ray_dashboard_url",
            "MODELYARD_RAY_DASHBOARD_URL",
            None,
            "The Ray head's dashboard (its Jobs API); unset: http://<host of "
            "MODELYARD_RAY_ADDRESS>:8265.",
        ),
        Setting(
            "ray_auth_token_path",
            "MODELYARD_RAY_AUTH_TOKEN_PATH",
            None,
            "File holding the Ray cluster's token (Ray token auth, RAY_AUTH_MODE=token); unset: "
            "RAY_AUTH_MODE as the environment says, else no token (see docs/ray.md).",
        ),
        Setting(
            "ray_deploy_timeout",
            "MODELYARD_RAY_DEPLOY_TIMEOUT",
            "120s",
            "On the Ray runtime, a replica not running within this time fails its deploy with a "
            "message naming the resource the cluster lacks.",
            lambda v: parse_duration_ms(v, "MODELYARD_RAY_DEPLOY_TIMEOUT"),
        ),
        Setting(
            "smtp_host",
            "MODELYARD_SMTP_HOST",
            None,
            "SMTP server for job e-mail notifications; unset: e-mail targets are skipped.",
        ),
        Setting(
            "smtp_port",
            "MODELYARD_SMTP_PORT",
            "25",
            "Port of MODELYARD_SMTP_HOST.",
            lambda v: _parse_port(v, "MODELYARD_SMTP_PORT"),
        ),
        Setting(
            "smtp_from",
            "MODELYARD_SMTP_FROM",
            "modelyard@localhost",
            "Sender address of job e-mail notifications.",
        ),
        Setting("smtp_user", "MODELYARD_SMTP_USER", None, "SMTP login user (unset: no login)."),
        Setting(
            "smtp_password", "MODELYARD_SMTP_PASSWORD", None, "SMTP login password.", secret=True
        ),
        Setting(
            "smtp_starttls",
            "MODELYARD_SMTP_STARTTLS",
            "false",
            "true: upgrade the SMTP connection with STARTTLS before logging in.",
            lambda v: parse_bool(v, "MODELYARD_SMTP_STARTTLS"),
        ),
    ]
}


def get(name: str) -> Any:
    """The parsed value of setting ``name`` from the environment, or its default (None if unset)."""
    setting = SETTINGS[name]
    raw = os.environ.get(setting.env)
    if raw is None or raw == "":
        raw = setting.default
    if raw is None:
        return None
    return setting.parse(raw)


def home() -> Path:
    return Path(os.path.expanduser(str(get("home"))))
