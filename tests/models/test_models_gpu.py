"""The models on a CUDA device give the CPU's answers: the real/bogus U-Net (whose CPU path normalises with
Numba and the GPU path with torch) and the light-curve transformer, same weights, same inputs.

Skipped where torch sees no CUDA device; run with ``pytest -m gpu``."""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible to torch"),
]

# float32 convolutions and attention differ between oneDNN and cuDNN/cuBLAS in the last bits (TF32 is off
# below); probabilities agree to this
PROBABILITY_ATOL = 1e-4


@pytest.fixture(autouse=True)
def _no_tf32():
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def _sky_stamps(n: int, size: int = 63, seed: int = 0) -> np.ndarray:
    """Science, reference, difference: backgrounds and noise of different scales, a point source, NaN holes,
    one stamp whose difference is all NaN (it must score NaN on both devices)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] - size // 2
    psf = np.exp(-(xx ** 2 + yy ** 2) / (2 * 1.2 ** 2))
    stamps = np.empty((n, 3, size, size), np.float32)
    for i in range(n):
        flux = rng.uniform(50, 2000)
        sci = rng.normal(300, 12, (size, size)) + flux * psf * rng.uniform(0.5, 1.5)
        ref = rng.normal(900, 6, (size, size)) + 3 * flux * psf
        stamps[i] = [sci, ref, sci - ref / 3]
    stamps[1, :, :5, :] = np.nan
    stamps[2, 2] = np.nan
    return stamps


def test_realbogus_net_scores_the_same_on_the_gpu():
    from astroray.models.realbogus import RealBogusConfig, RealBogusNet

    torch.manual_seed(0)
    net = RealBogusNet(RealBogusConfig(base_width=8, depth=3, stem_stride=2)).eval()
    stamps = torch.from_numpy(_sky_stamps(64))
    with torch.inference_mode():
        cpu_input, (_, cpu_seg), cpu = net.prepare(stamps), net.forward_train(stamps), net(stamps)
        net.to("cuda")
        gpu_input, (_, gpu_seg), gpu = (net.prepare(stamps.cuda()), net.forward_train(stamps.cuda()),
                                        net(stamps.cuda()))
    # the normalisation: Numba on the CPU, torch on the GPU
    np.testing.assert_allclose(gpu_input.cpu().numpy(), cpu_input.numpy(), atol=1e-5, rtol=0)
    # an untrained net's probabilities barely vary; its per-pixel logits do, so they carry the comparison
    seg_c, seg_g = cpu_seg.numpy(), gpu_seg.cpu().numpy()
    assert np.ptp(seg_c) > 0.1
    np.testing.assert_allclose(seg_g, seg_c, atol=1e-4 * np.ptp(seg_c), rtol=0)
    cpu, gpu = cpu.numpy(), gpu.cpu().numpy()
    assert np.isnan(cpu[2]) and np.isnan(gpu[2])
    finite = np.isfinite(cpu)
    assert finite.sum() == 63 and np.array_equal(finite, np.isfinite(gpu))
    np.testing.assert_allclose(gpu[finite], cpu[finite], atol=PROBABILITY_ATOL, rtol=0)


def test_lightcurve_transformer_classifies_the_same_on_the_gpu():
    from astroray.datasets import CLASSES, simulate_lightcurves
    from astroray.models.lc_transformer import LightCurveModelConfig, LightCurveNet, lightcurve_rows, predict_rows

    sim = simulate_lightcurves(96, seed=3)
    rows = lightcurve_rows(sim.lightcurves, CLASSES)
    torch.manual_seed(0)
    net = LightCurveNet(LightCurveModelConfig(classes=CLASSES, feature_groups=("stats", "shape"))).eval()
    cpu = predict_rows(net, rows, batch_size=32)
    gpu = predict_rows(net.to("cuda"), rows, batch_size=32)
    assert cpu.shape == gpu.shape == (96, len(CLASSES))
    np.testing.assert_allclose(gpu, cpu, atol=PROBABILITY_ATOL, rtol=0)
    assert np.ptp(cpu.max(axis=1)) > 10 * PROBABILITY_ATOL
