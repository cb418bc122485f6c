"""Bounded HTTP load on the Serve graph (``/alerts``, ``/difference``): capacity, overload, an alias moved under
load, and a memory soak -- the acceptance checks of issue 19.

The app is :func:`astroray.ray.serve.app.build_app` on a local Ray of ``--cpus`` CPUs, served on
``127.0.0.1:--port``; the load comes from this process (one event loop, requests spread over ``--clients`` httpx
``AsyncClient``s), so on a small machine client and server share the cores and every figure is indicative.
Phases, in order:

1. **capacity** of each route, closed loop: ``c`` clients each sending its next request when the last is answered,
   for ``--step-s`` seconds per level, ``c`` = 1, 2, 4, ... until the throughput of answered (200) requests stops
   growing (less than ``--growth`` more than the best level) or requests are refused.  Capacity is the best
   throughput; "at capacity" is the lowest level reaching 95 % of it with nothing refused (its p50 is the
   reference latency below).
2. **overload** of each route in ``--overload-routes``, open loop: requests sent at ``--overload-factor`` x capacity
   for ``--phase-s`` seconds without waiting for answers; every status is counted.  Checks: no 5xx other than 503;
   503s for the excess; p99 latency of the admitted (200) requests <= 3 x the p50 at capacity.  Then probes at
   ``--probe-rate`` per second for ``--probe-s`` seconds: the seconds from the end of the burst until every later
   probe is 200 and every 5 consecutive probes have their median within 1.5 x the p50 at capacity (check: <= 10 s;
   the stricter reading, every single probe within it, is reported beside it).
3. **alias move** on ``/alerts``, for ``--phase-s`` seconds under load: by default a closed loop of as many clients
   as the busiest capacity level that had nothing refused (the replica never idles, and no request is refused for
   load, so any failure is the move's); ``--alias-loop open`` sends ``--alias-load`` x capacity at a fixed rate
   instead (on a small shared machine its slow spells then refuse a few requests for load, unrelated to the move).
   A third of the way in, a new version of the real/bogus model is registered and ``champion`` moved to it (the
   app checks every ``--reload-check-s``).  Checks: no request failed (anything not 200), responses show both
   versions.  In a store of your own the alias is moved back afterwards (the extra version stays registered).
   The overload and alias phases also report the machine's busy, iowait and steal shares (``machine_cpu``).
4. **soak** on ``/alerts``: open loop at ``--soak-load`` x capacity for ``--soak-s`` seconds; the RSS of every Serve
   replica process (``ray::ServeReplica:...``) and of the proxy sampled every ``--rss-every-s``; least-squares
   slope in MB/min per process and in total, with first and last values.

Each ``/alerts`` request is a one-alert (``--alerts-per-request``) ZTF Avro container of the real packets in
``../shared/data/alerts/ztf/avro``, written with the packets' own writer schema and a candid of its own.  Each
``/difference`` request is a simulated ``--difference-size`` pixel reference/science pair (base64 FITS in JSON).

The models: ``--config``, a ``configs/classify_alerts.yaml``-style file whose ``scorer:`` section names them and
their stores (default: the champions of ``$ASTRORAY_HOME``), or ``--scratch-store``: untrained models registered
in a temporary store (``--scratch-rare-events`` adds the small fitted rare-event model; else ``rare_events`` is
off).  The bounds that turn overload into 503s are options (``--alerts-max-ongoing``, ...); their values are in the
JSON (``app``).  The admitted p99 can only stay within 3 x the capacity p50 when little more than the capacity
concurrency is admitted, so the ingress admits ``--in-flight-alerts`` (default 2 per alerts replica, the
concurrency at capacity of one replica on one core) and ``--in-flight-difference`` (default 1), and a request past
that waits ``--max-wait-ms`` (default 0) for a slot before its 503; the deployments behind keep their own bounds
(alerts 4 ongoing + 2 queued, batches of 4, differencer 1 + 1), and the ingress 8 + 2.

    RAY_worker_niceness=0 python benchmarks/bench_serve.py --quick --scratch-store   # smoke run, ~5 min
    RAY_worker_niceness=0 python benchmarks/bench_serve.py --config configs/classify_alerts.yaml

Writes ``benchmarks/results/serve.json`` (``--out``) and prints a summary; exits 1 when an acceptance check fails.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import io
import itertools
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ZTF_AVRO = ROOT.parent / "shared" / "data" / "alerts" / "ztf" / "avro"
APP_NAME = "astroray-bench"
CANDID_BASE = 9_000_000_000_000_000  # every candid of the run has the same Avro (zig-zag varint) length
_SYNC = b"astroray-bench!!"  # 16 bytes: the Avro container's sync marker


# --------------------------------------------------------------------------- request bodies


def _zigzag(n: int) -> bytes:
    """Avro's encoding of a long."""
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


class ZtfAvroBodies:
    """One-alert (or ``per_request``-alert) ZTF Avro containers of the real packets, each alert a candid of its own.

    Writing a packet with fastavro costs ~1.5 ms, too much for the client of a load test on two cores, so each
    packet is encoded once with a placeholder candid and object id of fixed length and the placeholders are
    replaced per request; :meth:`check` proves the bytes equal what ``fastavro.writer`` writes.
    """

    def __init__(self, folder: Path = ZTF_AVRO, *, per_request: int = 1):
        import fastavro

        self.packets, schema = [], None
        for path in sorted(folder.glob("*.avro")):
            with open(path, "rb") as fh:
                reader = fastavro.reader(fh)
                schema = schema or reader.writer_schema
                self.packets += list(reader)
        if not self.packets:
            raise SystemExit(f"no ZTF Avro packets under {folder} (see ../shared/data/README.md)")
        self.schema = fastavro.parse_schema(schema)
        self.per_request = per_request
        head = io.BytesIO()
        fastavro.writer(head, self.schema, [], codec="null", sync_marker=_SYNC)
        self.header = head.getvalue()
        self._placeholder = CANDID_BASE + 0o777777777  # an unlikely value, the length of every candid of the run
        self._templates = []
        for rec in self.packets:
            buf = io.BytesIO()
            fastavro.schemaless_writer(buf, self.schema, self._record(rec, self._placeholder))
            data = buf.getvalue()
            if data.count(_zigzag(self._placeholder)) != 2 or data.count(self._object_id(self._placeholder)) != 1:
                raise SystemExit("a placeholder candid or object id is not unique in the encoded packet")
            self._templates.append(data)
        self._next = itertools.count()

    @staticmethod
    def _object_id(candid: int) -> bytes:
        return f"ZTF99b{candid - CANDID_BASE:012d}".encode()

    def _record(self, rec: dict, candid: int) -> dict:
        rec = dict(rec)
        rec["candid"] = candid
        rec["candidate"] = {**rec["candidate"], "candid": candid}
        rec["objectId"] = self._object_id(candid).decode()
        return rec

    def _encoded(self, n: int) -> tuple[int, bytes]:
        candid = CANDID_BASE + n
        data = self._templates[n % len(self._templates)]
        data = data.replace(_zigzag(self._placeholder), _zigzag(candid))
        return candid, data.replace(self._object_id(self._placeholder), self._object_id(candid))

    def body(self, first: int) -> bytes:
        records = b"".join(self._encoded(first + i)[1] for i in range(self.per_request))
        return self.header + _zigzag(self.per_request) + _zigzag(len(records)) + records + _SYNC

    def __call__(self) -> bytes:
        return self.body(next(self._next) * self.per_request)

    def check(self) -> None:
        """The bodies equal fastavro's own containers, and astroray reads the alert ids back."""
        import fastavro

        from astroray.io import read_alerts

        for first in (0, 12345):
            mine = self.body(first)
            ref = io.BytesIO()
            recs = [self._record(self.packets[(first + i) % len(self.packets)], CANDID_BASE + first + i)
                    for i in range(self.per_request)]
            fastavro.writer(ref, self.schema, recs, codec="null", sync_marker=_SYNC, sync_interval=1 << 30)
            if mine != ref.getvalue():
                raise SystemExit("the patched Avro body differs from fastavro's: report this")
            alerts = read_alerts(mine, name="bench body")
            assert [int(a.alert_id) for a in alerts] == [CANDID_BASE + first + i for i in range(self.per_request)]


def difference_body(size: int) -> bytes:
    from astroray.datasets import ImagePairConfig, simulate_pair
    from astroray.io.fits import exposure_to_bytes

    pair = simulate_pair(ImagePairConfig(shape=(size, size)), seed=1, index=0)
    return json.dumps({"reference": base64.b64encode(exposure_to_bytes(pair.reference)).decode(),
                       "science": base64.b64encode(exposure_to_bytes(pair.science)).decode(),
                       "max_detections": 100}).encode()


# --------------------------------------------------------------------------- load


class Route:
    """A route and how to make its next body."""

    def __init__(self, path: str, make_body, content_type: str):
        self.path, self.make_body, self.content_type = path, make_body, content_type


async def _one(client, route: Route, sched: float) -> dict:
    """One request; its scheduled and actual start, end, status (or the client error) and the rb model version."""
    body = route.make_body()
    start = time.perf_counter()
    out = {"sched": sched, "start": start}
    try:
        r = await client.post(route.path, content=body, headers={"content-type": route.content_type})
        out["status"] = r.status_code
        if r.status_code == 200 and route.path == "/alerts":
            alerts = r.json()["alerts"]
            out["rb_version"] = alerts[0]["realbogus_version"] if alerts else None
        elif r.status_code != 200:
            out["detail"] = r.text[:160]
    except Exception as exc:  # noqa: BLE001 - a client-side failure is a result of the run, counted by its name
        out["status"] = type(exc).__name__
    out["end"] = time.perf_counter()
    return out


CLIENTS = 32
"""httpx ``AsyncClient``s the requests are spread over.  One client's connection pool slows down with the
number of connections it holds (measured here: 200 req/s of 66 kB bodies to a server answering in 0.5 s gave
p50 2.1 s, p99 10 s through one client, p99 513 ms through 16), so a single client would time its own queue."""


class _Clients:
    """``CLIENTS`` httpx clients, no pool bound in any (requests must queue in the server, where the bounds under
    test are); ``pick(i)`` spreads requests round robin."""

    def __init__(self, base_url: str, timeout_s: float):
        import httpx

        self.clients = [httpx.AsyncClient(base_url=base_url, timeout=timeout_s,
                                          limits=httpx.Limits(max_connections=None, max_keepalive_connections=64))
                        for _ in range(CLIENTS)]

    def pick(self, i: int):
        return self.clients[i % len(self.clients)]

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await asyncio.gather(*(c.aclose() for c in self.clients))


def _client(base_url: str, timeout_s: float) -> _Clients:
    return _Clients(base_url, timeout_s)


def _start_action(action, at_s: float):
    """A task running ``action`` (a blocking callable) in a thread ``at_s`` seconds from now; it returns the
    action's result with its start and end times."""
    async def act():
        await asyncio.sleep(at_s)
        began = time.perf_counter()
        result = await asyncio.to_thread(action)
        return {"start": began, "end": time.perf_counter(), "result": result}
    return asyncio.create_task(act())


async def closed_loop(base_url: str, route: Route, concurrency: int, duration_s: float, timeout_s: float, *,
                      at_fraction: float | None = None, action=None):
    """``concurrency`` clients, each sending its next request when the last is answered, for ``duration_s``;
    ``action`` as in :func:`open_loop`.  Returns ``(records, t0, t_end, action's result or None)``."""
    async with _client(base_url, timeout_s) as client:
        records: list[dict] = []
        t0 = time.perf_counter()
        stop = t0 + duration_s
        acted = None if action is None else _start_action(action, at_fraction * duration_s)

        async def worker(i):
            while time.perf_counter() < stop:
                records.append(await _one(client.pick(i), route, time.perf_counter()))

        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        return records, t0, time.perf_counter(), None if acted is None else await acted


async def _send_at_rate(client, route: Route, rate: float, duration_s: float, t0: float) -> list:
    """Tasks of requests sent at ``rate`` per second from ``t0`` for ``duration_s`` (not waiting for answers)."""
    tasks = []
    for i in range(max(1, round(rate * duration_s))):
        sched = t0 + i / rate
        delay = sched - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(_one(client.pick(i), route, sched)))
    return tasks


async def open_loop(base_url: str, route: Route, rate: float, duration_s: float, timeout_s: float, *,
                    probe_rate: float = 0.0, probe_s: float = 0.0, at_fraction: float | None = None, action=None):
    """Requests at ``rate`` for ``duration_s``; then (``probe_rate``) probes for ``probe_s`` while the burst drains.
    ``action`` (a blocking callable) runs in a thread at ``at_fraction`` of the duration; its result and start and
    end times come back."""
    async with _client(base_url, timeout_s) as client:
        t0 = time.perf_counter()
        acted = None if action is None else _start_action(action, at_fraction * duration_s)
        tasks = await _send_at_rate(client, route, rate, duration_s, t0)
        t_stop = t0 + len(tasks) / rate
        probes = []
        if probe_rate > 0:
            probes = await _send_at_rate(client, route, probe_rate, probe_s, max(t_stop, time.perf_counter()))
        records = await asyncio.gather(*tasks)
        probe_records = await asyncio.gather(*probes)
        action_out = await acted if acted is not None else None
        return {"records": records, "probes": probe_records, "t0": t0, "t_stop": t_stop, "action": action_out}


# --------------------------------------------------------------------------- statistics


def _pct(values, q: float) -> float | None:
    import numpy as np

    return None if not values else round(float(np.percentile(values, q)), 1)


def summarise(records: list[dict], t0: float, t_end: float, *, from_sched: bool = False) -> dict:
    """Status counts, throughput of 200s, latency percentiles (ms) of 200s."""
    counts: dict[str, int] = {}
    for r in records:
        counts[str(r["status"])] = counts.get(str(r["status"]), 0) + 1
    ok = [r for r in records if r["status"] == 200]
    lat = [(r["end"] - (r["sched"] if from_sched else r["start"])) * 1e3 for r in ok]
    lag = [(r["start"] - r["sched"]) * 1e3 for r in records]
    span = max(t_end - t0, 1e-9)
    return {"requests": len(records), "status_counts": dict(sorted(counts.items())),
            "ok": len(ok), "ok_per_s": round(len(ok) / span, 2), "seconds": round(span, 2),
            "latency_ms": {"p50": _pct(lat, 50), "p90": _pct(lat, 90), "p99": _pct(lat, 99),
                           "max": round(max(lat), 1) if lat else None},
            "send_lag_ms_p99": _pct(lag, 99), "answers_not_200": _details(records)}


def _details(records: list[dict]) -> dict:
    """Each distinct (status, message) of the answers other than 200, with its count."""
    out: dict[str, int] = {}
    for r in records:
        if r["status"] != 200:
            key = f"{r['status']}: {r.get('detail', '')}"
            out[key] = out.get(key, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: -kv[1])[:8])


def timeline(records: list[dict], t0: float, bin_s: float = 1.0) -> list[dict]:
    """Per ``bin_s`` of send time: sent, 200s, 503s, others, and the p50/max latency (ms) of the 200s."""
    bins: dict[int, list] = {}
    for r in records:
        bins.setdefault(int((r["sched"] - t0) // bin_s), []).append(r)
    out = []
    for b in sorted(bins):
        rs = bins[b]
        lat = [(r["end"] - r["start"]) * 1e3 for r in rs if r["status"] == 200]
        out.append({"t_s": round(b * bin_s, 1), "sent": len(rs), "ok": len(lat),
                    "503": sum(r["status"] == 503 for r in rs),
                    "other": sum(r["status"] not in (200, 503) for r in rs),
                    "ok_p50_ms": _pct(lat, 50), "ok_max_ms": round(max(lat), 1) if lat else None})
    return out


def _is_5xx_not_503(status) -> bool:
    return isinstance(status, int) and status >= 500 and status != 503


def capacity_curve(base_url: str, route: Route, levels: list[int], step_s: float, growth: float, timeout_s: float):
    curve, best = [], 0.0
    for c in levels:
        records, t0, t1, _ = asyncio.run(closed_loop(base_url, route, c, step_s, timeout_s))
        s = {"concurrency": c, **summarise(records, t0, t1)}
        curve.append(s)
        print(f"  {route.path} c={c:3d}: {s['ok_per_s']:7.2f} ok/s  p50 {s['latency_ms']['p50']} ms  "
              f"p99 {s['latency_ms']['p99']} ms  {s['status_counts']}", flush=True)
        refused = s["ok"] < s["requests"]
        grew = s["ok_per_s"] > best * (1 + growth)
        best = max(best, s["ok_per_s"])
        if refused or not grew:
            break
    best_level = max(curve, key=lambda x: x["ok_per_s"])
    top = best_level["ok_per_s"]
    clean = [x for x in curve if x["ok"] == x["requests"] and x["ok_per_s"] >= 0.95 * top]
    knee = clean[0] if clean else best_level
    return {"curve": curve, "capacity_ok_per_s": top,
            "at_capacity": {"concurrency": knee["concurrency"], "ok_per_s": knee["ok_per_s"],
                            "p50_ms": knee["latency_ms"]["p50"], "p99_ms": knee["latency_ms"]["p99"],
                            "rule": "lowest concurrency with >= 95% of the best throughput and nothing refused "
                                    "(else the best level)"},
            "best_level": {"concurrency": best_level["concurrency"], "p50_ms": best_level["latency_ms"]["p50"]}}


def recovery(probes: list[dict], t_stop: float, limit_ms: float, *, window: int = 5) -> dict:
    """Seconds from the end of the burst until every later probe is 200 and the median of every ``window``
    consecutive probes is within ``limit_ms`` (a queue still draining slows probes in a row; one probe slow on
    its own is the machine's noise, seen as often without overload).  ``seconds_every_probe_within_limit`` is
    the stricter reading: every later probe within ``limit_ms``."""
    import numpy as np

    probes = sorted(probes, key=lambda r: r["sched"])
    ms = [(r["end"] - r["start"]) * 1e3 for r in probes]
    ok = [r["status"] == 200 for r in probes]
    # median of the window ending at each probe (shorter at the start)
    median_ok = [float(np.median(ms[max(0, i - window + 1):i + 1])) <= limit_ms for i in range(len(probes))]

    def settled_after(good) -> float | None:
        first = None
        for i in range(len(probes) - 1, -1, -1):
            if not good[i]:
                break
            first = i
        return None if first is None else round(max(0.0, probes[first]["sched"] - t_stop), 2)

    strict = [o and m <= limit_ms for o, m in zip(ok, ms)]
    lat = [m for m, o in zip(ms, ok) if o]
    return {"seconds_to_normal": settled_after([o and m for o, m in zip(ok, median_ok)]),
            "seconds_every_probe_within_limit": settled_after(strict), "median_window": window,
            "probes": len(probes), "probes_ok": sum(strict), "probes_200": len(lat),
            "probe_p50_ms": _pct(lat, 50), "probe_max_ms": round(max(lat), 1) if lat else None,
            "probe_limit_ms": round(limit_ms, 1),
            "probe_trace": [{"t_s": round(r["sched"] - t_stop, 2), "status": r["status"], "ms": round(m, 1)}
                           for r, m in zip(probes, ms)]}


def cpu_times() -> list[int]:
    """The machine's CPU counters (``/proc/stat``: user nice system idle iowait irq softirq steal), or [] where
    there is none."""
    try:
        with open("/proc/stat") as fh:
            return [int(x) for x in fh.readline().split()[1:9]]
    except (OSError, ValueError):
        return []


def cpu_share(before: list[int], after: list[int]) -> dict | None:
    """Busy, iowait and steal (the hypervisor giving the cores to another guest) in % of the machine's CPU time
    between two :func:`cpu_times`: what tells a slow phase of this app from a slow machine."""
    if len(before) != 8 or len(after) != 8:
        return None
    d = [b - a for a, b in zip(before, after)]
    total = sum(d) or 1
    return {"busy_pct": round(100 * (total - d[3] - d[4] - d[7]) / total, 1),
            "iowait_pct": round(100 * d[4] / total, 1), "steal_pct": round(100 * d[7] / total, 1)}


# --------------------------------------------------------------------------- memory


_REPLICA = re.compile(r"ray::(ServeReplica:[^\s]+|ProxyActor|ServeController)")


class RssSampler(threading.Thread):
    """RSS (MB) of the Serve replica processes (and the proxy, for context) every ``every_s`` seconds."""

    def __init__(self, every_s: float):
        super().__init__(daemon=True)
        self.every_s = every_s
        self.samples: list[tuple[float, dict[str, float]]] = []
        self.stopped = threading.Event()

    @staticmethod
    def sample() -> dict[str, float]:
        import psutil  # Ray's own copy (on sys.path once ray is imported, as it is before any sample)

        out = {}
        for p in psutil.process_iter(["pid", "cmdline"]):
            try:
                title = " ".join(p.info["cmdline"] or [])
                m = _REPLICA.search(title)
                if m:
                    name = m.group(1).split(".")[0]  # the title ends with the method running now
                    out[f"{name}[{p.info['pid']}]"] = p.memory_info().rss / 2**20
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return out

    def run(self):
        t0 = time.perf_counter()
        while not self.stopped.is_set():
            self.samples.append((time.perf_counter() - t0, self.sample()))
            self.stopped.wait(self.every_s)

    def report(self) -> dict:
        names = sorted({k for _, s in self.samples for k in s})
        per = {}
        for name in names:
            pts = [(t, s[name]) for t, s in self.samples if name in s]
            per[name] = _trend(pts)
        replicas = [n for n in names if n.startswith("ServeReplica")]
        total = [(t, sum(s[n] for n in replicas if n in s)) for t, s in self.samples
                 if all(n in s for n in replicas)]
        return {"samples": len(self.samples), "every_s": self.every_s, "per_process": per,
                "replicas_total": _trend(total),
                "note": "slope: least squares over all samples; replicas_total: the ServeReplica processes only"}


def _trend(pts) -> dict:
    import numpy as np

    if len(pts) < 2:
        return {"n": len(pts)}
    t = np.array([p[0] for p in pts]) / 60.0
    mb = np.array([p[1] for p in pts])
    slope = float(np.polyfit(t, mb, 1)[0])
    return {"n": len(pts), "first_mb": round(float(mb[0]), 1), "last_mb": round(float(mb[-1]), 1),
            "max_mb": round(float(mb.max()), 1), "slope_mb_per_min": round(slope, 3),
            "minutes": round(float(t[-1] - t[0]), 2)}


# --------------------------------------------------------------------------- models and the app


def scratch_store(rare_events: bool) -> tuple[dict, Path]:
    """Untrained real/bogus and light-curve models (and the small rare-event model) in a temporary store."""
    from astroray.testing.lightcurves import register_untrained_lc_transformer
    from astroray.testing.realbogus import register_untrained_realbogus

    home = Path(tempfile.mkdtemp(prefix="bench-serve-home-"))
    os.environ["ASTRORAY_HOME"] = str(home)  # artifacts of the scratch runs go there too
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    uri = f"sqlite:///{home / 'mlflow.db'}"
    register_untrained_realbogus(tracking_uri=uri)
    register_untrained_lc_transformer(tracking_uri=uri)
    scorer = {"tracking_uri": uri, "rare_events": None}
    if rare_events:
        from astroray.testing.rare_events import register_small_rare_event_model

        register_small_rare_event_model(tracking_uri=uri, survey="ztf", seed=0)
        scorer.pop("rare_events")
    return scorer, home


class AliasMover:
    """Registers a new version of the real/bogus model and moves its alias there (and back, in a user's store)."""

    def __init__(self, scorer_cfg, *, scratch: bool):
        from astroray.tracking import alias_version, parse_model_uri

        section = scorer_cfg.section("realbogus")
        if section is None:
            raise SystemExit("the alias-move phase needs a real/bogus model (scorer.realbogus is null)")
        self.uri = section.tracking_uri
        self.name, self.alias = parse_model_uri(section.model_uri)
        if self.alias is None:
            raise SystemExit(f"the alias-move phase needs an alias URI (models:/NAME@ALIAS), not {section.model_uri}")
        self.scratch = scratch
        self.before = alias_version(self.name, alias=self.alias, uri=self.uri)

    def move(self) -> int:
        if self.scratch:
            from astroray.testing.realbogus import register_untrained_realbogus

            return register_untrained_realbogus(tracking_uri=self.uri, name=self.name, seed=7)
        import mlflow

        from astroray.tracking import register_champion, tracking_uri

        source = mlflow.MlflowClient(tracking_uri=tracking_uri(self.uri)).get_model_version(
            self.name, str(self.before)).source
        return register_champion(source, self.name, alias=self.alias, uri=self.uri)

    def restore(self) -> None:
        import mlflow

        from astroray.tracking import tracking_uri

        mlflow.MlflowClient(tracking_uri=tracking_uri(self.uri)).set_registered_model_alias(
            self.name, self.alias, str(self.before))


def app_config(args, scorer: dict):
    from astroray.ray.serve.schemas import ServeAppConfig

    def bounds(ongoing, queued, cpus, replicas=None):
        out = {"num_cpus": cpus, "max_ongoing_requests": ongoing, "max_queued_requests": queued}
        if replicas:
            out["num_replicas"] = replicas
        return out

    if scorer.get("threads") is None:  # torch threads = the CPUs the replica holds, leaving the rest to the others
        scorer = {**scorer, "threads": max(1, int(args.alerts_cpus))}
    replicas = args.alerts_replicas or 1
    in_flight = {"alerts": args.in_flight_alerts or 2 * replicas,
                 "difference": args.in_flight_difference or args.differencer_max_ongoing}
    return ServeAppConfig(
        max_request_mb=16,
        max_in_flight=in_flight, max_wait_ms=args.max_wait_ms,
        alerts={"scorer": scorer, "max_batch_size": args.max_batch_size, "batch_wait_timeout_s": args.batch_wait_s,
                "reload_check_s": args.reload_check_s},
        deployments={
            "ingress": bounds(args.ingress_max_ongoing, args.ingress_max_queued, args.ingress_cpus),
            "alerts": bounds(args.alerts_max_ongoing, args.alerts_max_queued, args.alerts_cpus, args.alerts_replicas),
            "differencer": bounds(args.differencer_max_ongoing, args.differencer_max_queued, args.differencer_cpus),
        })


def _wait_ready(base_url: str, route: Route, n: int = 4, deadline_s: float = 180.0) -> None:
    """A few answered requests before timing (the first batches allocate); a 503 naming missing models ends the run."""
    import httpx

    t_end = time.monotonic() + deadline_s
    with httpx.Client(base_url=base_url, timeout=120) as client:
        done = 0
        while done < n:
            r = client.post(route.path, content=route.make_body(), headers={"content-type": route.content_type})
            if r.status_code == 200:
                done += 1
                continue
            if "not available yet" in r.text or time.monotonic() > t_end:
                raise SystemExit(f"{route.path} answers {r.status_code}: {r.text[:400]}")
            time.sleep(1.0)


# --------------------------------------------------------------------------- main


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("models")
    g.add_argument("--config", default=None,
                   help="classify_alerts-style YAML; its scorer: section names the models (default: the champions "
                        "of $ASTRORAY_HOME)")
    g.add_argument("--scratch-store", action="store_true",
                   help="register untrained real/bogus and light-curve models in a temporary store and use them")
    g.add_argument("--scratch-rare-events", action="store_true",
                   help="with --scratch-store: also fit and register the small rare-event model (else it is off)")
    g = p.add_argument_group("run")
    g.add_argument("--quick", action="store_true", help="smoke run: 10 s capacity steps, 20 s phases, 60 s soak")
    g.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray (default 2)")
    g.add_argument("--port", type=int, default=8123, help="HTTP port on 127.0.0.1 (default 8123; tests use 8000)")
    g.add_argument("--alerts-per-request", type=int, default=1, help="alerts in each /alerts body (default 1)")
    g.add_argument("--difference-size", type=int, default=256, help="side of the /difference images (default 256)")
    g.add_argument("--phases", default="capacity,overload,alias,soak",
                   help="which phases (capacity always runs: the others are relative to it)")
    g.add_argument("--routes", default="alerts,difference", help="routes whose capacity is measured")
    g.add_argument("--overload-routes", default="alerts,difference", help="routes driven at 2 x capacity")
    g.add_argument("--levels", default="1,2,4,8,16,32,64", help="closed-loop concurrencies tried, in order")
    g.add_argument("--growth", type=float, default=0.05,
                   help="a level must beat the best throughput so far by this fraction to go on (default 0.05)")
    g.add_argument("--step-s", type=float, default=30.0, help="seconds per capacity level (default 30)")
    g.add_argument("--phase-s", type=float, default=60.0, help="seconds of the overload and alias phases (60)")
    g.add_argument("--overload-factor", type=float, default=2.0, help="overload rate / capacity (default 2)")
    g.add_argument("--probe-rate", type=float, default=2.0, help="probes per second after the burst (default 2)")
    g.add_argument("--probe-s", type=float, default=20.0, help="seconds of probing after the burst (default 20)")
    g.add_argument("--alias-loop", choices=("closed", "open"), default="closed",
                   help="alias phase load: closed = as many clients as the busiest capacity level with nothing "
                        "refused, each sending its next request when the last is answered (the replicas stay busy "
                        "and nothing is refused for load, so a failure is the move's); open = --alias-load x "
                        "capacity at a fixed rate (default closed)")
    g.add_argument("--alias-load", type=float, default=0.8,
                   help="alias phase rate / capacity with --alias-loop open (default 0.8)")
    g.add_argument("--soak-s", type=float, default=600.0, help="soak seconds (default 600)")
    g.add_argument("--soak-load", type=float, default=0.5, help="soak rate / capacity (default 0.5)")
    g.add_argument("--rss-every-s", type=float, default=5.0, help="RSS sampling period (default 5 s)")
    g.add_argument("--timeout-s", type=float, default=60.0, help="client timeout per request (default 60)")
    g.add_argument("--clients", type=int, default=CLIENTS, help=f"httpx clients the load is spread over ({CLIENTS})")
    g.add_argument("--out", default=None, help="result JSON (default benchmarks/results/serve.json)")
    g = p.add_argument_group("app bounds (what makes overload a 503)")
    g.add_argument("--ingress-max-ongoing", type=int, default=8)
    g.add_argument("--ingress-max-queued", type=int, default=2)
    g.add_argument("--ingress-cpus", type=float, default=0.25)
    g.add_argument("--alerts-max-ongoing", type=int, default=4)
    g.add_argument("--alerts-max-queued", type=int, default=2)
    g.add_argument("--alerts-cpus", type=float, default=1.0)
    g.add_argument("--alerts-replicas", type=int, default=1)
    g.add_argument("--max-batch-size", type=int, default=4, help="@serve.batch size of the alerts deployment")
    g.add_argument("--batch-wait-s", type=float, default=0.005, help="@serve.batch wait of the alerts deployment")
    g.add_argument("--reload-check-s", type=float, default=2.0, help="alias check period of the alerts replicas")
    g.add_argument("--in-flight-alerts", type=int, default=None,
                   help="ingress admission limit of /alerts (default 2 per alerts replica: its concurrency at "
                        "capacity with one core; past it requests wait --max-wait-ms, then 503)")
    g.add_argument("--max-wait-ms", type=float, default=0.0,
                   help="how long a request past the ingress limit waits for a slot before its 503 (default 0: "
                        "none; a wait keeps the slots full in overload and so raises the admitted p99)")
    g.add_argument("--in-flight-difference", type=int, default=None,
                   help="ingress admission limit of /difference (default: the differencer's max ongoing, 1)")
    g.add_argument("--differencer-max-ongoing", type=int, default=1)
    g.add_argument("--differencer-max-queued", type=int, default=1)
    g.add_argument("--differencer-cpus", type=float, default=0.5)
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.quick:
        args.step_s, args.phase_s, args.probe_s, args.soak_s, args.rss_every_s = 10.0, 20.0, 15.0, 60.0, 2.0
    phases = set(args.phases.split(","))
    global CLIENTS
    CLIENTS = args.clients
    os.environ.setdefault("RAY_worker_niceness", "0")

    from astroray.config import load_config
    from astroray.ray.alerts_job import ClassifyAlertsConfig
    from astroray.ray.runtime import ensure_ray

    home = None
    if args.scratch_store:
        scorer, home = scratch_store(args.scratch_rare_events)
    else:
        scorer = load_config(args.config, ClassifyAlertsConfig).scorer.model_dump(mode="json")
    from astroray.models.alert_scoring import AlertScorerConfig
    from astroray.tracking import tracking_uri

    scorer_cfg = AlertScorerConfig.model_validate(scorer)
    scorer_cfg = scorer_cfg.with_updates(tracking_uri=tracking_uri(scorer_cfg.tracking_uri))
    mover = AliasMover(scorer_cfg, scratch=args.scratch_store) if "alias" in phases else None

    alert_bodies = ZtfAvroBodies(per_request=args.alerts_per_request)
    alert_bodies.check()
    diff_body = difference_body(args.difference_size)
    routes = {"alerts": Route("/alerts", alert_bodies, "application/avro"),
              "difference": Route("/difference", lambda: diff_body, "application/json")}
    base_url = f"http://127.0.0.1:{args.port}"
    config = app_config(args, scorer_cfg.model_dump(mode="json"))
    report: dict = {"benchmark": "serve", "argv": sys.argv[1:] if argv is None else list(argv),
                    "app": config.model_dump(mode="json", include={"alerts", "deployments", "max_request_mb",
                                                                  "max_in_flight", "max_wait_ms"}),
                    "bodies": {"alerts_per_request": args.alerts_per_request,
                               "alerts_body_bytes": len(alert_bodies()), "difference_size": args.difference_size,
                               "difference_body_bytes": len(diff_body)},
                    "machine": {"cpus": os.cpu_count(), "ray_cpus": args.cpus, "python": platform.python_version(),
                                "platform": platform.platform(), "load_avg_start": os.getloadavg()},
                    "checks": {}}
    ray = ensure_ray(num_cpus=args.cpus)
    from ray import serve

    from astroray.ray.serve.app import build_app

    code = 0
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": args.port})
        t = time.perf_counter()
        serve.run(build_app(config), name=APP_NAME, route_prefix="/")
        report["app_start_s"] = round(time.perf_counter() - t, 1)
        for name in args.routes.split(","):
            _wait_ready(base_url, routes[name])
        report["models"] = _models(base_url, routes["alerts"])
        print(f"app up in {report['app_start_s']} s; models {report['models']}", flush=True)
        code = _run_phases(args, phases, routes, base_url, report, mover)
    finally:
        report["machine"]["load_avg_end"] = os.getloadavg()
        dest = Path(args.out or ROOT / "benchmarks" / "results" / "serve.json")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(json.dumps(report, indent=2, default=str))
        print(f"wrote {dest}")
        serve.shutdown()
        ray.shutdown()
        if home is not None:
            shutil.rmtree(home, ignore_errors=True)
    return code


def _models(base_url: str, route: Route) -> dict:
    import httpx

    with httpx.Client(base_url=base_url, timeout=60) as client:
        r = client.post(route.path, content=route.make_body(), headers={"content-type": route.content_type})
    return {k: v.get("version") for k, v in r.json()["models"].items()}


def _run_phases(args, phases, routes, base_url, report, mover) -> int:
    levels = [int(x) for x in args.levels.split(",")]
    checks = report["checks"]
    cap = report["capacity"] = {}
    for name in args.routes.split(","):
        print(f"capacity of {routes[name].path} (closed loop, {args.step_s:.0f} s per level)", flush=True)
        cap[name] = capacity_curve(base_url, routes[name], levels, args.step_s, args.growth, args.timeout_s)

    if "overload" in phases:
        report["overload"] = {}
        for name in args.overload_routes.split(","):
            if name not in cap:
                continue
            ref = cap[name]
            rate = args.overload_factor * ref["capacity_ok_per_s"]
            p50 = ref["at_capacity"]["p50_ms"]
            print(f"overload of {routes[name].path}: {rate:.1f}/s for {args.phase_s:.0f} s, then probes", flush=True)
            cpu = cpu_times()
            run = asyncio.run(open_loop(base_url, routes[name], rate, args.phase_s, args.timeout_s,
                                        probe_rate=args.probe_rate, probe_s=args.probe_s))
            cpu = cpu_share(cpu, cpu_times())
            ends = [r["end"] for r in run["records"]]
            s = summarise(run["records"], run["t0"], max(ends))
            bad = {k: v for k, v in s["status_counts"].items() if k not in ("200", "503")}
            rec = recovery(run["probes"], run["t_stop"], 1.5 * p50)
            entry = {"rate_per_s": round(rate, 2), "duration_s": args.phase_s, **s,
                     "admitted_p99_limit_ms": round(3 * p50, 1),
                     "admitted_p99_over_capacity_p50": round(s["latency_ms"]["p99"] / p50, 2)
                     if s["latency_ms"]["p99"] else None,
                     "admitted_p99_from_scheduled_ms": summarise(run["records"], run["t0"], max(ends),
                                                                 from_sched=True)["latency_ms"]["p99"],
                     "other_than_200_503": bad,
                     "errors_5xx_sample": sorted({r.get("detail", "") for r in run["records"]
                                                  if _is_5xx_not_503(r["status"])})[:3],
                     "recovery": rec, "machine_cpu": cpu, "timeline": timeline(run["records"], run["t0"])}
            report["overload"][name] = entry
            checks[f"overload_{name}_no_5xx_but_503"] = not any(_is_5xx_not_503(r["status"]) for r in run["records"])
            checks[f"overload_{name}_503_for_excess"] = s["status_counts"].get("503", 0) > 0
            checks[f"overload_{name}_no_client_errors"] = not any(isinstance(r["status"], str)
                                                                  for r in run["records"])
            checks[f"overload_{name}_admitted_p99_le_3x_p50"] = (s["latency_ms"]["p99"] is not None
                                                                 and s["latency_ms"]["p99"] <= 3 * p50)
            checks[f"overload_{name}_back_to_normal_le_10s"] = (rec["seconds_to_normal"] is not None
                                                                and rec["seconds_to_normal"] <= 10.0)
            print(f"  {s['status_counts']}; admitted p50 {s['latency_ms']['p50']} p99 {s['latency_ms']['p99']} ms "
                  f"(limit {3 * p50:.0f}); normal after {rec['seconds_to_normal']} s", flush=True)

    if "alias" in phases and "alerts" in cap:
        cpu = cpu_times()
        if args.alias_loop == "closed":
            # the busiest level that nothing was refused at: a refusal here would be the load's, not the move's
            clients = max((x["concurrency"] for x in cap["alerts"]["curve"] if x["ok"] == x["requests"]), default=1)
            load = {"loop": "closed", "clients": clients}
            print(f"alias move under load: {clients} clients in a closed loop for {args.phase_s:.0f} s", flush=True)
            recs, t0, _, act = asyncio.run(closed_loop(base_url, routes["alerts"], clients, args.phase_s,
                                                       args.timeout_s, at_fraction=1 / 3, action=mover.move))
        else:
            rate = args.alias_load * cap["alerts"]["capacity_ok_per_s"]
            load = {"loop": "open", "rate_per_s": round(rate, 2)}
            print(f"alias move under load: {rate:.1f}/s for {args.phase_s:.0f} s", flush=True)
            run = asyncio.run(open_loop(base_url, routes["alerts"], rate, args.phase_s, args.timeout_s,
                                        at_fraction=1 / 3, action=mover.move))
            recs, t0, act = run["records"], run["t0"], run["action"]
        cpu = cpu_share(cpu, cpu_times())
        if not mover.scratch:
            mover.restore()
        s = summarise(recs, t0, max(r["end"] for r in recs))
        versions = sorted({r["rb_version"] for r in recs if r.get("rb_version") is not None})
        new = act["result"]
        first_new = min((r["end"] for r in recs if r.get("rb_version") == new), default=None)
        failed = [r for r in recs if r["status"] != 200]
        report["alias_move"] = {
            **load, "duration_s": args.phase_s, **s,
            "version_before": mover.before, "version_after": new, "versions_seen": versions,
            "responses_per_version": {str(v): sum(r.get("rb_version") == v for r in recs) for v in versions},
            "registering_s": round(act["end"] - act["start"], 2),
            "new_version_first_answer_after_move_s": None if first_new is None else round(first_new - act["end"], 2),
            "failed_requests": len(failed), "alias_restored_to": None if mover.scratch else mover.before,
            "move_at_s": round(act["start"] - t0, 2), "machine_cpu": cpu, "timeline": timeline(recs, t0)}
        checks["alias_move_zero_failed"] = not failed
        checks["alias_move_both_versions_seen"] = mover.before in versions and new in versions
        print(f"  failed {len(failed)}; versions {report['alias_move']['responses_per_version']}", flush=True)

    if "soak" in phases and "alerts" in cap:
        rate = args.soak_load * cap["alerts"]["capacity_ok_per_s"]
        print(f"soak: {rate:.1f}/s on /alerts for {args.soak_s:.0f} s, RSS every {args.rss_every_s} s", flush=True)
        sampler = RssSampler(args.rss_every_s)
        sampler.start()
        run = asyncio.run(open_loop(base_url, routes["alerts"], rate, args.soak_s, args.timeout_s))
        sampler.stopped.set()
        sampler.join()
        recs = run["records"]
        report["soak"] = {"rate_per_s": round(rate, 2), "duration_s": args.soak_s,
                          **summarise(recs, run["t0"], max(r["end"] for r in recs)), "rss": sampler.report()}
        tot = report["soak"]["rss"]["replicas_total"]
        print(f"  {report['soak']['status_counts']}; replicas RSS {tot.get('first_mb')} -> {tot.get('last_mb')} MB, "
              f"slope {tot.get('slope_mb_per_min')} MB/min", flush=True)

    _print_summary(report)
    return 0 if all(checks.values()) else 1


def _print_summary(report: dict) -> None:
    print("\nsummary")
    for name, c in report.get("capacity", {}).items():
        a = c["at_capacity"]
        print(f"  capacity {name}: {c['capacity_ok_per_s']:.2f} req/s (at c={a['concurrency']}: "
              f"p50 {a['p50_ms']} ms, p99 {a['p99_ms']} ms)")
    for key, ok in report["checks"].items():
        print(f"  {'PASS' if ok else 'FAIL'}  {key}")


if __name__ == "__main__":
    raise SystemExit(main())
