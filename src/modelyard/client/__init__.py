"""The client layer: everything that talks to a Modelyard server goes through it.

The CLI, the SDK's remote backend, monitors run against a server (and, later, the upload and
experiments clients) use one ``Client``: base URL, key, timeouts, JSON calls, one connection pool
per process. Error answers become ModelyardErrors through one translation
(``error_from_response``: the server's ``code`` first, its HTTP status second, see
``modelyard.errors.error_class``), and no answer at all is ``ServerUnreachable``, so the CLI and
the SDK always raise the same exception for the same answer. Request bodies may hold NumPy
scalars and arrays (inputs built from arrays do); keys appear in messages only as ``shown_key``
gives them (their first characters).

This part sits just above the foundation modules (``errors``, ``settings``): it imports nothing
else of Modelyard.
"""

from __future__ import annotations

from modelyard.client._client import Client, close_pool
from modelyard.client._errors import error_from_response
from modelyard.client._shown import shown_key
from modelyard.errors import ServerUnreachable

__all__ = ["Client", "ServerUnreachable", "close_pool", "error_from_response", "shown_key"]
