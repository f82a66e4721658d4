"""``call_model``: call a deployed model through a Modelyard server, as the reference does."""

from __future__ import annotations

from typing import Any

from modelyard import settings
from modelyard.client import Client, shown_key
from modelyard.errors import InvalidInput

__all__ = ["call_model"]


def call_model(model_access_key: str, ipt: Any, api_key: str | None = None) -> Any:
    """POST ``{"accessKey": ..., "request": ipt}`` to ``$MODELYARD_URL/model``.

    Returns the parsed JSON answer; the model's output is under ``["response"]``. The API key
    (keyword or third positional argument, as scripts pass it) defaults to
    ``MODELYARD_API_KEY``. ``ipt`` may hold NumPy scalars and arrays (``score_x[i][0]``); they
    are sent as plain JSON numbers and lists. Messages show the access key's first characters
    only. HTTP errors raise the ModelyardError of the server's error
    code, or of the status when there is none (401 Unauthorized, 404 NotFound, 429 Overloaded,
    ...), with the server's message; no answer at all raises ``ServerUnreachable``.
    """
    url = settings.get("url")
    if not url:
        raise InvalidInput(
            "call_model needs a server: set MODELYARD_URL to its address, "
            "e.g. MODELYARD_URL=http://127.0.0.1:8000"
        )
    if not isinstance(model_access_key, str) or not model_access_key:
        raise InvalidInput(
            "model_access_key must be the model's access key string (it starts with 'mya_'), "
            f"got {shown_key(model_access_key)}"
        )
    key = api_key if api_key is not None else settings.get("api_key")
    return Client(str(url), key).call(
        "POST",
        "/model",
        {"accessKey": model_access_key, "request": ipt},
        what=f"calling the model of access key {shown_key(model_access_key)}",
    )
