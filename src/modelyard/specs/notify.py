"""Notification targets: which strings a job's or a monitor's ``notify`` list accepts.

Checked here, below every part that sends (``modelyard.jobs.notify`` delivers, the monitor spec
and the job spec only check), so specs need not import the sender.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from modelyard.errors import InvalidInput

__all__ = ["check_target"]

_EMAIL = re.compile(r"^[^@\s<>,;:\"]+@[A-Za-z0-9.-]+\.?[A-Za-z0-9-]*$")


def check_target(target: object) -> str:
    """``'webhook'`` or ``'email'`` for a valid notify target; InvalidInput otherwise.

    Only http and https URLs are webhooks: a ``file://`` or ``ftp://`` target would let a job
    definition make the server read or send elsewhere than to an HTTP receiver.
    """
    accepted = "an http:// or https:// URL, or an e-mail address such as ops@example.com"
    if not isinstance(target, str) or not target.strip():
        raise InvalidInput(
            f"notify target {target!r} is empty or not a string; expected {accepted}"
        )
    text = target.strip()
    if "://" in text:
        parts = urlsplit(text)
        if parts.scheme.lower() not in ("http", "https"):
            raise InvalidInput(
                f"notify target {target!r} uses the scheme {parts.scheme!r}; only http and "
                f"https webhooks are sent; expected {accepted}"
            )
        if not parts.hostname:
            raise InvalidInput(f"notify target {target!r} names no host; expected {accepted}")
        return "webhook"
    if _EMAIL.match(text):
        return "email"
    raise InvalidInput(
        f"notify target {target!r} is neither a URL nor an e-mail; expected {accepted}"
    )
