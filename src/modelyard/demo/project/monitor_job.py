"""The demo's recurring monitoring job: ground truth in, accuracy and drift out.

Each run (a separate process started by the server's scheduler, with ``MODELYARD_URL`` and a
run-scoped key in its environment):

1. reads the predictions whose observation horizon ended by this run's slot (the web app's
   customers, observed ``DEMO_HORIZON_MS`` after their prediction) from Modelyard with
   ``read_metrics_frame``;
2. joins the CRM's churn events to them by uuid (a customer without one stayed) and sends each
   outcome as ``churned`` with ``track_delayed_metrics``;
3. runs the monitor spec ``monitor.yaml`` (ROC AUC with its interval, label coverage, drift per
   feature, prediction drift), which writes one aggregate record per window, re-computes windows
   whose labels just arrived and fires alerts to the spec's webhook;
4. tracks what it did as the run's own metrics (shown with the run).

The window comes from the slot (``current_run().scheduled_ms``), not the clock, so a late run
reads the data of the interval it was scheduled for.
"""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import modelyard
from modelyard.demo.crm import Crm
from modelyard.monitors import MonitorSpec, run_monitor

__all__ = ["label_due", "main"]


def label_due(crm: Crm, deployment: str, slot_ms: int, horizon_ms: int) -> int:
    """Send the outcomes due by ``slot_ms`` as delayed metrics; how many were sent.

    Only the predictions Modelyard holds are sent and marked labelled in the CRM: a uuid it does
    not hold yet (a record not flushed, or outside the read range) stays unlabelled and is tried
    again by the next run, rather than losing its label for good.
    """
    outcomes = crm.outcomes_due(slot_ms - horizon_ms)
    if not outcomes:
        return 0
    due = {uuid: churned for uuid, churned, _ in outcomes}
    # Read the interval's predictions from Modelyard (a second of slack on each side for the
    # web app's clock reading) and join the CRM's outcomes to them by uuid.
    frame = modelyard.read_metrics_frame(
        deployment,
        start_timestamp_ms=outcomes[0][2] - 1000,
        end_timestamp_ms=slot_ms - horizon_ms + 1000,
    )
    if frame.empty:
        return 0
    predictions = frame[frame["kind"] == "prediction"]
    known = [(u, due[u]) for u in predictions["predictionUuid"] if u in due]
    # One HTTP call per label; a few at a time, as the server commits them one by one.
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda item: modelyard.track_delayed_metrics({"churned": item[1]}, item[0]),
                known,
            )
        )
    crm.mark_labelled([u for u, _ in known], slot_ms)
    return len(known)


def main() -> int:
    run = modelyard.current_run()
    slot_ms = run.scheduled_ms if run is not None else time.time_ns() // 1_000_000
    crm = Crm(Path(os.environ["DEMO_CRM"]))
    try:
        labelled = label_due(
            crm, os.environ["DEMO_DEPLOYMENT"], slot_ms, int(os.environ["DEMO_HORIZON_MS"])
        )
    finally:
        crm.close()
    spec = MonitorSpec.from_yaml(Path(__file__).parent / "monitor.yaml")
    # settle_ms=0: the monitor normally waits a minute before trusting that labels stamped
    # before a run were committed by then (other writers may be mid-transaction). Here this job
    # is the only writer of labels and every one above was committed before this line, so the
    # windows they fall in are recomputed now, not a minute later (the demo's minute is short).
    results = run_monitor(spec, now_ms=slot_ms, settle_ms=0)
    flagged = [r for r in results if (r.metrics.get("drift.flagged") or 0) > 0]
    modelyard.track_metrics(
        {"labelled": labelled, "windows": len(results), "windows_with_drift": len(flagged)}
    )
    print(f"labelled {labelled}; computed {len(results)} window(s), {len(flagged)} drifted")
    return 0


if __name__ == "__main__":
    sys.exit(main())
