"""Connectors: reading ground truth and reference data where they live.

``base`` holds what every kind shares (``Connection``, ``Credentials``, ``Source``, ``Probe``,
``ConnectorError``); one module per family reads it: ``sql`` (PostgreSQL, MySQL/MariaDB, SQLite),
``files`` (a folder or an S3-compatible bucket: Parquet and CSV through pyarrow) and ``streams``
(NATS JetStream, RabbitMQ). ``read`` is the entry point the monitors use.
"""

from modelyard.connectors.base import (
    FILE_KINDS,
    KINDS,
    SQL_KINDS,
    STREAM_KINDS,
    Connection,
    ConnectorError,
    Credentials,
    Probe,
    Source,
)

__all__ = [
    "FILE_KINDS",
    "KINDS",
    "SQL_KINDS",
    "STREAM_KINDS",
    "Connection",
    "ConnectorError",
    "Credentials",
    "Probe",
    "Source",
]
