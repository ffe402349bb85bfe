"""The exceptions lstmconvert raises on purpose.

Every error a user can cause (a bad file, an option that does not fit, a missing framework) is an
``LstmConvertError``; the CLI prints its message on one line and exits with code 2. Anything else is
a bug and keeps its traceback.
"""

from __future__ import annotations


class LstmConvertError(Exception):
    """Base class: a problem with the input or the request, not a bug in lstmconvert.

    ``problem`` says what is wrong; ``path`` is the user's file it concerns, or None. Formats raise
    path-less errors; ``api`` (the one boundary between the user's paths and the formats) attaches the
    path with ``at``, keeping the class, so every message reads ``<path>: <problem>``.
    """

    path: object = None

    @property
    def problem(self) -> str:
        return super().__str__()

    def at(self, path: object) -> "LstmConvertError":
        """Name ``path`` as the file concerned, unless a path is named already; returns ``self``."""
        if self.path is None:
            self.path = path
        return self

    def __str__(self) -> str:
        return self.problem if self.path is None else f"{self.path}: {self.problem}"


class _FileError(LstmConvertError):
    """An error about one file: ``Cls(problem)`` from a format, ``Cls(path, problem)`` where the path is known."""

    def __init__(self, *args: object) -> None:
        *path, problem = args
        if len(path) > 1:
            raise TypeError(f"{type(self).__name__}(problem) or {type(self).__name__}(path, problem)")
        super().__init__(problem)
        self.path = path[0] if path else None


class ReadError(_FileError):
    """A file could not be read as an LSTM model (missing, truncated, not a model, no LSTM in it)."""


class WriteError(_FileError):
    """A model could not be written to the requested path or format."""


class UnsupportedError(LstmConvertError):
    """The model uses something the source or target format cannot carry exactly."""


class ModelError(LstmConvertError, ValueError):
    """A neutral model is inconsistent (shapes that do not chain, unknown activation...)."""


class MissingDependencyError(LstmConvertError):
    """A framework needed for this format is not installed; the message names the extra to install."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs {package}, which is not installed: pip install 'lstmconvert[{extra}]'"
        )
        self.package = package
        self.extra = extra
        self.purpose = purpose

    def naming(self, path: object) -> "MissingDependencyError":
        """This error with ``path`` in front, unless the message already names it."""
        if str(path) in str(self):
            return self
        return MissingDependencyError(self.package, self.extra, f"{path}: {self.purpose}")


def require(module: str, extra: str, purpose: str):
    """Import ``module`` or raise MissingDependencyError naming the extra that provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(module.split(".")[0], extra, purpose) from exc


class OutsideNeutralShapeError(UnsupportedError):
    """The model holds layers outside ``[Embedding] -> LSTM stack -> [Dense head]``.

    Raised by a reader; ``convert`` then widens the file in place in its own format (the format's
    ``edit``), or refuses a cross-format request naming ``layer``.
    """

    def __init__(self, problem: str, layer: str) -> None:
        super().__init__(problem)
        self.layer = layer  # e.g. "Conv1D 'conv'"


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived while an output was being written; its staging folder is gone.

    A ``BaseException`` like ``KeyboardInterrupt``, so ``except Exception`` blocks do not swallow it.
    Raised by ``staging``; defined here so the CLI can catch it without importing the write machinery.
    """

    def __init__(self, signum: int):
        import signal

        self.signum = signum
        super().__init__(f"aborted by {signal.Signals(signum).name}")
