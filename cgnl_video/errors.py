"""The one base class of user-facing errors: bad input (a file, a list line, a config key, a
video), not a bug. Every tool catches it in one place (``config/cli.py``'s ``run_tool``) and
prints its message in one line, without a traceback. Imports nothing, so that any module,
torch-free ones included, can raise it."""

from typing import Optional


class UserError(Exception):
    """Bad input; the message names the file, line or key at fault."""


class ConfigError(UserError, ValueError):
    """A config file, override or value that cannot be used; the message names it.

    ``key``: the config key at fault, when there is one (used to name its origin).
    """

    def __init__(self, message: str, key: Optional[str] = None):
        super().__init__(message)
        self.key = key
