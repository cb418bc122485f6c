"""Source extraction kernels: SExtractor's detection and measurement as array code.

Written against ``xp`` (NumPy or CuPy) so CI runs the GPU algorithm with
NumPy; per-object loops that do not vectorise are Numba kernels with a CPU
twin and a CUDA twin (:mod:`astroray.kernels.extract.deblend`).

Modules: :mod:`~.detect` (filter, threshold, labels), :mod:`~.deblend`,
:mod:`~.measure` (SExtractor's ``analyse``), :mod:`~.clean`,
:mod:`~.aperture` (circle/ellipse sums, Kron, flux radius, windowed
positions), :mod:`~.pipeline` (all of it), :mod:`~.testing` (simulated fields).
"""
from astroray.kernels.extract.measure import moments_errors  # noqa: F401
from astroray.kernels.extract.pipeline import ExtractOutput, extract  # noqa: F401

__all__ = ["extract", "ExtractOutput", "moments_errors"]
