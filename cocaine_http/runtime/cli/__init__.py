"""``cocaine-http dev`` and ``cocaine-http runtime``: the local runtime from the command line.

::

    cocaine-http dev MODULE:ATTR [--bind HOST:PORT] [--workers N] [--protocol 0.11|0.12]
                     [--reload] [--locator-port PORT] [--name APP] [--storage DIR] [...] [-- WORKER ARGS]
    cocaine-http runtime --apps DIR [--apps DIR ...] [--bind HOST:PORT | --no-http] [--default-app NAME] [...]

``dev`` runs one Python app (its workers are ``python -m cocaine_http
MODULE:ATTR`` plus the runtime's flags) behind the HTTP front; ``runtime``
runs apps given as directories holding ``manifest.json`` (a directory of
such directories works too) plus whatever ``runlists/default`` in
``--storage`` lists; the HTTP front routes ``/<app>/<event>/...`` only (``/``
lists the apps) unless ``--default-app`` names one. Both print where everything listens, serve until
Ctrl-C or SIGTERM, then stop every worker before exiting.

Exit codes: 0 after a clean stop, 1 when the runtime could not start (a
port in use, an app that cannot be found), 2 for bad arguments.

The package: :mod:`.parsers` (the options), :mod:`.apps` (which apps, checked
to import), :mod:`.reload` (``dev --reload``), :mod:`.serve` (running the
runtime), :mod:`.command` (the entry point).
"""

from __future__ import annotations

from .command import main
from .parsers import build_parser

__all__ = ["build_parser", "main"]
