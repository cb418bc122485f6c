"""The real/bogus deployment behind ``/realbogus``: batched, its model set by reconfigure, reloaded on a new alias.

Each request's stamps (base64 ``.npy`` or nested lists) are decoded and
checked on their own (:func:`stamps_from_request`: numeric, 3-D or 4-D, within
the caps), so bad input is a 4xx for its own request only; the good ones are
gathered by ``@serve.batch`` into one forward pass of the
:class:`~astroray.models.scoring.StampScorer`.

The scorer's config arrives as the deployment's ``user_config``
(:meth:`RealBogusDeployment.reconfigure`): ``serve deploy`` with a new
``model_uri`` swaps the model in place, without restarting replicas, and the
same config again makes the replica look up where the alias points now.
Every ``reload_check_s`` seconds a batch also asks the registry first, so a
new champion is picked up without any redeploy.
"""
from __future__ import annotations

import base64
import binascii
import io
import time

import numpy as np
from ray import serve

from astroray.errors import InvalidInputError
from astroray.ray.serve.http import UserError

__all__ = ["RealBogusDeployment", "stamps_from_request", "decode_npy", "scorer_user_config"]


class _TooLarge(InvalidInputError):
    """Input over a size cap: HTTP 413."""


def decode_npy(text: str, *, max_bytes: int | None = None) -> np.ndarray:
    """A numeric array from base64 of a ``.npy`` file, its header checked against the data before any allocation.

    Raises
    ------
    InvalidInputError
        Not base64, not ``.npy``, a pickled or non-numeric dtype, or a header
        whose shape does not match the bytes that follow.
    """
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInputError("stamps: not valid base64 (send base64 of a .npy file, or nested lists)") from None
    if max_bytes is not None and len(raw) > max_bytes:
        raise _TooLarge(f"stamps: {len(raw)} bytes exceed the limit of {max_bytes}")
    fh = io.BytesIO(raw)
    fmt = np.lib.format
    try:
        major, _ = fmt.read_magic(fh)
        read_header = fmt.read_array_header_1_0 if major == 1 else fmt.read_array_header_2_0
        shape, fortran, dtype = read_header(fh, max_header_size=10_000)
    except (ValueError, OSError, SyntaxError) as exc:
        raise InvalidInputError(f"stamps: not a .npy file ({exc})") from None
    if dtype.hasobject or dtype.kind not in "fiu":
        raise InvalidInputError(f"stamps: dtype {dtype} is not numeric (send float32)")
    count = int(np.prod(shape, dtype=np.int64))
    data = raw[fh.tell():]
    if count * dtype.itemsize != len(data):
        raise InvalidInputError(f"stamps: the .npy header says {shape} {dtype} ({count * dtype.itemsize} bytes) "
                                f"but {len(data)} bytes follow")
    arr = np.frombuffer(data, dtype=dtype, count=count)
    return arr.reshape(shape, order="F" if fortran else "C")


def stamps_from_request(stamps, *, n_channels: int, max_stamps: int, max_stamp_px: int) -> np.ndarray:
    """A request's stamps as float32 ``(n, C, H, W)``: base64 ``.npy`` or nested lists (null: NaN).

    Raises
    ------
    InvalidInputError
        Undecodable, ragged, non-numeric or of the wrong number of dimensions
        or channels (HTTP 422); more than ``max_stamps`` candidates or a side
        over ``max_stamp_px`` (HTTP 413).
    """
    if isinstance(stamps, str):
        side = max_stamp_px * max_stamp_px * n_channels * 8
        arr = decode_npy(stamps, max_bytes=max_stamps * side + 4096)
    else:
        try:
            arr = np.array(stamps, dtype=np.float32)
        except (ValueError, TypeError):
            raise InvalidInputError("stamps: nested lists of unequal lengths (each stamp must be C x S x S)") from None
    arr = np.asarray(arr, np.float32)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[1] != n_channels:
        raise InvalidInputError(f"stamps must be (n, {n_channels}, S, S) or ({n_channels}, S, S) in the model's "
                                f"channel order, got shape {tuple(arr.shape)}")
    if len(arr) > max_stamps:
        raise _TooLarge(f"{len(arr)} stamps exceed the limit of {max_stamps} per request (max_stamps)")
    if max(arr.shape[-2:]) > max_stamp_px:
        raise _TooLarge(f"stamps of {arr.shape[-2]}x{arr.shape[-1]} px exceed the limit of {max_stamp_px} px "
                        "(max_stamp_px)")
    return arr


def scorer_user_config(section) -> dict:
    """The ``user_config`` of a :class:`RealBogusDeployment` from the ``realbogus:`` section, the store absolute
    (replicas may not share this process's ``ASTRORAY_HOME``)."""
    from astroray.models.scoring import StampScorerConfig
    from astroray.tracking import tracking_uri

    scorer = {k: getattr(section, k) for k in StampScorerConfig.model_fields}
    scorer["tracking_uri"] = tracking_uri(section.tracking_uri)
    return {"scorer": StampScorerConfig(**scorer).model_dump(mode="json"), "reload_check_s": section.reload_check_s,
            "max_stamps": section.max_stamps, "max_stamp_px": section.max_stamp_px}


@serve.deployment(name="realbogus", max_ongoing_requests=32)
class RealBogusDeployment:
    """Real/bogus scores of candidate stamps from a registered model (``models:/astroray-realbogus@champion``).

    Parameters
    ----------
    max_batch_size, batch_wait_timeout_s
        ``@serve.batch``: requests gathered into one forward pass.

    The model comes from ``user_config`` (:func:`scorer_user_config`), applied by :meth:`reconfigure`.
    """

    def __init__(self, *, max_batch_size: int = 64, batch_wait_timeout_s: float = 0.01):
        self.scorer = None
        self.user_config: dict = {}
        self.reload_check_s = 30.0
        self.max_stamps, self.max_stamp_px = 4096, 256
        self._checked = time.monotonic()
        self._score_batch.set_max_batch_size(int(max_batch_size))
        self._score_batch.set_batch_wait_timeout_s(float(batch_wait_timeout_s))

    def reconfigure(self, user_config: dict) -> None:
        """Apply a config: a new scorer when its options changed, else a look at where the alias points now."""
        from astroray.models.scoring import StampScorer

        scorer_config = user_config.get("scorer") or {}
        self.reload_check_s = float(user_config.get("reload_check_s", 30.0))
        self.max_stamps = int(user_config.get("max_stamps", 4096))
        self.max_stamp_px = int(user_config.get("max_stamp_px", 256))
        if self.scorer is None or scorer_config != self.user_config.get("scorer"):
            self.scorer = StampScorer(scorer_config)  # one assignment: a batch sees the old scorer or the new
        else:
            self.scorer.reload_if_moved()
        self.user_config = dict(user_config)
        self._checked = time.monotonic()

    def model_info(self) -> dict:
        scorer = self.scorer
        return {"name": scorer.info.get("name"), "version": scorer.version, "threshold": float(scorer.threshold),
                "channels": list(scorer.channels), "stamp_size": scorer.stamp_size}

    def reload_if_moved(self) -> bool:
        """Load the version the alias now names, if it moved; True if it did."""
        self._checked = time.monotonic()
        return self.scorer.reload_if_moved()

    async def score(self, stamps, ids: list[str] | None = None) -> dict | UserError:
        """Score one request's stamps; bad input comes back as a :class:`UserError` (422, or 413 over a cap)."""
        try:
            arr = self._prepare(stamps, ids)
        except _TooLarge as exc:
            return UserError(str(exc), status=413)
        except InvalidInputError as exc:
            return UserError(str(exc))
        scores, info = await self._score_batch(arr)
        finite = np.isfinite(scores)
        threshold = float(info["threshold"])
        return {"model_name": info["name"], "model_version": info["version"], "threshold": threshold,
                "ids": list(ids) if ids is not None else [str(i) for i in range(len(arr))],
                "scores": [float(s) if ok else None for s, ok in zip(scores, finite)],
                "real": [bool(ok and s >= threshold) for s, ok in zip(scores, finite)]}

    def _prepare(self, stamps, ids) -> np.ndarray:
        from astroray.models.scoring import fit_stamps

        scorer = self.scorer
        arr = stamps_from_request(stamps, n_channels=len(scorer.channels), max_stamps=self.max_stamps,
                                  max_stamp_px=self.max_stamp_px)
        if ids is not None and len(ids) != len(arr):
            raise InvalidInputError(f"{len(ids)} ids for {len(arr)} stamps: give one id per stamp, or none")
        return scorer.stack(fit_stamps(arr, scorer.stamp_size))  # every request at the model's size: one batch

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.01)
    async def _score_batch(self, requests: list[np.ndarray]) -> list:
        if time.monotonic() - self._checked >= self.reload_check_s:
            self.reload_if_moved()
        scorer = self.scorer
        sizes = [len(r) for r in requests]
        out = scorer.run(np.concatenate(requests)) if sum(sizes) else scorer.run(requests[0])
        info = {"name": out.model.get("name"), "version": out.model.get("version"), "threshold": out.threshold}
        bounds = np.cumsum([0] + sizes)
        return [(out.scores[a:b], info) for a, b in zip(bounds[:-1], bounds[1:])]
