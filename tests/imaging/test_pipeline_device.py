"""The whole image pipeline with ``device: gpu`` on the CuPy stand-in: glue code makes no implicit host copy.

The stand-in (:mod:`astroray.kernels.fake_cupy`) refuses ``np.asarray`` and any
host/device mix, as CuPy does, and the Numba CUDA kernels run under the CUDA
simulator; both must be chosen before NumPy-heavy imports, so the run is in a
fresh interpreter.  The GPU path must give the CPU path's catalog.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

_RUN = textwrap.dedent("""
    import json, os
    import numpy as np
    assert os.environ["NUMBA_ENABLE_CUDASIM"] == "1" and os.environ["ASTRORAY_DEVICE_ARRAYS"] == "fake_cupy"
    from astroray.datasets import ImagePairConfig, simulate_pair
    from astroray.imaging.pipeline import ImagePipeline, ImagePipelineConfig
    from astroray.kernels import fake_cupy

    # a small CCD with satellite streaks and transients under them (seed 3 gives both)
    pair = simulate_pair(ImagePairConfig(shape=(320, 320), changes={"satellite_streak": 12.0,
                                                                    "transient_hostless": 40.0}), seed=3, index=0)
    common = dict(detection=dict(threshold=5.0, threshold_type="absolute", min_area=3, filter_kernel=None,
                                 deblend_cont=0.005, deblend_nthresh=8, photometry=False, segmentation=False),
                  streaks=dict(min_length=150))
    gpu_pipe = ImagePipeline(ImagePipelineConfig(device="gpu", **common))
    stages = {"background": gpu_pipe.background.device, "difference": gpu_pipe.differencer.device,
              "detection": gpu_pipe.extractor.device, "xp": gpu_pipe.xp.__name__}
    gpu = gpu_pipe.run(pair.reference, pair.science)
    cpu = ImagePipeline(ImagePipelineConfig(device="cpu", **common)).run(pair.reference, pair.science)
    a = cpu.catalog.sort_values(["y", "x"]).reset_index(drop=True)
    b = gpu.catalog.sort_values(["y", "x"]).reset_index(drop=True)
    host = all(isinstance(getattr(gpu.difference, k), np.ndarray) for k in ("difference", "score", "flux", "mask"))
    print(json.dumps(dict(
        stages=stages, n_cpu=len(a), n_gpu=len(b), streaks=[len(cpu.streaks), len(gpu.streaks)],
        under=[int(a["under_streak"].sum()), int(b["under_streak"].sum())], host_result=host,
        device=gpu.difference.device, dpos=float(np.abs(a[["x", "y"]].to_numpy() - b[["x", "y"]].to_numpy()).max()),
        dflux=float(np.abs((a["flux"] - b["flux"]) / a["flux_err"]).max()),
        dstamp=float(max(np.nanmax(np.abs(x.cutout_difference - y.cutout_difference)) for x, y in zip(cpu.alerts, gpu.alerts))),
        n_alerts=[len(cpu.alerts), len(gpu.alerts)])))
""")


def run_on_fake_gpu(code: str) -> dict:
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", ASTRORAY_DEVICE_ARRAYS="fake_cupy")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_gpu_pipeline_on_the_cupy_stand_in_matches_the_cpu_pipeline():
    out = run_on_fake_gpu(_RUN)
    # one device for every stage
    assert out["stages"] == {"background": "gpu", "difference": "gpu", "detection": "gpu",
                             "xp": "astroray.kernels.fake_cupy"}
    assert out["device"] == "gpu" and out["host_result"]  # the pair came back once, as host arrays
    # streaks found, transients under them recovered, on both devices alike
    assert out["streaks"][0] >= 1 and out["streaks"] == [out["streaks"][0]] * 2
    assert out["under"][0] >= 1 and out["under"][0] == out["under"][1]
    assert out["n_cpu"] == out["n_gpu"] >= 5 and out["n_alerts"] == [out["n_cpu"]] * 2
    assert out["dpos"] < 1e-3 and out["dflux"] < 1e-3 and out["dstamp"] < 1e-3
