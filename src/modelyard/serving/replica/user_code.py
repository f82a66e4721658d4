"""One call of user code and its answer: the protocol's item ``{ok, output, record, timing}``.

Everything here runs in the worker thread that ran the user's function (or, for ``async def``
functions, on the event loop right after the await), so the encoding of a large output or record
never holds up the loop that answers health checks. Each answer leaves as finished JSON bytes.

Records (``R`` in ``docs/design/serving.md``): a function decorated with ``@model_metrics`` hands
its record to the ``capture()`` around the call, and that record (same uuid as ``output["uuid"]``)
is the answer's record. An undecorated function gets a record minted here: wall-clock start/end
milliseconds around the call.

The uuid: the gateway mints it and sends it (``X-Modelyard-Prediction-Uuid``), so a request
resent to another replica after the first one died keeps its uuid. The answer's record and a
decorated function's ``output["uuid"]`` carry that uuid (the decorator's own is replaced). Without
one (a replica called directly) a fresh time-ordered uuid is minted here
(``ids.new_prediction_uuid``, as everywhere Modelyard mints one: the store's uuid index grows at
its end instead of at random places, ``docs/store.md``). A batch of n items is sent one base
uuid; item i gets ``batch_item_uuid(base, i)``. ``--track-io`` adds ``input`` and ``output``
(unless the function tracked those keys itself); a failure adds the decorator's ``_error`` marker.
"""

from __future__ import annotations

import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from modelyard.clock import now_ms
from modelyard.errors import ModelyardError
from modelyard.ids import new_prediction_uuid
from modelyard.tracking.capture import Capture, CapturedRecord, capture

# The decorator's own marker, so a failure looks the same whether the replica or the decorator
# recorded it.
from modelyard.tracking.decorator import ERROR_KEY, _error_marker
from modelyard.tracking.validate import max_record_bytes

__all__ = [
    "IO_DROPPED_KEY",
    "BatchOutputError",
    "Outcome",
    "UserCode",
    "batch_item_uuid",
    "encode_json",
    "run_sync",
]

IO_DROPPED_KEY = "_io_dropped"

# numpy values (what scikit-learn returns) encode without a .tolist(); int keys become strings as
# with json.dumps, the encoder the build's smoke test checked the output with.
_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def encode_json(value: Any) -> bytes:
    return orjson.dumps(value, option=_JSON_OPTIONS)


_LOW48 = (1 << 48) - 1


def batch_item_uuid(base: str, index: int) -> str:
    """The uuid of item ``index`` of a batch sent with ``base``: ``index`` added to the last 48
    bits (mod 2**48), so item 0 is ``base``, the version and variant bits stay as they were and a
    time-ordered base stays time-ordered.

    >>> batch_item_uuid("0190f0b2-6a2b-7c3d-8e4f-00000000ffff", 1)
    '0190f0b2-6a2b-7c3d-8e4f-000000010000'
    """
    value = uuid.UUID(base).int
    low = ((value & _LOW48) + index) & _LOW48
    return str(uuid.UUID(int=(value & ~_LOW48) | low))


class BatchOutputError(ModelyardError):
    """A batch function returned something other than one output per input."""

    code = "batch_output"


BatchOutputError.__module__ = "modelyard.serving.replica"


@dataclass(slots=True)
class Outcome:
    """What one call of user code did: its result or exception and when it ran."""

    result: Any
    error: BaseException | None
    captured: Capture
    start_ms: int
    end_ms: int
    began: float  # time.perf_counter() just before the call
    ended: float


def run_sync(fn: Callable[[Any], Any], arg: Any) -> Outcome:
    """Call ``fn(arg)`` under a capture; any exception is kept, never raised.

    ``BaseException`` too: a ``sys.exit()`` in user code running on a worker thread must become a
    failed prediction, not a stopped replica.
    """
    with capture() as captured:
        start_ms = now_ms()
        began = time.perf_counter()
        try:
            result, error = fn(arg), None
        except BaseException as exc:
            result, error = None, exc
        ended = time.perf_counter()
        end_ms = now_ms()
    return Outcome(result, error, captured, start_ms, end_ms, began, ended)


async def run_async(fn: Callable[[Any], Any], arg: Any) -> Outcome:
    """``run_sync`` for ``async def`` user functions, awaited on the event loop."""
    with capture() as captured:
        start_ms = now_ms()
        began = time.perf_counter()
        try:
            result, error = await fn(arg), None
        except BaseException as exc:
            result, error = None, exc
        ended = time.perf_counter()
        end_ms = now_ms()
    return Outcome(result, error, captured, start_ms, end_ms, began, ended)


def _add_io(metrics: dict[str, Any], added: dict[str, bytes]) -> None:
    """Add ``--track-io``'s values (encoded) unless the record would pass the size limit.

    The store refuses a record over ``MODELYARD_MAX_RECORD_BYTES`` (and with it the rest of the
    gateway's write batch), and a request may be up to ``--max-body-bytes``. Over the limit the
    values are left out and ``_io_dropped`` says how large they were.
    """
    limit = max_record_bytes()
    size = sum(len(key) + len(value) + 6 for key, value in added.items())
    if size + (len(encode_json(metrics)) if metrics else 2) <= limit:
        for key, value in added.items():
            metrics[key] = orjson.Fragment(value)
        return
    dropped: dict[str, int] = {f"{key}_bytes": len(value) for key, value in added.items()}
    metrics[IO_DROPPED_KEY] = {**dropped, "limit_bytes": limit}


def _decorated(result: Any, captured: Capture) -> CapturedRecord | None:
    """The decorator's record when ``result`` is the decorator's ``{"prediction", "uuid"}``."""
    if type(result) is dict and len(result) == 2 and "prediction" in result:
        uid = result.get("uuid")
        if type(uid) is str:
            return captured.find(uid)
    return None


class UserCode:
    """The user's function (and batch function), and how their calls become answers."""

    def __init__(
        self,
        function: Callable[[Any], Any],
        function_name: str,
        batch_function: Callable[[list[Any]], Any] | None = None,
        batch_function_name: str | None = None,
        *,
        track_io: bool = False,
        debug: bool = False,
    ) -> None:
        self.function = function
        self.function_name = function_name
        self.batch_function = batch_function
        self.batch_function_name = batch_function_name
        self.track_io = track_io
        self.debug = debug

    # -- answers -------------------------------------------------------------------------------

    def _error(self, exc: BaseException) -> dict[str, Any]:
        error: dict[str, Any] = dict(_error_marker(exc))
        if self.debug:
            error["traceback"] = "".join(traceback.format_exception(exc))
        return error

    def _answer(
        self,
        item: Any,
        output: Any,
        error: BaseException | None,
        record: CapturedRecord,
        timing: dict[str, Any],
        prediction: Any,
    ) -> bytes:
        """Encode one item's answer; an output that is not JSON turns it into a failure.

        ``prediction`` is what ``--track-io`` records as ``output``: the function's value without
        the decorator's ``{"prediction", "uuid"}`` wrapper.
        """
        metrics = record.metrics
        added: dict[str, bytes] = {}
        if self.track_io and "input" not in metrics:
            added["input"] = encode_json(item)
        encoded: bytes | None = None
        if error is None:
            try:
                encoded = encode_json(output)
            except TypeError as exc:
                error = TypeError(
                    f"{self.function_name} returned a {type(output).__name__} that is not JSON "
                    f"({exc}); return dicts, lists, strings, numbers, booleans or None"
                )
            else:
                if self.track_io and "output" not in metrics:
                    added["output"] = encode_json(prediction)
        if added:
            _add_io(metrics, added)
        if encoded is not None:
            body: dict[str, Any] = {"ok": True, "output": orjson.Fragment(encoded)}
        else:
            assert error is not None  # no encoded output only when the call or encoding failed
            metrics.setdefault(ERROR_KEY, _error_marker(error))
            body = {"ok": False, "error": self._error(error)}
        body["record"] = record.to_reference()
        body["timing"] = timing
        return encode_json(body)

    def single_answer(
        self, item: Any, outcome: Outcome, arrived: float, uid: str | None = None
    ) -> bytes:
        """The answer to one call of the single function (``arrived``: perf_counter time);
        ``uid`` the prediction's uuid from the gateway (None: minted here)."""
        timing = {
            "queue_ms": round((outcome.began - arrived) * 1000, 3),
            "function_ms": round((outcome.ended - outcome.began) * 1000, 3),
            "batch_size": 1,
        }
        captured = outcome.captured
        record: CapturedRecord | None
        output = prediction = outcome.result
        if outcome.error is None:
            record = _decorated(outcome.result, captured)
            if record is not None:
                prediction = outcome.result["prediction"]
                if uid is not None:
                    output = {"prediction": prediction, "uuid": uid}
        else:
            # A decorated function recorded its failure (with ``_error``) before re-raising; the
            # outermost decorated call finishes last.
            record = captured.records[-1] if captured.records else None
        if record is None:
            record = CapturedRecord(
                uid or new_prediction_uuid(), outcome.start_ms, outcome.end_ms, {}
            )
        elif uid is not None:
            record = CapturedRecord(uid, record.start_ms, record.end_ms, record.metrics)
        return self._answer(item, output, outcome.error, record, timing, prediction)

    def batch_answers(
        self,
        items: Sequence[Any],
        outcome: Outcome,
        arrivals: Sequence[float],
        uuids: Sequence[str | None] | None = None,
    ) -> list[bytes]:
        """One answer per item of a batch call, each with its own uuid (``uuids[i]`` when the
        gateway sent one) and record.

        A decorated batch function's output is unwrapped: its ``prediction`` must be the list, each
        item's output is wrapped back as ``{"prediction": value, "uuid": <the item's uuid>}`` and
        the metrics it tracked (for the whole batch) are copied into every item's record.
        """
        n = len(items)
        function_ms = round((outcome.ended - outcome.began) * 1000, 3)
        batch_record = None
        values: Any = outcome.result
        error = outcome.error
        if error is None:
            batch_record = _decorated(values, outcome.captured)
            if batch_record is not None:
                values = values["prediction"]
            if getattr(values, "ndim", 0) >= 1 and hasattr(values, "tolist"):
                values = values.tolist()  # a NumPy array or pandas Series of outputs
            if not isinstance(values, list | tuple) or len(values) != n:
                got = (
                    f"{len(values)} outputs"
                    if isinstance(values, list | tuple)
                    else f"a {type(values).__name__}"
                )
                error = BatchOutputError(
                    f"{self.batch_function_name} returned {got} for {n} inputs; a batch "
                    f"function must return a list with one output per input, in order"
                )
        elif outcome.captured.records:
            batch_record = outcome.captured.records[-1]
        answers = []
        for i, item in enumerate(items):
            uid = (uuids[i] if uuids is not None else None) or new_prediction_uuid()
            metrics = dict(batch_record.metrics) if batch_record is not None else {}
            metrics.pop(ERROR_KEY, None)
            record = CapturedRecord(uid, outcome.start_ms, outcome.end_ms, metrics)
            output = prediction = None
            if error is None:
                output = prediction = values[i]
                if batch_record is not None:
                    output = {"prediction": prediction, "uuid": uid}
            timing = {
                "queue_ms": round((outcome.began - arrivals[i]) * 1000, 3),
                "function_ms": function_ms,
                "batch_size": n,
            }
            answers.append(self._answer(item, output, error, record, timing, prediction))
        return answers
