"""``python -m cocaine_http.runtime.cli dev ...``, as the module ran before it became a package."""

import sys

from .command import main

if __name__ == "__main__":
    sys.exit(main())
