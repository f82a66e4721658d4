"""Output people can read and programs can pipe, driven through the real CLI (click's runner,
whose stdout is not a terminal, as in a pipe): complete identifiers, plain tab-separated rows,
ISO 8601 local times, model names where CRNs are taken, and durations that need a unit."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from rich.console import Console

from _cli import run, run_main
from modelyard.cli import output
from modelyard.cli.output import format_time, print_mapping, print_rows
from modelyard.errors import InvalidInput
from modelyard.registry import Registry
from modelyard.store import Identity, Prediction, open_store

T0 = 1_764_925_200_000  # 2025-12-05T09:00:00Z
BOX = set("│┃━─┏┗┡╇╭╰┌└")


@pytest.fixture
def kolkata(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A local time zone that is not UTC (+05:30), so a UTC time passed off as local shows."""
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def churn(modelyard_home: Path) -> Identity:
    """Model ``churn`` in the home's registry, active, with 3 predictions recorded under it."""
    with open_store() as store:
        registry = Registry(store)
        model, _ = registry.create_model("churn")
        build = registry.add_build(
            "churn", digest="d", file="p.py", function="predict", python="py", env_key="e", ok=True
        )
        deployment = registry.add_deployment("churn", build.crn)
        registry.set_deployment_state(deployment.crn, "active")
        who = Identity(model.crn, build.crn, deployment.crn)
        store.write_predictions(
            [Prediction(f"u{i}", who, T0 + i, T0 + i + 5, {"p": i / 10}) for i in range(3)]
        )
    return who


def test_piped_tables_are_plain_complete_rows(churn: Identity, kolkata: None) -> None:
    result = run("metrics", "read", "--deployment", churn.deployment_crn, "--since", "0")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    header = lines[0].split("\t")
    assert "startTimeStampMs" in header and "modelDeploymentCrn" in header
    rows = [dict(zip(header, line.split("\t"), strict=True)) for line in lines[1:]]
    assert len(rows) == 3
    assert {r["modelDeploymentCrn"] for r in rows} == {churn.deployment_crn}  # not cut to ...
    assert {r["predictionUuid"] for r in rows} == {"u0", "u1", "u2"}
    assert rows[0]["startTimeStampMs"] == "2025-12-05T14:30:00.000+05:30"  # local, ISO 8601
    assert not BOX & set(result.stdout) and "…" not in result.stdout
    assert "3 records" in result.stderr  # the title stays off the data


def test_mappings_and_rows_keep_long_cells_whole_on_one_line(
    capsys: pytest.CaptureFixture[str], kolkata: None
) -> None:
    crn = "crn:modelyard:deployment/" + "a" * 120
    print_mapping("Deployed", {"deployment": crn, "created_ms": T0, "duration_ms": T0 // 10**6})
    print_rows("Runs", ["uuid", "note", "queued_ms"], [[crn, "two\nlines\tand a tab", T0]])
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"deployment\t{crn}"
    assert out[1] == "created\t2025-12-05T14:30:00.000+05:30"
    assert out[2] == f"duration_ms\t{T0 // 10**6}"  # a duration stays a number
    assert out[3] == "uuid\tnote\tqueued"
    assert out[4] == f"{crn}\ttwo\\nlines\\tand a tab\t2025-12-05T14:30:00.000+05:30"


def test_nested_objects_are_spread_so_their_times_read_as_times(
    capsys: pytest.CaptureFixture[str], kolkata: None
) -> None:
    print_mapping("Job", {"name": "tick", "last_run": {"state": "succeeded", "slot_ms": T0}})
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "name\ttick",
        "last_run.state\tsucceeded",
        "last_run.slot\t2025-12-05T14:30:00.000+05:30",
    ]


def test_on_a_terminal_identifiers_stay_whole_and_prose_wraps(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    screen = io.StringIO()
    monkeypatch.setattr(output, "is_terminal", lambda: True)
    monkeypatch.setattr(output, "console", Console(file=screen, width=50, force_terminal=False))
    crn = "crn:modelyard:deployment/0123abcd-0123-4abc-8def-0123456789ab"
    prose = "none: each call runs the function alone " * 2
    print_mapping("Deployed", {"deployment": crn, "batch function": prose})
    drawn = screen.getvalue()
    assert "…" not in drawn and "..." not in drawn
    assert any(crn in line for line in drawn.splitlines())  # on one line, copyable
    assert "batch function" in drawn and drawn.count("alone") == 2


def test_json_keeps_epoch_milliseconds(churn: Identity) -> None:
    result = run("metrics", "read", "--deployment", churn.deployment_crn, "--json")
    records = orjson.loads(result.stdout)
    assert records[0]["startTimeStampMs"] == T0


def test_format_time_is_iso_8601_in_the_local_zone(kolkata: None) -> None:
    assert format_time(T0) == "2025-12-05T14:30:00.000+05:30"


def test_help_says_how_to_get_machine_readable_output() -> None:
    top = run("--help").output
    assert "--json" in top and "tab-separated" in top
    for command in (["jobs", "runs"], ["models", "list"], ["keys", "list"], ["alerts"]):
        assert "tab-separated rows" in " ".join(run(*command, "--help").output.split())


def test_a_model_name_is_accepted_where_a_crn_is(churn: Identity) -> None:
    for option, name in (("--model", "churn"), ("--deployment", "churn"), ("--build", "churn")):
        result = run("metrics", "read", option, name, "--json")
        assert result.exit_code == 0, result.output
        assert len(orjson.loads(result.stdout)) == 3
    build_uuid = churn.build_crn.rsplit("/", 1)[-1]
    result = run("metrics", "read", "--build", build_uuid[:8], "--json")  # a build id prefix
    assert len(orjson.loads(result.stdout)) == 3
    result = run("metrics", "distribution", "p", "--model", "churn", "--json")
    assert orjson.loads(result.stdout)["count"] == 3


def test_reference_upload_takes_the_model_name(churn: Identity, tmp_path: Path) -> None:
    sample = tmp_path / "training.csv"
    sample.write_text("p,x\n0.1,1\n0.7,2\n")
    result = run("monitors", "reference", "upload", "--deployment", "churn", str(sample), "--json")
    assert result.exit_code == 0, result.output
    listed = orjson.loads(
        run("monitors", "reference", "list", "--deployment", "churn", "--json").stdout
    )
    assert [r["deployment_crn"] for r in listed] == [churn.deployment_crn]


def test_an_unknown_name_says_what_is_known(
    churn: Identity, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_main(capsys, "metrics", "read", "--model", "chrun", "--json")
    assert code == 2
    assert "--model 'chrun' is neither a CRN nor a known model name" in err
    assert "did you mean 'churn'?" in err
    assert f"churn's CRN is {churn.model_crn}" in " ".join(err.split())


def test_a_crn_of_the_wrong_kind_is_named(
    churn: Identity, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_main(capsys, "metrics", "read", "--deployment", churn.model_crn)
    assert code == 2
    assert "is a model CRN, not a deployment CRN" in err


def test_an_unknown_crn_says_what_is_known(
    churn: Identity, capsys: pytest.CaptureFixture[str]
) -> None:
    typo = "crn:modelyard:deployment/00000000-0000-4000-8000-000000000000"
    code, _, err = run_main(capsys, "metrics", "read", "--deployment", typo, "--json")
    assert code == 2
    err = " ".join(err.split())
    assert f"unknown identifiers: deployment_crn='{typo}'" in err
    assert f"{typo} is not registered here; known models: churn's CRN is {churn.model_crn}" in err


def test_a_bare_number_as_a_duration_asks_for_a_unit(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run_main(
        capsys, "jobs", "create", "tick", "--project-dir", str(tmp_path), "--script", "t.py",
        "--every", "5",
    )  # fmt: skip
    assert code == 2
    assert "--every='5' has no unit; add a unit (30s, 5m, 1h" in err


def test_every_duration_that_people_write_asks_for_a_unit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from modelyard import settings
    from modelyard.monitors import MonitorSpec

    monkeypatch.setenv("MODELYARD_RAW_HORIZON", "30")
    with pytest.raises(InvalidInput, match=r"MODELYARD_RAW_HORIZON='30' has no unit; add a unit"):
        settings.get("raw_horizon")
    spec = {"name": "m", "model": "churn", "prediction": "p", "label": "y", "window": 60}
    with pytest.raises(InvalidInput, match=r"'window'='60' has no unit; add a unit \(30s, 5m, 1h"):
        MonitorSpec.from_dict(spec)
    assert settings.parse_duration_ms("0", "--timeout") == 0  # zero needs no unit
