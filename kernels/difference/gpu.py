"""GPU-only pieces of differencing: pinned host buffers, a copy stream, host-to-host ZOGY.

Everything else in :mod:`astroray.kernels.difference` is written once against
the array module and runs on the GPU when given CuPy arrays (cuFFT through
:class:`~astroray.kernels.difference.common.FourierBackend`, with its plans
kept in CuPy's plan cache, and the Fourier-space arithmetic fused into one
kernel per step with :func:`cupy.fuse`).  What only exists on a GPU lives
here: page-locked host memory, so copies run at full PCIe speed and
asynchronously, and a dedicated copy stream.  CuPy is imported on use only.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from astroray.kernels.difference.common import FourierBackend
from astroray.kernels.difference.zogy import ZogyResult, zogy

__all__ = ["pinned_empty", "HostDeviceZogy"]


def pinned_empty(shape, dtype=np.float32) -> np.ndarray:
    """A NumPy array in page-locked (pinned) host memory.

    Readers that fill these directly (FITS decode, Arrow blocks) save the
    staging copy that pageable memory costs on every upload; copies from
    and to them can be asynchronous.
    """
    import cupy

    dtype = np.dtype(dtype)
    count = int(np.prod(shape))
    mem = cupy.cuda.alloc_pinned_memory(max(count * dtype.itemsize, 1))
    # np.frombuffer keeps `mem` alive through the array's base.
    return np.frombuffer(mem, dtype, count).reshape(shape)


class HostDeviceZogy:
    """ZOGY from pinned host inputs to pinned host outputs, copies on their own stream.

    The four inputs (``R``, ``N``, ``VR``, ``VN``) are uploaded on a copy
    stream, the differencing runs on a compute stream once they are in, and
    the requested outputs come back on the copy stream into pinned buffers.
    Buffers and streams are made once and reused for every pair of that shape.

    Parameters
    ----------
    shape : (int, int)
        Image shape.
    psf_reference, psf_science : ndarray
        PSF stamps (or grids, see :func:`~astroray.kernels.difference.zogy.zogy`).
    outputs : sequence of str
        :class:`ZogyResult` fields to bring back (default D and S_corr).
    **zogy_options
        Passed to :func:`~astroray.kernels.difference.zogy.zogy`.
    """

    INPUTS = ("R", "N", "VR", "VN")
    OUTPUTS = ("difference", "matched_filter", "score", "flux", "flux_err", "score_variance", "difference_variance")
    """The image-shaped :class:`ZogyResult` fields that can come back."""

    def __init__(self, shape, psf_reference, psf_science, *, outputs: Sequence[str] = ("difference", "score"),
                 **zogy_options):
        self.outputs = tuple(outputs)
        unknown = sorted(set(self.outputs) - set(self.OUTPUTS))
        if unknown:
            raise ValueError(f"outputs {unknown} are not image-shaped ZogyResult fields; choose from {self.OUTPUTS}")
        import cupy

        self._cp = cupy
        self.shape = tuple(shape)
        self.psf_reference, self.psf_science = psf_reference, psf_science
        self.options = zogy_options
        self._host_in = {k: pinned_empty(self.shape) for k in self.INPUTS}
        self._dev_in = {k: cupy.empty(self.shape, dtype=cupy.float32) for k in self.INPUTS}
        self._host_out = {k: pinned_empty(self.shape) for k in self.outputs}
        self.copy_stream = cupy.cuda.Stream(non_blocking=True)
        self.compute_stream = cupy.cuda.Stream(non_blocking=True)
        self.fft = FourierBackend(cupy)
        self._done = None  # event: the last differencing has finished reading the device inputs

    def host_inputs(self) -> dict[str, np.ndarray]:
        """The pinned input buffers ``R``, ``N``, ``VR``, ``VN``: fill them, then :meth:`run`."""
        return self._host_in

    def run(self, *, flux_ratio: float, **overrides) -> dict[str, np.ndarray]:
        """Difference the pair in the input buffers; returns the pinned output buffers (overwritten next call)."""
        self.last_result = self.run_on_device(flux_ratio=flux_ratio, **overrides)
        with self.copy_stream:
            self.copy_stream.wait_event(self.compute_stream.record())
            for k in self.outputs:
                value = getattr(self.last_result, k)
                if isinstance(value, float):  # a background-only constant (source_noise=False and the like)
                    self._host_out[k][...] = value
                else:
                    value.get(stream=self.copy_stream, out=self._host_out[k])
        self.copy_stream.synchronize()
        return self._host_out

    def run_on_device(self, *, flux_ratio: float, **overrides) -> ZogyResult:
        """Upload the inputs and difference them; the result stays on the GPU.

        The caller's current stream waits for the result, so reading it there
        (``cupy.asnumpy``, further kernels) is safe; the next upload waits until
        this differencing has read its inputs.
        """
        cupy = self._cp
        with self.copy_stream:
            if self._done is not None:
                self.copy_stream.wait_event(self._done)  # the previous pair's FFTs may still read _dev_in
            for k in self.INPUTS:
                self._dev_in[k].set(self._host_in[k], stream=self.copy_stream)
            uploaded = self.copy_stream.record()
        with self.compute_stream:
            self.compute_stream.wait_event(uploaded)
            opts = {**self.options, **overrides}
            d = self._dev_in
            result = zogy(d["R"], d["N"], self.psf_reference, self.psf_science, flux_ratio=flux_ratio,
                          variance_reference=d["VR"], variance_science=d["VN"], backend=self.fft, **opts)
            self._done = self.compute_stream.record()
        cupy.cuda.get_current_stream().wait_event(self._done)
        return result
