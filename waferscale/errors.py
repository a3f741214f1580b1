"""The errors a user can cause. Each carries one line that says what is wrong and how to fix it.

The CLI prints ``str(error)`` on stderr and exits with code 2; anything that is not a
``WaferError`` is a bug in waferscale and keeps its traceback.
"""


class WaferError(Exception):
    """Base class: a problem with the user's input, reported as one line."""


class UsageError(WaferError):
    """A bad option, an unknown model name, a sequence longer than the model allows."""


class UnsupportedError(WaferError):
    """A feature or op that waferscale does not support yet."""

    def __init__(self, what: str):
        super().__init__(f"not supported: {what}")


class ParseError(WaferError):
    """Malformed IR text; names the line and column."""

    def __init__(self, message: str, line: int, col: int, source: str = "<ir>"):
        self.line, self.col = line, col
        super().__init__(f"{source}:{line}:{col}: parse error: {message}")


class VerifyError(WaferError):
    """A graph that breaks a rule of the IR; names the op and the rule."""

    def __init__(self, rule: str, message: str):
        self.rule, self.detail = rule, message
        super().__init__(f"verify [{rule}]: {message}")


class FitError(WaferError):
    """A program that does not fit on the machine in the chosen mode; says by how much."""
