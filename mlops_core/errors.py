"""The root of every error a user of the platform can cause, and the four kinds of it.

Each domain module raises its own subclass of `MlopsError` with a message that says what was
expected, what was found and what to do next. A subclass that is also one of the kinds below
says what went wrong in terms every edge understands (the CLI, the HTTP server, the canary
router); errors carry no HTTP status: `serving/http_errors.py` maps these kinds to status codes.
The CLI catches `MlopsError` alone and prints one line; anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations


class MlopsError(Exception):
    """A user-facing failure whose message says what was expected and what to do next."""


class InvalidInputError(MlopsError):
    """What the user sent (a request, a file, a parameter) is not valid."""


class NotFoundError(MlopsError):
    """What the user named (a model, a version, a request id, a route) does not exist."""


class ConflictError(MlopsError):
    """The request is valid but the current state does not allow it (no canary to promote)."""


class TooLargeError(InvalidInputError):
    """What the user sent is over a configured limit."""


class AuthenticationError(MlopsError):
    """The request needs credentials it did not carry (or carried wrong ones)."""


MAX_MESSAGE_CHARS = 2000  # an error line shown to a user (one was 23.6 kB: a whole input quoted)


def bounded_message(message: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """`message` as one line (line breaks become spaces) of at most about `limit` characters,
    saying how much was cut."""
    line = " ".join(message.splitlines())
    if len(line) <= limit:
        return line
    return f"{line[:limit]}... ({len(line) - limit:,} more characters)"
