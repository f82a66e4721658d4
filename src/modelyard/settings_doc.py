"""The configuration page, generated from the settings table (``modelyard.settings.SETTINGS``).

``python -m modelyard.settings_doc > docs/configuration.md`` regenerates it; a test checks it.
"""

from __future__ import annotations

from modelyard.settings import SETTINGS

__all__ = ["render"]


def render() -> str:
    lines = [
        "# Configuration",
        "",
        "Every setting is an environment variable. This page is generated from the one table",
        "that the code reads (`modelyard.settings.SETTINGS`); `modelyard settings` prints the",
        "current values.",
        "",
        "| variable | default | meaning |",
        "| --- | --- | --- |",
    ]
    for setting in SETTINGS.values():
        default = "" if setting.default is None else f"`{setting.default}`"
        lines.append(f"| `{setting.env}` | {default} | {setting.help} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render(), end="")
