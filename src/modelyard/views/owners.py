"""Which project an object named in a query or a body belongs to, and the caller's right on it.

Routes whose rule is ``On.BODY`` (metrics, monitors, series, drift, one prediction) name their
objects by identifier rather than in the path: a model CRN, a build CRN, a deployment CRN, a
prediction uuid. Each leads to a model, and the model to its project; ``Caller.check`` then
answers 404 (no role in that project) or 403 (a role too low) as for any path.

An object that does not exist is answered as one in a project where the caller has no role: the
same 404 with the same message, so an answer never tells a caller what exists outside its own
projects. A server administrator passes every check and gets the store's own answer for it.

One ``Owners`` serves one request: it remembers what it looked up, so a batch of 10,000
predictions of one model costs one registry read. Blocking (registry and store reads): routes
call it on a worker thread.
"""

from __future__ import annotations

from collections.abc import Callable

from modelyard.errors import InvalidInput, NotFound
from modelyard.registry import Model
from modelyard.web.access import Caller, Right, resolve_project
from modelyard.web.services import Services

__all__ = ["NOWHERE", "Owners"]

# A project nobody has a role in: what an unknown object is checked against, so its answer is
# the 404 of an object in someone else's project, word for word.
NOWHERE = "crn:modelyard:project/00000000-0000-0000-0000-000000000000"


_WHERE = {
    "deployment": "'modelyard models show MODEL' names a model's deployments",
    "build": "'modelyard models builds MODEL' lists a model's builds",
    "prediction": "a prediction's uuid is the 'uuid' of the model's answer",
}


class Owners:
    """The models behind identifiers, looked up once per request."""

    def __init__(self, services: Services) -> None:
        self._services = services
        self._models: dict[str, Model | None] = {}
        self._deployments: dict[str, str | None] = {}

    # -- lookups ------------------------------------------------------------------------------
    def model(self, ref: str) -> Model | None:
        """The model ``ref`` (a name or a CRN) names; None when there is none."""
        if ref not in self._models:
            try:
                self._models[ref] = self._services.registry.get_model(ref)
            except (NotFound, InvalidInput):
                self._models[ref] = None
        return self._models[ref]

    def deployment_model(self, deployment_crn: str) -> str | None:
        """The model CRN of a deployment the store knows; None for an unknown one."""
        if deployment_crn not in self._deployments:
            try:
                found: str | None = self._services.store.resolve(deployment_crn).model_crn
            except (NotFound, InvalidInput):
                found = None
            self._deployments[deployment_crn] = found
        return self._deployments[deployment_crn]

    def build_model(self, build_crn: str) -> str | None:
        """The model CRN of a build; None for an unknown one."""
        try:
            return self._services.registry.get_build(build_crn).model_crn
        except (NotFound, InvalidInput):
            return None

    def prediction_model(self, uuid: str, flush: Callable[[], None] | None = None) -> str | None:
        """The model CRN of a prediction; None for an unknown uuid. ``flush`` (the buffered
        writer's) is called once before giving up, for a prediction answered a moment ago."""
        for attempt in range(2):
            try:
                return self._services.store.prediction_identity(uuid).model_crn
            except (NotFound, InvalidInput):
                if attempt or flush is None:
                    return None
                flush()
        return None

    def deployment_project(self, deployment_crn: str) -> str | None:
        """The project CRN of a deployment's model; None for an unknown deployment or model."""
        model_crn = self.deployment_model(deployment_crn)
        model = self.model(model_crn) if model_crn is not None else None
        return model.project_crn if model is not None else None

    # -- checks -------------------------------------------------------------------------------
    def check_model(
        self, caller: Caller, right: Right, ref: str, what: str | None = None
    ) -> Model | None:
        """``caller`` may do ``right`` on the model ``ref`` (a name or CRN): 404 for an unknown
        model and for one in a project the caller has no role in (one answer for both), 403 for
        a role too low. Returns the model (None only for a server administrator naming an
        unknown one)."""
        model = self.model(ref)
        project = model.project_crn if model is not None else None
        crn = model.crn if model is not None else ref
        caller.check(right, project or NOWHERE, what or f"model {ref!r}", crn)
        return model

    def check_model_crn(
        self, caller: Caller, right: Right, model_crn: str | None, what: str
    ) -> None:
        """As ``check_model`` for a model reached through another object (``what`` names that
        object as ``"<kind> '<id>'"``; ``model_crn`` None: the object is unknown). The 404 says
        where the caller finds the identifiers it may use (one message for unknown and hidden)."""
        model = self.model(model_crn) if model_crn is not None else None
        project = model.project_crn if model is not None else None
        try:
            caller.check(right, project or NOWHERE, what, model.crn if model else model_crn)
        except NotFound:
            kind = what.partition(" ")[0]
            raise NotFound(
                f"{what} is not known, or not in a project you can see (its model's); "
                f"{_WHERE.get(kind, _WHERE['deployment'])}",
                **{kind: what.partition(" ")[2].strip("'")},
            ) from None

    def check_deployment(self, caller: Caller, right: Right, deployment_crn: str) -> None:
        """``caller`` may do ``right`` on the model of deployment ``deployment_crn``."""
        self.check_model_crn(
            caller, right, self.deployment_model(deployment_crn), f"deployment {deployment_crn!r}"
        )

    def check_build(self, caller: Caller, right: Right, build_crn: str) -> None:
        """``caller`` may do ``right`` on the model of build ``build_crn``."""
        self.check_model_crn(caller, right, self.build_model(build_crn), f"build {build_crn!r}")

    def check_prediction(
        self,
        caller: Caller,
        right: Right,
        uuid: str,
        flush: Callable[[], None] | None = None,
    ) -> None:
        """``caller`` may do ``right`` on the model of prediction ``uuid``: an unknown uuid and
        another project's get one answer (404), so the status tells nobody which uuids exist."""
        model_crn = self.prediction_model(uuid, flush)
        self.check_model_crn(caller, right, model_crn, f"prediction {uuid!r}")

    def project_filter(self, caller: Caller, ref: str | None) -> str | None:
        """The CRN of the project a list's ``?project=`` names (a CRN, uuid, ``owner/name`` or a
        bare name the caller sees once), None when none is given: one 404 for an unknown project
        and for one the caller has no role in."""
        if ref is None:
            return None
        return resolve_project(self._services.registry, caller, ref).crn

    # -- lists --------------------------------------------------------------------------------
    def sees_model_crn(self, caller: Caller, model_crn: str | None) -> bool:
        """Whether a list shows ``caller`` what belongs to ``model_crn``: a server administrator
        sees everything (a deleted model's alerts too), anyone else what their roles reach."""
        if caller.visible_projects() is None and caller.model_scope is None:
            return True
        model = self.model(model_crn) if model_crn is not None else None
        return model is not None and caller.sees_model(model)

    def sees_deployment(self, caller: Caller, deployment_crn: str) -> bool:
        """Whether a list shows ``caller`` what belongs to deployment ``deployment_crn``."""
        return self.sees_model_crn(caller, self.deployment_model(deployment_crn))
