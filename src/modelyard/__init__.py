"""Modelyard: deploy Python functions, record every prediction, join late ground truth, monitor."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
