"""A plain FastAPI app. Nothing in it knows about Cocaine.

Serve it the usual way (``uvicorn app:app``) or as a Cocaine worker
(``cocaine-http app:app``; locally ``cocaine-http dev app:app``).

If ``FASTAPI_APP_LIFESPAN_LOG`` names a file, lifespan startup and shutdown
append a line to it (the tests count them).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from contextlib import asynccontextmanager
from urllib.parse import parse_qs

from fastapi import FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel


def _record(event: str) -> None:
    path = os.environ.get("FASTAPI_APP_LIFESPAN_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(f"{event} {os.getpid()}\n")


@asynccontextmanager
async def lifespan(app: FastAPI):
    _record("startup")
    yield {"greeting": "Hello from the lifespan"}
    _record("shutdown")


app = FastAPI(lifespan=lifespan)


class Item(BaseModel):
    name: str
    price: float
    tags: list[str] = []


@app.get("/", response_class=PlainTextResponse)
async def hello() -> str:
    return "Hello, world!\n"


@app.get("/items/{item_id}")
async def read_item(item_id: int, q: str | None = None, tag: list[str] = Query(default=[])) -> dict:
    return {"id": item_id, "q": q, "tags": tag}


@app.post("/json", status_code=201)
async def create_item(item: Item) -> dict:
    return {"received": item.model_dump(), "total": item.price * 2}


@app.post("/form")
async def form(request: Request) -> dict:
    body = (await request.body()).decode("utf-8")
    return {"form": parse_qs(body, keep_blank_values=True)}


@app.post("/upload")
async def upload(request: Request) -> dict:
    digest = hashlib.sha256()
    size = 0
    async for chunk in request.stream():
        digest.update(chunk)
        size += len(chunk)
    return {"size": size, "sha256": digest.hexdigest()}


@app.get("/headers")
async def headers(request: Request) -> dict:
    return {
        "accept": request.headers.getlist("accept"),
        "x_multi": request.headers.get("x-multi"),
        "cookies": dict(request.cookies),
        "host": request.url.hostname,
        "scheme": request.url.scheme,
        "path": request.url.path,
        "client": request.client.host if request.client else None,
    }


@app.get("/stream")
async def stream(n: int = 5, delay: float = 0.0) -> StreamingResponse:
    async def generate():
        for i in range(n):
            yield f"line {i}\n"
            if delay:
                await asyncio.sleep(delay)

    return StreamingResponse(generate(), media_type="text/plain")


@app.get("/cached")
async def cached(request: Request) -> Response:
    etag = '"v1"'
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"ETag": etag})
    return PlainTextResponse("fresh\n", headers={"ETag": etag})


@app.delete("/items/{item_id}", status_code=204)
async def delete_item(item_id: int) -> Response:
    return Response(status_code=204)


@app.get("/unicode/{name}")
async def unicode_path(name: str, request: Request) -> dict:
    return {"name": name, "path": request.url.path}


@app.get("/cookie")
async def set_cookie() -> JSONResponse:
    response = JSONResponse({"ok": True})
    response.set_cookie("session", "abc123", httponly=True)
    response.set_cookie("theme", "dark")
    return response


@app.get("/state")
async def state(request: Request) -> dict:
    return {"greeting": request.state.greeting}


@app.get("/boom")
async def boom() -> None:
    raise RuntimeError("boom")


@app.get("/teapot")
async def teapot() -> None:
    raise HTTPException(status_code=418, detail="I'm a teapot")
