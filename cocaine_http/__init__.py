"""cocaine_http: run unmodified WSGI/ASGI apps as Cocaine workers; call Cocaine services.

The public surface is re-exported here; everything else is internal.
"""

from __future__ import annotations

from ._version import __version__
from .channel import Channel
from .errors import (
    CocaineError,
    ServiceError,
)
from .protocol.frames import Generation

__all__ = [
    "Channel",
    "CocaineError",
    "Generation",
    "ServiceError",
    "__version__",
]
