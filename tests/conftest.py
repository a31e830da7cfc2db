"""Shared test setup. Each layer keeps its own fixtures in its folder's conftest.

Helpers live in tests/helpers/ and are imported as ``helpers.<module>``.
"""

from __future__ import annotations

import os
import sys

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
if TESTS_DIR not in sys.path:
    sys.path.insert(0, TESTS_DIR)
