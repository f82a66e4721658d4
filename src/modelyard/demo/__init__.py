"""The telco churn story that ``modelyard demo`` tells, end to end through the real product.

``generator`` (synthetic customers with known churn), ``model`` (training), ``project`` (what is
deployed and what the job runs), ``crm`` and ``webapp`` (the simulated client application),
``receiver`` (the alerts' webhook), ``server_process``, ``results`` and ``report``, and ``story``,
which ties them together.
"""

from modelyard.demo.story import DEFAULT, QUICK, StoryConfig, run_story

__all__ = ["DEFAULT", "QUICK", "StoryConfig", "run_story"]
