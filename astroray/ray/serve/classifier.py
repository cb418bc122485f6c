"""The light-curve classifier deployment behind ``/classify``: batched, reloading when the alias moves.

Requests (lists of light curves as JSON) are checked one by one, so a bad
light curve is a 422 for its own request only; the good ones are gathered by
``@serve.batch`` into one forward pass of
:class:`~astroray.models.lc_transformer.LightCurveClassifier`.  Every
``reload_check_s`` seconds a batch first asks the registry where the alias
points; when it has moved (a new champion), the new version is loaded and
swapped in, the requests of that batch already answered by it.
"""
from __future__ import annotations

import time

import numpy as np
from ray import serve

from astroray.errors import ConfigError, InvalidInputError, InvalidLightCurveError
from astroray.ray.serve.http import UserError, logger, user_errors_as_values

__all__ = ["LightCurveClassifierDeployment", "lightcurve_from_json"]


def lightcurve_from_json(item: dict, index: int = 0):
    """A :class:`~astroray.records.LightCurve` from one JSON light curve (``flux`` null: an upper limit;
    ``detected`` missing: every point with a flux is a detection).

    Raises
    ------
    InvalidLightCurveError
        Lists of unequal length, a NaN or infinite time (the message names the light curve).
    """
    from astroray.records import LightCurve

    oid = str(item.get("object_id") or f"lightcurves[{index}]")
    flux = np.array([np.nan if v is None else v for v in item["flux"]], dtype=np.float64)
    detected = item.get("detected")
    if detected is None:
        detected = np.isfinite(flux)
    lengths = {name: len(item[name]) for name in ("mjd", "band", "flux", "flux_err")}
    lengths["detected"] = len(detected)
    if len(set(lengths.values())) > 1:
        raise InvalidLightCurveError(f"lists of unequal length {lengths}: give one value per point in each",
                                     source=f"lightcurves[{index}] ({oid})")
    try:
        return LightCurve(oid, item["mjd"], item["band"], flux, item["flux_err"], detected)
    except InvalidInputError as exc:
        raise InvalidLightCurveError(exc.reason, source=f"lightcurves[{index}] ({oid})") from None


@serve.deployment(name="classifier", max_ongoing_requests=32)
class LightCurveClassifierDeployment:
    """Calibrated class probabilities of light curves from ``models:/astroray-lc-transformer@champion``.

    Parameters
    ----------
    classifier_config : dict
        :class:`~astroray.models.lc_transformer.LightCurveClassifierConfig` (model URI, store, device).
    max_batch_size, batch_wait_timeout_s
        ``@serve.batch``: requests gathered into one forward pass.
    reload_check_s : float
        How often a batch first checks where the alias points (0: every batch).
    rare_events_config : dict, optional
        :class:`~astroray.models.rare_events.RareEventScorerConfig` of a rare-event model scored beside the
        classifier (its alias checked as often); not registered: predictions carry no rare-event part.
    """

    def __init__(self, classifier_config: dict, *, max_batch_size: int = 64, batch_wait_timeout_s: float = 0.01,
                 reload_check_s: float = 30.0, rare_events_config: dict | None = None):
        from astroray.models.lc_transformer import LightCurveClassifier, LightCurveClassifierConfig

        self.config = LightCurveClassifierConfig.model_validate(classifier_config)
        self._load = LightCurveClassifier
        self.classifier = None
        self.missing = ""
        try:
            self.classifier = LightCurveClassifier(self.config)
        except ConfigError as exc:  # nothing registered yet: serve 503 until a champion appears
            self.missing = str(exc)
            logger.warning("light-curve classifier: %s; /classify answers 503 until it is registered", exc)
        self.rare = None
        if rare_events_config is not None:
            from astroray.models.rare_events import RareEventScorer

            try:
                self.rare = RareEventScorer(rare_events_config)
            except ConfigError as exc:
                logger.warning("rare-event model: %s; /classify answers without it", exc)
        self.reload_check_s = float(reload_check_s)
        self._checked = time.monotonic()
        self._classify_batch.set_max_batch_size(int(max_batch_size))
        self._classify_batch.set_batch_wait_timeout_s(float(batch_wait_timeout_s))

    @property
    def version(self) -> int | None:
        return None if self.classifier is None else self.classifier.version

    def reload_if_moved(self) -> bool:
        """Load the version the alias now names, if it moved; True if it did."""
        from astroray.tracking import moved_alias

        self._checked = time.monotonic()
        rare_moved = self.rare is not None and self.rare.reload_if_moved()
        if moved_alias(self.config.model_uri, self.version, uri=self.config.tracking_uri) is None:
            return rare_moved
        self.classifier = self._load(self.config)  # one assignment: a batch sees the old model or the new
        return True

    def model_info(self) -> dict:
        if self.classifier is None:
            return {"name": None, "version": None, "classes": [], "calibrated": False}
        return {"name": self.classifier.info.get("name"), "version": self.classifier.version,
                "classes": list(self.classifier.classes), "calibrated": self.classifier.calibrated}

    @user_errors_as_values
    async def classify(self, lightcurves: list[dict]) -> dict:
        """Classify one request's light curves (JSON dicts); bad input comes back as a :class:`UserError`."""
        if self.classifier is None and (self.reload_check_s == 0 or
                                        time.monotonic() - self._checked >= min(self.reload_check_s, 5.0)):
            self.reload_if_moved()
        if self.classifier is None:
            return UserError(f"no light-curve model to serve yet ({self.missing}); train and register one with "
                             "jobs/train_lightcurves.py", status=503)
        if not lightcurves:
            raise InvalidInputError("no light curves in the request: send at least one")
        records = [lightcurve_from_json(item, i) for i, item in enumerate(lightcurves)]
        return await self._classify_batch(records)

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.01)
    async def _classify_batch(self, requests: list[list]) -> list:
        if time.monotonic() - self._checked >= self.reload_check_s:
            self.reload_if_moved()
        classifier, rare = self.classifier, self.rare
        lightcurves = [lc for request in requests for lc in request]
        try:
            preds = classifier.run(lightcurves)
            scores = None if rare is None else rare.run(lightcurves)
        except InvalidInputError:  # one request's light curve must not fail the others: answer each alone
            out = []
            for request in requests:
                try:
                    out.append(self._answer(classifier.run(request), None if rare is None else rare.run(request),
                                            0, len(request)))
                except InvalidInputError as exc:
                    out.append(UserError(str(exc)))
            return out
        out, start = [], 0
        for request in requests:
            out.append(self._answer(preds, scores, start, len(request)))
            start += len(request)
        return out

    @staticmethod
    def _answer(preds, rare, start: int, n: int) -> dict:
        """The response of the ``n`` light curves from ``start`` (``rare``: the rare-event scores, or None)."""
        classes = list(preds.classes)
        predicted = preds.predicted
        rows = []
        for i in range(start, start + n):
            p = preds.probabilities[i]
            rows.append({"object_id": str(preds.object_ids[i]), "predicted_class": str(predicted[i]),
                         "probability": float(p.max()), "probabilities": dict(zip(classes, map(float, p))),
                         "n_points": int(preds.n_points[i]),
                         "rare_events": None if rare is None else _rare_part(rare, i)})
        out = {"model_name": preds.model.get("name"), "model_version": preds.model.get("version"),
               "calibrated": bool(preds.calibrated), "classes": classes, "predictions": rows}
        if rare is not None:
            out["rare_events_model"] = {"name": rare.model.get("name"), "version": rare.model.get("version"),
                                        "classes": list(rare.classes)}
        return out


def _rare_part(rare, i: int) -> dict:
    """Row ``i`` of :class:`~astroray.models.rare_events.RareEventScores` as a ``RareEventPrediction`` (JSON has
    no NaN: null)."""
    def finite(v):
        return v if not isinstance(v, float) or np.isfinite(v) else None

    rec = rare.record(i)
    out = {k: finite(v) for k, v in rec.items() if k != "probabilities"}
    out["probabilities"] = {c: finite(v) for c, v in rec["probabilities"].items()}
    return out
