"""``python -m modelyard.serving.replica ...``: start one replica process (see ``process.py``)."""

from __future__ import annotations

import sys

from modelyard.serving.replica.process import main

sys.exit(main())
