"""The base of every spec, and the one place where pydantic's ValidationError becomes the
project's ``InvalidInput``.

A spec's own checks raise ``InvalidInput`` (a ``ValueError``, so pydantic records it with the
field it belongs to); ``invalid_input`` hands that exception back as it was raised, message and
details unchanged. What pydantic finds itself (a missing field, an unknown one, a wrong type)
becomes ``InvalidInput`` with the field's name, the value and the fields accepted, the message
shape the REST API has always used for bodies.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, ValidationError

from modelyard.errors import InvalidInput

__all__ = ["Spec", "invalid_input"]


def invalid_input(exc: ValidationError, model: type[BaseModel]) -> InvalidInput:
    """The first problem of ``exc`` as ``InvalidInput`` naming the field (see the module doc)."""
    first = exc.errors()[0]
    raised = (first.get("ctx") or {}).get("error")
    if isinstance(raised, InvalidInput):
        return raised
    where = ".".join(str(p) for p in first.get("loc", ())) or "body"
    accepted = ", ".join(sorted(model.model_fields))
    if first.get("type") == "missing":
        field = model.model_fields.get(where)
        hint = f"; expected {field.description}" if field and field.description else ""
        return InvalidInput(f"{where} is missing{hint} (fields: {accepted})", argument=where)
    return InvalidInput(
        f"{where}={first.get('input')!r:.200} is not accepted: {first.get('msg')} "
        f"(fields: {accepted})",
        argument=where,
    )


class Spec(BaseModel):
    """A validated, immutable spec: unknown fields are refused, and building one (``Spec(...)``
    or ``Spec.parse(data)``) raises ``InvalidInput``, never pydantic's ``ValidationError``."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise invalid_input(exc, type(self)) from None

    @classmethod
    def body_schema(
        cls, *, partial: bool = False, leave_out: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        """The JSON schema of this spec as a request body, self-contained (no ``$defs``, so it
        can sit inside an OpenAPI document); ``partial``: no field is required (a change)."""
        schema = cls.model_json_schema()
        defs = schema.pop("$defs", {})
        inlined: dict[str, Any] = _inline(schema, defs)
        for name in leave_out:
            inlined["properties"].pop(name, None)
        required = [n for n in inlined.get("required", ()) if n not in leave_out]
        inlined.pop("required", None)
        if required and not partial:
            inlined["required"] = required
        return inlined

    @classmethod
    def parse(cls, data: object, what: str = "the request body") -> Self:
        """``data`` (a mapping, such as a JSON body) as this spec."""
        if not isinstance(data, Mapping):
            raise InvalidInput(f"{what} {data!r:.100} is not a JSON object; expected one")
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            raise invalid_input(exc, cls) from None


def _inline(node: Any, defs: Mapping[str, Any]) -> Any:
    """``node`` with every ``{"$ref": "#/$defs/X"}`` replaced by the definition of X."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            siblings = {k: v for k, v in node.items() if k != "$ref"}
            return {**_inline(defs[ref.removeprefix("#/$defs/")], defs), **siblings}
        return {k: _inline(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node
