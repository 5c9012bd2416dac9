"""The three kinds of failure a user can act on, each with its own exit code.

The CLI maps these to exit codes in one place; the Python API raises them. Messages are one line and
name the thing that is wrong, because they are printed as-is with no traceback.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_UNAVAILABLE = 3
EXIT_INTERNAL = 4


class PartialnetError(Exception):
    exit_code = EXIT_INTERNAL

    def __init__(self, message: str, details: dict | None = None):
        super().__init__(message)
        self.details = details  # structured context (e.g. a parity report) a caller may render


class BadInput(PartialnetError, ValueError):
    """The user's file, name or option is wrong: fix the input."""

    exit_code = EXIT_BAD_INPUT


class CheckFailed(PartialnetError):
    """The work ran but a check did not pass (parity, regression)."""

    exit_code = EXIT_CHECK_FAILED


class Unavailable(PartialnetError):
    """Not possible on this machine: a missing backend (name the extra) or missing hardware."""

    exit_code = EXIT_UNAVAILABLE


def missing_extra(module: str, extra: str) -> Unavailable:
    return Unavailable(f"{module} is not installed; install it with: pip install 'partialnet[{extra}]'")


def shown(value) -> str:
    """A refused value as a message names it: text quoted, anything else as Python prints it, both cut short (an
    integer of thousands of digits is described, not printed: Python refuses to print it, with a ValueError)."""
    if isinstance(value, str):
        return repr(value[:60])
    if isinstance(value, int) and value.bit_length() > 200:
        return f"(an integer of {value.bit_length()} bits)"
    try:
        return str(value)[:60]
    except ValueError:  # such an integer inside a list or tuple
        return f"(a {type(value).__name__} too large to print)"
