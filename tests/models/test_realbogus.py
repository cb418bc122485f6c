"""The real/bogus U-Net's scoring path: the fused Numba normalisation and the folded encoder against the
code they replaced, and the answers to stamps that are missing, blank, empty or the wrong shape.

The training backbone and the scorer's bad inputs are in tests/ray/test_train.py."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from astroray.models.realbogus import (
    BLANK_LIMIT,
    RealBogusConfig,
    RealBogusNet,
    normalize_stamps,
    normalize_stamps_torch,
)


def _normalize_before(stamps, *, valid_channel: bool = True):
    """normalize_stamps as committed before the Numba pass (49cc0ab), kept to check the new one against."""
    x = stamps.float()
    finite = torch.isfinite(x)
    sample = x[..., ::3, ::3].flatten(2)
    med = torch.nanmedian(sample, dim=-1).values
    med = torch.where(torch.isfinite(med), med, torch.zeros_like(med))
    mad = torch.nanmedian((sample - med[..., None]).abs(), dim=-1).values * 1.4826
    scale = torch.where(torch.isfinite(mad) & (mad > 0), mad, torch.ones_like(mad))
    z = (x - med[..., None, None]) / scale[..., None, None]
    z = torch.asinh(torch.where(finite, z, torch.zeros_like(z)))
    if valid_channel:
        z = torch.cat([z, finite.all(dim=1, keepdim=True).to(z.dtype)], dim=1)
    return z


def _stamps(n=12, channels=3, size=63, seed=0):
    """Sky-like stamps: a background and noise of different scales per channel, a source, NaN holes."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (n, channels, size, size)).astype(np.float32)
    x *= rng.uniform(0.5, 50, (n, channels, 1, 1)).astype(np.float32)
    x += rng.uniform(-100, 1000, (n, channels, 1, 1)).astype(np.float32)
    yy, xx = np.mgrid[:size, :size] - size // 2
    x += (rng.uniform(0, 500, (n, channels, 1, 1)) * np.exp(-(yy ** 2 + xx ** 2) / 8.0)).astype(np.float32)
    odd = [(0, np.s_[:, :10]),  # a chip edge
           (1, np.s_[2, 5:9, 30:40]),  # a masked patch in one channel
           (2, np.s_[1]),  # a channel with nothing
           (4, np.s_[:, ::2, ::2])]  # a quarter of the pixels, all the sampled ones among them
    for i, where in odd:
        if i < n:
            x[i][where] = np.nan
    if n > 3:
        x[3, 0] = 7.0  # a constant channel
    return torch.from_numpy(x)


@pytest.mark.parametrize("size", [63, 31, 15, 40])
@pytest.mark.parametrize("valid_channel", [True, False])
def test_numba_normalisation_equals_the_torch_code_and_the_code_before(size, valid_channel):
    x = _stamps(size=size, seed=size)
    new = normalize_stamps(x, valid_channel=valid_channel)
    ref = normalize_stamps_torch(x, valid_channel=valid_channel)
    before = _normalize_before(x, valid_channel=valid_channel)
    assert new.shape == before.shape == (len(x), 3 + valid_channel, size, size)
    # the same medians (the lower middle value), asinh in float32 either way: equal to rounding
    np.testing.assert_allclose(new.numpy(), ref.numpy(), rtol=0, atol=2e-6)
    np.testing.assert_allclose(new.numpy(), before.numpy(), rtol=0, atol=2e-6)
    assert torch.isfinite(new).all()
    assert (new[2, 1] == 0).all() and (new[3, 0] == 0).all()  # no pixel / no scatter: zeros


def test_blank_fill_values_and_infinities_count_as_missing():
    x = _stamps(n=5)
    holes = x.clone()
    holes[0, 1, 20:23, 20:23] = float("nan")
    holes[1, 0, 3, 3] = float("nan")
    blanks = x.clone()
    blanks[0, 1, 20:23, 20:23] = float(np.finfo(np.float32).min)  # -3.4e38, ZTF's float32 fill value in a real cutout
    blanks[1, 0, 3, 3] = float("inf")
    expected = normalize_stamps(holes)
    for fn in (normalize_stamps, normalize_stamps_torch):
        got = fn(blanks)
        assert torch.isfinite(got).all()
        np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=0, atol=2e-6)
    assert float(torch.nan_to_num(blanks.abs(), nan=0.0, posinf=0.0).max()) > BLANK_LIMIT  # the blank is there


def _trained_like_net(seed=0):
    """A net whose batch-norm statistics are not the identity (a few training-mode passes)."""
    torch.manual_seed(seed)
    net = RealBogusNet(RealBogusConfig(base_width=4, depth=2))
    x = torch.nan_to_num(_stamps(n=16, seed=seed))
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net.forward_train(x + torch.randn_like(x))
    return net.eval()


def _unfolded(net, stamps):
    """The scoring path before the optimisation: torch normalisation, F.pad, the encoder with its batch norms."""
    cfg = net.config
    x = _normalize_before(stamps, valid_channel=cfg.valid_channel)
    pad = cfg.padded_size - x.shape[-1]
    x = F.pad(x, (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2))
    bottom, _ = net.unet.encode(x)
    prob = torch.sigmoid(net.unet.classify(bottom))
    return torch.where(net._judgeable(stamps), prob, torch.full_like(prob, float("nan")))


def test_folded_scoring_path_equals_the_unfolded_one_and_follows_weight_changes():
    net = _trained_like_net()
    x = _stamps(n=10)
    x[2, 2] = float("nan")  # no difference pixel: nothing to judge
    with torch.inference_mode():
        new, old = net(x), _unfolded(net, x)
    assert torch.isnan(new[2]) and torch.isnan(old[2])
    np.testing.assert_allclose(new.numpy(), old.numpy(), rtol=0, atol=1e-5)
    # new weights (a checkpoint loaded into the same net): the folded copy is rebuilt, not stale
    other = _trained_like_net(seed=1)
    net.load_state_dict(other.state_dict())
    with torch.inference_mode():
        np.testing.assert_allclose(net(x).numpy(), _unfolded(other, x).numpy(), rtol=0, atol=1e-5)
    # the folded copy is a cache: not in the state dict, not pickled (MLflow pickles the net)
    assert not any(k.startswith("_folded") for k in net.state_dict())
    assert "_folded" not in pickle.loads(pickle.dumps(net)).__dict__


def test_weights_moved_inside_inference_mode_still_score():
    # net.to("cuda") inside torch.inference_mode() makes the weights inference tensors, which have no version
    # counter: the folded-encoder cache read it and the first forward raised (found on a GPU); a dtype round
    # trip makes the same tensors on the CPU
    net = _trained_like_net()
    x = _stamps(n=6)
    with torch.inference_mode():
        before = net(x)
        net.double().float()
        assert next(net.parameters()).is_inference()
        after = net(x)
    np.testing.assert_allclose(after.numpy(), before.numpy(), rtol=0, atol=1e-6)

def test_missing_empty_and_wrong_shaped_stamps():
    net = _trained_like_net()
    with torch.inference_mode():
        assert net(torch.zeros(0, 3, 63, 63)).shape == (0,)
        assert torch.isnan(net(torch.full((3, 3, 63, 63), float("nan")))).all()
        small = net(_stamps(n=2, size=31)[:, :, :, :30])  # smaller stamps (Rubin's 30 px cutouts on a canvas) are padded
        assert small.shape == (2,) and torch.isfinite(small).all()
        with pytest.raises(ValueError, match="exceed"):
            net(torch.zeros(1, 3, 65, 65))
        with pytest.raises(ValueError, match="channels"):
            net(torch.zeros(2, 4, 63, 63))
        with pytest.raises(ValueError, match=r"\(batch, 3, H, W\)"):
            net(torch.zeros(3, 63, 63))
    with pytest.raises(ValueError, match="batch, channels"):
        normalize_stamps(torch.zeros(3, 63, 63))
    assert normalize_stamps(torch.zeros(0, 3, 63, 63)).shape == (0, 4, 63, 63)


def test_blank_rectangles_leave_the_candidate_and_mark_the_mask():
    from astroray.models.lightning_modules import blank_rectangles

    x = _stamps(n=32)
    x[~torch.isfinite(x)] = 0.0  # start from finite stamps, so every NaN below is a blank
    mask = torch.ones((32, 63, 63), dtype=torch.int64)
    g = torch.Generator().manual_seed(0)
    out, out_mask = blank_rectangles(x, mask, 1.0, generator=g)
    blank = torch.isnan(out)
    assert torch.equal(blank, blank[:, :1].expand_as(blank))  # the same pixels in every channel
    per_stamp = blank[:, 0].flatten(1).sum(1)
    assert (per_stamp > 0).all() and (per_stamp <= 32 * 32).all()
    assert not blank[:, :, 27:36, 27:36].any()  # the 9x9 box around the candidate stays
    assert torch.equal(out_mask == -100, blank[:, 0])
    assert torch.equal(out[~blank], x[~blank]) and torch.isfinite(x).all() and (mask == 1).all()  # copies
    # fraction 0: nothing changes; a fraction blanks about that share
    same, _ = blank_rectangles(x, None, 0.0)
    assert torch.equal(same, x)
    some, _ = blank_rectangles(_stamps(n=400, size=31).nan_to_num(), None, 0.25, generator=g)
    share = torch.isnan(some[:, 0]).flatten(1).any(1).float().mean()
    assert 0.17 < float(share) < 0.33


def test_training_step_with_blanks_gives_a_finite_loss():
    from astroray.models.lightning_modules import RealBogusModule

    torch.manual_seed(0)
    module = RealBogusModule({"blank_fraction": 1.0})
    x = _stamps(n=8)
    batch = {"stamps": x, "label": torch.tensor([0.0, 1.0] * 4),
             "mask": torch.zeros((8, 63, 63), dtype=torch.int64)}
    loss, logit = module._step(batch, train=True)
    assert torch.isfinite(loss) and logit.shape == (8,)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in module.parameters() if p.grad is not None)
