"""``python -m modelyard.monitors run SPEC [--window START..END] [--json]``: what a job runs.

Prints the label import first when the spec has ``labels:`` ("labels from 'crm': 1000 rows read, 990
matched, 10 unmatched (e.g. ...), 0 duplicates"), then one line per computed window with predictions
(the last 20; empty windows are counted), each followed by the metric groups left out for too few
rows and the alert rules not evaluated on it ("alert 'roc_auc < 0.7' not evaluated: 4 labelled
predictions < min_labels 30"), then a summary line with how many windows were complete, partial and
empty (or a JSON list of every window with ``--json``); warnings go to stderr. A Modelyard error is
one line on stderr and exit status 2, as with the ``modelyard`` command.
"""

from __future__ import annotations

import argparse
import logging
import sys

import orjson

from modelyard.errors import ModelyardError
from modelyard.monitors import labels
from modelyard.monitors.run import parse_window, run_monitor
from modelyard.specs.monitor import MonitorSpec

__all__ = ["main"]

_LINES = 20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modelyard.monitors")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="compute the due windows of a monitor spec")
    run.add_argument("spec", help="path of the monitor's YAML spec")
    run.add_argument("--window", default=None, help="recompute START..END only")
    run.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    handler = logging.StreamHandler(sys.stderr if args.json else sys.stdout)
    labels.log.addHandler(handler)
    labels.log.setLevel(logging.INFO)
    try:
        spec = MonitorSpec.from_yaml(args.spec)
        window = parse_window(args.window) if args.window else None
        results = run_monitor(
            spec, window=window, warn=lambda m: print(f"warning: {m}", file=sys.stderr)
        )
    except ModelyardError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    finally:
        labels.log.removeHandler(handler)
    if args.json:
        sys.stdout.write(orjson.dumps([r.to_dict() for r in results]).decode() + "\n")
    else:
        full = [r for r in results if not r.empty]
        for r in full[-_LINES:]:
            kept = "" if r.written else " (kept: the stored result came from more data)"
            partial = " partial (still open: computed again once it closes)" if r.partial else ""
            print(f"{r.start_ms}..{r.end_ms} {r.reason} n={r.metrics.get('n')}{partial}{kept}")
            for note in r.notes():  # too few rows: groups left out, alert rules not evaluated
                print(f"  {note}")
        partial_n = sum(r.partial for r in full)
        print(
            f"{len(results)} window(s) computed for monitor {spec.name}: "
            f"{len(full) - partial_n} complete, {partial_n} partial, "
            f"{len(results) - len(full)} empty (no predictions, no aggregate record)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
