"""Source extraction kernels: SExtractor's detection and measurement as array code.

Written against ``xp`` (NumPy or CuPy) so CI runs the GPU algorithm with
NumPy; per-object loops that do not vectorise are Numba kernels with a CPU
twin and a CUDA twin (:mod:`astroray.kernels.extract.deblend`).

Modules: :mod:`~.detect` (filter, threshold, labels), :mod:`~.deblend`
(trees as a Numba CPU twin and a CUDA kernel; pixel sharing as array code),
:mod:`~.measure` (SExtractor's ``analyse``, ``mthresh``), :mod:`~.clean`
(host Numba loops), :mod:`~.aperture` (circle/ellipse sums, Kron, flux
radius, windowed positions as array code; windowed positions also as a CUDA
kernel), :mod:`~.aperture_cuda` (the other aperture quantities as CUDA
kernels, one thread per object), :mod:`~.pipeline` (all of it),
:mod:`~.testing` (simulated star fields).

On the GPU (CuPy arrays) the per-object quantities run as the CUDA kernels;
on the CPU as array code. CI runs the CUDA kernels under
``NUMBA_ENABLE_CUDASIM=1`` against the array code, and the array code
against SEP and SExtractor.
"""
from astroray.kernels.extract.measure import moments_errors  # noqa: F401
from astroray.kernels.extract.pipeline import ExtractOutput, extract  # noqa: F401

__all__ = ["extract", "ExtractOutput", "moments_errors"]
