"""Source extraction kernels: SExtractor's detection and measurement as array code.

Written against ``xp`` (NumPy or CuPy) so CI runs the GPU algorithm with
NumPy; per-object loops that do not vectorise are Numba kernels with a CPU
twin and a CUDA twin.
"""
from astroray.kernels.extract.measure import moments_errors  # noqa: F401

__all__ = ["moments_errors"]
