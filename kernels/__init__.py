"""Array kernels (installed as ``astroray.kernels``).

NumPy/SciPy/Numba on the CPU, CuPy/Numba-CUDA on the GPU, written once against
the array module from :mod:`astroray.kernels.backend`.  No Ray and no ML
frameworks are imported here.
"""
