"""The LightningModules that Ray Train fits: real/bogus, the light-curve transformer, the Prototypical Network.

They live apart from their models (:mod:`~astroray.models.realbogus`,
:mod:`~astroray.models.lc_transformer`, :mod:`~astroray.models.protonet`,
which still export them by name) so that a process that only scores -- a
job's actor, a Serve replica, the CLI -- never imports Lightning, 3-5 s of
its start.
"""
from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from astroray.config import config_from_dict
from astroray.lightcurves.rows import LABEL_ID_COLUMN
from astroray.models.lc_transformer import (
    _FLUX_CLIP,
    UNLABELLED,
    LightCurveModelConfig,
    LightCurveNet,
    _f1_and_accuracy,
    collate_lightcurves,
    encoder_inputs,
    truncate_batch,
)
from astroray.models.protonet import (
    FeatureEncoder,
    LightCurveFeaturizer,
    ProtoNetConfig,
    _rows_table,
    episode_loss,
)
from astroray.models.realbogus import (
    RealBogusConfig,
    RealBogusNet,
    _auc_and_fnr,
    collate_stamps,
)

__all__ = ["RealBogusModule", "LightCurveModule", "ProtoNetModule", "gather_varlen"]


def _adamw_cosine(self):
    """Every module's optimiser: AdamW at its config's ``lr`` and ``weight_decay``, the rate annealed on a cosine
    over the run's epochs."""
    opt = torch.optim.AdamW(self.parameters(), lr=self.config.lr, weight_decay=self.config.weight_decay)
    max_epochs = max(int(self.trainer.max_epochs or 1), 1) if self.trainer is not None else 1
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max_epochs)
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}


def blank_rectangles(stamps, mask, fraction: float, *, centre: int = 9, generator=None):
    """A copy of ``stamps`` (B, C, H, W) where ``fraction`` of them (at random) have a rectangle set to NaN in
    every channel, sides from 6 px to half the stamp, anywhere but a ``centre`` x ``centre`` box around the
    candidate; ``mask`` (B, H, W) gets ``-100`` (ignored by the per-pixel loss) there.  Returns (stamps, mask)."""
    n, _, h, w = stamps.shape
    chosen = torch.nonzero(torch.rand(n, generator=generator) < fraction).flatten()
    if not len(chosen):
        return stamps, mask
    k = len(chosen)

    def draw(lo, hi):
        return torch.randint(lo, hi + 1, (k,), generator=generator)

    sh, sw = draw(6, h // 2), draw(6, w // 2)
    y0 = (torch.rand(k, generator=generator) * (h - sh + 1)).long()
    x0 = (torch.rand(k, generator=generator) * (w - sw + 1)).long()
    rows, cols = torch.arange(h)[None, :, None], torch.arange(w)[None, None, :]
    inside = ((rows >= y0[:, None, None]) & (rows < (y0 + sh)[:, None, None])
              & (cols >= x0[:, None, None]) & (cols < (x0 + sw)[:, None, None]))
    cy, cx, half = h // 2, w // 2, centre // 2
    inside[:, cy - half:cy + half + 1, cx - half:cx + half + 1] = False
    inside = inside.to(stamps.device)
    stamps = stamps.clone()
    stamps[chosen] = stamps[chosen].masked_fill(inside[:, None], float("nan"))
    if mask is not None:
        mask = mask.clone()
        mask[chosen] = mask[chosen].masked_fill(inside, -100)
    return stamps, mask


class RealBogusModule(pl.LightningModule):
    """Training of :class:`RealBogusNet`: candidate BCE plus per-pixel cross-entropy, with augmentation.

    Validation logs ``val_loss``, ``val_auc`` and ``val_fnr_at_1fpr`` (the
    fraction of real candidates lost at a 1% false-positive rate) per epoch.
    """

    def __init__(self, config: dict | None = None):
        super().__init__()
        cfg = RealBogusConfig(**(config or {}))
        self.save_hyperparameters({"config": cfg.model_dump(mode="json")})
        self.config = cfg
        self.net = RealBogusNet(cfg)
        self._val_scores: list = []
        self._val_labels: list = []

    def collate(self, batch: dict) -> dict:
        return collate_stamps(batch, self.config.channels)

    def _augment(self, x, mask):
        if torch.rand(()) < 0.5:
            x, mask = x.flip(-1), (mask.flip(-1) if mask is not None else None)
        if torch.rand(()) < 0.5:
            x, mask = x.flip(-2), (mask.flip(-2) if mask is not None else None)
        k = int(torch.randint(0, 4, ()))
        if k:
            x, mask = x.rot90(k, (-2, -1)), (mask.rot90(k, (-2, -1)) if mask is not None else None)
        if self.config.blank_fraction > 0:
            x, mask = blank_rectangles(x, mask, self.config.blank_fraction)
        return x, mask

    def _step(self, batch, train: bool):
        cfg = self.config
        stamps, label = batch["stamps"], batch["label"]
        mask = batch.get("mask")
        if train and cfg.augment:
            stamps, mask = self._augment(stamps, mask)
        x = self.net.prepare(stamps)
        if train and cfg.noise_sigma > 0:
            noise = torch.randn_like(x) * cfg.noise_sigma
            if cfg.valid_channel:
                noise[:, -1] = 0
            x = x + noise
        logit, seg = self.net.unet(x)
        loss = F.binary_cross_entropy_with_logits(logit, label)
        if mask is not None and cfg.seg_weight > 0:
            pad = seg.shape[-1] - mask.shape[-1]
            pad_h = seg.shape[-2] - mask.shape[-2]
            target = F.pad(mask, (pad // 2, pad - pad // 2, pad_h // 2, pad_h - pad_h // 2), value=-100)
            loss = loss + cfg.seg_weight * F.cross_entropy(seg, target, ignore_index=-100)
        return loss, logit

    def training_step(self, batch, batch_idx):
        loss, _ = self._step(batch, train=True)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True,
                 batch_size=int(batch["label"].shape[0]))
        return loss

    def validation_step(self, batch, batch_idx):
        loss, logit = self._step(batch, train=False)
        self.log("val_loss", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True,
                 batch_size=int(batch["label"].shape[0]))
        self._val_scores.append(logit.detach().float().cpu())
        self._val_labels.append(batch["label"].detach().float().cpu())

    def on_validation_epoch_end(self):
        if not self._val_scores:
            return
        scores = torch.cat(self._val_scores)
        labels = torch.cat(self._val_labels)
        self._val_scores, self._val_labels = [], []
        if self.trainer.world_size > 1:  # every worker scores its own shard: gather them for one AUC
            scores, labels = gather_varlen(self, scores), gather_varlen(self, labels)
        auc, fnr = _auc_and_fnr(scores.numpy(), labels.numpy())
        self.log("val_auc", auc, sync_dist=False, rank_zero_only=False)
        self.log("val_fnr_at_1fpr", fnr, sync_dist=False, rank_zero_only=False)

    configure_optimizers = _adamw_cosine


def gather_varlen(module: pl.LightningModule, values):
    """``values`` (1-D, any length per rank) of every rank, concatenated (``all_gather`` needs equal shapes)."""
    sizes = module.all_gather(torch.tensor([values.shape[0]], device=module.device)).reshape(-1)
    longest = int(sizes.max())
    padded = torch.full((longest,), float("nan"), dtype=values.dtype, device=module.device)
    padded[: values.shape[0]] = values.to(module.device)
    gathered = module.all_gather(padded).reshape(len(sizes), longest)
    return torch.cat([gathered[i, : int(n)] for i, n in enumerate(sizes)]).cpu()


class LightCurveModule(pl.LightningModule):
    """Training of :class:`LightCurveNet`: class-weighted cross-entropy on randomly cut light curves,
    plus the error-weighted flux reconstruction (module docstring).

    ``collate(batch_dict)`` turns a Ray Data batch (NumPy arrays, one row per
    light curve) into tensors; the same is used for training and validation
    batches, and the random cut happens in :meth:`training_step`.  Validation
    logs ``val_loss`` (the weighted cross-entropy), ``val_macro_f1`` and
    ``val_accuracy`` over all ranks' rows.
    """

    def __init__(self, config: dict | None = None):
        super().__init__()
        cfg = config_from_dict(LightCurveModelConfig, config, source="lc_transformer model config")
        self.save_hyperparameters({"config": cfg.model_dump(mode="json")})
        self.config = cfg
        self.net = LightCurveNet(cfg)
        # only when the loss uses it: DDP (Ray Train's strategy) refuses parameters that no loss reaches
        self.reconstruct = (nn.Linear(cfg.d_model, 1) if cfg.reconstruction_weight > 0 and cfg.mask_fraction > 0
                            else None)
        weight = torch.tensor(cfg.class_weights, dtype=torch.float32) if cfg.class_weights else torch.ones(cfg.n_classes)
        self.register_buffer("class_weight", weight)
        self._val_logits: list = []
        self._val_labels: list = []

    def collate(self, batch: dict) -> dict:
        return collate_lightcurves(batch, self.config)

    def _rng(self) -> np.random.Generator:
        # drawn from torch's generator, so Lightning's seed_everything (per rank) fixes the cuts
        return np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))

    def _loss(self, logits, label):
        return F.cross_entropy(logits, label, weight=self.class_weight, ignore_index=UNLABELLED,
                               label_smoothing=self.config.label_smoothing)

    def training_step(self, batch, batch_idx):
        cfg = self.config
        if cfg.truncate:
            batch = truncate_batch(batch, cfg, rng=self._rng())
        inputs = encoder_inputs(batch)
        mask = inputs["mask"]
        if cfg.flux_noise > 0:
            noise = torch.randn_like(inputs["flux"]) * inputs["flux_err"] * cfg.flux_noise
            inputs = {**inputs, "flux": inputs["flux"] + noise * mask}
        hidden = None
        if self.reconstruct is not None:
            enough = (mask.sum(dim=1, keepdim=True) >= 2)
            hidden = mask & enough & (torch.rand_like(inputs["flux"]) < cfg.mask_fraction)
        embedding, points = self.net.encoder.encode(inputs, hidden=hidden)
        logits = self.net.classify(embedding, inputs["objects"])
        loss = self._loss(logits, batch["label"])
        n = int(batch["label"].shape[0])
        if hidden is not None:
            rec = self._reconstruction(points, batch, hidden)
            self.log("train_reconstruction", rec, on_step=False, on_epoch=True, sync_dist=True, batch_size=n)
            loss = loss + cfg.reconstruction_weight * rec
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True, batch_size=n)
        return loss

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # checkpoints saved before the head became optional hold it even when reconstruction was off
        if self.reconstruct is None:
            state = checkpoint.get("state_dict", {})
            for key in [k for k in state if k.startswith("reconstruct.")]:
                del state[key]

    def _reconstruction(self, points, batch, hidden):
        """Huber loss of the hidden fluxes' residuals in units of their errors (0 when none is hidden)."""
        pred = self.reconstruct(points).squeeze(-1)
        if not bool(hidden.any()):
            return pred.sum() * 0.0  # zero, through the head, so DDP sees every parameter used
        pred = pred[hidden]
        target = batch["flux"].float()[hidden].clamp(-_FLUX_CLIP, _FLUX_CLIP)
        sigma = torch.sqrt(batch["flux_err"].float()[hidden] ** 2 + self.config.error_floor ** 2)
        return F.huber_loss((pred - target) / sigma, torch.zeros_like(pred), delta=3.0)

    def validation_step(self, batch, batch_idx):
        logits = self.net.logits(encoder_inputs(batch))
        label = batch["label"]
        keep = label >= 0
        if bool(keep.any()):
            self.log("val_loss", self._loss(logits, label), on_step=False, on_epoch=True, prog_bar=True,
                     sync_dist=True, batch_size=int(keep.sum()))
        self._val_logits.append(logits[keep].detach().float().cpu())
        self._val_labels.append(label[keep].detach().cpu())

    def on_validation_epoch_end(self):
        if not self._val_logits:
            return
        pred = torch.cat(self._val_logits).argmax(dim=1).float()
        labels = torch.cat(self._val_labels).float()
        self._val_logits, self._val_labels = [], []
        if self.trainer is not None and self.trainer.world_size > 1:
            pred, labels = gather_varlen(self, pred), gather_varlen(self, labels)
        f1, acc = _f1_and_accuracy(labels.numpy().astype(np.int64), pred.numpy().astype(np.int64), self.config.n_classes)
        self.log("val_macro_f1", f1, sync_dist=False, rank_zero_only=False)
        self.log("val_accuracy", acc, sync_dist=False, rank_zero_only=False)

    configure_optimizers = _adamw_cosine


class ProtoNetModule(pl.LightningModule):
    """Episodic training of a :class:`FeatureEncoder` (the ``protonet`` model kind).

    Batches are ``{"x": featurizer output (n, F) float32 with NaN, "label": (n,) int64}``
    (:meth:`collate` builds them from rows of light curves).  Logs
    ``train_loss``, ``val_loss`` and ``val_acc`` (query accuracy of episodes).
    """

    def __init__(self, config: dict | ProtoNetConfig | None = None):
        super().__init__()
        cfg = config if isinstance(config, ProtoNetConfig) else ProtoNetConfig(**(config or {}))
        self.save_hyperparameters({"config": cfg.model_dump(mode="json")})
        self.config = cfg
        self.encoder = FeatureEncoder(cfg)
        self.featurizer = LightCurveFeaturizer(cfg)
        self._rng = np.random.default_rng(cfg.seed)

    def collate(self, batch) -> dict:
        """Rows of light curves (a Ray Data batch: list columns ``mjd, band, flux, flux_err, detected``,
        ``label_id``, optionally ``object_id`` and ``redshift``) as ``{"x", "label"}`` tensors."""
        table = _rows_table(batch)
        redshift = None
        if "redshift" in table.column_names:
            redshift = np.asarray(table.column("redshift").to_numpy(zero_copy_only=False), dtype=np.float64)
        matrix = self.featurizer.run(table, redshift=redshift, n_threads=1)
        out = {"x": torch.from_numpy(matrix.values.astype(np.float32))}
        if LABEL_ID_COLUMN in table.column_names:
            out["label"] = torch.as_tensor(np.asarray(table.column(LABEL_ID_COLUMN).to_numpy(), np.int64))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embeddings of featurizer output."""
        return self.encoder(x)

    def _step(self, batch, train: bool):
        x, label = batch["x"], batch["label"]
        if not bool(self.encoder.fitted):  # no scaler given: this (first) batch sets it
            centre, spread = self.featurizer.fit_scaler(x.detach().cpu().double().numpy())
            self.encoder.set_scaler(centre, spread)
        z = self.encoder.standardize(x)
        cfg = self.config
        if train:
            if cfg.feature_noise > 0:
                z = z + torch.randn_like(z) * cfg.feature_noise
            if cfg.feature_dropout > 0:
                z = z * (torch.rand_like(z) >= cfg.feature_dropout).to(z.dtype)
        labels = label.detach().cpu().numpy()
        return episode_loss(self.encoder, z, labels, n_way=cfg.n_way, k_shot=cfg.k_shot, n_query=cfg.n_query,
                            n_episodes=cfg.episodes_per_batch if train else 1, rng=self._rng)

    def training_step(self, batch, batch_idx):
        loss, _ = self._step(batch, train=True)
        if loss is None:  # fewer than two classes in this batch: nothing to learn from it
            return None
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True,
                 batch_size=int(batch["label"].shape[0]))
        return loss

    def validation_step(self, batch, batch_idx):
        loss, acc = self._step(batch, train=False)
        if loss is None:
            return
        n = int(batch["label"].shape[0])
        self.log("val_loss", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True, batch_size=n)
        self.log("val_acc", acc.to(loss.device), on_step=False, on_epoch=True, sync_dist=True, batch_size=n)

    configure_optimizers = _adamw_cosine
