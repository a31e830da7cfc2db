"""Typed storage errors: a missing key is ``StorageNotFoundError`` in both generations
(A: ``[1, "... has not been found ..."]``, PROTOCOL.md §2.7; B: ENOENT, §3.8)."""

from __future__ import annotations

import io

import pytest
from svc_util import FAST, protocol_of, run

from cocaine_http import StorageError, StorageNotFoundError
from cocaine_http.errors import ServiceError
from cocaine_http.services import Client
from cocaine_http.services.helpers import _storage_error

runtime = pytest.importorskip("cocaine_http.runtime")
from cocaine_http.runtime.local import LocalRuntime  # noqa: E402
from cocaine_http.runtime.logging import Console  # noqa: E402


def test_missing_key_is_not_found_against_the_local_runtime(gen: str) -> None:
    async def scenario() -> None:
        async with (
            LocalRuntime(gen, locator_port=0, bind=None, console=Console(io.StringIO())) as rt,
            Client(f"127.0.0.1:{rt.locator_port}", protocol_of(gen), backoff=FAST, timeout=10) as client,
        ):
            storage = await client.storage()
            with pytest.raises(StorageNotFoundError) as info:
                await storage.read("things", "absent")
            exc = info.value
            assert isinstance(exc, ServiceError) and isinstance(exc, StorageError)  # old handlers catch it
            assert (exc.service, exc.method) == ("storage", "read")
            assert (exc.category, exc.code) == ((None, 1) if gen == "A" else (0x0C, 2))
            assert "'absent'" in str(exc) and exc.http_status == 404
            with pytest.raises(StorageNotFoundError):
                await storage.read_object("things", "absent")
            await storage.write("things", "present", b"x")
            assert await storage.read("things", "present") == b"x"

    run(scenario())


@pytest.mark.parametrize(
    ("category", "code", "message", "expected"),
    [
        (None, 1, "object 'k' has not been found in 'c'", StorageNotFoundError),  # A, observed
        (0x0C, 2, "No such file or directory", StorageNotFoundError),  # B generic category
        (0x01, 2, "No such file or directory", StorageNotFoundError),  # B system category
        (0xFF, 2, "No such file or directory", StorageNotFoundError),  # 0.12.3: unregistered category
        (None, 1, "argument sequence length mismatch", StorageError),  # A: code 1 alone says nothing
        (0x01, 13, "Permission denied", StorageError),
        (0x07, 2, "invalid argument", StorageError),  # rpc.dispatch 2 is not ENOENT
    ],
)
def test_classification_of_wire_errors(
    category: int | None, code: int, message: str, expected: type[ServiceError]
) -> None:
    wire = ServiceError(message, code=code, category=category, service="storage", method="read")
    typed = _storage_error(wire)
    assert type(typed) is expected
    assert (typed.category, typed.code, typed.message, typed.method) == (category, code, message, "read")
