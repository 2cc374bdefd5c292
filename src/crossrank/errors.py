"""One exception hierarchy for the whole package.

Every layer (server, CLI, pipeline) maps these to its own vocabulary in one place: HTTP
status codes, exit codes. Nothing in the engine raises a bare ``ValueError`` at a caller.
"""

from __future__ import annotations


class CrossrankError(Exception):
    """Base class: anything crossrank raises on purpose."""


class ModelLoadError(CrossrankError):
    """A model could not be found, downloaded, exported or opened.

    The message always names the model and the cause.
    """

    def __init__(self, model: str, cause: str) -> None:
        self.model = model
        self.cause = cause
        super().__init__(f"cannot load model {model!r}: {cause}")

    def __reduce__(self) -> tuple:  # picklable (process pools, Ray workers): rebuilt from what __init__ takes
        return (type(self), (self.model, self.cause))


class InputError(CrossrankError):
    """The caller passed something the engine cannot score (wrong type, empty query...)."""


class BackendError(CrossrankError):
    """A backend failed while running a batch (out of memory, runtime error)."""


class ScoringStopped(CrossrankError):
    """Scoring was stopped between engine batches because its caller asked (``stop=``): nobody waits."""


class MissingDependencyError(CrossrankError):
    """An optional dependency is needed for this feature; the message names the extra to install."""

    def __init__(self, feature: str, extra: str, package: str) -> None:
        self.feature, self.extra, self.package = feature, extra, package
        super().__init__(
            f"{feature} needs the optional package {package!r}: pip install 'crossrank[{extra}]'"
        )

    def __reduce__(self) -> tuple:
        return (type(self), (self.feature, self.extra, self.package))
