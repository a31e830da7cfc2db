"""The tests' own hygiene, checked so the flaky patterns of issue #18 do not come back.

* no fixed sleep followed, within a few statements of the same block, by an
  ``assert``: wait for the condition instead (``helpers.waiting.until``), or make
  a round trip on the same connection before checking that nothing more came;
* no two-sided timing window (``0.25 <= elapsed < 3.0``): keep the one bound the
  feature promises (not before the timeout; a generous one that catches a hang).

A poll loop (sleep as the last statement of a loop body) is not a fixed sleep,
and ``sleep(0)`` is a yield to the loop, not a wait. The few checks that nothing
happens for a while, where no event can say so, are listed in ``QUIET_PERIODS``
with the reason their sleep is long enough.
"""

from __future__ import annotations

import ast
import pathlib

TESTS = pathlib.Path(__file__).resolve().parents[1]
#: Each test module's tree, by its path under tests/.
TREES = {str(p.relative_to(TESTS)): ast.parse(p.read_text()) for p in sorted(TESTS.rglob("*.py"))}
#: How many statements after a sleep an ``assert`` counts as checking what the sleep waited for.
REACH = 3
#: Names that make a compared value a duration or a point in time.
TIME_NAMES = {"time", "monotonic", "perf_counter", "elapsed", "took", "t0", "start", "started", "gaps"}

#: "path::test" -> why the sleep before its assert is a bound, not a guess.
QUIET_PERIODS = {
    "worker/test_worker_supervision.py::test_worker_that_exits_at_once_is_given_up_on": (
        "no respawn may come: it sleeps past the next backoff (0.4 s), whose timer would have fired"
    ),
    "worker/test_worker_supervision.py::test_idle_timeout_zero_never_terminates": (
        "no terminate may come: a 0 s idle timer would fire at once"
    ),
    "services/test_service_client.py::test_close_while_resolving_fails_the_waiting_calls": (
        "no reconnect may come: it sleeps past any retry timer the backoff could arm (its cap)"
    ),
}


def _fixed_sleep(stmt: ast.stmt) -> bool:
    """``[await] x.sleep(d)`` or ``sleep(d)`` as a statement, *d* not a literal 0."""
    if not isinstance(stmt, ast.Expr):
        return False
    call = stmt.value.value if isinstance(stmt.value, ast.Await) else stmt.value
    if not isinstance(call, ast.Call):
        return False
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if name != "sleep" or not call.args:
        return False
    arg = call.args[0]
    return not (isinstance(arg, ast.Constant) and arg.value == 0)


def _blocks(node: ast.AST) -> list[list[ast.stmt]]:
    return [
        body
        for field in ("body", "orelse", "finalbody")
        if isinstance(body := getattr(node, field, None), list) and body and isinstance(body[0], ast.stmt)
    ]


def _asserts(stmts: list[ast.stmt]) -> bool:
    return any(isinstance(n, ast.Assert) for stmt in stmts for n in ast.walk(stmt))


def _sleeps_before_asserts(name: str, tree: ast.Module) -> list[tuple[str, str]]:
    """(test key, where) of each fixed sleep an ``assert`` follows closely."""
    found = []
    top = [f for f in tree.body if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))]
    owner = {id(n): f.name for f in top for n in ast.walk(f)}  # nested helpers count as their test's
    for node in ast.walk(tree):
        for body in _blocks(node):
            for i, stmt in enumerate(body):
                if _fixed_sleep(stmt) and _asserts(body[i + 1 : i + 1 + REACH]):
                    test = owner.get(id(stmt), "<module>")
                    found.append((f"{name}::{test}", f"{name}::{test}:{stmt.lineno}"))
    return found


def _mentions_time(node: ast.AST) -> bool:
    for n in ast.walk(node):
        if isinstance(n, ast.Name) and n.id in TIME_NAMES:
            return True
        if isinstance(n, ast.Attribute) and n.attr in TIME_NAMES:
            return True
    return False


def _timing_windows(name: str, tree: ast.Module) -> list[str]:
    """Asserted chained comparisons (``a <= x < b``) over a duration or a float."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Assert):
            continue
        for cmp in ast.walk(node.test):
            if not isinstance(cmp, ast.Compare) or len(cmp.ops) < 2:
                continue
            if not all(isinstance(op, (ast.Lt, ast.LtE, ast.Gt, ast.GtE)) for op in cmp.ops):
                continue
            operands = [cmp.left, *cmp.comparators]
            floats = any(isinstance(o, ast.Constant) and isinstance(o.value, float) for o in operands)
            if floats or any(_mentions_time(o) for o in operands):
                found.append(f"{name}:{node.lineno}: {ast.unparse(cmp)}")
    return found


def test_no_fixed_sleep_before_an_assert() -> None:
    found = [
        where for name, tree in TREES.items() for key, where in _sleeps_before_asserts(name, tree)
        if key not in QUIET_PERIODS
    ]
    assert not found, "wait for the condition instead (helpers.waiting.until):\n" + "\n".join(found)


def test_every_quiet_period_is_still_there() -> None:
    """An entry whose sleep was replaced by a wait is stale: it would hide a new sleep in that test."""
    present = {key for name, tree in TREES.items() for key, _ in _sleeps_before_asserts(name, tree)}
    assert not set(QUIET_PERIODS) - present, sorted(set(QUIET_PERIODS) - present)


def test_no_two_sided_timing_window() -> None:
    found = [hit for name, tree in TREES.items() for hit in _timing_windows(name, tree)]
    assert not found, "keep only the bound the feature promises:\n" + "\n".join(found)


def test_the_checks_see_what_they_look_for() -> None:
    """Each check fires on the pattern it forbids and not on its fixed forms."""
    flagged = ast.parse(
        "async def t():\n"
        "    await asyncio.sleep(0.02)\n"
        "    x = 1\n"
        "    assert x\n"
        "    assert 0.25 <= elapsed < 3.0\n"
    )
    fixed = ast.parse(
        "async def t():\n"
        "    while not ready():\n"
        "        await asyncio.sleep(0.01)\n"
        "    await asyncio.sleep(0)\n"
        "    assert ready()\n"
        "    assert elapsed >= 0.25 and 256 <= port <= 65535\n"
    )
    assert [key for key, _ in _sleeps_before_asserts("probe.py", flagged)] == ["probe.py::t"]
    assert _timing_windows("probe.py", flagged) == ["probe.py:5: 0.25 <= elapsed < 3.0"]
    assert _sleeps_before_asserts("probe.py", fixed) == [] and _timing_windows("probe.py", fixed) == []
