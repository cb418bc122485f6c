"""Serve under hostile requests, over real sockets: every case a 4xx, no stuck threads, latency recovers in 10 s."""
from __future__ import annotations

import base64
import json
import socket
import statistics
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from astroray.datasets import ImagePairConfig, simulate_pair
from astroray.io.fits import exposure_to_bytes

URL = "http://127.0.0.1:8000"
PREFIX = "/hostile"
LIMIT_MB = 2.0
TIMEOUT_S = 3.0


@pytest.fixture(scope="module")
def app(ray_session):
    from ray import serve

    from astroray.ray.serve.app import build_app
    from astroray.ray.serve.schemas import ServeAppConfig

    serve.start(http_options={"host": "127.0.0.1", "port": 8000})
    serve.run(build_app(ServeAppConfig(max_request_mb=LIMIT_MB, request_timeout_s=TIMEOUT_S)),
              name="hostile", route_prefix=PREFIX)
    yield serve
    serve.delete("hostile")


@pytest.fixture(scope="module")
def pair():
    p = simulate_pair(ImagePairConfig(shape=(128, 128)), seed=5, index=0)
    return exposure_to_bytes(p.reference), exposure_to_bytes(p.science)


def _replica_pids() -> dict[str, int]:
    """PIDs of this app's replicas, from their process titles (``ray::ServeReplica:hostile:<deployment>``)."""
    out = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            title = (proc / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        for role in ("ingress", "differencer"):
            if title.startswith(f"ray::ServeReplica:hostile:{role}"):
                out[role] = int(proc.name)
    return out


def _threads(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:")))


def _rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))) / 1024


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _valid_latency(client, body) -> float:
    t0 = time.perf_counter()
    r = client.post(f"{PREFIX}/difference", json=body)
    assert r.status_code == 200, r.text
    return time.perf_counter() - t0


def _lie(data: bytes, key: bytes, value: bytes, hdu_from: int = 2880) -> bytes:
    buf = bytearray(data)
    k = buf.index(key.ljust(8) + b"=", hdu_from)
    buf[k:k + 80] = (key.ljust(8) + b"= " + value.rjust(20)).ljust(80)
    return bytes(buf)


def _plane(data: bytes, extname: str, values: np.ndarray) -> bytes:
    import io

    from astropy.io import fits

    hdul = fits.open(io.BytesIO(data))
    hdul[extname].data = values
    buf = io.BytesIO()
    hdul.writeto(buf)
    return buf.getvalue()


def _gzip_bomb(head: bytes, mb: int) -> bytes:
    """``head`` then ``mb`` MB of zeros, gzipped (~1000:1), built without holding the expanded bytes."""
    import zlib

    deflate = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [deflate.compress(head)]
    zeros = bytes(2**20)
    parts += [deflate.compress(zeros) for _ in range(mb)]
    parts.append(deflate.flush())
    return b"".join(parts)


def _chunked_until_answer(most: int) -> tuple[int, bytes]:
    """Send a chunked body of up to ``most`` bytes; the bytes sent when the response began, and its start."""
    import select

    sock = socket.create_connection(("127.0.0.1", 8000))
    sock.settimeout(30)
    sock.sendall(f"POST {PREFIX}/difference HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n".encode())
    chunk = b"%x\r\n" % 2**16 + b"x" * 2**16 + b"\r\n"
    sent = 0
    try:
        while sent < most and not select.select([sock], [], [], 0)[0]:
            sock.sendall(chunk)
            sent += 2**16
        return sent, sock.recv(4096)
    finally:
        sock.close()


def _raw_request(body_prefix: bytes, declared: int, *, trickle_s: float = 0.0) -> bytes:
    """A POST whose body stops short of its Content-Length (optionally trickled a byte at a time)."""
    sock = socket.create_connection(("127.0.0.1", 8000))
    sock.settimeout(TIMEOUT_S + 20)
    head = (f"POST {PREFIX}/difference HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {declared}\r\n\r\n").encode()
    sock.sendall(head + body_prefix)
    try:
        deadline = time.time() + trickle_s
        while time.time() < deadline:
            sock.sendall(b" ")
            time.sleep(0.5)
        return sock.recv(4096)
    finally:
        sock.close()


def test_every_hostile_request_is_a_4xx_and_the_replicas_recover(app, pair):
    good = {"reference": _b64(pair[0]), "science": _b64(pair[1])}
    pids = _replica_pids()
    assert set(pids) == {"ingress", "differencer"}, pids
    with httpx.Client(base_url=URL, timeout=120) as client:
        # warm up, with some concurrency so the replicas' thread pools reach their working size
        with_threads = [threading.Thread(target=_valid_latency, args=(client, good)) for _ in range(4)]
        for t in with_threads:
            t.start()
        for t in with_threads:
            t.join()
        baseline = statistics.median(_valid_latency(client, good) for _ in range(3))
        threads_before = {role: _threads(pid) for role, pid in pids.items()}
        rss_before = _rss_mb(pids["ingress"])

        science = pair[1]
        bomb_header = _lie(science, b"NAXIS1", b"20000", 2880)[:2880 * 2]
        cases = {
            "NAXIS1 = -5": _lie(science, b"NAXIS1", b"-5"),
            "BITPIX 16 on float32 data": _lie(science, b"BITPIX", b"16"),
            "gzip bomb (600 MB)": _gzip_bomb(bomb_header, 600),
            "1x1 image": None,
            "negative variance": _plane(science, "VARIANCE", -np.ones((128, 128), np.float32)),
            "all-NaN variance": _plane(science, "VARIANCE", np.full((128, 128), np.nan, np.float32)),
            "zero PSF": _plane(science, "PSF", np.zeros((45, 45), np.float32)),
            "NaN PSF": _plane(science, "PSF", np.full((45, 45), np.nan, np.float32)),
        }
        small = simulate_pair(ImagePairConfig(shape=(32, 32)), seed=5, index=0).science
        from astroray.records import Exposure

        cases["1x1 image"] = exposure_to_bytes(Exposure(small.image[:1, :1], small.variance[:1, :1],
                                                        small.mask[:1, :1], small.psf, meta=dict(small.meta)))
        statuses = {}
        for label, data in cases.items():
            r = client.post(f"{PREFIX}/difference", json={"reference": good["reference"], "science": _b64(data)})
            statuses[label] = (r.status_code, r.json().get("detail", "")[:120])
        for label, (code, detail) in statuses.items():
            assert code == 422 and detail.startswith("science:"), (label, code, detail)

        # a chunked body with no Content-Length, sent as fast as loopback takes it: the ingress stops reading at
        # the limit and answers 413 while the client is still sending (Serve's proxy reads ahead what arrives
        # in the meantime and discards the rest; the ingress holds no more than the limit)
        sent_at_answer, answer = _chunked_until_answer(256 * 2**20)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:80]
        assert sent_at_answer < 128 * 2**20, f"{sent_at_answer} bytes sent before the 413"
        # a body shorter than its Content-Length, and one trickled a byte every half second: 408 after TIMEOUT_S
        t0 = time.perf_counter()
        assert _raw_request(b'{"reference": "', 10_000).startswith(b"HTTP/1.1 408")
        assert TIMEOUT_S - 0.5 <= time.perf_counter() - t0 <= TIMEOUT_S + 10
        assert _raw_request(b'{"reference": "', 10_000, trickle_s=TIMEOUT_S + 2).startswith(b"HTTP/1.1 408")

        # within 10 s valid requests are back to their usual latency
        t_end = time.perf_counter() + 10
        after = _valid_latency(client, good)
        while after > 2 * baseline + 0.5 and time.perf_counter() < t_end:
            after = _valid_latency(client, good)
        assert after <= 2 * baseline + 0.5, (baseline, after)
    time.sleep(2)
    threads_after = {role: _threads(pid) for role, pid in pids.items()}
    for role in pids:
        assert threads_after[role] <= threads_before[role] + 2, (role, threads_before, threads_after)
    assert _rss_mb(pids["ingress"]) - rss_before < 200
    print(json.dumps({"baseline_s": round(baseline, 3), "after_s": round(after, 3), "statuses": statuses,
                      "threads_before": threads_before, "threads_after": threads_after,
                      "ingress_rss_mb": [round(rss_before), round(_rss_mb(pids["ingress"]))],
                      "chunked_bytes_sent_before_413": sent_at_answer}))
