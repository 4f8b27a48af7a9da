"""Exceptions that reach the user as messages, not tracebacks."""

from __future__ import annotations


class RadpipeError(Exception):
    """Base class: the message is meant for the user as it stands."""


class ConfigError(RadpipeError):
    """A configuration file or command-line option is wrong; nothing has been computed yet.

    The message names the file, the key and what was expected.
    """

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None):
        self.file = file
        self.key = key
        where = ", ".join(part for part in (file and f"{file}", key and f"key '{key}'") if part)
        super().__init__(f"{where}: {message}" if where else message)


class CaseError(RadpipeError):
    """One case cannot be processed; the cohort run records the reason in the QC ledger and goes on.

    ``action`` says what radpipe did (``rejected`` by default).
    """

    def __init__(self, reason: str, *, action: str = "rejected"):
        self.reason = reason
        self.action = action
        super().__init__(reason)
