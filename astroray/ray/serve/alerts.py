"""The alert deployment behind ``/alerts``: packets in, every score of :class:`~astroray.models.alert_scoring.AlertScorer` out.

A request body is one or many ZTF or Rubin alert packets as sent by the
surveys and brokers: an Avro container file (``application/avro`` or
``application/octet-stream``), JSON (one packet, a list of packets, or JSON
lines), or Parquet (Fink's alert tables).  The body is parsed here, in the
replica (:func:`astroray.io.read_alerts`: the same reader as the batch job),
so a malformed packet is a 422 for its own request only; the alerts of
concurrent requests are then gathered by ``@serve.batch`` into one pass of
each model.

Models come by registry alias.  Every ``reload_check_s`` seconds a batch first
asks the registry where the aliases point; a model whose alias moved is loaded
and swapped in by one assignment, so requests in flight are answered by the
old version or the new, never failed.  A model not registered yet makes the
replica answer 503 with what to run, and it is looked for again every few
seconds.
"""
from __future__ import annotations

import asyncio
import time

from ray import serve

from astroray.errors import ConfigError, InvalidInputError
from astroray.ray.serve.http import UserError, logger

__all__ = ["AlertsDeployment"]


@serve.deployment(name="alerts", max_ongoing_requests=8, max_queued_requests=8)
class AlertsDeployment:
    """Real/bogus, class, rare-event and anomaly scores of alert packets.

    Parameters
    ----------
    scorer_config : dict
        :class:`~astroray.models.alert_scoring.AlertScorerConfig` (the stores absolute).
    max_alerts : int
        Alerts per request (more: 413).
    max_batch_size : int
        Requests gathered into one pass (``@serve.batch``).
    batch_wait_timeout_s : float
    reload_check_s : float
        How often a batch first checks where the aliases point (0: every batch).
    read_limits : dict, optional
        :class:`~astroray.io.limits.ReadLimits` for parsing a body (gzip expansion, JSON depth).
    """

    def __init__(self, scorer_config: dict, *, max_alerts: int = 1000, max_batch_size: int = 8,
                 batch_wait_timeout_s: float = 0.005, reload_check_s: float = 30.0, read_limits: dict | None = None):
        from astroray.io.limits import ReadLimits, current_limits

        self.scorer_config = scorer_config
        self.max_alerts = int(max_alerts)
        self.reload_check_s = float(reload_check_s)
        self.read_limits = ReadLimits.model_validate(read_limits) if read_limits else current_limits()
        self.scorer = None
        self.missing = ""
        self._checked = time.monotonic()
        self._load()
        self._score_batch.set_max_batch_size(int(max_batch_size))
        self._score_batch.set_batch_wait_timeout_s(float(batch_wait_timeout_s))

    def _load(self) -> None:
        from astroray.models.alert_scoring import AlertScorer

        self._checked = time.monotonic()
        try:
            self.scorer = AlertScorer(self.scorer_config)
            self.missing = ""
        except ConfigError as exc:  # a model not registered yet: 503 until it is
            self.missing = str(exc)
            logger.warning("alerts: %s; /alerts answers 503 until it is registered", exc)

    def model_info(self) -> dict:
        scorer = self.scorer
        return {} if scorer is None else scorer.models()

    def reload_if_moved(self) -> list[str]:
        """Load each model whose alias moved; the sections reloaded."""
        self._checked = time.monotonic()
        return [] if self.scorer is None else self.scorer.reload_if_moved()

    def parse(self, body: bytes) -> list:
        """The alerts of a request body.

        Raises
        ------
        InvalidInputError
            Empty, not an alert format, or a malformed packet (the message says which and why).
        """
        from astroray.io import read_alerts
        from astroray.io.limits import using_limits

        if not body:
            raise InvalidInputError("the request body is empty: send Avro, JSON or Parquet alert packets")
        with using_limits(self.read_limits):
            alerts = read_alerts(body, name="request body")
        if not alerts:
            raise InvalidInputError("the request body holds no alerts")
        return alerts

    async def score(self, body: bytes) -> dict | UserError:
        """Score one request's packets; bad input comes back as a :class:`UserError` (422, 413 or 503)."""
        if self.scorer is None:
            if time.monotonic() - self._checked >= min(self.reload_check_s, 5.0):
                self._load()
            if self.scorer is None:
                return UserError(f"alert scoring is not available yet ({self.missing}); train and register the "
                                 "models (make demo, or the jobs/train_*.py jobs)", status=503)
        try:
            alerts = await asyncio.get_running_loop().run_in_executor(None, self.parse, body)
        except InvalidInputError as exc:
            return UserError(str(exc))
        if len(alerts) > self.max_alerts:
            return UserError(f"{len(alerts)} alerts exceed the limit of {self.max_alerts} per request (max_alerts): "
                             "split the packets over several requests", status=413)
        return await self._score_batch(alerts)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.005)
    async def _score_batch(self, requests: list[list]) -> list[dict]:
        loop = asyncio.get_running_loop()
        if time.monotonic() - self._checked >= self.reload_check_s:
            # off the event loop: the registry query (and a new model's load) must not stall accepting requests
            self._checked = time.monotonic()
            await loop.run_in_executor(None, self.reload_if_moved)
        scorer = self.scorer
        flat = [a for request in requests for a in request]
        result = await loop.run_in_executor(None, scorer.run, flat)
        rows = result.to_dicts()
        out, start = [], 0
        for request in requests:
            part = rows[start:start + len(request)]
            start += len(request)
            out.append({"n_alerts": len(part), "models": result.models, "classes": list(result.classes),
                        "rare_classes": list(result.rare_classes), "alerts": part})
        return out
