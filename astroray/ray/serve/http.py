"""HTTP plumbing of the ingress: bounded bodies, strict JSON, user errors as 4xx, documented bodies.

* :func:`read_json_body` reads a request body no larger than a limit (a
  chunked body is refused as soon as it passes the limit, not after it was
  read whole; a body that stops short of its ``Content-Length`` times out),
  then validates it against a pydantic model whose unknown keys are refused;
  every problem is one sentence with the HTTP status that fits (413, 408, 422).
* Deployments return :class:`UserError` values instead of raising for bad
  input (a raised exception is logged by Serve as an ERROR with a traceback):
  :func:`user_errors_as_values` wraps a deployment method, :func:`raise_for_user_error`
  turns the value into an HTTP 4xx in the ingress, logged as one WARNING line.
* :func:`json_body_openapi` documents a manually read body in the OpenAPI schema.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import inspect
import logging
import time
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException, Request
from pydantic import BaseModel, ValidationError

from astroray.errors import InvalidInputError
from astroray.ray.serve.proxy import LIMIT_HEADER

__all__ = ["UserError", "InFlightLimiter", "user_errors_as_values", "raise_for_user_error", "reject", "reject_overloaded",
           "read_body",
           "read_json_body", "describe_validation_error",
           "json_body_openapi", "logger"]

logger = logging.getLogger("ray.serve")


@dataclass(frozen=True)
class UserError:
    """Bad input found by a deployment: the message for the user and the HTTP status."""

    message: str
    status: int = 422


def user_errors_as_values(method):
    """Wrap a deployment method so :class:`~astroray.errors.InvalidInputError` comes back as a :class:`UserError`."""
    if inspect.iscoroutinefunction(method):
        @functools.wraps(method)
        async def wrapper(*args, **kwargs):
            try:
                return await method(*args, **kwargs)
            except InvalidInputError as exc:
                return UserError(str(exc))
    else:
        @functools.wraps(method)
        def wrapper(*args, **kwargs):
            try:
                return method(*args, **kwargs)
            except InvalidInputError as exc:
                return UserError(str(exc))
    return wrapper


def raise_for_user_error(value: Any, *, route: str) -> Any:
    """``value`` unless it is a :class:`UserError`, which becomes an HTTP error (and one WARNING line)."""
    if isinstance(value, UserError):
        reject(value.status, value.message, route=route)
    return value


def reject(status: int, message: str, *, route: str):
    """Raise an HTTP ``status`` error with ``message``, logged as one line (user errors are not server errors)."""
    logger.warning("%s %s: %s", status, route, message)
    raise HTTPException(status_code=status, detail=message)


_OVERLOAD_LOG_S = 10.0
_overloaded = {"count": 0, "logged": 0.0}


def reject_overloaded(message: str, *, route: str, headers: dict[str, str] | None = None):
    """Raise HTTP 503 for a request refused because a queue is full.  Logged once per 10 s with the count
    (a line per refusal would spend the CPU the overload already lacks)."""
    _overloaded["count"] += 1
    now = time.monotonic()
    if now - _overloaded["logged"] >= _OVERLOAD_LOG_S:
        logger.warning("503 %s: %s (%d refused since the last line)", route, message, _overloaded["count"])
        _overloaded.update(count=0, logged=now)
    raise HTTPException(status_code=503, detail=message, headers=headers)


class InFlightLimiter:
    """Admission at the door: ``async with limiter(route, behind=NAME):`` counts a request of ``route`` in flight.

    Past ``limits[route name]`` a request waits at most ``max_wait_ms`` for a slot, in a line no longer than the
    limit; otherwise it gets a 503 at once, before its body is read or parsed (a refusal must cost less than the
    work it refuses).  A short wait absorbs the jitter of arrivals below capacity (with none, two requests a few
    ms apart at a full limit mean a 503 at 80 % load); in overload it keeps every slot busy, which raises the
    admitted requests' latency, so it is off by default.  A freed slot goes to the newest waiter: below capacity
    the line is rarely longer than one, and in overload the oldest waiter is the one closest to its 503 anyway,
    so admitted requests wait least (adaptive LIFO).  A full queue of the deployment behind (Serve's
    ``BackPressureError``) is a 503 naming it.  Routes without a limit are only counted.  One per ingress replica
    (its event loop is single-threaded, so the counts need no lock).

    :meth:`headers` is what the route's responses tell Serve's proxy (:mod:`astroray.ray.serve.proxy`): how many
    of its requests may be in flight there, the slots and the waiting line of all ``ingress_replicas``, so
    the proxy refuses the rest before they cost the ingress anything.
    """

    def __init__(self, limits: dict[str, int] | None = None, *, max_wait_ms: float = 0.0, ingress_replicas: int = 1):
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, not {max_wait_ms}")
        if ingress_replicas < 1:
            raise ValueError(f"ingress_replicas must be >= 1, not {ingress_replicas}")
        self.limits = dict(limits or {})
        self.max_wait_s = max_wait_ms / 1e3
        self.in_flight: dict[str, int] = {}
        self._waiters: dict[str, collections.deque[asyncio.Future]] = {}
        line = 2 if max_wait_ms > 0 else 1  # with a wait, as many may wait as hold a slot
        self._headers = {name: {LIMIT_HEADER: str(limit * line * ingress_replicas)}
                         for name, limit in self.limits.items()}

    def headers(self, route: str) -> dict[str, str]:
        """Response headers of ``route``: its proxy limit (none for a route without a limit)."""
        return self._headers.get(route.strip("/"), {})

    @contextlib.asynccontextmanager
    async def __call__(self, route: str, *, behind: str = "deployment"):
        from ray.serve.exceptions import BackPressureError

        name = route.strip("/")
        await self._enter(name, route)
        try:
            yield
        except BackPressureError:
            reject_overloaded(f"the {behind}'s queue is full: retry later (the deployment's max_queued_requests)",
                              route=route, headers=self.headers(route))
        finally:
            self._leave(name)

    async def _enter(self, name: str, route: str) -> None:
        limit = self.limits.get(name)
        n = self.in_flight.get(name, 0)
        waiters = self._waiters.setdefault(name, collections.deque())
        if limit is None or (n < limit and not waiters):
            self.in_flight[name] = n + 1
            return
        if self.max_wait_s == 0 or len(waiters) >= limit:
            reject_overloaded(f"{route} has {n} requests in flight, its limit (max_in_flight), and "
                              f"{len(waiters)} waiting: retry later", route=route, headers=self.headers(route))
        loop = asyncio.get_running_loop()
        slot = loop.create_future()  # True: _leave handed this request its slot; False: the wait ran out
        waiters.append(slot)
        timer = loop.call_later(self.max_wait_s, lambda: slot.done() or slot.set_result(False))
        try:
            admitted = await slot
        except asyncio.CancelledError:  # the client went away; a slot handed over meanwhile goes back
            if slot.done() and not slot.cancelled() and slot.result():
                self._leave(name)
            raise
        finally:
            timer.cancel()
            with contextlib.suppress(ValueError):
                waiters.remove(slot)
        if not admitted:
            reject_overloaded(f"{route} found its {limit} slots (max_in_flight) busy for {self.max_wait_s * 1e3:g} "
                              "ms (max_wait_ms): retry later", route=route, headers=self.headers(route))

    def _leave(self, name: str) -> None:
        waiters = self._waiters.get(name)
        while waiters:
            slot = waiters.pop()
            if not slot.done():
                slot.set_result(True)
                return
        self.in_flight[name] -= 1


async def _read_limited(request: Request, limit: int, route: str) -> bytes:
    length = request.headers.get("content-length")
    if length is not None:
        try:
            declared = int(length)
        except ValueError:
            reject(400, f"Content-Length {length!r} is not a number", route=route)
        if declared > limit:
            reject(413, f"request body of {declared} bytes exceeds the limit of {limit} bytes "
                        "(max_request_mb in the Serve config)", route=route)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:  # a chunked body says nothing up front: stop at the limit
            reject(413, f"request body exceeds the limit of {limit} bytes (max_request_mb in the Serve config)",
                   route=route)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_body(request: Request, *, limit: int, timeout_s: float = 30.0, route: str = "") -> bytes:
    """The request's body, read within ``limit`` bytes and ``timeout_s`` seconds.

    Raises HTTP 413 (too large) or 408 (the body did not arrive in time, e.g.
    shorter than its ``Content-Length``).
    """
    route = route or request.url.path
    try:
        return await asyncio.wait_for(_read_limited(request, limit, route), timeout=timeout_s)
    except asyncio.TimeoutError:
        reject(408, f"the request body did not arrive within {timeout_s:g} s (is it shorter than its "
                    "Content-Length?)", route=route)


async def read_json_body(request: Request, model: type[BaseModel], *, limit: int, timeout_s: float = 30.0,
                         route: str = "") -> BaseModel:
    """The request's JSON body as ``model``, read within ``limit`` bytes and ``timeout_s`` seconds.

    Raises HTTP 413 (too large), 408 (the body did not arrive in time, e.g.
    shorter than its ``Content-Length``) or 422 (not JSON, or not ``model``:
    one sentence naming the field).
    """
    route = route or request.url.path
    body = await read_body(request, limit=limit, timeout_s=timeout_s, route=route)
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        reject(422, describe_validation_error(exc), route=route)


def describe_validation_error(exc: ValidationError) -> str:
    """One sentence for a request body that pydantic refused (no documentation links, no echoed input)."""
    errors = exc.errors(include_url=False, include_input=False)
    if not errors:
        return "malformed request"
    first = errors[0]
    where = ".".join(str(p) for p in first["loc"])
    kind = first["type"]
    if kind == "json_invalid":
        return f"malformed request: the body is not valid JSON ({first['msg'].removeprefix('Invalid JSON: ')})"
    if kind == "extra_forbidden":
        msg = f"malformed request: unknown field {where!r}"
    elif kind == "missing":
        msg = f"malformed request: field {where!r} is required"
    elif kind == "model_type" and not where:
        msg = "malformed request: the body must be a JSON object"
    else:
        msg = f"malformed request: field {where!r}: {first['msg']}"
    more = len(errors) - 1
    return msg + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else "")


def _inline_refs(schema: Any, defs: dict) -> Any:
    if isinstance(schema, dict):
        if "$ref" in schema and schema["$ref"].startswith("#/$defs/"):
            return _inline_refs(defs[schema["$ref"].split("/")[-1]], defs)
        return {k: _inline_refs(v, defs) for k, v in schema.items() if k != "$defs"}
    if isinstance(schema, list):
        return [_inline_refs(v, defs) for v in schema]
    return schema


def json_body_openapi(model: type[BaseModel]) -> dict:
    """``openapi_extra`` for a route that reads its JSON body itself: the body's schema, nested models inlined."""
    schema = model.model_json_schema()
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": _inline_refs(schema, schema.get("$defs", {}))}}}}
