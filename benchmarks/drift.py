"""Drift benchmark: Modelyard's ``drift`` against a plain scipy loop and Evidently, same data.

Reference and current frames of 1,000,000 rows x 20 features (15 numeric, 5 categorical) with 5
shifted features. Each contender runs in its own subprocess (so its peak memory, read with
``os.wait4``, is its own) on the same data, passed as ``.npy`` files: numeric columns as one float
array per side, categorical columns as integer codes plus the category names, rebuilt into string
columns in the child as a user would hold them. Only the drift computation is timed (not loading
the files); peak memory covers the whole child.

- Modelyard: ``modelyard.analysis.drift`` (PSI, KS, Wasserstein, Jensen–Shannon per numeric
  feature; PSI, chi-square, Jensen–Shannon, unseen share per categorical), every row, no sampling;
  with its default thread pool over features, and again with ``workers=1`` (one thread).
- scipy loop: ``scipy.stats.ks_2samp`` and a numpy PSI per numeric feature,
  ``scipy.stats.chi2_contingency`` and a numpy PSI per categorical feature.
- Evidently: its ``DataDriftPreset``, in its own virtualenv under ``benchmarks/.envs/evidently``
  (created on first use with pip: ``evidently==0.7.23``, the version docs/analysis.md reports,
  and ``pandas<3``, which Evidently 0.7 needs),
  capped at ``--evidently-timeout`` seconds and ``--evidently-memory-gb`` of address space.

Usage::

    .venv/bin/python benchmarks/drift.py            # full size, 3 runs each (Evidently once)
    .venv/bin/python benchmarks/drift.py --quick    # 20,000 rows, a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
EVIDENTLY_ENV = HERE / ".envs" / "evidently"
NUMERIC = [f"num_{i:02d}" for i in range(15)]
CATEGORICAL = [f"cat_{i}" for i in range(5)]
SHIFTED = ["num_00", "num_05", "num_10", "cat_0", "cat_3"]
LEVELS = [f"level_{i}" for i in range(12)] + ["brand_new"]  # the last appears only in current


# -- data -----------------------------------------------------------------------------------


def _numeric(rng: np.random.Generator, i: int, n: int, shifted: bool) -> np.ndarray:
    """Five families of distributions, three rounds; shifted ones move by a modest amount."""
    kind = i % 5
    if kind == 0:  # normal; shift: mean + 0.5 sd
        return rng.normal(0.5 if shifted else 0.0, 1.0, n)
    if kind == 1:  # lognormal (skewed)
        return rng.lognormal(0.0, 0.7, n)
    if kind == 2:  # exponential
        return rng.exponential(2.0, n)
    if kind == 3:  # integer counts (many ties)
        return rng.poisson(3.0, n).astype(np.float64)
    # uniform; shift: spread 1.5x wider around the same centre
    return rng.uniform(-1.5, 1.5, n) if shifted else rng.uniform(-1.0, 1.0, n)


def _weights(i: int, shifted: bool) -> np.ndarray:
    w = np.r_[np.geomspace(1.0, 0.05, 12), 0.0]
    if shifted and i == 0:  # two leading categories swap places
        w[[0, 2]] = w[[2, 0]]
    if shifted and i == 3:  # 8 % of rows in a category the reference never had
        w[-1] = 0.087 * w.sum()
    return w / w.sum()


def make_data(rows: int, folder: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for side in ("reference", "current"):
        shifting = side == "current"
        num = np.empty((rows, len(NUMERIC)))
        for i, name in enumerate(NUMERIC):
            num[:, i] = _numeric(rng, i, rows, shifting and name in SHIFTED)
        cat = np.empty((rows, len(CATEGORICAL)), dtype=np.int16)
        for i, name in enumerate(CATEGORICAL):
            cat[:, i] = rng.choice(len(LEVELS), rows, p=_weights(i, shifting and name in SHIFTED))
        np.save(folder / f"{side}_numeric.npy", num)
        np.save(folder / f"{side}_categorical.npy", cat)
    (folder / "columns.json").write_text(
        json.dumps({"numeric": NUMERIC, "categorical": CATEGORICAL, "levels": LEVELS})
    )


def load_frames(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both sides as users hold them: float columns and string (object) columns."""
    meta = json.loads((folder / "columns.json").read_text())
    levels = np.asarray(meta["levels"], dtype=object)
    frames = []
    for side in ("reference", "current"):
        num = np.load(folder / f"{side}_numeric.npy")
        cat = np.load(folder / f"{side}_categorical.npy")
        columns: dict[str, Any] = {n: num[:, i] for i, n in enumerate(meta["numeric"])}
        columns.update({n: levels[cat[:, i]] for i, n in enumerate(meta["categorical"])})
        frames.append(pd.DataFrame(columns))
    return frames[0], frames[1]


# -- contenders (each runs in a child process) ------------------------------------------------


def run_modelyard(ref: pd.DataFrame, cur: pd.DataFrame, workers: int | None = None) -> dict:
    from modelyard.analysis import drift, drift_summary

    started = time.perf_counter()
    report = drift(ref, cur, categorical=CATEGORICAL, workers=workers)
    seconds = time.perf_counter() - started
    summary = drift_summary(report)
    flagged = summary.loc[summary["drifted"], "feature"].tolist()
    by_method = {
        m: sorted(report.loc[(report["method"] == m) & report["flagged"], "feature"])
        for m in report["method"].unique()
    }
    return {"seconds": seconds, "flagged": sorted(flagged), "flagged_by_method": by_method}


def _psi(ref_counts: np.ndarray, cur_counts: np.ndarray, eps: float = 1e-4) -> float:
    r = np.maximum(ref_counts / ref_counts.sum(), eps)
    c = np.maximum(cur_counts / cur_counts.sum(), eps)
    return float(np.sum((c - r) * np.log(c / r)))


def run_scipy(ref: pd.DataFrame, cur: pd.DataFrame) -> dict[str, Any]:
    from scipy import stats

    started = time.perf_counter()
    rows = []
    for name in NUMERIC:
        a, b = ref[name].to_numpy(), cur[name].to_numpy()
        ks = stats.ks_2samp(a, b)
        edges = np.unique(np.quantile(a, np.linspace(0, 1, 11)[1:-1]))
        psi = _psi(
            np.bincount(np.searchsorted(edges, a, side="right"), minlength=edges.size + 1),
            np.bincount(np.searchsorted(edges, b, side="right"), minlength=edges.size + 1),
        )
        rows.append((name, float(ks.pvalue), psi))
    for name in CATEGORICAL:
        counts = pd.DataFrame(
            {"ref": ref[name].value_counts(), "cur": cur[name].value_counts()}
        ).fillna(0)
        chi = stats.chi2_contingency(counts.to_numpy().T)
        rows.append(
            (name, float(chi.pvalue), _psi(counts["ref"].to_numpy(), counts["cur"].to_numpy()))
        )
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "flagged": sorted(n for n, _, psi in rows if psi >= 0.1),
        "flagged_by_method": {
            "psi>=0.1": sorted(n for n, _, psi in rows if psi >= 0.1),
            "p<0.05": sorted(n for n, p, _ in rows if p < 0.05),
        },
    }


def run_evidently(ref: pd.DataFrame, cur: pd.DataFrame) -> dict[str, Any]:
    import evidently
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    started = time.perf_counter()
    definition = DataDefinition(numerical_columns=NUMERIC, categorical_columns=CATEGORICAL)
    snapshot = Report([DataDriftPreset()]).run(
        Dataset.from_pandas(cur, data_definition=definition),
        Dataset.from_pandas(ref, data_definition=definition),
    )
    result = snapshot.dict()
    seconds = time.perf_counter() - started
    flagged, methods = [], {}
    for metric in result.get("metrics", []):
        config = metric.get("config", {})
        column = config.get("column")
        if column is None or "threshold" not in config or "method" not in config:
            continue
        value, threshold, method = metric.get("value"), config["threshold"], config["method"]
        methods[column] = method
        # Evidently's rule: p-value methods drift below the threshold, distances at or above.
        p_value_like = any(k in method.lower() for k in ("p_value", "test", "ks", "chi", "z-"))
        drifted = value < threshold if p_value_like else value >= threshold
        if drifted:
            flagged.append(column)
    return {
        "seconds": seconds,
        "flagged": sorted(flagged),
        "methods": methods,
        "version": evidently.__version__,
    }


def run_modelyard_one_thread(ref: pd.DataFrame, cur: pd.DataFrame) -> dict[str, Any]:
    """The same with ``workers=1``: one thread, like the scipy loop."""
    return run_modelyard(ref, cur, workers=1)


CONTENDERS = {
    "modelyard": run_modelyard,
    "modelyard-1thread": run_modelyard_one_thread,
    "scipy": run_scipy,
    "evidently": run_evidently,
}


def child(name: str, folder: Path) -> None:
    ref, cur = load_frames(folder)
    out = CONTENDERS[name](ref, cur)
    out["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(out))


# -- parent -----------------------------------------------------------------------------------


def _limit(memory_gb: float | None) -> Any:
    def apply() -> None:
        if memory_gb:
            limit = int(memory_gb * 1024**3)
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return apply


def spawn(python: str, name: str, folder: Path, timeout: float, memory_gb: float | None) -> dict:
    """Run one contender in a child; wall time, peak RSS (from wait4) and its result or failure."""
    log = folder / f"{name}-{time.monotonic_ns()}.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [python, str(Path(__file__).resolve()), "--child", name, "--data", str(folder)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            preexec_fn=_limit(memory_gb),
            cwd=HERE.parent,
        )
        started = time.monotonic()
        status, usage, killed = None, None, False
        while status is None:
            pid, raw, rusage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                status, usage = raw, rusage
                break
            if time.monotonic() - started > timeout:
                proc.kill()
                killed = True
                _, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.2)
        proc.returncode = os.waitstatus_to_exitcode(status)
    text = log.read_text()
    out: dict[str, Any] = {
        "exit": proc.returncode,
        "child_wall_s": time.monotonic() - started,
        "peak_rss_mb": usage.ru_maxrss / 1024 if usage else None,
    }
    lines = [line for line in text.splitlines() if line.startswith("RESULT ")]
    if lines:
        out.update(json.loads(lines[-1][len("RESULT ") :]))
    else:
        out["error"] = (
            f"killed after {timeout:.0f} s" if killed else "failed: " + text.strip()[-800:]
        )
    return out


# The version docs/analysis.md reports; a different one in an existing venv is reinstalled.
EVIDENTLY_VERSION = "0.7.23"


def ensure_evidently() -> str:
    python = EVIDENTLY_ENV / "bin" / "python"
    if not python.exists():
        EVIDENTLY_ENV.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(EVIDENTLY_ENV)], check=True)
    probe = subprocess.run(
        [
            str(python),
            "-c",
            "import sys, evidently.presets, pyarrow; "
            f"sys.exit(evidently.__version__ != {EVIDENTLY_VERSION!r})",
        ],
        capture_output=True,
        check=False,
    )
    if probe.returncode != 0:
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "-q",
                f"evidently=={EVIDENTLY_VERSION}",
                "pandas<3",
                "pyarrow",
            ],
            check=True,
        )
    return str(python)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20,000 rows, one run each")
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=3, help="runs of Modelyard and scipy")
    parser.add_argument("--evidently", choices=("yes", "no"), default="yes")
    parser.add_argument("--evidently-timeout", type=float, default=900.0)
    parser.add_argument("--evidently-memory-gb", type=float, default=16.0)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--child", choices=sorted(CONTENDERS), help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.data)
        return

    sys.path.insert(0, str(HERE))
    from _common import RESULTS, machine

    rows = args.rows or (20_000 if args.quick else 1_000_000)
    repeat = 1 if args.quick else args.repeat
    results: dict[str, Any] = {
        "rows": rows,
        "features": 20,
        "shifted": SHIFTED,
        "loadavg_at_start": os.getloadavg(),  # the machine is shared: say how busy it was
        "runs": {},
    }
    with tempfile.TemporaryDirectory(prefix="modelyard-drift-") as tmp:
        folder = Path(tmp)
        print(f"generating {rows:,} rows x 20 features per side ...", flush=True)
        make_data(rows, folder)
        # Interleaved (Modelyard, scipy, Modelyard, ...) so both see the same machine load.
        local = ("modelyard", "modelyard-1thread", "scipy")
        results["runs"] = {name: [] for name in local}
        for i in range(repeat):
            for name in local:
                run = spawn(sys.executable, name, folder, 900.0, None)
                results["runs"][name].append(run)
                print(f"{name} run {i + 1}: {run.get('seconds', run.get('error'))}", flush=True)
        if args.evidently == "yes":
            try:
                python = ensure_evidently()
            except subprocess.CalledProcessError as exc:
                results["runs"]["evidently"] = [{"error": f"could not install: {exc}"}]
            else:
                run = spawn(
                    python, "evidently", folder, args.evidently_timeout, args.evidently_memory_gb
                )
                results["runs"]["evidently"] = [run]
                print(f"evidently: {run.get('seconds', run.get('error'))}", flush=True)

    table = []
    for name, runs in results["runs"].items():
        done = [r for r in runs if "seconds" in r]
        row: dict[str, Any] = {"contender": name, "runs": len(runs)}
        if done:
            row["median_s"] = statistics.median(r["seconds"] for r in done)
            row["peak_rss_mb"] = statistics.median(r["peak_rss_mb"] for r in done)
            row["flagged"] = done[0]["flagged"]
            row["false_flags"] = sorted(set(done[0]["flagged"]) - set(SHIFTED))
            row["missed"] = sorted(set(SHIFTED) - set(done[0]["flagged"]))
        else:
            row["error"] = runs[0].get("error") if runs else "not run"
        table.append(row)
    base = {r["contender"]: r.get("median_s") for r in table}
    for row in table:
        if row.get("median_s") and base.get("modelyard"):
            row["vs_modelyard"] = row["median_s"] / base["modelyard"]
    results["table"] = table
    results["machine"] = machine()

    print()
    print(f"{'contender':<18} {'median s':>9} {'peak MB':>8} {'x Modelyard':>11}  flagged")
    for row in table:
        if "error" in row:
            print(f"{row['contender']:<18} {'-':>9} {'-':>8} {'-':>11}  {row['error']}")
            continue
        print(
            f"{row['contender']:<18} {row['median_s']:>9.2f} {row['peak_rss_mb']:>8.0f} "
            f"{row.get('vs_modelyard', 1.0):>11.1f}  {', '.join(row['flagged'])}"
            + (f"  FALSE: {row['false_flags']}" if row["false_flags"] else "")
            + (f"  MISSED: {row['missed']}" if row["missed"] else "")
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = args.out or RESULTS / f"drift-{'quick-' if args.quick else ''}{stamp}.json"
    target.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nwritten {target}")


if __name__ == "__main__":
    main()
