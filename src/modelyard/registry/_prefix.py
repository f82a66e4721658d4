"""Naming a run or a build by the start of its uuid, as git names commits.

One rule for the server and the CLI: at least ``MIN_PREFIX`` characters of the uuid (hex digits
and hyphens, any case); a prefix that fits several ids is an error listing them, one that fits
none is NotFound. Short prefixes are refused outright: four characters already leave 65,536
possibilities, fewer would match several ids too often to be worth a guess.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from modelyard.errors import InvalidInput, NotFound

__all__ = ["MIN_PREFIX", "SHOWN", "check_prefix", "choose"]

MIN_PREFIX = 4
#: How many candidates an ambiguity error lists (one more is looked up to know there are more).
SHOWN = 10
_HEX = re.compile(r"[0-9a-f-]+")


def check_prefix(text: str, kind: str, example: str) -> str:
    """``text`` (lowercased, without a ``crn:modelyard:KIND/`` head) if it can start a uuid."""
    prefix = text.strip().lower().removeprefix(f"crn:modelyard:{kind}/")
    if not _HEX.fullmatch(prefix):
        raise InvalidInput(
            f"{kind} {text!r} is not a {kind} id; give its uuid or the first {MIN_PREFIX} or more "
            f"characters of it (hex digits), e.g. {example}",
            **{kind: text},
        )
    if len(prefix.replace("-", "")) < MIN_PREFIX:
        raise InvalidInput(
            f"{kind} {text!r} is too short to name a {kind}: give at least {MIN_PREFIX} "
            f"characters of its id, e.g. {example}",
            **{kind: text},
        )
    return prefix


def choose(text: str, kind: str, candidates: Sequence[str], where: str) -> str:
    """The one candidate id (full CRNs, at most ``SHOWN + 1`` of them) that ``text`` names."""
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise NotFound(f"no {kind} id starts with {text!r}; {where}", **{kind: text})
    listed = ", ".join(c.rsplit("/", 1)[-1] for c in candidates[:SHOWN])
    more = " and more" if len(candidates) > SHOWN else ""
    raise InvalidInput(
        f"{kind} {text!r} is ambiguous: {len(candidates[:SHOWN])}{more} {kind} ids start with "
        f"it ({listed}{more}); give more characters",
        **{kind: text},
    )
