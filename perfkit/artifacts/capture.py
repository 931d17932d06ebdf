"""Keep an exporter's chatter (warnings, log lines, prints) off the terminal and in the manifest."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator


class _ListHandler(logging.Handler):
    def __init__(self, out: list[str]):
        super().__init__(logging.WARNING)
        self.out = out

    def emit(self, record: logging.LogRecord) -> None:
        self.out.append(f"{record.name}: {record.getMessage()}")


@contextlib.contextmanager
def capture_messages() -> Iterator[list[str]]:
    """Collect the warnings, warning-level log lines and prints emitted in the block.

    torch gives many of its loggers their own stderr handler (and no propagation), so those
    handlers are swapped out for the duration rather than relying on the root logger.
    """
    messages: list[str] = []
    handler = _ListHandler(messages)
    loggers = [logging.getLogger()] + [
        lg for lg in logging.root.manager.loggerDict.values() if isinstance(lg, logging.Logger) and lg.handlers
    ]
    saved = [(lg, lg.handlers[:]) for lg in loggers]
    out = io.StringIO()
    try:
        for lg in loggers:
            lg.handlers = [handler]
        with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(out), \
                contextlib.redirect_stderr(out):
            warnings.simplefilter("always")
            yield messages
    finally:
        for lg, handlers in saved:
            lg.handlers = handlers
    messages.extend(f"{w.category.__name__}: {w.message}" for w in caught)
    messages.extend(line.strip() for line in out.getvalue().splitlines() if line.strip())
    messages[:] = list(dict.fromkeys(messages))  # the same warning once, in first-seen order
