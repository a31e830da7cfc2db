"""The sans-IO service core: ids, encodings, reply interpretation, resolve parsing, state table."""

from __future__ import annotations

import msgpack
import pytest
from helpers.oldspec import assert_old_spec

from cocaine_http.errors import (
    ChannelClosedError,
    LocalProtocolError,
    ServiceError,
    ServiceNotFoundError,
    UnexpectedMessageError,
)
from cocaine_http.protocol.codec import new_decoder
from cocaine_http.protocol.frames import Frame, Generation
from cocaine_http.protocol.methods import (
    TERMINAL,
    MalformedReplyError,
    MethodNotFound,
    ResolveFormatError,
    build_methods_a,
    build_methods_b,
    method_not_found,
    parse_resolve,
    resolve_error,
    static_methods,
)
from cocaine_http.protocol.service import CallMode, Reply, ServiceProtocol
from cocaine_http.protocol.states import (
    TRANSITIONS,
    Backoff,
    InvalidTransition,
    ServiceInput,
    ServiceState,
    ServiceStateMachine,
    diagram,
)

A, B = Generation.A, Generation.B


def hx(s: str) -> bytes:
    return bytes.fromhex(s.replace("\n", " "))


A8 = hx("93 00 01 91 a7 73 74 6f 72 61 67 65")
A9 = hx(
    "93 04 01 91 da 00 2c 93 92 a9 31 32 37 2e 30 2e 30 2e 31"
    " cd 27 78 01 84 00 a4 72 65 61 64 01 a5 77 72 69 74 65"
    " 02 a6 72 65 6d 6f 76 65 03 a4 66 69 6e 64 93 06 01 90"
)
A10 = hx(
    "93 05 01 92 01 bf 73 65 72 76 69 63 65 20 6e 6f 73 75"
    " 63 68 20 69 73 20 6e 6f 74 20 61 76 61 69 6c 61 62 6c"
    " 65 93 06 01 90"
)
A11 = hx("93 04 02 91 b0 af 81 a5 73 6c 61 76 65 a7 65 63 68 6f 2e 70 79 93 06 02 90")
B7 = hx("93 01 00 91 a7 73 74 6f 72 61 67 65")
B8 = hx(
    "93 01 00 93 92 92 a9 31 32 37 2e 30 2e 30 2e 31 cd a8 ca"
    " 92 a3 3a 3a 31 cd a8 ca 01 84 00 93 a4 72 65 61 64 80"
    " 82 00 92 a5 76 61 6c 75 65 80 01 92 a5 65 72 72 6f 72 80"
    " 01 93 a5 77 72 69 74 65 80 82 00 92 a5 76 61 6c 75 65"
    " 80 01 92 a5 65 72 72 6f 72 80 02 93 a6 72 65 6d 6f 76 65"
    " 80 82 00 92 a5 76 61 6c 75 65 80 01 92 a5 65 72 72 6f"
    " 72 80 03 93 a4 66 69 6e 64 80 82 00 92 a5 76 61 6c 75 65 80 01 92 a5 65 72 72 6f 72 80"
)


def frames(gen: Generation, data: bytes) -> list[Frame]:
    dec = new_decoder(gen)
    dec.feed(data)
    return list(dec)


def feed(proto: ServiceProtocol, data: bytes) -> list[tuple]:
    out = []
    for f in frames(proto.generation, data):
        r = proto.receive(f)
        if r is not None:
            out.append(r)
    return out


# -- requests ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("gen", "vector"), [(A, A8), (B, B7)])
def test_resolve_request_bytes(gen: Generation, vector: bytes) -> None:
    proto = ServiceProtocol(gen, "locator")
    st, data = proto.open(static_methods(gen, "locator")["resolve"], ["storage"])
    assert data == vector
    assert st is not None and st.id == 1 and proto.calls == {1: st}


@pytest.mark.parametrize("gen", [A, B])
def test_ids_start_at_one_and_strictly_increase(gen: Generation) -> None:
    proto = ServiceProtocol(gen, "storage")
    read = static_methods(gen, "storage")["read"]
    ids = [proto.open(read, ["manifests", "web"])[0].id for _ in range(5)]
    assert ids == [1, 2, 3, 4, 5]
    # abandoning never frees an id
    proto.abandon(proto.calls[3])
    assert proto.open(read, ["c", "k"])[0].id == 6
    # storage read request of §2.9.2 / §3.10.2
    fresh = ServiceProtocol(gen, "storage")
    _, data = fresh.open(read, ["manifests", "web"])
    expected = [0, 1, [b"manifests", b"web"]] if gen is A else [1, 0, [b"manifests", b"web"]]
    assert msgpack.unpackb(data, raw=True) == expected
    assert_old_spec(data)


def test_request_encoding_is_old_spec_for_long_strings_and_binary() -> None:
    proto = ServiceProtocol(B, "storage")
    write = static_methods(B, "storage")["write"]
    value = bytes(range(256)) * 3
    _, data = proto.open(write, ["c" * 40, "k" * 200, value, ["t" * 33]])
    assert_old_spec(data)
    assert data[:4] == b"\x94\x01\x01\x94" or data[:3] == b"\x93\x01\x01"


def test_b_headers_are_literals_and_a_refuses_them() -> None:
    proto = ServiceProtocol(B, "storage")
    read = static_methods(B, "storage")["read"]
    _, data = proto.open(read, ["c", "k"], headers=[("trace_id", b"\0" * 8)])
    assert msgpack.unpackb(data, raw=True) == [1, 0, [b"c", b"k"], [[False, b"trace_id", b"\0" * 8]]]
    a = ServiceProtocol(A, "storage")
    with pytest.raises(LocalProtocolError):
        a.open(static_methods(A, "storage")["read"], ["c", "k"], headers=[("x", "y")])
    assert a.last_id == 0  # nothing was sent, no id consumed


def test_unencodable_arguments_are_a_local_error() -> None:
    proto = ServiceProtocol(B, "storage")
    with pytest.raises(LocalProtocolError, match="cannot encode"):
        proto.open(static_methods(B, "storage")["read"], [object(), "k"])
    assert proto.last_id == 0 and not proto.calls


# -- replies -------------------------------------------------------------------------------------


def test_a_resolve_reply_vector_a9() -> None:
    proto = ServiceProtocol(A, "locator")
    st, _ = proto.open(static_methods(A, "locator")["resolve"], ["storage"])
    out = feed(proto, A9)
    assert len(out) == 1 and out[0][0] is st and out[0][1] is Reply.VALUE
    r = parse_resolve(A, out[0][2], "storage")
    assert r.endpoints == (("127.0.0.1", 10104),) and r.version == 1
    methods = r.methods(A)
    assert {n: m.index for n, m in methods.items()} == {"read": 0, "write": 1, "remove": 2, "find": 3}
    assert not proto.calls


def test_a_not_found_vector_a10() -> None:
    proto = ServiceProtocol(A, "locator")
    proto.open(static_methods(A, "locator")["resolve"], ["nosuch"])
    out = feed(proto, A10)
    assert len(out) == 1 and out[0][1] is Reply.ERROR
    exc = out[0][2]
    assert isinstance(exc, ServiceError) and exc.category is None and exc.code == 1
    nf = resolve_error(exc, "nosuch")
    assert isinstance(nf, ServiceNotFoundError) and nf.category is None and nf.code == 1
    assert "nosuch" in str(nf) and "resolve" in str(nf)
    assert not proto.calls  # the choke after the error closed the session


def test_a_storage_read_vector_a11_double_decoding() -> None:
    proto = ServiceProtocol(A, "storage")
    read = static_methods(A, "storage")["read"]
    proto.open(read, ["x", "y"])
    st, _ = proto.open(read, ["manifests", "echo"])
    assert st.id == 2
    out = feed(proto, A11 + b"\x93\x06\x01\x90")
    value = out[0][2]
    assert value == msgpack.packb({"slave": "echo.py"}, use_bin_type=False)
    assert msgpack.unpackb(value, raw=False) == {"slave": "echo.py"}


def test_b_resolve_reply_vector_b8_with_headers_and_control_ids() -> None:
    proto = ServiceProtocol(B, "locator")
    proto.open(static_methods(B, "locator")["resolve"], ["storage"])
    out = feed(proto, B8)
    r = parse_resolve(B, out[0][2], "storage")
    assert r.endpoints == (("127.0.0.1", 43210), ("::1", 43210))
    methods = r.methods(B)
    assert [m.name for m in sorted(methods.values(), key=lambda m: m.index)] == [
        "read",
        "write",
        "remove",
        "find",
    ]
    assert not any(m.streaming or m.mute for m in methods.values())
    # a 0.12.14 graph with transport control ids: they are not methods
    ctl = {0: [b"read", {}, {0: [b"value", {}], 1: [b"error", {}]}], 65535: [b"revoke", {}, {}],
           65532: [b"goaway", {}, {}], 65533: "whatever"}
    assert list(build_methods_b(ctl)) == ["read"]


def test_b_reply_headers_are_decoded_even_for_ignored_frames() -> None:
    proto = ServiceProtocol(B, "storage")
    read = static_methods(B, "storage")["read"]
    st, _ = proto.open(read, ["c", "k"])
    proto.abandon(st)
    # a late reply that stores a header, then a reply referring to it by index
    late = msgpack.packb([1, 0, [b"v"], [[True, b"x-name", b"x-value"]]], use_bin_type=False)
    st2, _ = proto.open(read, ["c", "k"])
    ok = msgpack.packb([2, 0, [b"w"], [83]], use_bin_type=False)
    out = feed(proto, late + ok)
    assert out == [(st2, Reply.VALUE, b"w")]
    assert proto.ignored == 1


def test_b_primitive_void_error_and_categories() -> None:
    proto = ServiceProtocol(B, "storage")
    m = static_methods(B, "storage")
    proto.open(m["write"], ["c", "k", b"v"])
    proto.open(m["read"], ["c", "nope"])
    data = (msgpack.packb([1, 0, []], use_bin_type=False)
            + msgpack.packb([2, 1, [[0x0C, 2], "not found"]], use_bin_type=False))
    (w, r) = feed(proto, data)
    assert w[1] is Reply.VALUE and w[2] is None
    assert r[1] is Reply.ERROR and (r[2].category, r[2].code) == (0x0C, 2)
    assert str(r[2]) == "storage.read: not found [12, 2]"
    assert not proto.calls


def test_b0_error_without_category_is_accepted() -> None:
    proto = ServiceProtocol(B, "storage")
    proto.open(static_methods(B, "storage")["read"], ["c", "k"])
    (r,) = feed(proto, msgpack.packb([1, 1, [5, "old style"]], use_bin_type=False))
    assert r[2].category is None and r[2].code == 5


def test_b_streaming_both_ways_follows_the_graphs() -> None:
    graph = {0: ["enqueue", {0: ["write", None], 1: ["error", {}], 2: ["close", {}]},
                 {0: ["write", None], 1: ["error", {}], 2: ["close", {}]}]}
    enqueue = build_methods_b(graph)["enqueue"]
    assert enqueue.streaming
    proto = ServiceProtocol(B, "echo")
    st, data = proto.open(enqueue, ["http"])
    assert data == b"\x93\x01\x00\x91\xa4http"
    assert proto.send(st, "write", [b"body"]) == b"\x93\x01\x00\x91\xa4body"
    assert proto.send(st, "write", [b"more"]) == b"\x93\x01\x00\x91\xa4more"
    with pytest.raises(LocalProtocolError, match="cannot send 'value'"):
        proto.send(st, "value", [])
    assert proto.send(st, "close", []) == b"\x93\x01\x02\x90"
    with pytest.raises(ChannelClosedError):
        proto.send(st, "write", [b"late"])  # nothing after a terminal message
    replies = b"".join(
        msgpack.packb(f, use_bin_type=False) for f in ([1, 0, [b"a"]], [1, 0, [b"b"]], [1, 2, []])
    )
    out = feed(proto, replies)
    assert [(w, p) for _, w, p in out] == [(Reply.DATA, b"a"), (Reply.DATA, b"b"), (Reply.END, None)]
    assert not proto.calls


def test_b_abandon_sends_error_only_while_our_side_is_open() -> None:
    enqueue = static_methods(B, "app")["enqueue"]
    proto = ServiceProtocol(B, "echo")
    st, _ = proto.open(enqueue, ["ev"])
    data = proto.abandon(st)
    assert msgpack.unpackb(data, raw=True) == [1, 1, [[0x0D, 1], b"cancelled by the client"]]
    assert proto.abandon(st) is None and not proto.calls
    # our side closed: nothing more may be sent
    st2, _ = proto.open(enqueue, ["ev"])
    proto.send(st2, "close", [])
    assert proto.abandon(st2) is None
    # the reply ended but our side is open: close it rather than error
    st3, _ = proto.open(enqueue, ["ev"])
    feed(proto, msgpack.packb([3, 2, []], use_bin_type=False))
    assert proto.calls == {3: st3}
    assert proto.abandon(st3) == b"\x93\x03\x02\x90"


def test_b_mute_method_keeps_no_state() -> None:
    proto = ServiceProtocol(B, "logging")
    emit = static_methods(B, "logging")["emit"]
    assert emit.mute and emit.upstream is TERMINAL
    for i in range(1, 4):
        st, data = proto.open(emit, [1, "src", "msg"])
        assert st is None and msgpack.unpackb(data, raw=True)[0] == i
    assert not proto.calls


def test_a_discard_mode_reads_the_choke_and_forgets() -> None:
    proto = ServiceProtocol(A, "logging")
    emit = static_methods(A, "logging")["emit"]
    st, data = proto.open(emit, [3, "src", "msg"], mode=CallMode.DISCARD)
    assert data == msgpack.packb([0, 1, [3, "src", "msg"]], use_bin_type=False)
    assert proto.calls == {1: st}
    assert feed(proto, b"\x93\x06\x01\x90") == [] and not proto.calls


def test_a_streaming_enqueue_chunks_are_raw_and_unary_collects() -> None:
    methods = build_methods_a({0: "enqueue", 1: "info"})
    assert methods["enqueue"].streaming and not methods["enqueue"].decode
    assert not methods["info"].streaming and methods["info"].decode
    proto = ServiceProtocol(A, "echo")
    st, _ = proto.open(methods["enqueue"], ["ev", b"data"])
    with pytest.raises(LocalProtocolError):
        proto.send(st, "write", [b"x"])  # A services take nothing after the call
    raw = b"".join(msgpack.packb(f, use_bin_type=False) for f in ([4, 1, [b"\xc1not msgpack"]], [6, 1, []]))
    out = feed(proto, raw)
    assert [(w, p) for _, w, p in out] == [(Reply.DATA, b"\xc1not msgpack"), (Reply.END, None)]
    # a unary method given several chunks returns them as a list
    st, _ = proto.open(methods["info"], [])
    raw = b"".join(msgpack.packb(f, use_bin_type=False)
                   for f in ([4, 2, [msgpack.packb(1)]], [4, 2, [msgpack.packb(2)]], [6, 2, []]))
    assert feed(proto, raw) == [(st, Reply.VALUE, [1, 2])]


def test_a_error_after_chunk_and_undecodable_chunk() -> None:
    info = build_methods_a({1: "info"})["info"]
    proto = ServiceProtocol(A, "echo")
    _st, _ = proto.open(info, [])
    raw = b"".join(msgpack.packb(f, use_bin_type=False) for f in ([4, 1, [b"\xc1"]], [6, 1, []]))
    out = feed(proto, raw)
    assert len(out) == 1 and isinstance(out[0][2], MalformedReplyError) and "echo.info" in str(out[0][2])
    assert not proto.calls


def test_unexpected_type_fails_only_that_call() -> None:
    proto = ServiceProtocol(B, "storage")
    read = static_methods(B, "storage")["read"]
    _st1, _ = proto.open(read, ["c", "k"])
    st2, _ = proto.open(read, ["c", "k"])
    out = feed(
        proto,
        msgpack.packb([1, 7, []], use_bin_type=False) + msgpack.packb([2, 0, [b"ok"]], use_bin_type=False),
    )
    assert isinstance(out[0][2], UnexpectedMessageError) and out[1] == (st2, Reply.VALUE, b"ok")
    assert not proto.calls


def test_frames_for_unknown_ids_are_ignored() -> None:
    proto = ServiceProtocol(A, "storage")
    assert feed(proto, b"\x93\x06\x09\x90") == [] and proto.ignored == 1


def test_lost_returns_everything_and_clears() -> None:
    proto = ServiceProtocol(B, "storage")
    read = static_methods(B, "storage")["read"]
    sts = [proto.open(read, ["c", "k"])[0] for _ in range(3)]
    assert proto.lost() == sts and not proto.calls


# -- resolve garbage -----------------------------------------------------------------------------


GOOD_A = [[b"h", 1], 1, {0: b"read"}]
GOOD_B = ([[b"::1", 1]], 1, {0: [b"read", {}, {0: [b"value", {}], 1: [b"error", {}]}]})


@pytest.mark.parametrize(
    ("gen", "value"),
    [
        (A, None),
        (A, b"junk"),
        (A, [1, 2]),
        (A, [[b"h"], 1, {}]),
        (A, [[b"h", 0], 1, {}]),
        (A, [[b"h", 70000], 1, {}]),
        (A, [[1, 2], 1, {}]),
        (A, [[b"h", 1], -1, {}]),
        (A, [[b"h", 1], 1, []]),
        (A, [[b"h", 1], 1, {b"0": b"read"}]),
        (A, [[b"h", 1], 1, {0: 5}]),
        (A, [[b"h", 1], 1, {0: b"\xff"}]),
        (A, [[b"h", 1], True, {0: b"read"}]),
        (B, GOOD_A),
        (B, ([], 1, {})),
        (B, ([[b"h", b"1"]], 1, {})),
        (B, ([[b"h", 1]], 1, {0: [b"read", {}]})),
        (B, ([[b"h", 1]], 1, {0: [b"read", {}, {b"0": [b"value", {}]}]})),
        (B, ([[b"h", 1]], 1, {0: [b"read", {}, {0: b"value"}]})),
        (B, ([[b"h", 1]], 1, {0: [b"read", 7, {}]})),
        (B, ([[b"h", 1]], 1, {0: [b"a", {}, {}], 1: [b"a", {}, {}]})),
    ],
)
def test_resolve_garbage_raises_a_typed_error_naming_the_service(gen: Generation, value: object) -> None:
    with pytest.raises(ResolveFormatError, match="'storage'") as info:
        parse_resolve(gen, value, "storage")
    assert info.value.service == "storage"


def test_resolve_good_values_parse() -> None:
    assert parse_resolve(A, GOOD_A, "s").endpoints == (("h", 1),)
    assert parse_resolve(B, GOOD_B, "s").endpoints == (("::1", 1),)


def test_deep_graphs_are_refused() -> None:
    g: dict = {}
    for _ in range(40):
        g = {0: [b"write", g or {}]}
    with pytest.raises(ResolveFormatError, match="deeper"):
        parse_resolve(B, ([[b"h", 1]], 1, {0: [b"m", {}, g]}), "s")


def test_method_not_found_is_an_attribute_error() -> None:
    exc = method_not_found("storage", "nosuch", {"read": 1})
    assert isinstance(exc, AttributeError) and isinstance(exc, MethodNotFound)
    assert "nosuch" in str(exc) and "read" in str(exc)


# -- the state table -----------------------------------------------------------------------------


def test_state_machine_happy_paths_and_resolving_flag() -> None:
    fsm = ServiceStateMachine(keep_history=True)
    assert fsm.state is ServiceState.CLOSED
    fsm.apply(ServiceInput.RESOLVE)
    assert fsm.state is ServiceState.CLOSED and fsm.resolving
    fsm.apply(ServiceInput.RESOLVED)
    fsm.apply(ServiceInput.CONNECTED)
    fsm.apply(ServiceInput.DISCONNECTED)
    assert fsm.state is ServiceState.ERROR
    fsm.apply(ServiceInput.RETRY)
    fsm.apply(ServiceInput.CONNECT_FAILED)
    fsm.apply(ServiceInput.RESOLVE)
    fsm.apply(ServiceInput.RESOLVE_FAILED)
    fsm.apply(ServiceInput.CLOSE)
    assert [s.value for _, s, _ in fsm.history] == [
        "closed", "connecting", "connected", "error", "connecting", "error", "closed", "error", "closed"]


@pytest.mark.parametrize(
    ("state", "resolving"), [(s, False) for s in ServiceState] + [(ServiceState.CLOSED, True)]
)
def test_every_missing_pair_raises(state: ServiceState, resolving: bool) -> None:
    for event in ServiceInput:
        fsm = ServiceStateMachine()
        fsm.state, fsm.resolving = state, resolving
        if (state, resolving, event) in TRANSITIONS:
            fsm.apply(event)
        else:
            with pytest.raises(InvalidTransition):
                fsm.apply(event)
            assert (fsm.state, fsm.resolving) == (state, resolving)


def test_resolving_is_only_a_flag_over_closed() -> None:
    assert all(not r or s is ServiceState.CLOSED for (s, r, _), _n in TRANSITIONS.items())
    assert all(not r or s is ServiceState.CLOSED for s, r in TRANSITIONS.values())
    assert "closed+resolving" in diagram()


def test_backoff() -> None:
    b = Backoff(initial=0.1, factor=2, cap=1.0, attempts=2)
    assert [b.delay(n) for n in range(6)] == [0.0, 0.1, 0.2, 0.4, 0.8, 1.0]
    assert b.delay(10_000) == 1.0
    assert b.wait_before(0, None, 5.0) == 0.0
    assert b.wait_before(2, 10.0, 10.05) == pytest.approx(0.15)
    # a call starts rounds only within its window (default 0.5 s from its first)
    assert b.may_start(10.0, 10.0, 0.5) and b.may_start(10.0, 10.2, 0.2)
    assert not b.may_start(10.0, 10.0, 0.8) and not b.may_start(10.0, 10.4, 0.2)
    assert Backoff(window=0).may_start(1.0, 1.0, 0.0)
    with pytest.raises(ValueError):
        Backoff(attempts=0)
    with pytest.raises(ValueError):
        Backoff(window=-1)
