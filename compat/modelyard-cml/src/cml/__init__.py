"""``cml``: the reference platform's newer module names on Modelyard (distribution modelyard-cml).

``import cml.metrics_v1 as metrics`` and ``import cml.models_v1 as models`` give scripts written
for it Modelyard's own functions (``modelyard.cdsw``) under the names they import. Why this is a
separate distribution: see its README (``compat/modelyard-cml/README.md``) and
``docs/coming-from-cdsw.md``.
"""

from __future__ import annotations

__all__: list[str] = []
