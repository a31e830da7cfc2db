"""``python -m cocaine_http`` is ``cocaine-http``."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
