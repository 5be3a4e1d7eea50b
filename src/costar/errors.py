"""User-facing errors. Each message is one line that says what is wrong and how to fix it."""

from __future__ import annotations


def _rebuilt(cls: type[CostarError], args: tuple[object, ...], state: dict[str, object]) -> CostarError:
    error = cls.__new__(cls)  # not __init__: a subclass builds its message from other arguments
    error.args = args
    error.__dict__.update(state)
    return error


class CostarError(Exception):
    """Base class for errors shown to the user as a single line (exit code 2 from the CLI)."""

    exit_code = 2
    http_status = 400
    """What the server's API and the web app answer for it: the request has to change."""

    def __reduce__(self) -> tuple[object, ...]:
        # Pickling (a process pool, a Ray worker) calls cls(*args) by default: a subclass whose
        # __init__ takes other arguments came back with a garbled message, or not at all.
        return (_rebuilt, (type(self), self.args, dict(self.__dict__)))


class ConfigError(CostarError):
    """A scenario, judge, agent or project configuration is invalid."""


class ConfigFileError(ConfigError):
    """A settings file another file names (a price file, a rules file) is not valid YAML or JSON."""

    def __init__(self, what: str, path: str, line: int | None, problem: str) -> None:
        self.path = path
        """The file that does not parse."""
        self.line = line
        """The line of the problem in it (None: unknown)."""
        self.problem = problem
        """What is wrong and how to fix it, without the place."""
        super().__init__(f"{what} {path}:{line or '?'}: {problem}")


class ScenarioError(ConfigError):
    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 field: str | None = None) -> None:
        self.file = file
        self.line = line
        self.field = field
        where = file or "<scenario>"
        if line is not None:
            where = f"{where}:{line}"
        prefix = f"{where}: "
        if field:
            prefix += f"field '{field}': "
        super().__init__(prefix + message)


class StoreError(CostarError):
    """The store cannot be opened, read or written."""

    http_status = 503  # the store, not the request, is at fault: the same request may work later


class NotInStoreError(StoreError):
    """The run or trace asked for is not in the store (a web page or API answers 404)."""

    http_status = 404


class BadReferenceError(StoreError):
    """A run or trace reference that is malformed (``branch:``) or names several (an ambiguous
    prefix): the caller must change it, so a web page or API answers 400, not 503."""

    http_status = 400


class AgentConfigError(ConfigError):
    """The agent under test is not configured in a way coSTAR can run."""
