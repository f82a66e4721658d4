"""Reading points in time from people: epoch milliseconds, ISO 8601, or "2h ago" style offsets."""

from __future__ import annotations

from datetime import UTC, datetime

from modelyard.clock import now_ms
from modelyard.errors import InvalidInput
from modelyard.settings import parse_duration_ms

__all__ = ["parse_time_ms"]


def parse_time_ms(text: str, name: str, now: int | None = None) -> int:
    """Epoch milliseconds from ``text``.

    Accepted: an integer of epoch milliseconds (``1746629493901``), an ISO 8601 date or time
    (``2026-11-26``, ``2026-11-26T13:00:00Z``; naive times are UTC), ``now``, or a duration meaning
    that long before now (``30m``, ``2h``, ``7d``).
    """
    raw = text.strip()
    reference = now_ms() if now is None else now
    if raw == "now":
        return reference
    if raw.lstrip("-").isdigit():
        return int(raw)
    try:
        return reference - parse_duration_ms(raw, name)
    except InvalidInput:
        pass
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(
            f"{name}={text!r} is not a time; use epoch milliseconds, an ISO 8601 time such as "
            "2026-11-26T13:00:00Z, 'now', or a duration before now such as 2h or 7d"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)
