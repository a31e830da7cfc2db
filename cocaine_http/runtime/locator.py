"""The locator: resolves every service the local runtime runs (PROTOCOL.md §2.5.2, §3.6.2).

It publishes the method tables (A) and protocol graphs (B) of
:mod:`cocaine_http.protocol.definitions`, so a client built from the same
tables and an official client see identical answers:

* A ``resolve(name)`` → chunk(msgpack(``[[host, port], 1, {idx: name}]``))
  + choke (§7 A9); ``host`` is the configured hostname, verbatim. Unknown
  names and ``"locator"`` itself → ``[5,s,[1,"service <name> is not
  available"]]`` + choke (§7 A10).
* B ``resolve(name[, seed])`` → ``[ch,0,[[[ip, port]...], version, graph]]``
  (§7 B8); unknown → ``[ch,1,[[10,1],"service is not available"]]``.

The rest of the locator protocol answers as a single node would: A
``reports()`` (connection counts) and ``refresh(group)``; B ``refresh``,
``cluster()`` (no peers), ``connect``/``routing`` (one snapshot, then the
stream stays open until the caller leaves) and ``publish`` (refused).
"""

from __future__ import annotations

import asyncio
import uuid as uuid_mod
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import B_UNKNOWN, ErrorCategory, LocatorCode
from ..protocol.definitions import GRAPHS_B, TABLES_A, VERSIONS_B
from ..protocol.frames import Generation
from .server import Call, Fault, Method, Reply, Service, text, text_list, value

__all__ = ["LOCATOR_NOT_FOUND_B", "LocatorService", "Lookup"]

#: B: cocaine.service.locator / service not available (§3.8).
LOCATOR_NOT_FOUND_B = (ErrorCategory.LOCATOR.value, 1)

#: ``name -> (kind, port, connections)`` for a running service, else ``None``.
Lookup = Callable[[str], "tuple[str, int, int] | None"]


class LocatorService(Service):
    kind = "locator"

    def __init__(
        self,
        generation: Generation | str,
        lookup: Lookup,
        names: Callable[[], list[str]],
        *,
        hostname: str = "127.0.0.1",
        endpoints: Sequence[str] = ("127.0.0.1",),
        node_uuid: str | None = None,
    ) -> None:
        super().__init__("locator", generation)
        self.lookup = lookup
        self.names = names
        self.hostname = hostname
        self.endpoints = list(endpoints)
        self.node_uuid = node_uuid or str(uuid_mod.uuid4())
        if self.is_a:
            self.methods = {
                0: Method("resolve", self.resolve_a, Reply.VALUE, (text,)),
                2: Method("reports", self.reports, Reply.VALUE),
                3: Method("refresh", self.refresh, Reply.VOID, (text,)),
            }
        else:
            self.methods = {
                0: Method("resolve", self.resolve_b, Reply.TUPLE, (text,), (value,)),
                1: Method("connect", self.connect, Reply.STREAM, (text,)),
                2: Method("refresh", self.refresh_b, Reply.VOID, (text_list,)),
                3: Method("cluster", self.cluster, Reply.VALUE),
                4: Method("publish", self.publish, Reply.VOID, (text, value), (value,)),
                5: Method("routing", self.routing, Reply.STREAM, (text,)),
            }

    def _find(self, name: str) -> tuple[str, int, int] | None:
        if name == "locator":
            return None  # the locator does not resolve itself (observed, §2.5.2)
        return self.lookup(name)

    # -- generation A ---------------------------------------------------------
    async def resolve_a(self, call: Call, name: str) -> Any:
        found = self._find(name)
        if found is None:
            raise Fault(LocatorCode.SERVICE_NOT_AVAILABLE.value, f"service {name} is not available")
        kind, port, _ = found
        return [[self.hostname, port], 1, dict(TABLES_A[kind])]

    async def reports(self, call: Call) -> Any:
        out: dict[str, Any] = {}
        for name in self.names():
            found = self.lookup(name)
            if found is not None:
                out[name] = [found[2], {}]
        return out

    async def refresh(self, call: Call, group: str) -> None:
        return None

    # -- generation B ---------------------------------------------------------
    def _resolved_b(self, kind: str, port: int) -> list[Any]:
        return [[[host, port] for host in self.endpoints], VERSIONS_B[kind], GRAPHS_B[kind]]

    async def resolve_b(self, call: Call, name: str, seed: Any = None) -> Any:
        found = self._find(name)
        if found is None:
            raise Fault(LOCATOR_NOT_FOUND_B, "service is not available")
        kind, port, _ = found
        return self._resolved_b(kind, port)

    def _snapshot(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.names():
            found = self._find(name)
            if found is not None:
                out[name] = self._resolved_b(found[0], found[1])
        return out

    async def connect(self, call: Call, node_uuid: str) -> None:
        call.write([self.node_uuid, self._snapshot()])
        await asyncio.Event().wait()  # a single node never changes peers; ends with the caller

    async def refresh_b(self, call: Call, groups: list[str]) -> None:
        return None

    async def cluster(self, call: Call) -> Any:
        return {}

    async def publish(self, call: Call, name: str, endpoints: Any, extra: Any = None) -> None:
        raise Fault(B_UNKNOWN, "publish is not supported by the local runtime")

    async def routing(self, call: Call, router_id: str) -> None:
        call.write({})  # no routing groups
        await asyncio.Event().wait()
