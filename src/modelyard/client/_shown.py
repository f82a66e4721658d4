"""How a secret key appears in messages and logs: its first characters only.

An access key or API key is a bearer credential: an error message or log line that echoes it
whole leaks it to wherever that text goes (a notebook shared with colleagues, a CI log, a ticket).
``shown_key`` keeps the recognisable start (the kind prefix, ``mya_`` or ``myk_``, and a few
random characters: as many as ``modelyard models list`` and ``modelyard keys list`` show), enough
to tell which key was used and far too little to use it.
"""

from __future__ import annotations

__all__ = ["SHOWN_KEY_CHARS", "shown_key"]

# The same count the registry keeps for display (``registry._keys.DISPLAY_CHARS``): the kind
# prefix plus 8 random characters.
SHOWN_KEY_CHARS = 12


def shown_key(key: object) -> str:
    """``key`` as it may appear in a message: its first characters and an ellipsis.

    >>> shown_key("mya_9fQe2Lx0Zr7TbW1uVq3sPdK8nYcHjAoG5mEi4lRtXyU")
    "'mya_9fQe2Lx0...'"
    >>> shown_key("short")
    "'sh...'"
    >>> shown_key(None)
    'None'
    """
    if not isinstance(key, str):
        return "None" if key is None else f"a {type(key).__name__}"
    # a short string (a mistake, not a real key) still shows at most half of itself
    keep = min(SHOWN_KEY_CHARS, len(key) // 2)
    return repr(key[:keep] + "...")
