"""What is left of the key-and-capability model before users and projects: the bearer header,
the mask, and which environment values a caller is shown. Who may do what is decided in
``modelyard.web.access`` (users, project roles, keys narrowed to a project, a role or a model,
run keys); this module keeps the names other parts import and delegates to it.
"""

from __future__ import annotations

from collections.abc import Mapping

from modelyard.web.access import Caller, Right, bearer_token

__all__ = ["MASK", "bearer_token", "shown_env"]

MASK = "***"


def shown_env(
    env: Mapping[str, str], caller: Caller | None, project_crn: str | None
) -> dict[str, str]:
    """``env`` for ``caller``: values only for a server administrator or who may CHANGE things
    in ``project_crn`` (the project the deployment or job belongs to: they may set the values
    anyway, and values may hold what the code needs kept secret), names with the values masked
    for everyone else."""
    shown = caller is not None and (
        caller.server_admin
        or (project_crn is not None and caller.may(Right.CHANGE, project_crn, caller.model_scope))
    )
    if shown:
        return dict(env)
    return {name: MASK for name in env}
