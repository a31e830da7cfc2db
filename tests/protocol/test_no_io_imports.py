"""The sans-IO promise, machine-checked: protocol/ imports no IO or clock modules."""

from __future__ import annotations

import ast
import pathlib

import cocaine_http.protocol as protocol

FORBIDDEN = {"asyncio", "socket", "threading", "time", "selectors", "subprocess", "signal", "concurrent"}


def test_protocol_package_has_no_io_imports() -> None:
    root = pathlib.Path(protocol.__file__).parent
    files = sorted(root.glob("*.py"))
    assert len(files) >= 8
    offenders = []
    for path in files:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert offenders == []
