"""The Serve app: the differencer through a handle, and the ingress over HTTP (2xx and every 4xx)."""
import base64

import httpx
import pytest

from astroray.datasets import ImagePairConfig, simulate_pair
from astroray.io.fits import exposure_to_bytes

URL = "http://127.0.0.1:8000"


@pytest.fixture(scope="module")
def serve_app(ray_session):
    from ray import serve

    from astroray.ray.serve.app import build_app
    from astroray.ray.serve.schemas import ServeAppConfig

    serve.start(http_options={"host": "127.0.0.1", "port": 8000})
    serve.run(build_app(ServeAppConfig(max_request_mb=1.0)), name="astroray", route_prefix="/")
    yield serve
    serve.delete("astroray")


@pytest.fixture(scope="module")
def pair():
    p = simulate_pair(ImagePairConfig(shape=(128, 128)), seed=3, index=0)
    return exposure_to_bytes(p.reference), exposure_to_bytes(p.science)


def test_differencer_through_handle(serve_app, pair):
    handle = serve_app.get_deployment_handle("differencer", app_name="astroray")
    out = handle.difference.remote(*pair, max_detections=50).result()
    assert out["n_detections"] >= 0 and len(out["detections"]) <= 50
    assert out["method"] and out["science_id"]
    for d in out["detections"]:
        assert 0 <= d["x"] < 128 and 0 <= d["y"] < 128 and d["snr"] >= 5


def test_http_health_and_difference(serve_app, pair):
    with httpx.Client(base_url=URL, timeout=60) as client:
        health = client.get("/healthz")
        assert health.status_code == 200 and health.json()["status"] == "ok"
        body = {"reference": base64.b64encode(pair[0]).decode(), "science": base64.b64encode(pair[1]).decode(),
                "return_difference": True}
        r = client.post("/difference", json=body)
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["difference_fits"] and base64.b64decode(out["difference_fits"]).startswith(b"SIMPLE  =")
        # 128 px is shorter than any streak the search accepts (200 px): none, and no detection on one
        assert out["streaks"] == [] and not any(d["on_streak"] for d in out["detections"])
        assert "openapi" in client.get("/openapi.json").json()


def test_http_user_errors_are_4xx_with_a_message(serve_app, pair):
    good = base64.b64encode(pair[0]).decode()
    with httpx.Client(base_url=URL, timeout=60) as client:
        r = client.post("/difference", json={"reference": good, "science": "%%% not base64"})
        assert r.status_code == 422 and "science" in r.json()["detail"]
        corrupt = base64.b64encode(pair[1][: len(pair[1]) // 2]).decode()
        r = client.post("/difference", json={"reference": good, "science": corrupt})
        assert r.status_code == 422 and r.json()["detail"].startswith("science: truncated")
        r = client.post("/difference", content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 422
        assert r.json()["detail"].startswith("malformed request: the body is not valid JSON")
        assert "pydantic" not in r.text and "http" not in r.json()["detail"]  # one sentence, no links
        r = client.post("/difference", json={"reference": good})
        assert r.status_code == 422 and r.json()["detail"] == "malformed request: field 'science' is required"
        r = client.post("/difference", json={"reference": good, "science": good, "scinece_typo": 1})
        assert r.status_code == 422 and "unknown field 'scinece_typo'" in r.json()["detail"]
        r = client.post("/difference", content=b"x" * (2 * 2**20), headers={"content-type": "application/json"})
        assert r.status_code == 413 and "exceeds" in r.json()["detail"]

        def chunks():  # no Content-Length: refused at the limit, not after the whole body
            for _ in range(64):
                yield b"x" * 2**16
        r = client.post("/difference", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413


def test_openapi_documents_the_request_body_and_docs_need_no_network(serve_app):
    with httpx.Client(base_url=URL, timeout=60) as client:
        spec = client.get("/openapi.json").json()
        body = spec["paths"]["/difference"]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert set(body["required"]) == {"reference", "science"} and "max_detections" in body["properties"]
        docs = client.get("/docs").text
        assert "cdn" not in docs and "swagger-ui-bundle.js" in docs
        js = next(part.split('"')[0] for part in docs.split('src="')[1:] if "swagger-ui-bundle.js" in part)
        assert client.get(js).status_code == 200  # served by the app itself


def test_user_errors_are_not_logged_as_server_errors(serve_app, pair):
    """A 4xx is one WARNING line in the ingress, not an ERROR with a traceback in a replica."""
    import glob
    import time

    import ray

    good = base64.b64encode(pair[0]).decode()
    corrupt = base64.b64encode(pair[1][:3000]).decode()
    with httpx.Client(base_url=URL, timeout=60) as client:
        r = client.post("/difference", json={"reference": good, "science": corrupt})
    assert r.status_code == 422
    time.sleep(2)  # replica logs are flushed to files
    logs = ray._private.worker._global_node.get_logs_dir_path()
    text = "\n".join(open(f, errors="replace").read() for f in glob.glob(f"{logs}/serve/replica_astroray_*.log"))
    assert "Request failed" not in text and "Traceback" not in text
    assert "WARNING" in text and "422 /difference: science: truncated" in text


def test_the_proxy_refuses_past_the_limit_the_ingress_states_and_frees_the_slot_before_answering():
    """``ProxyAdmission`` (run in Serve's proxy) learns a path's limit from the ingress's response header, answers
    the (limit + 1)-th concurrent request itself with a 503 (the app behind never sees it), gives the slot back
    before the last body part goes out (a client's next request finds it free), and lifts the limit when a
    successful answer no longer states one.  Other paths pass through."""
    import asyncio
    import json

    from astroray.ray.serve.proxy import LIMIT_HEADER, ProxyAdmission

    seen, release, state = [], asyncio.Event(), {"limit": b"1"}

    async def ingress(scope, receive, send):  # what the proxy forwards to: holds /slow until released
        seen.append(scope["path"])
        if scope["path"] == "/slow":
            await release.wait()
        headers = [(LIMIT_HEADER.encode(), state["limit"])] if state["limit"] else []
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"{}"})

    async def call(proxy, path):
        sent = []

        async def send(message):
            sent.append(message)
            if message["type"] == "http.response.body" and sent[0]["status"] == 200:
                assert proxy.in_flight.get(path, 0) == 0  # the answer reaches the client: its slot is free already

        await proxy({"type": "http", "path": path}, None, send)
        return sent[0].get("status"), b"".join(m.get("body", b"") for m in sent[1:])

    async def scenario():
        proxy = ProxyAdmission(ingress)
        release.set()
        assert (await call(proxy, "/slow"))[0] == 200  # learns the limit: 1
        assert proxy.limits == {"/slow": 1}
        release.clear()
        held = asyncio.create_task(call(proxy, "/slow"))
        await asyncio.sleep(0.01)
        status, body = await call(proxy, "/slow")
        assert status == 503 and "limit (max_in_flight)" in json.loads(body)["detail"] and proxy.refused == 1
        assert (await call(proxy, "/other"))[0] == 200  # another path: no limit learned for it
        release.set()
        assert (await held)[0] == 200 and seen.count("/slow") == 2  # the refused one never reached the ingress
        assert (await call(proxy, "/slow"))[0] == 200
        state["limit"] = None  # redeployed without a limit: the next successful answer lifts it
        await call(proxy, "/slow")
        assert "/slow" not in proxy.limits and proxy.in_flight == {}  # nothing kept for unbounded paths

    asyncio.run(scenario())


def test_overload_is_refused_by_serves_proxy_before_the_ingress(ray_session, pair):
    """The real proxy of the test session's Ray runs the middleware (``ensure_ray`` set Serve's proxy callback):
    once an answer of ``/difference`` stated its limit, concurrent requests past it get the proxy's 503 at once,
    and the route answers normally afterwards."""
    import asyncio

    from ray import serve

    from astroray.ray.serve.app import build_app
    from astroray.ray.serve.proxy import LIMIT_HEADER
    from astroray.ray.serve.schemas import ServeAppConfig

    serve.start(http_options={"host": "127.0.0.1", "port": 8000})
    serve.run(build_app(ServeAppConfig(max_request_mb=1.0, max_in_flight={"difference": 1})),
              name="astroray-admission", route_prefix="/admission")
    body = {"reference": base64.b64encode(pair[0]).decode(), "science": base64.b64encode(pair[1]).decode()}
    try:
        with httpx.Client(base_url=URL, timeout=60) as client:
            first = client.post("/admission/difference", json=body)
            assert first.status_code == 200 and first.headers[LIMIT_HEADER] == "1"

        async def burst():
            async with httpx.AsyncClient(base_url=URL, timeout=60) as client:
                return await asyncio.gather(*[client.post("/admission/difference", json=body) for _ in range(6)])

        answers = asyncio.run(burst())
        codes = sorted(r.status_code for r in answers)
        assert codes.count(200) >= 1 and codes.count(503) >= 1 and set(codes) <= {200, 503}, codes
        assert all("at this proxy" in r.json()["detail"] for r in answers if r.status_code == 503)
        with httpx.Client(base_url=URL, timeout=60) as client:
            assert client.post("/admission/difference", json=body).status_code == 200
    finally:
        serve.delete("astroray-admission")
