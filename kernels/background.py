"""Mesh background kernels (SExtractor / SEP ``back.c``), written against ``xp``."""
from __future__ import annotations

__all__ = ["MeshBackground", "mesh_background"]


class MeshBackground:  # placeholder, filled in below
    pass


def mesh_background(data, mask=None, *, box_size=(64, 64), filter_size=(3, 3), filter_threshold=0.0):
    raise NotImplementedError("array background not written yet")
