"""Log paths refuse traversal; tail and follow return exactly the lines written."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from modelyard.errors import InvalidInput, NotFound
from modelyard.runtime import LocalRuntime, check_name, replica_log_path, run_log_path
from modelyard.runtime.logs import read_log, tail_lines

BAD_NAMES = [
    "",
    ".",
    "..",
    "../etc",
    "a/../../b",
    "a/b",
    "/abs",
    ".hidden",
    "-flag",
    "a..b",
    "x\x00y",
    "a\\b",
    "a b",
    "é",
    "a" * 129,
    None,
    7,
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_identifiers_are_refused_with_the_value_named(name: object) -> None:
    with pytest.raises(InvalidInput) as info:
        check_name(name, "run_id")
    assert f"run_id={name!r}" in str(info.value)
    assert "letters, digits" in str(info.value)


def test_good_identifiers_map_inside_the_logs_folder(tmp_path: Path) -> None:
    for name in ["a", "A1", "run-2026-11-26.1", "x_y", "9" * 128]:
        assert check_name(name, "id") == name
    assert replica_log_path(tmp_path, "d", "r") == tmp_path / "logs" / "replicas" / "d" / "r.log"
    assert run_log_path(tmp_path, "r") == tmp_path / "logs" / "runs" / "r.log"


def test_traversal_through_the_runtime_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.log"
    secret.write_text("do not show\n")
    with LocalRuntime(tmp_path / "home") as runtime:
        for deployment_id, replica_id in [
            ("..", "secret"),
            ("d", "../../../secret"),
            ("d/..", "x"),
        ]:
            with pytest.raises(InvalidInput):
                list(runtime.read_replica_log(deployment_id, replica_id))
        with pytest.raises(InvalidInput):
            list(runtime.read_run_log("../../secret"))


def test_a_symlink_pointing_out_of_the_logs_folder_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("do not show\n")
    runs = tmp_path / "home" / "logs" / "runs"
    runs.mkdir(parents=True)
    (runs / "evil.log").symlink_to(secret)
    with pytest.raises(InvalidInput, match="outside the logs folder"):
        run_log_path(tmp_path / "home", "evil")
    (tmp_path / "home" / "logs" / "replicas").mkdir()
    (tmp_path / "home" / "logs" / "replicas" / "dep").symlink_to(tmp_path)
    with pytest.raises(InvalidInput, match="outside the logs folder"):
        replica_log_path(tmp_path / "home", "dep", "secret")


@pytest.mark.parametrize("count", [0, 1, 3, 10, 5000, 20000])
@pytest.mark.parametrize("trailing_newline", [True, False])
def test_tail_matches_splitlines(tmp_path: Path, count: int, trailing_newline: bool) -> None:
    path = tmp_path / "x.log"
    # Lines of varied length, enough to span several 64 KiB blocks.
    lines = [f"line {i} " + "x" * (i % 97) for i in range(12000)]
    path.write_text("\n".join(lines) + ("\n" if trailing_newline else ""))
    expected = path.read_text().splitlines()[-count:] if count else []
    assert tail_lines(path, count) == expected
    assert list(read_log(path, tail=count)) == expected


def test_read_all_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    path.write_bytes(b"one\ntwo\xff\n")
    assert list(read_log(path)) == ["one", "two\ufffd"]
    with pytest.raises(InvalidInput, match="tail_lines=-1"):
        read_log(path, tail=-1)
    with pytest.raises(NotFound, match="does not exist"):
        read_log(tmp_path / "missing.log")


def test_follow_yields_appended_lines_and_holds_back_a_partial_line(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    path.write_bytes(b"old 1\nold 2\nhalf")
    done = threading.Event()

    def writer() -> None:
        with open(path, "ab") as handle:
            for chunk in [b" line\n", b"new 1\nne", b"w 2\n", b"last"]:
                time.sleep(0.05)
                handle.write(chunk)
                handle.flush()
                os.fsync(handle.fileno())
        time.sleep(0.05)
        done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    lines = list(read_log(path, tail=1, follow=True, poll_s=0.01, stop=done.is_set))
    thread.join()
    assert lines == ["old 2", "half line", "new 1", "new 2", "last"]


def test_follow_keeps_lines_written_just_before_the_stop(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    path.write_bytes(b"first\n")

    def stop() -> bool:
        # The writer's last words land between the follower's empty read and its stop check.
        with open(path, "ab") as handle:
            handle.write(b"last words\nno newline")
        return True

    assert list(read_log(path, follow=True, poll_s=0.01, stop=stop)) == [
        "first",
        "last words",
        "no newline",
    ]
