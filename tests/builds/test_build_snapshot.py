"""Snapshots on real folders: ignore rules, content addressing, symlinks and size limits."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from _threads import in_threads
from modelyard.builds.snapshot import remove_snapshot, snapshot_project
from modelyard.errors import InvalidInput, PayloadTooLarge

Writer = Callable[..., Path]
BASIC = {"predict.py": "def predict(args):\n    return args\n", "lib/util.py": "X = 1\n"}


def _tree(path: Path) -> set[str]:
    return {p.relative_to(path).as_posix() for p in path.rglob("*") if not p.is_dir()}


def test_snapshot_copies_files_read_only_under_their_digest(project: Writer, tmp_path: Path):
    root = project({**BASIC, "run.sh": "#!/bin/sh\n"})
    os.chmod(root / "run.sh", 0o755)
    snap = snapshot_project(root, tmp_path / "snaps")

    assert snap.path == tmp_path / "snaps" / snap.digest
    assert len(snap.digest) == 64 and not snap.reused
    assert snap.files == ("lib/util.py", "predict.py", "run.sh")
    assert snap.total_bytes == sum((root / f).stat().st_size for f in snap.files)
    assert (snap.path / "predict.py").read_text() == BASIC["predict.py"]
    assert stat.S_IMODE((snap.path / "predict.py").stat().st_mode) == 0o444
    assert stat.S_IMODE((snap.path / "run.sh").stat().st_mode) == 0o555
    assert stat.S_IMODE((snap.path / "lib").stat().st_mode) == 0o555
    assert stat.S_IMODE(snap.path.stat().st_mode) == 0o555
    # No temporary folder is left beside the snapshot.
    assert [p.name for p in (tmp_path / "snaps").iterdir()] == [snap.digest]


def test_gitignore_and_modelyardignore_rules_are_honoured(project: Writer, tmp_path: Path):
    root = project(
        {
            **BASIC,
            ".gitignore": "*.log\n!keep.log\ndata/\n/top-only.txt\n",
            ".modelyardignore": "secrets.env\nnotebooks/\n!debug.log\n",
            "app.log": "x",
            "keep.log": "kept by negation",
            "debug.log": "re-included by .modelyardignore",
            "data/big.csv": "1,2\n",
            "top-only.txt": "anchored: ignored only at the top",
            "lib/top-only.txt": "kept",
            "secrets.env": "TOKEN=1",
            "notebooks/explore.ipynb": "{}",
            "lib/.gitignore": "generated.py\n",
            "lib/generated.py": "ignored by the nested .gitignore",
            "other/generated.py": "nested rules apply only below their folder",
        }
    )
    snap = snapshot_project(root, tmp_path / "snaps")

    assert set(snap.files) == {
        ".gitignore",
        ".modelyardignore",
        "debug.log",
        "keep.log",
        "lib/.gitignore",
        "lib/top-only.txt",
        "lib/util.py",
        "other/generated.py",
        "predict.py",
    }
    assert _tree(snap.path) == set(snap.files)


def test_a_file_inside_an_ignored_folder_cannot_be_re_included(project: Writer, tmp_path: Path):
    # git's rule: "It is not possible to re-include a file if a parent directory is excluded."
    root = project({**BASIC, ".gitignore": "data/\n!data/keep.csv\n", "data/keep.csv": "1\n"})
    snap = snapshot_project(root, tmp_path / "snaps")
    assert "data/keep.csv" not in snap.files


def test_git_venv_and_pycache_are_always_left_out(project: Writer, tmp_path: Path):
    root = project(
        {
            **BASIC,
            ".git/config": "[core]\n",
            ".venv/bin/python": "",
            "__pycache__/predict.cpython-311.pyc": b"\x00",
            "lib/__pycache__/util.cpython-311.pyc": b"\x00",
        }
    )
    assert set(snapshot_project(root, tmp_path / "snaps").files) == set(BASIC)


def test_equal_content_gives_the_equal_digest_and_reuses_the_folder(
    project: Writer, tmp_path: Path
):
    first = project(BASIC, "one")
    second = project(BASIC, "two")
    os.utime(second / "predict.py", (1_000_000, 1_000_000))
    a = snapshot_project(first, tmp_path / "snaps")
    marker = (a.path / "predict.py").stat().st_ino
    b = snapshot_project(second, tmp_path / "snaps")

    assert b.digest == a.digest and b.path == a.path
    assert b.reused and not a.reused
    assert (b.path / "predict.py").stat().st_ino == marker  # the folder was not rewritten


@pytest.mark.parametrize("change", ["content", "name", "executable", "new file"])
def test_any_change_gives_a_new_digest(project: Writer, tmp_path: Path, change: str):
    root = project(BASIC)
    before = snapshot_project(root, tmp_path / "snaps")
    if change == "content":
        (root / "lib/util.py").write_text("X = 2\n")
    elif change == "name":
        (root / "lib/util.py").rename(root / "lib/utils.py")
    elif change == "executable":
        os.chmod(root / "predict.py", 0o755)
    else:
        (root / "README.md").write_text("hello\n")
    after = snapshot_project(root, tmp_path / "snaps")
    assert after.digest != before.digest and not after.reused
    assert before.path.is_dir() and after.path.is_dir()


def test_symlink_leaving_the_project_is_refused(project: Writer, tmp_path: Path):
    (tmp_path / "outside.txt").write_text("secret")
    root = project(BASIC)
    (root / "lib/leak.txt").symlink_to("../../outside.txt")
    with pytest.raises(InvalidInput) as err:
        snapshot_project(root, tmp_path / "snaps")
    message = str(err.value)
    assert "'lib/leak.txt'" in message and "../../outside.txt" in message
    assert "outside the project" in message
    assert not any((tmp_path / "snaps").iterdir())


def test_absolute_symlink_to_a_system_file_is_refused(project: Writer, tmp_path: Path):
    root = project(BASIC)
    (root / "passwd").symlink_to("/etc/passwd")
    with pytest.raises(InvalidInput, match="'passwd' points to '/etc/passwd'"):
        snapshot_project(root, tmp_path / "snaps")


def test_symlinks_inside_the_project_are_kept_as_relative_links(project: Writer, tmp_path: Path):
    root = project(BASIC)
    (root / "alias.py").symlink_to("lib/util.py")
    (root / "lib/abs_alias.py").symlink_to(root / "predict.py")  # absolute, but inside
    (root / "lib/up").symlink_to("..")  # a loop if followed: links are never followed
    snap = snapshot_project(root, tmp_path / "snaps")

    assert {"alias.py", "lib/abs_alias.py", "lib/up"} <= set(snap.files)
    assert os.readlink(snap.path / "alias.py") == "lib/util.py"
    assert os.readlink(snap.path / "lib/abs_alias.py") == "../predict.py"
    assert (snap.path / "lib/abs_alias.py").read_text() == BASIC["predict.py"]
    assert (snap.path / "lib/up/lib/util.py").read_text() == "X = 1\n"
    # A different link target is a different content.
    (root / "alias.py").unlink()
    (root / "alias.py").symlink_to("predict.py")
    assert snapshot_project(root, tmp_path / "snaps").digest != snap.digest


@pytest.mark.parametrize("target", ["missing.py", "ignored.py"])
def test_symlink_to_a_path_missing_from_the_snapshot_is_refused(
    project: Writer, tmp_path: Path, target: str
):
    root = project({**BASIC, ".gitignore": "ignored.py\n", "ignored.py": "x = 1\n"})
    (root / "link.py").symlink_to(target)
    with pytest.raises(InvalidInput, match=rf"'link.py' points to '{target}'.*not in the snapshot"):
        snapshot_project(root, tmp_path / "snaps")


def test_file_over_the_size_limit_is_refused(project: Writer, tmp_path: Path):
    root = project({**BASIC, "model.bin": b"\x00" * 2048})
    with pytest.raises(PayloadTooLarge) as err:
        snapshot_project(root, tmp_path / "snaps", max_file_bytes=1024)
    assert str(err.value).startswith(
        "project file 'model.bin' is 2048 bytes, over the limit of 1024"
    )
    assert err.value.status == 413
    # Ignoring the file is the documented way out.
    (root / ".modelyardignore").write_text("*.bin\n")
    assert "model.bin" not in snapshot_project(root, tmp_path / "snaps", max_file_bytes=1024).files


def test_total_over_the_limit_is_refused(project: Writer, tmp_path: Path):
    root = project({f"part{i}.py": "#" * 600 for i in range(4)})
    with pytest.raises(PayloadTooLarge, match=r"holds 2400 bytes.*limit of 2000 bytes"):
        snapshot_project(root, tmp_path / "snaps", max_total_bytes=2000)


def test_missing_project_folder_is_refused(tmp_path: Path):
    with pytest.raises(InvalidInput, match=r"does-not-exist.*does not exist"):
        snapshot_project(tmp_path / "does-not-exist", tmp_path / "snaps")


def test_special_files_are_refused(project: Writer, tmp_path: Path):
    root = project(BASIC)
    os.mkfifo(root / "pipe")
    with pytest.raises(InvalidInput, match="'pipe' is not a regular file"):
        snapshot_project(root, tmp_path / "snaps")


def test_destination_inside_the_project_is_not_snapshotted_into_itself(project: Writer):
    root = project(BASIC)
    first = snapshot_project(root, root / ".builds")
    second = snapshot_project(root, root / ".builds")
    assert set(first.files) == set(BASIC)
    assert second.digest == first.digest and second.reused


def test_concurrent_snapshots_of_equal_content_share_one_folder(project: Writer, tmp_path: Path):
    root = project({**BASIC, **{f"m{i}.py": f"V = {i}\n" * 2000 for i in range(30)}})
    results = []
    errors: list[BaseException] = []

    def run(_: int) -> None:
        try:
            results.append(snapshot_project(root, tmp_path / "snaps"))
        except BaseException as exc:  # pragma: no cover - reported by the assert below
            errors.append(exc)

    in_threads(run, 4)
    assert not errors
    assert len({r.path for r in results}) == 1
    assert [p.name for p in (tmp_path / "snaps").iterdir()] == [results[0].digest]
    assert _tree(results[0].path) == set(results[0].files)


def test_remove_snapshot_deletes_the_read_only_folder(project: Writer, tmp_path: Path):
    snap = snapshot_project(project(BASIC), tmp_path / "snaps")
    remove_snapshot(snap.path)
    assert not snap.path.exists()


def test_temporary_folders_of_killed_snapshots_are_swept(project: Writer, tmp_path: Path):
    snaps = tmp_path / "snaps"
    stale = snaps / ".tmp-killed"
    fresh = snaps / ".tmp-running"
    for folder in (stale, fresh):
        (folder / "lib").mkdir(parents=True)
        (folder / "lib" / "half.py").write_text("X =")
        os.chmod(folder / "lib", 0o555)
    two_days_ago = time.time() - 2 * 24 * 3600
    os.utime(stale, (two_days_ago, two_days_ago))

    snap = snapshot_project(project(BASIC), snaps)
    assert sorted(p.name for p in snaps.iterdir()) == sorted([".tmp-running", snap.digest])
