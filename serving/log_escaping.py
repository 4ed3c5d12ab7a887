"""Log lines a client cannot forge: control characters in what a request carries (a model name in
the URL, a path, a header) are written escaped (`\\n` as `\\x0a`), so one request is one log line.

A `logging.Filter` on every handler that prints the server's log (KServe's, uvicorn's and its
access log, the root's): a handler's filter sees the records that propagate to it too. It edits
the message and its string arguments in place, before the formatter runs; a traceback
(`exc_info`) is the server's own and stays multi-line.
"""

from __future__ import annotations

import logging
import re
from typing import Any

_CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")
LOGGERS = ("", "kserve", "kserve.trace", "uvicorn", "uvicorn.error", "uvicorn.access", "serving")


def has_control(text: str) -> bool:
    return _CONTROL.search(text) is not None


def escape_control(text: str) -> str:
    """`text` with every control character (newline and tab included) as a `\\xNN` escape."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _escaped(value: Any) -> Any:
    return escape_control(value) if isinstance(value, str) else value


class EscapeControlCharacters(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = escape_control(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_escaped(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _escaped(v) for k, v in record.args.items()}
        return True


def escape_server_logs() -> None:
    """Put the filter on every handler of the server's loggers (call it once they are set up)."""
    escaping = EscapeControlCharacters()
    root = logging.getLogger()
    if not root.handlers:  # the project's own loggers (serving.*): a handler like KServe's
        handler = logging.StreamHandler()
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(process)s %(name)s %(levelname)s %(message)s")
        )
        root.addHandler(handler)
    for name in LOGGERS:
        log = logging.getLogger(name)
        for each in log.handlers:
            if not any(isinstance(f, EscapeControlCharacters) for f in each.filters):
                each.addFilter(escaping)
        if not any(isinstance(f, EscapeControlCharacters) for f in log.filters):
            log.addFilter(escaping)
