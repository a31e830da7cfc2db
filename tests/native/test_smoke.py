"""The C API itself (cf_init / cf_next / cf_next_many through cffi), the
build, and the fast path for chunk payloads."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgpack
import pytest
from helpers.feeding import make, pack, require_backend

import cocaine_http
from cocaine_http.protocol.frames import Frame
from cocaine_http.protocol.wire import MAX_MAP_LEN

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def native() -> Any:
    require_backend("native")
    from cocaine_http import _native

    return _native


def scanner(native: Any, exact_arity: int = 1, max_frame_size: int = 1 << 20) -> Any:
    state = native.ffi.new("cf_decoder *")
    native.lib.cf_init(state, exact_arity, max_frame_size, MAX_MAP_LEN)
    return state


def next_frame(native: Any, state: Any, buf: bytes, start: int = 0) -> tuple[int, dict[str, int]]:
    out = native.ffi.new("cf_frame *")
    rc = native.lib.cf_next(state, buf, len(buf), start, out)
    fields = {name: getattr(out, name) for name, _ in native.ffi.typeof("cf_frame").fields}
    return rc, fields


def test_extension_lives_in_the_package(native: Any) -> None:
    assert Path(native.__file__).parent == Path(cocaine_http.__file__).parent
    assert native.lib.CF_MAX_DEPTH == 1024


def test_status_codes(native: Any) -> None:
    from cocaine_http.protocol._decoder_native import ERRORS

    lib = native.lib
    codes = [
        lib.CF_FRAME,
        lib.CF_NEED_DATA,
        lib.CF_E_MALFORMED,
        lib.CF_E_FORMAT,
        lib.CF_E_TOO_LARGE,
        lib.CF_E_DEPTH,
        lib.CF_E_USAGE,
        lib.CF_OVERSIZE,
        lib.CF_SKIPPED,
        lib.CF_PAYLOAD,
        lib.CF_PAYLOAD_FRAME,
    ]
    assert (lib.CF_FRAME, lib.CF_NEED_DATA) == (1, 0)
    assert len(set(codes)) == len(codes)
    assert sorted(ERRORS) == sorted(c for c in codes if c < 0 and c != lib.CF_E_USAGE)
    for code in codes:
        assert native.ffi.string(lib.cf_strerror(code))
    assert native.ffi.string(lib.cf_strerror(99)) == b"unknown status"


def test_chunk_record(native: Any) -> None:
    lib = native.lib
    data = bytes.fromhex("93 04 11 91 a5 00 80 c4 d9 ff")  # A4
    rc, f = next_frame(native, scanner(native), b"junk" + data, start=4)
    assert rc == lib.CF_FRAME
    assert (f["elem0"], f["elem1"], f["start"], f["end"]) == (4, 17, 4, 14)
    assert (f["args_off"], f["args_len"], f["nargs"]) == (7, 7, 1)
    assert f["flags"] == lib.CF_FAST_RAW
    assert (f["payload_off"], f["payload_len"]) == (9, 5)
    assert (f["headers_off"], f["headers_len"]) == (0, 0)


def test_headers_record(native: Any) -> None:
    lib = native.lib
    headers = [[False, b"trace_id", bytes(8)], 80]
    data = pack([7, 2, [b"a", b"b"], headers, b"ignored"])
    rc, f = next_frame(native, scanner(native, exact_arity=0), data)
    assert rc == lib.CF_FRAME
    assert (f["elem0"], f["elem1"], f["nargs"], f["end"]) == (7, 2, 2, len(data))
    assert f["flags"] == lib.CF_HAS_HEADERS
    args = data[f["args_off"] : f["args_off"] + f["args_len"]]
    assert msgpack.unpackb(args, raw=True) == [b"a", b"b"]
    blob = data[f["headers_off"] : f["headers_off"] + f["headers_len"]]
    assert msgpack.unpackb(blob, raw=True) == headers


def test_fast_path_only_for_exactly_one_raw(native: Any) -> None:
    lib = native.lib
    for args, fast in (
        ([b"x"], True),
        ([b""], True),
        ([1], False),
        ([b"x", b"y"], False),
        ([[b"x"]], False),
        ([], False),
    ):
        rc, f = next_frame(native, scanner(native), pack([4, 1, args]))
        assert rc == lib.CF_FRAME
        assert bool(f["flags"] & lib.CF_FAST_RAW) is fast, args


def test_resumes_where_it_stopped_even_if_the_buffer_moves(native: Any) -> None:
    lib = native.lib
    data = pack([4, 3, [{b"k": [1, 2.5, None]}, b"y" * 300]])
    state = scanner(native)
    for i in range(len(data)):
        # a fresh buffer each time, with the frame at a different offset
        prefix = b"?" * (i % 7)
        rc, _ = next_frame(native, state, prefix + data[:i], start=len(prefix))
        assert rc == lib.CF_NEED_DATA
    rc, f = next_frame(native, state, b"!!" + data, start=2)
    assert rc == lib.CF_FRAME
    assert (f["start"], f["end"], f["elem1"]) == (2, 2 + len(data), 3)


def test_wanted_says_where_the_pending_token_ends(native: Any) -> None:
    lib = native.lib
    data = pack([4, 1, [b"p" * 1000]])  # 93 04 01 91 da 03 e8 + 1000 bytes
    state = scanner(native)
    assert next_frame(native, state, data[:2])[0] == lib.CF_NEED_DATA
    assert lib.cf_wanted(state) == 3  # the next token's first byte
    assert next_frame(native, state, data[:5])[0] == lib.CF_NEED_DATA
    assert lib.cf_wanted(state) == 7  # the raw16 header
    assert next_frame(native, state, data[:7])[0] == lib.CF_NEED_DATA
    assert lib.cf_wanted(state) == len(data)  # the whole body
    assert next_frame(native, state, data[:-1])[0] == lib.CF_NEED_DATA
    assert next_frame(native, state, data)[0] == lib.CF_FRAME


def test_a_payload_still_arriving_is_handed_to_the_caller(native: Any) -> None:
    """cf_collect_payloads: a payload of at least the set size that is not all
    in the buffer is reported (CF_PAYLOAD) instead of awaited; the caller takes
    it, and C scans the rest of the frame from the byte after it."""
    lib = native.lib
    payload = b"p" * 1000
    data = pack([9, 4, [payload], [[b"k", b"v"]]])  # 94 09 04 91 da 03 e8 + 1000 bytes + headers
    state = scanner(native, exact_arity=0, max_frame_size=len(data))
    lib.cf_collect_payloads(state, 1000)
    rc, f = next_frame(native, state, b"!" + data[:300], start=1)
    assert rc == lib.CF_PAYLOAD
    assert (f["elem0"], f["elem1"], f["start"], f["end"], f["payload_len"]) == (9, 4, 1, 8, 1000)
    tail = data[7 + 1000 :]
    assert next_frame(native, state, tail[:3])[0] == lib.CF_NEED_DATA
    rc, f = next_frame(native, state, b"!!" + tail, start=2)
    assert rc == lib.CF_PAYLOAD_FRAME
    assert (f["elem0"], f["elem1"], f["start"], f["end"], f["nargs"]) == (9, 4, 2, 2 + len(tail), 1)
    assert (f["args_off"], f["args_len"], f["payload_off"], f["payload_len"]) == (0, 0, 0, 1000)
    assert f["flags"] == lib.CF_HAS_HEADERS | lib.CF_FAST_RAW
    assert msgpack.unpackb(tail[f["headers_off"] - 2 : f["end"] - 2], raw=True) == [[b"k", b"v"]]
    # Smaller, or already all there: a frame as before.
    assert next_frame(native, state, pack([1, 0, [b"q" * 999]])[:10])[0] == lib.CF_NEED_DATA
    state = scanner(native, exact_arity=0, max_frame_size=len(data))
    lib.cf_collect_payloads(state, 1000)
    assert next_frame(native, state, data)[0] == lib.CF_FRAME
    # The payload counts towards max_frame_size: one byte less, and the tail is too large.
    state = scanner(native, exact_arity=0, max_frame_size=len(data) - 1)
    lib.cf_collect_payloads(state, 1000)
    assert next_frame(native, state, data[:300])[0] == lib.CF_PAYLOAD
    assert next_frame(native, state, tail)[0] == lib.CF_E_TOO_LARGE


def test_next_many(native: Any) -> None:
    lib, ffi = native.lib, native.ffi
    data = pack([1, 0, []]) * 5 + b"\xc1"
    state = scanner(native)
    out = ffi.new("cf_frame[]", 3)
    status = ffi.new("int *")
    assert lib.cf_next_many(state, data, len(data), 0, out, 3, status) == 3
    assert status[0] == lib.CF_FRAME
    start = out[2].end
    assert lib.cf_next_many(state, data, len(data), start, out, 3, status) == 2
    assert status[0] == lib.CF_E_MALFORMED
    assert lib.cf_next_many(state, data, len(data), start, out, 3, ffi.NULL) == 0


def test_errors_are_sticky_and_usage_errors_are_not(native: Any) -> None:
    lib = native.lib
    state = scanner(native)
    assert next_frame(native, state, b"\x93\x01\x00\x90", start=5)[0] == lib.CF_E_USAGE
    assert next_frame(native, state, b"\x93\x01\x00\x90")[0] == lib.CF_FRAME
    assert next_frame(native, state, b"\xc1")[0] == lib.CF_E_MALFORMED
    assert next_frame(native, state, b"\x93\x01\x00\x90")[0] == lib.CF_E_MALFORMED


def test_one_mib_chunk_takes_the_fast_path(native: Any) -> None:
    """The payload is sliced out of the buffer, never decoded: the glue's only
    route to msgpack.unpackb (``unpack_slice``) is not entered for a [data]
    frame. Observed with a profile hook, nothing replaced."""
    payload = os.urandom(1 << 20)
    data = pack([4, 5, [payload]])
    decoder = make("native", "A")
    for i in range(0, len(data), 65536):
        decoder.feed(data[i : i + 65536])
    calls: list[str] = []

    def watch(frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            calls.append(frame.f_code.co_name)
        elif event == "c_call":
            calls.append(getattr(arg, "__qualname__", repr(arg)))

    sys.setprofile(watch)
    try:
        frame = decoder.next_frame()
    finally:
        sys.setprofile(None)
    assert frame == Frame(session=5, type=4, args=[payload])
    assert "_decode" in calls  # the hook does see the glue
    assert "unpack_slice" not in calls
    assert "memoryview.tobytes" in calls  # the one copy out of the buffer
    # a frame that is not [raw] is decoded with unpackb
    calls.clear()
    decoder.feed(pack([4, 5, [payload[:10], 1]]))
    sys.setprofile(watch)
    try:
        decoder.next_frame()
    finally:
        sys.setprofile(None)
    assert "unpack_slice" in calls


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_c_compiles_cleanly_on_its_own(tmp_path: Path) -> None:
    """No Python.h, no warnings, strict C99, and C++ can include the header."""
    cmd = [
        "cc",
        "-std=c99",
        "-O2",
        "-Wall",
        "-Wextra",
        "-Wpedantic",
        "-Wshadow",
        "-Wconversion",
        "-Werror",
        "-c",
        str(ROOT / "native" / "cocaine_frame.c"),
        "-o",
        str(tmp_path / "cf.o"),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    source = (ROOT / "native" / "cocaine_frame.c").read_text() + (
        ROOT / "native" / "cocaine_frame.h"
    ).read_text()
    assert "Python.h" not in source
    assert "malloc" not in source.replace("allocation-free", "")
