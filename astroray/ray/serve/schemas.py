"""Request and response bodies of the HTTP API (they make the OpenAPI schema)."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from astroray.config import AstrorayConfig
from astroray.imaging.pipeline import ImagePipelineConfig
from astroray.io.limits import ReadLimits

__all__ = ["ServeAppConfig", "DifferenceRequest", "Detection", "DifferenceResponse", "Health"]


class ServeAppConfig(AstrorayConfig):
    """``args:`` of the Serve application in ``configs/serve.yaml`` (validated by Serve)."""

    pipeline: ImagePipelineConfig = Field(default_factory=ImagePipelineConfig)
    max_request_mb: float = Field(default=256.0, gt=0)
    """Larger request bodies get HTTP 413 (a 4k x 4k float32 exposure is ~200 MB with its planes)."""
    request_timeout_s: float = Field(default=30.0, gt=0)
    """A request body that has not arrived whole in this time gets HTTP 408."""
    read_limits: ReadLimits | None = None
    """Bounds on decoding the FITS in a request (default: 4 x max_request_mb for files and decompressed content,
    so a gzip bomb costs at most that much memory while it is refused)."""
    differencer_num_gpus: float = Field(default=0.0, ge=0)
    """GPU share of each differencer replica (set > 0 with ``pipeline.device: gpu``)."""


class DifferenceRequest(BaseModel):
    """Two exposures as base64-encoded astroray FITS files (IMAGE, VARIANCE, MASK, PSF HDUs)."""

    model_config = ConfigDict(extra="forbid")

    reference: str = Field(description="base64 of the reference (template) exposure FITS")
    science: str = Field(description="base64 of the science (new epoch) exposure FITS")
    return_difference: bool = Field(default=False, description="also return D as base64 FITS")
    max_detections: int = Field(default=1000, ge=0, le=100_000, description="cap on detections returned")


class Detection(BaseModel):
    x: float
    y: float
    ra: float | None
    dec: float | None
    flux: float
    flux_err: float
    snr: float
    sign: int
    psf_likeness: float
    on_streak: bool = False
    """On a satellite streak found in the same difference."""


class DifferenceResponse(BaseModel):
    science_id: str
    n_detections: int
    detections: list[Detection]
    flux_ratio: float | None
    method: str
    device: str
    timings_ms: dict[str, float]
    difference_fits: str | None = None
    streaks: list[list[float]] = []
    """Satellite streaks as ``[x0, y0, x1, y1, half_width]`` in pixels."""


class Health(BaseModel):
    status: str
    version: str
    deployments: list[str]
