"""Fixtures of the local runtime's tests; helpers live in ``rt_helpers.py`` next to this file."""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)
