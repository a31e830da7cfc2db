"""``CocaineLogHandler``: stdlib ``logging`` records sent to the cocaine logging service.

Apart from :mod:`.logger` because, given no logger, it makes one on the
process-wide blocking client (:func:`~cocaine_http.services.sync.default_client`),
and the blocking facade itself hands out loggers.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from .logger import Logger
from .sync import default_client

__all__ = ["CocaineLogHandler"]


class CocaineLogHandler(logging.Handler):
    """Send stdlib ``logging`` records to the cocaine logging service.

    ``CocaineLogHandler(logger)`` with a :class:`Logger`, or
    ``CocaineLogHandler(prefix="web")`` to make one on the default
    :class:`~cocaine_http.services.SyncClient` (a private loop thread
    outside a worker). The record's level maps as :func:`~cocaine_http.services.logger.as_level`; the
    message is ``self.format(record)``; attributes are ``logger`` (the
    record's logger name) plus the mapping in ``extra={"cocaine": {...}}``.
    Records of cocaine_http's own service loggers are skipped (they would
    feed themselves).
    """

    def __init__(self, logger: Logger | None = None, *, prefix: str | None = None,
                 level: int = logging.NOTSET) -> None:
        super().__init__(level)
        if logger is None:
            logger = default_client().logger(prefix)
        self.logger = logger
        self._local = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("cocaine_http.services") or getattr(self._local, "busy", False):
            return
        self._local.busy = True
        try:
            if not self.logger.enabled_for(record.levelno):
                return
            message = self.format(record)
            attrs: dict[str, Any] = {"logger": record.name}
            extra = getattr(record, "cocaine", None)
            if isinstance(extra, dict):
                attrs.update(extra)
            self.logger.emit(record.levelno, message, **attrs)
        except Exception:
            self.handleError(record)
        finally:
            self._local.busy = False
