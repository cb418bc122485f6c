"""Real/bogus on difference-image stamps: a small U-Net with a segmentation head and a candidate score.

Input: a candidate's stamps, ``(batch, channels, H, W)`` raw pixels (any units;
NaN for missing or masked pixels), channels chosen from :data:`CHANNELS`
(science, reference, difference, and the score image S_corr where the
pipeline made one; ZTF and Rubin alerts carry the first three).

* **Normalisation** (:func:`normalize_stamps`), inside the model so every
  caller gets the same: per stamp and channel, the median is subtracted and
  the result divided by the robust scatter (1.4826 MAD) of the finite pixels
  (a NaN-proof, survey-independent scale: ZOGY's D and ZTF's difference
  images differ by their flux zero point), then ``asinh`` compresses bright
  stars; non-finite pixels become 0 and an extra channel marks the valid ones.
* **U-Net** (:class:`UNet`): ``depth`` levels of two 3x3 conv blocks, max
  pooling down and transposed convolutions up with skip connections; a 1x1
  segmentation head gives per-pixel logits of :data:`SEG_CLASSES`
  (background, transient, artifact) and a candidate head on the bottleneck
  (global mean and max, and the centre) gives the real/bogus logit.
* **Training** (:class:`RealBogusModule`, a LightningModule): binary
  cross-entropy on the candidate label plus ``seg_weight`` times the
  per-pixel cross-entropy where masks exist; augmentation by flips,
  90-degree rotations and Gaussian noise, the same for every channel and the mask.

:class:`RealBogusNet` is the part that scores (normalisation, encoder,
candidate head, sigmoid): what is logged to MLflow and served.  No Ray here.
"""
from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Literal

import numba as nb
import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from astroray.config import AstrorayConfig

if TYPE_CHECKING:
    from astroray.models.lightning_modules import RealBogusModule, gather_varlen  # noqa: F401

__all__ = [
    "BLANK_LIMIT",
    "CHANNELS",
    "SEG_CLASSES",
    "RealBogusConfig",
    "RealBogusModule",
    "RealBogusNet",
    "UNet",
    "collate_stamps",
    "normalize_stamps",
    "normalize_stamps_torch",
]

CHANNELS = ("science", "reference", "difference", "score")
"""Stamp channels a candidate can have; the model reads those of its config, in that order."""

BLANK_LIMIT = np.float32(1e30)
"""Pixels at or beyond this magnitude are blanks, like NaN (float32 fill values such as ZTF's -3.4e38 in
cutouts), so one does not overflow a stamp's scaling."""
Z_LIMIT = np.float32(1e30)
"""Scaled values are clipped here before ``asinh`` (a near-constant stamp can have a tiny scatter)."""

SEG_CLASSES = ("background", "transient", "artifact")
"""Classes of the per-pixel masks (index = class id)."""

Channel = Literal["science", "reference", "difference", "score"]


class RealBogusConfig(AstrorayConfig):
    """The real/bogus model: input, network size, loss and augmentation.

    Attributes
    ----------
    channels : tuple of str
        Input stamps, in order (from :data:`CHANNELS`); alerts from ZTF and
        Rubin carry science, reference and difference.
    stamp_size : int
        Odd stamp side (63 as in ZTF and Rubin alerts); padded to a multiple of ``2**depth``.
    base_width, depth : int
        Channels of the first level (doubled at each of ``depth`` levels).
    dropout : float
        Before the candidate head.
    lr, weight_decay : float
        AdamW.
    seg_weight : float
        Weight of the per-pixel loss (0: candidate labels only).
    augment : bool
        Random flips, 90-degree rotations and noise while training.
    noise_sigma : float
        Gaussian noise added to the normalised stamps while training (their noise is ~1).
    blank_fraction : float
        Fraction of training stamps given a blank (NaN) rectangle off the centre, in every channel, as
        masked bright stars and CCD edges leave in real cutouts (ZTF's often): in simulated pairs masked
        pixels come with artifacts, and a model trained on them alone took any blank patch for one.
    valid_channel : bool
        Add a channel that is 1 where the pixel was finite.
    stem_stride : int
        Stride of the first convolution: 2 runs the U-Net's levels at half resolution (4x cheaper).
    """

    channels: tuple[Channel, ...] = ("science", "reference", "difference")
    stamp_size: int = Field(default=63, ge=15)
    base_width: int = Field(default=8, ge=2, le=128)
    depth: int = Field(default=3, ge=1, le=5)
    dropout: float = Field(default=0.1, ge=0, lt=1)
    lr: float = Field(default=3e-3, gt=0)
    weight_decay: float = Field(default=1e-4, ge=0)
    seg_weight: float = Field(default=0.5, ge=0)
    augment: bool = True
    noise_sigma: float = Field(default=0.1, ge=0)
    blank_fraction: float = Field(default=0.0, ge=0, le=1)
    valid_channel: bool = True
    stem_stride: int = Field(default=2, ge=1, le=2)

    @field_validator("channels")
    @classmethod
    def _distinct(cls, value):
        if not value or len(set(value)) != len(value):
            raise ValueError(f"channels must be distinct and non-empty, got {value!r}")
        return value

    @field_validator("stamp_size")
    @classmethod
    def _odd(cls, value):
        if value % 2 == 0:
            raise ValueError(f"stamp_size must be odd (a centre pixel), got {value}")
        return value

    @property
    def in_channels(self) -> int:
        return len(self.channels) + int(self.valid_channel)

    @property
    def padded_size(self) -> int:
        step = self.stem_stride * 2 ** self.depth
        return -(-self.stamp_size // step) * step


def normalize_stamps(stamps, *, valid_channel: bool = True):
    """Robust per-stamp, per-channel scaling of raw stamps ``(B, C, H, W)`` (a float tensor; NaN allowed).

    ``asinh((x - median) / (1.4826 MAD))`` over each stamp's finite pixels
    (the statistics from every third pixel: the background dominates them
    either way; of an even count the lower middle value, as ``torch.nanmedian``),
    0 where the pixel is not finite (or a blank beyond :data:`BLANK_LIMIT`);
    with ``valid_channel``, a channel marking the valid pixels of every input
    channel is appended.  A channel with no valid pixel becomes all zeros; a
    constant one, zeros too (its scatter is taken as 1).

    CPU tensors go through one fused Numba pass (statistics by selection, one
    write per pixel: the elementwise torch chain cost as much as the network);
    other devices, and ``requires_grad`` inputs, through
    :func:`normalize_stamps_torch`.  The two agree to float32 rounding
    (``tests/models/test_realbogus.py``).
    """
    if stamps.ndim != 4:
        raise ValueError(f"stamps must be (batch, channels, H, W), got {tuple(stamps.shape)}")
    if stamps.device.type != "cpu" or stamps.requires_grad or stamps.numel() == 0:
        return normalize_stamps_torch(stamps, valid_channel=valid_channel)
    return _normalize_cpu(stamps, valid_channel, stamps.shape[-2], stamps.shape[-1])


def normalize_stamps_torch(stamps, *, valid_channel: bool = True):
    """:func:`normalize_stamps` in torch operations (any device; the reference the Numba pass is tested against)."""
    x = stamps.float()
    finite = torch.isfinite(x) & (x.abs() < BLANK_LIMIT)
    sample = torch.where(finite, x, torch.full_like(x, float("nan")))[..., ::3, ::3].flatten(2)
    med = torch.nanmedian(sample, dim=-1).values
    med = torch.where(torch.isfinite(med), med, torch.zeros_like(med))
    mad = torch.nanmedian((sample - med[..., None]).abs(), dim=-1).values * 1.4826
    scale = torch.where(torch.isfinite(mad) & (mad > 0), mad, torch.ones_like(mad))
    z = ((x - med[..., None, None]) / scale[..., None, None]).clamp(-Z_LIMIT, Z_LIMIT)
    z = torch.asinh(torch.where(finite, z, torch.zeros_like(z)))
    if valid_channel:
        z = torch.cat([z, finite.all(dim=1, keepdim=True).to(z.dtype)], dim=1)
    return z


@nb.njit(cache=True, nogil=True)
def _select(buf, n, k):
    """The k-th smallest of ``buf[:n]`` (Hoare's selection; reorders ``buf``)."""
    lo, hi = 0, n - 1
    while lo < hi:
        pivot = buf[(lo + hi) // 2]
        i, j = lo, hi
        while i <= j:
            while buf[i] < pivot:
                i += 1
            while buf[j] > pivot:
                j -= 1
            if i <= j:
                buf[i], buf[j] = buf[j], buf[i]
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            break
    return buf[k]


@nb.njit(cache=True, nogil=True, fastmath=True)
def _asinh32(z):
    """``asinh`` of a finite float32 as ``log(|z| + sqrt(z^2 + 1))`` with the sign put back: within a few ulps
    of torch's, and several times faster than Numba's ``np.arcsinh`` (the normalisation's main cost)."""
    a = abs(z)
    if a > np.float32(1e18):  # a*a would overflow: asinh(a) = log(2a) to float32 precision
        r = np.log(a) + np.float32(0.6931472)
    elif a < np.float32(1e-2):  # log(1 + a) would lose a's digits: the series, exact to float32 here
        r = a * (np.float32(1.0) - a * a / np.float32(6.0))
    else:
        r = np.log(a + np.sqrt(a * a + np.float32(1.0)))
    return r if z >= 0 else -r


@nb.njit(parallel=True, cache=True, nogil=True)
def _normalize_kernel(x, out, oy, ox, valid_channel):
    """``x`` (B, C, H, W) float32 into ``out`` (B, Hp, Wp, C [+1]) at offset (oy, ox); ``out`` is pre-zeroed."""
    nb_, nc, h, w = x.shape
    cap = ((h + 2) // 3) * ((w + 2) // 3)
    for b in nb.prange(nb_):
        buf = np.empty(cap, np.float32)
        for c in range(nc):
            n = 0
            for i in range(0, h, 3):
                for j in range(0, w, 3):
                    v = x[b, c, i, j]
                    if np.isfinite(v) and abs(v) < BLANK_LIMIT:
                        buf[n] = v
                        n += 1
            med = np.float32(0.0)
            scale = np.float32(1.0)
            if n > 0:
                med = _select(buf, n, (n - 1) // 2)
                for k in range(n):
                    buf[k] = abs(buf[k] - med)
                mad = _select(buf, n, (n - 1) // 2) * np.float32(1.4826)
                if np.isfinite(mad) and mad > 0:
                    scale = mad
            for i in range(h):
                for j in range(w):
                    v = x[b, c, i, j]
                    if np.isfinite(v) and abs(v) < BLANK_LIMIT:
                        z = min(max((v - med) / scale, -Z_LIMIT), Z_LIMIT)
                        out[b, oy + i, ox + j, c] = _asinh32(z)
        if valid_channel:
            for i in range(h):
                for j in range(w):
                    ok = np.float32(1.0)
                    for c in range(nc):
                        v = x[b, c, i, j]
                        if not (np.isfinite(v) and abs(v) < BLANK_LIMIT):
                            ok = np.float32(0.0)
                            break
                    out[b, oy + i, ox + j, nc] = ok


def _normalize_cpu(stamps, valid_channel: bool, size_h: int, size_w: int):
    """The Numba pass into a zero canvas of ``size_h x size_w`` (stamp centred as ``F.pad`` would), channels-last."""
    x = np.ascontiguousarray(stamps.detach().float().numpy())
    b, c, h, w = x.shape
    out = np.zeros((b, size_h, size_w, c + int(valid_channel)), np.float32)
    _normalize_kernel(x, out, (size_h - h) // 2, (size_w - w) // 2, bool(valid_channel))
    return torch.from_numpy(out).permute(0, 3, 1, 2)  # NCHW view with channels_last strides


def _conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class UNet(nn.Module):
    """A U-Net: a stem, ``depth`` levels down and up with skips; segmentation logits and a candidate logit.

    The stem is a 3x3 convolution with ``stem_stride`` (2: the levels work on
    half the stamp's resolution, four times fewer operations; its overlapping
    windows still see every pixel, so one-pixel hits stay visible).  Input
    ``(B, in_channels, S, S)`` with ``S`` a multiple of ``stem_stride * 2**depth``;
    segmentation logits come back at ``S``.
    """

    def __init__(self, in_channels: int, *, base_width: int = 8, depth: int = 3, n_classes: int = 3,
                 dropout: float = 0.1, stem_stride: int = 2):
        super().__init__()
        widths = [base_width * 2 ** i for i in range(depth + 1)]
        self.depth = depth
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, stride=stem_stride, padding=1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
        self.down = nn.ModuleList(_conv_block(widths[0] if i == 0 else widths[i - 1], widths[i]) for i in range(depth))
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = _conv_block(widths[depth - 1], widths[depth])
        self.up = nn.ModuleList(nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2)
                                for i in reversed(range(depth)))
        self.decode = nn.ModuleList(_conv_block(2 * widths[i], widths[i]) for i in reversed(range(depth)))
        self.seg_head = nn.Conv2d(widths[0], n_classes, 1)
        self.cls_head = nn.Sequential(nn.Dropout(dropout), nn.Linear(3 * widths[depth], 32), nn.ReLU(inplace=True),
                                      nn.Linear(32, 1))

    def encode(self, x):
        skips = []
        x = self.stem(x)
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        return self.bottleneck(x), skips

    def classify(self, bottom):
        """The candidate logit from the bottleneck: its mean, its max, and its centre 2x2."""
        h, w = bottom.shape[-2:]
        centre = bottom[..., max(h // 2 - 1, 0):h // 2 + 1, max(w // 2 - 1, 0):w // 2 + 1].mean(dim=(2, 3))
        pooled = torch.cat([bottom.mean(dim=(2, 3)), bottom.amax(dim=(2, 3)), centre], dim=1)
        return self.cls_head(pooled).squeeze(1)

    def segment(self, bottom, skips, size):
        x = bottom
        for up, block, skip in zip(self.up, self.decode, reversed(skips)):
            x = block(torch.cat([up(x), skip], dim=1))
        logits = self.seg_head(x)
        if logits.shape[-1] != size:
            logits = F.interpolate(logits, size=(size, size), mode="bilinear", align_corners=False)
        return logits

    def forward(self, x):
        bottom, skips = self.encode(x)
        return self.classify(bottom), self.segment(bottom, skips, x.shape[-1])


def _version(t: torch.Tensor) -> int:
    """The tensor's in-place version counter; -1 for an inference tensor, which has none (weights moved or
    loaded inside ``torch.inference_mode()``, e.g. ``net.to("cuda")`` there)."""
    return -1 if t.is_inference() else t._version


def _fold_sequential(seq: nn.Sequential) -> nn.Sequential:
    layers, mods = [], list(seq)
    i = 0
    while i < len(mods):
        m = mods[i]
        if isinstance(m, nn.Conv2d) and i + 1 < len(mods) and isinstance(mods[i + 1], nn.BatchNorm2d):
            layers.append(fuse_conv_bn_eval(m.eval(), mods[i + 1].eval()))
            i += 2
            continue
        layers.append(m)
        i += 1
    return nn.Sequential(*layers)


class _FoldedEncoder(nn.Module):
    """:meth:`UNet.encode`'s bottleneck output with batch norms folded (the same numbers, fewer passes)."""

    def __init__(self, unet: UNet):
        super().__init__()
        self.stem = _fold_sequential(unet.stem)
        self.down = nn.ModuleList(_fold_sequential(b) for b in unet.down)
        self.pool = unet.pool
        self.bottleneck = _fold_sequential(unet.bottleneck)
        self.eval()

    def forward(self, x):
        x = self.stem(x)
        for block in self.down:
            x = self.pool(block(x))
        return self.bottleneck(x)


class RealBogusNet(nn.Module):
    """Raw stamps ``(B, C, S, S)`` in, the real probability ``(B,)`` out: what is logged, loaded and served.

    A stamp whose difference channel (or, without one, every channel) has no
    finite pixel scores NaN: there is nothing to judge.
    """

    def __init__(self, config: RealBogusConfig | dict):
        super().__init__()
        self.config = config if isinstance(config, RealBogusConfig) else RealBogusConfig(**config)
        cfg = self.config
        self.unet = UNet(cfg.in_channels, base_width=cfg.base_width, depth=cfg.depth, n_classes=len(SEG_CLASSES),
                         dropout=cfg.dropout, stem_stride=cfg.stem_stride)

    def prepare(self, stamps):
        """Normalised, padded input of the U-Net (channels-last: oneDNN's fast layout for small convolutions)."""
        cfg = self.config
        if stamps.ndim != 4 or stamps.shape[1] != len(cfg.channels):
            raise ValueError(f"stamps must be (batch, {len(cfg.channels)}, H, W) for channels {cfg.channels}, "
                             f"got {tuple(stamps.shape)}")
        pad = cfg.padded_size - stamps.shape[-1]
        pad_h = cfg.padded_size - stamps.shape[-2]
        if pad < 0 or pad_h < 0:
            raise ValueError(f"stamps of {tuple(stamps.shape[-2:])} px exceed the model's {cfg.stamp_size} px")
        if stamps.device.type == "cpu" and not stamps.requires_grad and stamps.numel():
            return _normalize_cpu(stamps, cfg.valid_channel, cfg.padded_size, cfg.padded_size)
        x = normalize_stamps_torch(stamps, valid_channel=cfg.valid_channel)
        if pad or pad_h:
            x = F.pad(x, (pad // 2, pad - pad // 2, pad_h // 2, pad_h - pad_h // 2))
        return x.contiguous(memory_format=torch.channels_last)

    def _judgeable(self, stamps):
        cfg = self.config
        key = stamps[:, cfg.channels.index("difference")] if "difference" in cfg.channels else stamps
        return (torch.isfinite(key) & (key.abs() < BLANK_LIMIT)).flatten(1).any(dim=1)

    def forward_train(self, stamps):
        """``(candidate logits, segmentation logits)`` on the padded grid."""
        return self.unet(self.prepare(stamps))

    def inference_encoder(self) -> nn.Module:
        """The encoder with each batch norm folded into its convolution (eval only; rebuilt when weights change).

        Kept outside the module's registered children (not in ``state_dict``, not pickled)."""
        key = tuple((t.data_ptr(), _version(t)) for t in itertools.chain(self.unet.parameters(), self.unet.buffers()))
        cached = self.__dict__.get("_folded")
        if cached is None or cached[0] != key:
            cached = (key, _FoldedEncoder(self.unet))
            self.__dict__["_folded"] = cached
        return cached[1]

    def __getstate__(self):
        state = super().__getstate__() if hasattr(super(), "__getstate__") else self.__dict__.copy()
        state = dict(state)
        state.pop("_folded", None)
        return state

    def forward(self, stamps):
        if self.training:
            bottom, _ = self.unet.encode(self.prepare(stamps))
        else:
            bottom = self.inference_encoder()(self.prepare(stamps))
        prob = torch.sigmoid(self.unet.classify(bottom))
        return torch.where(self._judgeable(stamps), prob, torch.full_like(prob, float("nan")))


def collate_stamps(batch: dict, channels, *, with_targets: bool = True) -> dict:
    """A Ray Data / NumPy batch (one array per channel, ``label``, ``mask``) as tensors for the model.

    ``stamps`` ``(n, C, S, S)`` float32 from the named channel columns (each
    ``(n, S, S)`` or ``(n, S*S)``), ``label`` float32 and ``mask`` int64 when present.
    """
    planes = []
    for name in channels:
        col = batch[name]
        arr = np.stack(col) if col.dtype == object else np.asarray(col)
        n = arr.shape[0]
        side = int(round(np.sqrt(arr[0].size))) if n else 0
        planes.append(arr.reshape(n, side, side).astype(np.float32, copy=False))
    out = {"stamps": torch.from_numpy(np.ascontiguousarray(np.stack(planes, axis=1)))}
    if with_targets and "label" in batch:
        out["label"] = torch.as_tensor(np.asarray(batch["label"], np.float32))
    if with_targets and "mask" in batch:
        col = batch["mask"]
        arr = np.stack(col) if col.dtype == object else np.asarray(col)
        n = arr.shape[0]
        side = int(round(np.sqrt(arr[0].size))) if n else 0
        out["mask"] = torch.as_tensor(arr.reshape(n, side, side).astype(np.int64))
    return out


def _auc_and_fnr(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """ROC AUC and the false-negative rate at a 1% false-positive rate (NaN without both classes)."""
    from astroray.errors import InvalidInputError
    from astroray.eval import operating_point_at_fpr, roc_auc

    try:
        return float(roc_auc(labels, scores)), float(operating_point_at_fpr(labels, scores, target_fpr=0.01).fnr)
    except InvalidInputError:
        return float("nan"), float("nan")


def __getattr__(name: str):
    # The LightningModule lives in astroray.models.lightning_modules: scoring never imports Lightning (3-5 s a process)
    if name in ("RealBogusModule", "gather_varlen"):
        from astroray.models import lightning_modules

        return getattr(lightning_modules, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
