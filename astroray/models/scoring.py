"""Scorers: configure once with a model from the registry, then score batches (Ray Data, Serve and tests alike).

:class:`StampScorer` loads a real/bogus model by URI (``models:/astroray-realbogus@champion``
by default) once and scores candidates' stamps on the CPU or a GPU: a
``(n, channels, S, S)`` array, or a dict of per-channel ``(n, S, S)`` arrays
(alert cutouts), in batches.  ``scorer(stamps)`` is what the image pipeline is
handed (it never imports torch itself).  :meth:`StampScorer.reload_if_moved`
reloads when the alias has moved to another version.

:func:`fit_stamps` and :meth:`StampScorer.alert_stamps` bring stamps of other
sizes (Rubin's 30 px cutouts, ZTF's 63x62 ones at a CCD edge) to the model's
size: centre-cropped or padded with NaN (the model treats NaN as masked).
:func:`resolve_model` reads a registry URI's version and threshold without
torch, for drivers that hand a pinned ``models:/NAME/VERSION`` to their workers.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
from pydantic import Field

from astroray.config import AstrorayConfig, Device
from astroray.errors import InvalidInputError
from astroray.stage import Stage

__all__ = ["StampScorerConfig", "StampScores", "StampScorer", "DEFAULT_REALBOGUS_URI", "ALERT_CUTOUTS", "difference_cutout_sign",
           "hold_torch_threads",
           "fit_stamp", "fit_stamps", "resolve_model"]

DEFAULT_REALBOGUS_URI = "models:/astroray-realbogus@champion"


ALERT_CUTOUTS = {"science": "cutout_science", "reference": "cutout_reference", "difference": "cutout_difference"}
"""The :class:`~astroray.records.Alert` cutout of each stamp channel (alerts carry no S_corr stamp)."""


def hold_torch_threads(threads: int | None) -> None:
    """Put torch's intra-op thread count back to ``threads`` (if given) where something in the process moved it.

    Seen here: after the real/bogus model's first batch (its input goes through a parallel Numba kernel on
    OpenMP) torch reported both cores again, and the models after it ran two threads against the other
    actor's on two cores, 3-10x slower.  Reading and setting the count costs well under a microsecond.
    """
    if threads:
        import torch

        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


def difference_cutout_sign(alert) -> float:
    """-1 for a ZTF alert on a negative difference (``isdiffpos`` 'f'), else 1.

    ZTF cuts such a candidate's difference stamp from the inverted difference
    (template - science, the image it was detected on), where the source is
    positive; the models read science - reference, as the pipeline makes it.
    """
    from astroray.io.ztf import is_positive_difference

    if getattr(alert, "survey", None) == "ztf" and not is_positive_difference(alert.meta.get("isdiffpos")):
        return -1.0
    return 1.0

MIN_STAMP_SIZE = 15


def fit_stamps(stamps, size: int) -> np.ndarray:
    """Stamps ``(..., H, W)`` as ``(..., size, size)`` float32: centre-cropped where larger, padded with NaN where
    smaller (each axis on its own).

    The padding splits as the model's own does (the smaller half first), so a
    stamp padded here scores as it would unpadded.

    Raises
    ------
    InvalidInputError
        Fewer than 2 dimensions, or a side below 15 pixels.
    """
    arr = np.asarray(stamps, np.float32)
    if arr.ndim < 2:
        raise InvalidInputError(f"a stamp must be 2-D, got shape {arr.shape}")
    h, w = arr.shape[-2:]
    if min(h, w) < MIN_STAMP_SIZE:
        raise InvalidInputError(f"a stamp of {h}x{w} px is too small (at least {MIN_STAMP_SIZE} px a side)")
    if (h, w) == (size, size):
        return arr
    out = np.full(arr.shape[:-2] + (size, size), np.nan, np.float32)
    src, dst = [], []
    for n in (h, w):
        if n >= size:
            start = (n - size) // 2
            src.append(slice(start, start + size))
            dst.append(slice(0, size))
        else:
            pad = size - n
            src.append(slice(0, n))
            dst.append(slice(pad // 2, pad // 2 + n))
    out[(..., *dst)] = arr[(..., *src)]
    return out


def fit_stamp(stamp, size: int) -> np.ndarray:
    """One 2-D stamp as ``(size, size)`` (:func:`fit_stamps`)."""
    arr = np.asarray(stamp, np.float32)
    if arr.ndim != 2:
        raise InvalidInputError(f"a stamp must be 2-D, got shape {arr.shape}")
    return fit_stamps(arr, size)


def resolve_model(model_uri: str, *, tracking_uri: str | None = None) -> dict:
    """What a registry URI points at now, without loading the model (no torch).

    Returns ``name``, ``version``, ``run_id``, ``uri`` (the requested one),
    ``pinned_uri`` (``models:/NAME/VERSION``; the URI itself when it is not a
    registry URI) and ``metadata`` (with the ``threshold`` logged at training).

    Raises
    ------
    ConfigError
        No such model, version or alias in the store (the message names the store).
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    from astroray.errors import ConfigError
    from astroray.tracking import parse_model_uri
    from astroray.tracking import tracking_uri as resolve_tracking_uri

    target = resolve_tracking_uri(tracking_uri)
    client = mlflow.MlflowClient(tracking_uri=target)
    info = {"uri": model_uri, "name": None, "version": None, "run_id": None, "pinned_uri": model_uri,
            "metadata": {}}
    try:
        if model_uri.startswith("models:/"):
            name, alias = parse_model_uri(model_uri)
            mv = (client.get_model_version_by_alias(name, alias) if alias
                  else client.get_model_version(name, model_uri.rsplit("/", 1)[1]))
            info.update(name=name, version=int(mv.version), run_id=mv.run_id, pinned_uri=f"models:/{name}/{mv.version}")
        mlflow.set_tracking_uri(target)  # get_model_info reads the global store (as load_torch_model does)
        info["metadata"] = dict(mlflow.models.get_model_info(info["pinned_uri"]).metadata or {})
    except MlflowException as exc:
        raise ConfigError(f"cannot load {model_uri} from {target}: {exc.message}") from None
    return info


class StampScorerConfig(AstrorayConfig):
    """Options of :class:`StampScorer`.

    Attributes
    ----------
    model_uri : str
        ``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` or ``runs:/RUN/model``.
    tracking_uri : str or None
        MLflow store (default: ``$MLFLOW_TRACKING_URI`` or ``$ASTRORAY_HOME/mlflow.db``).
    device : {"cpu", "gpu", "auto"}
    batch_size : int
        Stamps per forward pass.
    threshold : float or None
        Real above it; None takes the threshold logged with the model (chosen
        at 1% false positives on validation), else 0.5.
    threads : int or None
        Torch CPU threads (None: torch's default).
    """

    model_uri: str = DEFAULT_REALBOGUS_URI
    tracking_uri: str | None = None
    device: Device = "cpu"
    batch_size: int = Field(default=512, ge=1)
    threshold: float | None = Field(default=None, ge=0, le=1)
    threads: int | None = Field(default=None, ge=1)


@dataclass
class StampScores:
    """What :meth:`StampScorer.run` returns."""

    scores: np.ndarray
    """Real probability per candidate (NaN: nothing finite in its difference stamp)."""
    real: np.ndarray
    """``scores >= threshold`` (False for NaN)."""
    threshold: float
    model: dict = field(default_factory=dict)
    """Name, version, run id and URI of the model that scored."""


class StampScorer(Stage[StampScorerConfig]):
    """Real/bogus scores of candidate stamps from a registered model, loaded once."""

    config_class = StampScorerConfig

    def setup(self) -> None:
        import torch

        from astroray.kernels.backend import resolve_device

        if self.config.threads:
            torch.set_num_threads(self.config.threads)
        self.device = "cuda" if resolve_device(self.config.device) == "gpu" else "cpu"
        self._lock = threading.Lock()
        self._load()

    def _load(self) -> None:
        from astroray.tracking import load_torch_model

        model, info = load_torch_model(self.config.model_uri, device=self.device, uri=self.config.tracking_uri)
        channels = tuple(getattr(getattr(model, "config", None), "channels", ("science", "reference", "difference")))
        threshold = self.config.threshold
        if threshold is None:
            threshold = float(info["metadata"].get("threshold", 0.5))
        with self._lock:  # a swap is atomic for callers: the model, its channels and threshold together
            self.model, self.info, self.channels, self.threshold = model, info, channels, threshold

    @property
    def version(self) -> int | None:
        return self.info.get("version")

    @property
    def stamp_size(self) -> int:
        """The largest stamp side the model reads (smaller stamps are padded)."""
        return int(getattr(getattr(self.model, "config", None), "stamp_size", 63))

    def alert_stamps(self, alerts) -> tuple[np.ndarray, list[str | None]]:
        """The model's channels of each alert's cutouts as ``(n, C, S, S)`` at the model's size, and per alert
        None or the reason it cannot be scored (its rows are NaN).

        Cutouts of other sizes are fitted with :func:`fit_stamp`.
        """
        with self._lock:
            channels = self.channels
        size = self.stamp_size
        out = np.full((len(alerts), len(channels), size, size), np.nan, np.float32)
        reasons: list[str | None] = []
        for i, alert in enumerate(alerts):
            reason = None
            for c, channel in enumerate(channels):
                if channel not in ALERT_CUTOUTS:
                    reason = f"the model reads {channel!r} stamps, which alerts do not carry"
                    break
                stamp = getattr(alert, ALERT_CUTOUTS[channel], None)
                if stamp is None:
                    reason = f"no {channel} cutout"
                    break
                try:
                    out[i, c] = fit_stamp(stamp, size)
                    if channel == "difference":
                        out[i, c] *= difference_cutout_sign(alert)
                except InvalidInputError as exc:
                    reason = f"{channel} cutout: {exc.reason}"
                    break
            if reason is None and not np.isfinite(out[i, channels.index("difference")]
                                                  if "difference" in channels else out[i]).any():
                reason = "no finite pixel in the difference cutout"
            if reason is not None:
                out[i] = np.nan
            reasons.append(reason)
        return out, reasons

    def reload_if_moved(self) -> bool:
        """Reload when the configured alias now points at another version; True if it did."""
        from astroray.tracking import moved_alias

        if moved_alias(self.config.model_uri, self.version, uri=self.config.tracking_uri) is None:
            return False
        self._load()
        return True

    def stack(self, stamps) -> np.ndarray:
        """``(n, C, S, S)`` float32 from an array or a mapping of channel name -> ``(n, S, S)``."""
        with self._lock:
            channels = self.channels
        if isinstance(stamps, Mapping):
            missing = [c for c in channels if c not in stamps]
            if missing:
                raise InvalidInputError(f"stamps lack the channel(s) {missing} the model reads ({list(channels)})")
            planes = [np.asarray(stamps[c], np.float32) for c in channels]
            shapes = {p.shape for p in planes}
            if len(shapes) != 1:
                raise InvalidInputError(f"channels have different shapes: {sorted(shapes)}")
            arr = np.stack(planes, axis=1) if planes[0].ndim == 3 else np.stack(planes, axis=0)[None]
        else:
            arr = np.asarray(stamps, np.float32)
        if arr.ndim == 3 and arr.shape[0] == len(channels):
            arr = arr[None]  # one candidate
        if arr.ndim != 4 or arr.shape[1] != len(channels) or arr.shape[2] != arr.shape[3]:
            raise InvalidInputError(f"stamps must be (n, {len(channels)}, S, S) for channels {list(channels)}, "
                                    f"got shape {arr.shape}")
        size = getattr(getattr(self.model, "config", None), "stamp_size", arr.shape[-1])
        if arr.shape[-1] > size:
            raise InvalidInputError(f"stamps of {arr.shape[-1]} px exceed the model's {size} px")
        if arr.shape[-1] < 15:
            raise InvalidInputError(f"stamps of {arr.shape[-1]} px are too small (at least 15)")
        return arr

    def run(self, stamps) -> StampScores:
        """Score candidates; an empty batch gives empty arrays.

        Raises
        ------
        InvalidInputError
            Wrong shapes or missing channels (the message says what the model reads).
        """
        import torch

        arr = self.stack(stamps)
        with self._lock:
            model, threshold, info = self.model, self.threshold, dict(self.info)
        out = np.empty(len(arr), np.float32)
        with torch.inference_mode():
            for start in range(0, len(arr), self.config.batch_size):
                hold_torch_threads(self.config.threads)
                chunk = torch.from_numpy(np.ascontiguousarray(arr[start:start + self.config.batch_size]))
                out[start:start + len(chunk)] = model(chunk.to(self.device)).float().cpu().numpy()
        real = np.where(np.isfinite(out), out >= threshold, False)
        return StampScores(out, real, float(threshold),
                           {k: info.get(k) for k in ("name", "version", "run_id", "uri")})
