"""Admission in Serve's HTTP proxy: overload refused where the request arrives, before it is forwarded.

The ingress bounds the requests of a route in flight (``max_in_flight``) and
answers 503 past the bound, but a request it refuses has already cost the proxy
and the ingress a full round (routing, an actor call, the ingress fetching the
body from the proxy, the response streamed back): under a burst twice the
capacity, refusals take the CPU the admitted requests need.  The ingress
therefore states each bounded route's limit in a response header
(:data:`LIMIT_HEADER`), and :class:`ProxyAdmission`, a pure ASGI middleware run
inside each proxy, learns it from the responses that pass through it and
answers 503 itself once that many requests of the path are in flight.  The
ingress's own bound stays (a proxy without the middleware, several proxies
feeding one ingress).

Serve loads proxy middlewares from ``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH``
(the import path of :func:`proxy_middlewares`), read by the proxy process at
start: :func:`astroray.ray.runtime.ensure_ray` sets it for a local Ray it
starts; on a cluster, set it in the environment of ``ray start`` on every node.
"""
from __future__ import annotations

import json

__all__ = ["LIMIT_HEADER", "CALLBACK_ENV", "CALLBACK_PATH", "ProxyAdmission", "proxy_middlewares"]

LIMIT_HEADER = "x-astroray-max-in-flight"
"""Response header of a bounded route: how many of its requests the proxy may have in flight."""
CALLBACK_ENV = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
CALLBACK_PATH = "astroray.ray.serve.proxy:proxy_middlewares"

_LIMIT_KEY = LIMIT_HEADER.encode()


class ProxyAdmission:
    """Pure ASGI middleware: at most the learned limit of a path in flight; past it a 503 without forwarding.

    A path has a limit once a response of it carried :data:`LIMIT_HEADER`; a successful response without the
    header lifts it (the route was redeployed unbounded).  Counts are per proxy, on its one event loop, so
    they need no lock; requests forwarded before the limit was learned are not in them.
    """

    def __init__(self, app):
        self.app = app
        self.limits: dict[str, int] = {}
        self.in_flight: dict[str, int] = {}
        self.refused = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        counted = path in self.limits  # only bounded paths are counted: any path a client makes up is not kept
        if counted:
            n = self.in_flight.get(path, 0)
            if n >= self.limits[path]:
                self.refused += 1
                return await _refuse(send, path, n)
            self.in_flight[path] = n + 1

        def leave():
            nonlocal counted
            if counted:
                counted = False
                n = self.in_flight[path] - 1
                if n:
                    self.in_flight[path] = n
                else:
                    del self.in_flight[path]

        async def learn(message):
            if message["type"] == "http.response.start":
                self._learn(path, message)
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                leave()  # before the client can have the answer: its next request must find the slot free
            await send(message)

        try:
            await self.app(scope, receive, learn)
        finally:
            leave()

    def _learn(self, path: str, message) -> None:
        for key, value in message.get("headers", ()):
            if key.lower() == _LIMIT_KEY:
                try:
                    self.limits[path] = max(1, int(value))
                except ValueError:
                    pass
                return
        if 200 <= message["status"] < 300:
            self.limits.pop(path, None)


async def _refuse(send, path: str, n: int) -> None:
    body = json.dumps({"detail": f"{path} has {n} requests in flight at this proxy, its limit (max_in_flight): "
                                 "retry later"}).encode()
    await send({"type": "http.response.start", "status": 503,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"retry-after", b"1")]})
    await send({"type": "http.response.body", "body": body})


def proxy_middlewares() -> list:
    """The middlewares of Serve's HTTP proxy (the callback named by ``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH``)."""
    from starlette.middleware import Middleware

    return [Middleware(ProxyAdmission)]
