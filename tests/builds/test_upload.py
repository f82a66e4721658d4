"""Uploads on real folders: the manifest, the same content as a snapshot, refusals on both sides,
and a materialized upload that snapshots to the very digest of the folder it came from."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from modelyard.builds.snapshot import snapshot_project
from modelyard.builds.upload import (
    UploadLimits,
    check_manifest,
    materialize,
    pack_project,
)
from modelyard.errors import InvalidInput, PayloadTooLarge

Writer = Callable[..., Path]
BASIC = {"predict.py": "def predict(args):\n    return args\n", "lib/util.py": "X = 1\n"}
IGNORED = {
    **BASIC,
    ".gitignore": "*.log\n!keep.log\ndata/\n",
    ".modelyardignore": "secrets.env\n",
    "app.log": "x",
    "keep.log": "kept by negation",
    "data/big.csv": "1,2\n",
    "secrets.env": "TOKEN=1",
    "lib/.gitignore": "generated.py\n",
    "lib/generated.py": "ignored by the nested .gitignore",
    "other/generated.py": "kept",
    ".git/config": "never",
    "__pycache__/x.pyc": "never",
}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _blobs(root: Path, manifest: list[dict[str, Any]]) -> dict[str, bytes]:
    return {e["sha256"]: (root / e["path"]).read_bytes() for e in manifest if "sha256" in e}


def test_manifest_has_path_digest_size_and_only_the_executable_bit(project: Writer) -> None:
    root = project({**BASIC, "run.sh": "#!/bin/sh\n", "copy.py": BASIC["predict.py"]})
    os.chmod(root / "run.sh", 0o750)
    os.chmod(root / "predict.py", 0o600)
    pack = pack_project(root)

    assert pack.manifest() == [
        {"path": "copy.py", "sha256": _sha(b"def predict(args):\n    return args\n"),
         "size": 35, "mode": 0o644},
        {"path": "lib/util.py", "sha256": _sha(b"X = 1\n"), "size": 6, "mode": 0o644},
        {"path": "predict.py", "sha256": _sha(b"def predict(args):\n    return args\n"),
         "size": 35, "mode": 0o644},
        {"path": "run.sh", "sha256": _sha(b"#!/bin/sh\n"), "size": 10, "mode": 0o755},
    ]  # fmt: skip
    # equal content is sent once
    assert len(pack.digests()) == 3
    assert pack.total_bytes == 35 + 6 + 35 + 10


def test_pack_takes_exactly_what_a_snapshot_takes(project: Writer, tmp_path: Path) -> None:
    root = project(IGNORED)
    os.symlink("lib/util.py", root / "alias.py")
    pack = pack_project(root)
    snap = snapshot_project(root, tmp_path / "snaps")
    assert tuple(e.path for e in pack.entries) == snap.files
    assert {"path": "alias.py", "link": "lib/util.py"} in pack.manifest()

    # Rebuilt on the "server" from blobs alone, the folder snapshots to the same digest.
    blobs = _blobs(root, pack.manifest())
    dest = tmp_path / "materialized"
    dest.mkdir()
    materialize(check_manifest(pack.manifest()), blobs.__getitem__, dest)
    again = snapshot_project(dest, tmp_path / "snaps2")
    assert again.digest == snap.digest
    assert (dest / "alias.py").is_symlink()


def test_pack_refuses_what_a_snapshot_refuses(project: Writer, tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("secret")
    root = project(BASIC)
    os.symlink(outside, root / "leak.txt")
    with pytest.raises(InvalidInput, match=r"symlink 'leak.txt' .* outside the project"):
        pack_project(root)

    other = project(BASIC, name="fifo")
    os.mkfifo(other / "pipe")
    with pytest.raises(InvalidInput, match=r"'pipe' is not a regular file"):
        pack_project(other)


def test_pack_limits_name_the_file_and_the_limit(project: Writer) -> None:
    root = project({**BASIC, "big.bin": b"x" * 2000})
    with pytest.raises(PayloadTooLarge, match=r"'big.bin' is 2000 bytes, over the limit of 1000"):
        pack_project(root, UploadLimits(max_file_bytes=1000))
    with pytest.raises(PayloadTooLarge, match=r"over the limit of 1500 bytes"):
        pack_project(root, UploadLimits(max_total_bytes=1500))
    with pytest.raises(PayloadTooLarge, match=r"3 files to upload, over the limit of 2 files"):
        pack_project(root, UploadLimits(max_files=2))


GOOD = {"path": "a.py", "sha256": "a" * 64, "size": 3, "mode": 0o644}


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        ([{**GOOD, "path": "/etc/passwd"}], r"path '/etc/passwd' is absolute"),
        ([{**GOOD, "path": "../up.py"}], r"path '../up.py' has an empty, '.' or '..' part"),
        ([{**GOOD, "path": "a/../../b"}], r"'a/../../b' has an empty"),
        ([{**GOOD, "path": "a//b"}], r"'a//b' has an empty"),
        ([GOOD, GOOD], r"'a.py' appears twice"),
        ([GOOD, {**GOOD, "path": "a.py/x"}], r"'a.py' is both a file and a folder"),
        ([{**GOOD, "mode": 0o777}], r"'a.py': mode 511 is not accepted"),
        ([{**GOOD, "sha256": "XYZ"}], r"digest 'XYZ' is not accepted"),
        ([{**GOOD, "size": -1}], r"'a.py': size -1 is not a byte count"),
        ([{**GOOD, "owner": "root"}], r"'a.py' has unknown fields \['owner'\]"),
        ([GOOD, {"path": "l", "link": "../../etc/passwd"}], r"'l' is a link to .* leaves"),
        ([GOOD, {"path": "l", "link": "/etc/passwd"}], r"'l': link '/etc/passwd' is not"),
        ([GOOD, {"path": "l", "link": "nothing.py"}], r"'l' is a link .* not in the upload"),
        ("not a list", r"manifest is str; expected a list"),
    ],
)
def test_check_manifest_refuses_naming_the_entry(manifest: Any, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        check_manifest(manifest)


def test_check_manifest_limits_name_the_limit() -> None:
    many = [{**GOOD, "path": f"f{i}.py"} for i in range(5)]
    with pytest.raises(PayloadTooLarge, match=r"lists 5 files, over the limit of 4 files"):
        check_manifest(many, UploadLimits(max_files=4))
    with pytest.raises(PayloadTooLarge, match=r"at entry 'f3.py'.*limit of 10 bytes per upload"):
        check_manifest(many, UploadLimits(max_total_bytes=10))
    with pytest.raises(PayloadTooLarge, match=r"'f0.py' is 3 bytes, over the limit of 2 bytes"):
        check_manifest(many, UploadLimits(max_file_bytes=2))
    assert [e.path for e in check_manifest(list(reversed(many)))] == [f"f{i}.py" for i in range(5)]


def test_materialize_refuses_a_blob_that_does_not_match(tmp_path: Path) -> None:
    entries = check_manifest([{**GOOD, "sha256": _sha(b"abc")}])
    with pytest.raises(InvalidInput, match=r"'a.py' says 3 bytes with sha256"):
        materialize(entries, lambda digest: b"abcd", tmp_path)
    materialize(entries, lambda digest: b"abc", tmp_path / "ok")
    written = tmp_path / "ok" / "a.py"
    assert written.read_bytes() == b"abc"
    assert stat.S_IMODE(written.stat().st_mode) == 0o644
