"""What the REST API and the dashboard both show: read views over the registry, the controller
and the store, computed once here so the two can never disagree.

- ``insights``: the overview, tech and metric series, recent predictions, a prediction by uuid,
  a build's log; ``series`` picks raw records or rollups for a chart; ``drift`` the drift matrix,
  groups and distributions;
- ``models``, ``jobs``, ``alerts``: models, jobs and runs, alerts and reference samples as a given
  API key may see them (scope applied, environment values masked).

Every function blocks on the database: routes call them from plain ``def`` routes or
``web.offloop.off_loop``, never on the event loop. Views sit above ``web`` (they take its
``Services`` and apply its ``auth`` rules) and below ``ui`` and ``server``, which both import them.
"""

from __future__ import annotations

from modelyard.views import alerts, drift, insights, jobs, models, series

__all__ = ["alerts", "drift", "insights", "jobs", "models", "series"]
