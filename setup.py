"""Package discovery only (metadata lives in pyproject.toml).

``kernels/`` sits at the top of the repository but installs as ``astroray.kernels``
(the bare name ``kernels`` clashes with another PyPI package); pyproject alone cannot
combine automatic discovery with that mapping.
"""
from setuptools import find_packages, setup

packages = find_packages(include=["astroray", "astroray.*"])
packages += ["astroray." + p for p in find_packages(include=["kernels", "kernels.*"])]
setup(packages=packages, package_dir={"astroray.kernels": "kernels"})
