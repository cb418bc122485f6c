"""Real/bogus speed: U-Net inference stamps/s beside the classical detectors, and Ray Train seconds per epoch.

    python benchmarks/bench_realbogus.py --data /work/data/stamps400
    python benchmarks/bench_realbogus.py --data /work/data/stamps400 --model-uri models:/astroray-realbogus@champion \\
        --tracking-uri sqlite:////work/data/rbhome/mlflow.db

Sections of the JSON (``benchmarks/results/realbogus.json`` by default):

* ``inference``: ``--n-stamps`` test stamps scored on ``--threads`` CPU
  threads, per batch size: the scoring path (:class:`RealBogusNet` in
  ``torch.inference_mode``: the fused Numba normalisation written straight into
  the padded channels-last input, batch norms folded into the convolutions)
  and, at one batch size, the previous path (the torch normalisation, an
  ``F.pad`` and a ``channels_last`` copy, the unfolded encoder), each timed
  for at least ``--min-seconds``, the two alternating; the normalisation and
  the network timed apart; the largest difference between the two paths'
  probabilities.  The model is ``--model-uri`` (the registered champion) or,
  without one, a freshly initialised net of ``configs/train_realbogus.yaml``'s
  model (speed does not depend on the weights).
* ``classical``: the candidate features plus the Isolation Forest and the
  boosted trees (fitted on ``--classical-fit`` training candidates) on the
  same stamps, and the ensemble (U-Net + both) per stamp.
* ``epoch``: one Ray Train fit per worker count (``--workers``) over the
  training split, ``--epoch-batches`` batches of ``--batch-size`` per worker;
  a Lightning callback in each worker records when every batch ends; the
  median interval after ``--skip-batches`` (data ingest included) gives the
  seconds per epoch of ``--epoch-stamps`` stamps, EXTRAPOLATED from those
  batches (the JSON says how many were measured).
* ``quality`` (``--quality FOLDER ...``): the model on each folder's test
  split: ROC AUC, real candidates and transients lost at 1% false positives,
  and, at the model's logged threshold, the false-positive rate and recall per kind.
* ``gpu``: skipped, with the reason, when torch sees no CUDA device; else the
  inference stamps/s on the GPU.

The load average is recorded before and after each section: the machine is
shared, and throughput falls as the load rises.
"""
import argparse
import functools
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def _test_stamps(data: Path, n: int, split: str = "test"):
    import pyarrow.parquet as pq

    from astroray.datasets.stamps import stamp_arrays

    planes, signs, labels = [], [], []
    for path in sorted(data.glob(f"split={split}/*.parquet")):
        table = pq.read_table(path, columns=["science", "reference", "difference", "sign", "label", "stamp_size"])
        arrays = stamp_arrays(table, names=("science", "reference", "difference"))
        planes.append(np.stack([arrays[c] for c in ("science", "reference", "difference")], axis=1))
        signs.append(table["sign"].to_numpy())
        labels.append(table["label"].to_numpy())
        if sum(len(p) for p in planes) >= n:
            break
    stamps = np.concatenate(planes)[:n].astype(np.float32)
    return np.ascontiguousarray(stamps), np.concatenate(signs)[:n], np.concatenate(labels)[:n]


def _model(args):
    from astroray.config import load_config
    from astroray.models.realbogus import RealBogusNet
    from astroray.ray.train_realbogus import TrainRealBogusConfig

    if args.model_uri:
        from astroray.tracking import load_torch_model

        model, info = load_torch_model(args.model_uri, device="cpu", uri=args.tracking_uri)
        return model.eval(), {"uri": args.model_uri, "version": info.get("version"),
                              "threshold": info.get("metadata", {}).get("threshold")}
    cfg = load_config(args.config, TrainRealBogusConfig)
    return RealBogusNet(cfg.model).eval(), {"uri": None, "config": cfg.model.model_dump(mode="json")}


def _previous_path(net, stamps):
    """The scoring path before the optimisation: torch normalisation, F.pad, a channels_last copy, unfolded BN."""
    import torch
    import torch.nn.functional as F

    from astroray.models.realbogus import normalize_stamps_torch

    cfg = net.config
    x = normalize_stamps_torch(stamps, valid_channel=cfg.valid_channel)
    pad, pad_h = cfg.padded_size - x.shape[-1], cfg.padded_size - x.shape[-2]
    x = F.pad(x, (pad // 2, pad - pad // 2, pad_h // 2, pad_h - pad_h // 2)).contiguous(memory_format=torch.channels_last)
    bottom, _ = net.unet.encode(x)
    prob = torch.sigmoid(net.unet.classify(bottom))
    return torch.where(net._judgeable(stamps), prob, torch.full_like(prob, float("nan")))


def _rate(fn, n_items: int, min_seconds: float, cpu: dict | None = None) -> float:
    """Items per wall-clock second of ``fn`` repeated for ``min_seconds``; with ``cpu``, also per CPU second
    of this process (all its threads) under ``cpu["per_cpu_s"]``: less swayed by other work on the machine."""
    fn()  # warm-up (Numba compilation, oneDNN primitives)
    done, t0, c0 = 0, time.perf_counter(), time.process_time()
    while True:
        fn()
        done += n_items
        elapsed = time.perf_counter() - t0
        if elapsed >= min_seconds:
            if cpu is not None:
                cpu["per_cpu_s"] = done / max(time.process_time() - c0, 1e-9)
            return done / elapsed


def bench_inference(net, stamps, args) -> dict:
    import torch

    from astroray.models.realbogus import normalize_stamps, normalize_stamps_torch

    torch.set_num_threads(args.threads)
    x = torch.from_numpy(stamps)
    out = {"load_before": _load(), "threads": args.threads, "n_stamps": len(x), "by_batch_size": {}}

    def score(fn, bs):
        def run():
            with torch.inference_mode():
                for s in range(0, len(x), bs):
                    fn(x[s:s + bs])
        return run

    for bs in args.batch_sizes:
        cpu = {}
        rate = _rate(score(net, bs), len(x), args.min_seconds, cpu)
        out["by_batch_size"][bs] = {"stamps_per_s": round(rate, 1), "stamps_per_cpu_s": round(cpu["per_cpu_s"], 1)}
    bs = args.compare_batch_size
    new_rates, old_rates, new_cpu, old_cpu = [], [], [], []
    for _ in range(args.rounds):  # alternate so that load from elsewhere hits both alike
        cpu = {}
        new_rates.append(_rate(score(net, bs), len(x), args.min_seconds, cpu))
        new_cpu.append(cpu["per_cpu_s"])
        old_rates.append(_rate(score(functools.partial(_previous_path, net), bs), len(x), args.min_seconds, cpu))
        old_cpu.append(cpu["per_cpu_s"])
    chunk = x[:bs]
    norm_new = _rate(lambda: normalize_stamps(chunk), len(chunk), args.min_seconds)
    norm_old = _rate(lambda: normalize_stamps_torch(chunk), len(chunk), args.min_seconds)
    with torch.inference_mode():
        prepared = net.prepare(chunk)
        encoder = net.inference_encoder()
        net_only = _rate(lambda: net.unet.classify(encoder(prepared)), len(chunk), args.min_seconds)
        p_new = torch.cat([net(x[s:s + bs]) for s in range(0, len(x), bs)]).numpy()
        p_old = torch.cat([_previous_path(net, x[s:s + bs]) for s in range(0, len(x), bs)]).numpy()
    both = np.isfinite(p_new) & np.isfinite(p_old)
    out.update(
        compare_batch_size=bs,
        stamps_per_s=round(statistics.median(new_rates), 1),
        stamps_per_s_previous_path=round(statistics.median(old_rates), 1),
        speedup=round(statistics.median(new_rates) / statistics.median(old_rates), 2),
        stamps_per_cpu_s=round(statistics.median(new_cpu), 1),
        stamps_per_cpu_s_previous_path=round(statistics.median(old_cpu), 1),
        cpu_speedup=round(statistics.median(new_cpu) / statistics.median(old_cpu), 2),
        normalisation_stamps_per_s={"numba": round(norm_new, 1), "torch": round(norm_old, 1)},
        network_only_stamps_per_s=round(net_only, 1),
        max_abs_prob_difference_vs_previous=float(np.max(np.abs(p_new[both] - p_old[both]))) if both.any() else None,
        same_nan=bool(np.array_equal(np.isnan(p_new), np.isnan(p_old))),
        load_after=_load())
    return out


def bench_classical(net, stamps, signs, args) -> dict:
    import torch

    from astroray.models.classical import (
        ClassicalRealBogus,
        candidate_features,
        ensemble_score,
    )

    fit_stamps, fit_signs, fit_labels = _test_stamps(Path(args.data), args.classical_fit, split="train")
    classical = ClassicalRealBogus().fit(
        candidate_features(fit_stamps[:, 0], fit_stamps[:, 1], fit_stamps[:, 2], sign=fit_signs), fit_labels)
    out = {"load_before": _load(), "fitted_on": len(fit_labels), "n_stamps": len(stamps)}

    def classical_scores():
        feats = candidate_features(stamps[:, 0], stamps[:, 1], stamps[:, 2], sign=signs)
        return classical.scores(feats)

    def features_only():
        candidate_features(stamps[:, 0], stamps[:, 1], stamps[:, 2], sign=signs)

    x = torch.from_numpy(stamps)
    bs = args.compare_batch_size

    def ensemble():
        with torch.inference_mode():
            unet = torch.cat([net(x[s:s + bs]) for s in range(0, len(x), bs)]).numpy()
        sc = classical_scores()
        ensemble_score(unet, sc["trees"], sc["iforest"])

    out.update(features_stamps_per_s=round(_rate(features_only, len(stamps), args.min_seconds), 1),
               classical_stamps_per_s=round(_rate(classical_scores, len(stamps), args.min_seconds), 1),
               ensemble_with_unet_stamps_per_s=round(_rate(ensemble, len(stamps), args.min_seconds), 1),
               load_after=_load())
    return out


def _batch_timer(folder: str):
    """A Lightning callback (built in each worker) writing when each training batch ended to a JSON file."""
    import pytorch_lightning as pl

    class _Timer(pl.Callback):
        def __init__(self):
            self.ends = []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.ends.append(time.perf_counter())

        def on_train_epoch_end(self, trainer, pl_module):
            Path(folder, f"rank{trainer.global_rank}.json").write_text(json.dumps(self.ends))

    return _Timer()


def bench_epoch(args) -> dict:
    from astroray.config import load_config
    from astroray.ray.train import TrainConfig, fit
    from astroray.ray.train_realbogus import TrainRealBogusConfig, training_datasets

    cfg = load_config(args.config, TrainRealBogusConfig)
    out = {"epoch_stamps": args.epoch_stamps, "batch_size_per_worker": args.batch_size,
           "measured_batches_per_worker": args.epoch_batches, "skipped_batches": args.skip_batches,
           "extrapolated": True, "by_workers": {}}
    for workers in args.workers:
        with tempfile.TemporaryDirectory() as tmp:
            timing = Path(tmp, "timing")
            timing.mkdir()
            train = TrainConfig(num_workers=workers, cpus_per_worker=1, max_epochs=1, batch_size=args.batch_size,
                                limit_train_batches=args.epoch_batches, limit_val_batches=1,
                                storage_path=str(Path(tmp, "ray_results")), monitor="val_auc", monitor_mode="max")
            load_before = _load()
            t0 = time.perf_counter()
            fit("realbogus", cfg.model.model_dump(mode="json"), training_datasets(Path(args.data)), train,
                name=f"bench-epoch-{workers}w", extra_worker_callbacks=[functools.partial(_batch_timer, str(timing))])
            wall = time.perf_counter() - t0
            intervals = []
            for path in timing.glob("rank*.json"):
                ends = json.loads(path.read_text())
                intervals.extend(np.diff(ends[args.skip_batches:]).tolist())
            per_batch = statistics.median(intervals) if intervals else float("nan")
            steps = args.epoch_stamps / (args.batch_size * workers)
            out["by_workers"][workers] = {
                "median_seconds_per_batch": round(per_batch, 4), "steps_per_epoch": round(steps, 1),
                "seconds_per_epoch": round(per_batch * steps, 1), "fit_wall_seconds": round(wall, 1),
                "ranks_reporting": len(list(timing.glob("rank*.json"))), "load_before": load_before,
                "load_after": _load()}
    return out


def bench_quality(net, model_info, args) -> dict:
    """ROC AUC, the real candidates (all, and transients alone) lost at 1% false positives, and recall per kind
    at the model's own threshold, on the test split of each ``--quality`` stamp folder."""
    from astroray.eval import (
        operating_point,
        operating_point_at_fpr,
        recall_by_subtype,
        roc_auc,
    )
    from astroray.ray.train_realbogus import score_stamp_files, stamp_files

    out = {}
    threshold = model_info.get("threshold")
    for folder in args.quality:
        frame, _ = score_stamp_files(net, stamp_files(folder, "test"), net.config.channels)
        y, s, kinds = frame["label"].to_numpy(), frame["unet"].to_numpy(), frame["kind"].to_numpy()
        ok = np.isfinite(s)
        y, s, kinds = y[ok], s[ok], kinds[ok]
        transient = np.isin(kinds, ("transient_on_host", "transient_hostless"))
        sel = transient | (y == 0)
        row = {"n": len(y), "n_real": int(y.sum()), "n_nan": int((~ok).sum()), "roc_auc": roc_auc(y, s),
               "fnr_at_1fpr": operating_point_at_fpr(y, s, target_fpr=0.01).fnr,
               "transients_lost_at_1fpr": operating_point_at_fpr(y[sel], s[sel], target_fpr=0.01).fnr}
        if threshold is not None:
            op = operating_point(y, s, threshold=threshold)
            row.update(threshold=threshold, fpr_at_threshold=op.fpr, fnr_at_threshold=op.fnr,
                       recall_by_kind={k: round(v["recall"], 4) for k, v in
                                       recall_by_subtype(y, s, kinds, threshold=threshold).items()})
        out[str(folder)] = row
    return out


def bench_gpu(net, stamps, args) -> dict:
    import torch

    if not torch.cuda.is_available():
        return {"skipped": "no CUDA device visible to torch (CPU-only machine)"}
    model = net.to("cuda")
    # the test stamps repeated up to --gpu-stamps (speed does not depend on the pixels): a pass long enough to time
    reps = -(-args.gpu_stamps // len(stamps))
    x = torch.from_numpy(np.concatenate([stamps] * reps)[:args.gpu_stamps]).cuda()

    def run():
        with torch.inference_mode():
            for s in range(0, len(x), 2048):
                model(x[s:s + 2048])
        torch.cuda.synchronize()

    return {"device": torch.cuda.get_device_name(0), "stamps_per_s": round(_rate(run, len(x), args.min_seconds), 1),
            "n_stamps": len(x), "distinct_stamps": len(stamps), "batch_size": 2048,
            "note": "stamps already on the GPU; the normalisation runs in torch on the GPU"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.path.join(os.environ.get("ASTRORAY_HOME", ".astroray"), "stamps"))
    parser.add_argument("--config", default="configs/train_realbogus.yaml")
    parser.add_argument("--model-uri", default=None)
    parser.add_argument("--tracking-uri", default=None)
    parser.add_argument("--n-stamps", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-sizes", type=lambda s: [int(v) for v in s.split(",")], default=[128, 512, 1024])
    parser.add_argument("--compare-batch-size", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--min-seconds", type=float, default=2.0)
    parser.add_argument("--gpu-stamps", type=int, default=16384, help="stamps per timed pass on the GPU")
    parser.add_argument("--classical-fit", type=int, default=8000)
    parser.add_argument("--workers", type=lambda s: [int(v) for v in s.split(",")], default=[1, 2])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epoch-batches", type=int, default=30)
    parser.add_argument("--skip-batches", type=int, default=5)
    parser.add_argument("--epoch-stamps", type=int, default=100_000)
    parser.add_argument("--skip-epoch", action="store_true", help="no Ray Train section")
    parser.add_argument("--skip-speed", action="store_true", help="no inference and classical sections")
    parser.add_argument("--quality", nargs="*", default=[],
                        help="stamp folders whose test split the model is evaluated on (quality section)")
    parser.add_argument("--out", default="benchmarks/results/realbogus.json")
    args = parser.parse_args(argv)

    stamps, signs, _ = _test_stamps(Path(args.data), args.n_stamps)
    net, model_info = _model(args)
    result = {"host": platform.node(), "cpu_count": os.cpu_count(), "model": model_info}
    if args.quality:
        result["quality"] = bench_quality(net, model_info, args)
        print(json.dumps(result["quality"], indent=1, default=str))
    if not args.skip_speed:
        result["inference"] = bench_inference(net, stamps, args)
        print(json.dumps(result["inference"], indent=1))
        result["classical"] = bench_classical(net, stamps, signs, args)
        print(json.dumps(result["classical"], indent=1))
    result["epoch"] = {"skipped": "--skip-epoch"} if args.skip_epoch else bench_epoch(args)
    print(json.dumps(result["epoch"], indent=1))
    result["gpu"] = bench_gpu(net, stamps, args)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, default=str))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
