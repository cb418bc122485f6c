"""Scorers: configure once with a model from the registry, then score batches (Ray Data, Serve and tests alike).

:class:`StampScorer` loads a real/bogus model by URI (``models:/astroray-realbogus@champion``
by default) once and scores candidates' stamps on the CPU or a GPU: a
``(n, channels, S, S)`` array, or a dict of per-channel ``(n, S, S)`` arrays
(alert cutouts), in batches.  ``scorer(stamps)`` is what the image pipeline is
handed (it never imports torch itself).  :meth:`StampScorer.reload_if_moved`
reloads when the alias has moved to another version.
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

__all__ = ["StampScorerConfig", "StampScores", "StampScorer", "DEFAULT_REALBOGUS_URI"]

DEFAULT_REALBOGUS_URI = "models:/astroray-realbogus@champion"


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

    def reload_if_moved(self) -> bool:
        """Reload when the configured alias now points at another version; True if it did."""
        from astroray.tracking import alias_version, parse_model_uri

        if not self.config.model_uri.startswith("models:/"):
            return False
        name, alias = parse_model_uri(self.config.model_uri)
        if alias is None:
            return False
        current = alias_version(name, alias=alias, uri=self.config.tracking_uri)
        if current is None or current == self.version:
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
                chunk = torch.from_numpy(np.ascontiguousarray(arr[start:start + self.config.batch_size]))
                out[start:start + len(chunk)] = model(chunk.to(self.device)).float().cpu().numpy()
        real = np.where(np.isfinite(out), out >= threshold, False)
        return StampScores(out, real, float(threshold),
                           {k: info.get(k) for k in ("name", "version", "run_id", "uri")})
