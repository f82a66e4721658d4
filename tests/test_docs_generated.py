"""Generated reference pages must match the code they describe."""

from __future__ import annotations

from pathlib import Path

from modelyard import settings_doc
from modelyard.cli import reference

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_cli_reference_is_current() -> None:
    assert (DOCS / "cli.md").read_text() == reference.render(), (
        "docs/cli.md is stale: run .venv/bin/python -m modelyard.cli.reference > docs/cli.md"
    )


def test_configuration_page_is_current() -> None:
    assert (DOCS / "configuration.md").read_text() == settings_doc.render(), (
        "docs/configuration.md is stale: run "
        ".venv/bin/python -m modelyard.settings_doc > docs/configuration.md"
    )
