"""Request and response bodies of the HTTP API (they make the OpenAPI schema)."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from astroray.config import AstrorayConfig
from astroray.imaging.pipeline import ImagePipelineConfig
from astroray.io.limits import ReadLimits
from astroray.models.scoring import StampScorerConfig

__all__ = ["ServeAppConfig", "DifferenceRequest", "Detection", "DifferenceResponse", "Health"]
__all__ += ["NerServeConfig", "NerRequest", "NerEntity", "NerResponse", "NerHtmlRequest"]
__all__ += ["ClassifierServeConfig", "LightCurveIn", "ClassifyRequest", "ClassPrediction", "ClassifyResponse"]
__all__ += ["RealBogusServeConfig", "RealBogusRequest", "RealBogusResponse"]


class NerServeConfig(AstrorayConfig):
    """The ``ner:`` section of the Serve app's args: the NER deployment (``/ner``, ``/ner/html``)."""

    model_uri: str = "models:/astroray-ner@champion"
    """Registry/run URI, a saved pipeline folder, or ``rules`` (conventions, facilities, gazetteer; no model)."""
    tracking_uri: str | None = None
    fallback: str = Field(default="rules", pattern="^(rules|error)$")
    """When the alias is not registered: serve the rules (``rules``) or fail to start (``error``)."""
    gazetteer_dir: str | None = None
    """Gazetteer folder for the rules pipeline (a registered model carries its own)."""
    max_texts: int = Field(default=256, ge=1)
    """Texts per request (more: HTTP 413)."""
    max_text_chars: int = Field(default=1_000_000, ge=1)
    """Characters per text (more: HTTP 413); long texts are processed in pieces."""
    max_batch_size: int = Field(default=16, ge=1)
    """Requests gathered into one ``nlp.pipe`` call (``@serve.batch``)."""
    batch_wait_timeout_s: float = Field(default=0.01, ge=0)
    reload_check_s: float = Field(default=60.0, ge=0)
    """How often a replica checks whether the alias moved (0: never)."""



class ClassifierServeConfig(AstrorayConfig):
    """The ``classifier:`` section of the Serve app's args: the light-curve classifier behind ``/classify``."""

    model_uri: str = "models:/astroray-lc-transformer@champion"
    tracking_uri: str | None = None
    device: str = Field(default="cpu", pattern="^(cpu|gpu|auto)$")
    num_gpus: float = Field(default=0.0, ge=0)
    """GPU share of each replica (with ``device: gpu``)."""
    max_batch_size: int = Field(default=64, ge=1)
    """Requests gathered into one forward pass (``@serve.batch``)."""
    batch_wait_timeout_s: float = Field(default=0.01, ge=0)
    reload_check_s: float = Field(default=30.0, ge=0)
    """How often a replica checks whether the alias moved (0: before every batch)."""
class RealBogusServeConfig(StampScorerConfig):
    """The ``realbogus:`` section of the Serve app's args: the scorer behind ``/realbogus``, also used in-process
    by the differencer (``rb`` in its detections).  The scorer's options (``model_uri``, ``tracking_uri``,
    ``device``, ``threshold``, ...) plus how it is served."""

    num_gpus: float = Field(default=0.0, ge=0)
    """GPU share of each replica (with ``device: gpu``)."""
    max_batch_size: int = Field(default=64, ge=1)
    """Requests gathered into one forward pass (``@serve.batch``)."""
    batch_wait_timeout_s: float = Field(default=0.01, ge=0)
    reload_check_s: float = Field(default=30.0, ge=0)
    """How often a replica (and the differencer) checks whether the alias moved (0: before every batch)."""
    max_stamps: int = Field(default=4096, ge=1)
    """Candidates per request (more: HTTP 413)."""
    max_stamp_px: int = Field(default=256, ge=15)
    """Largest stamp side accepted (more: HTTP 413); stamps larger than the model's are centre-cropped."""


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
    ner: NerServeConfig | None = None
    """The NER deployment behind ``/ner`` and ``/ner/html`` (None: not deployed, those routes answer 404)."""
    classifier: ClassifierServeConfig | None = None
    """The light-curve classifier behind ``/classify`` (None: not deployed, the route answers 404)."""
    realbogus: RealBogusServeConfig | None = None
    """The real/bogus scorer behind ``/realbogus``, and in the differencer (None: neither; the route answers 404)."""


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
    rb: float | None = None
    """Real probability from the real/bogus model (null: no model configured, or nothing finite to judge)."""


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
    realbogus_model: dict | None = None
    """Name and version of the model behind the detections' ``rb`` (null: no real/bogus model configured)."""


class Health(BaseModel):
    status: str
    version: str
    deployments: list[str]


class NerRequest(BaseModel):
    """Texts to find source, event and facility names in (UTF-8 JSON)."""

    model_config = ConfigDict(extra="forbid")

    texts: list[str] = Field(description="the texts; an empty text has no names")
    ids: list[str] | None = Field(default=None, description="an id per text, echoed back (default: its position)")


class NerEntity(BaseModel):
    text: str
    label: str
    """SOURCE, EVENT or FACILITY."""
    start: int
    """Character offset of the name in its text (end excluded)."""
    end: int
    normalised: str
    source: str
    """What found it: ``rule:<convention>``, ``facility``, ``gazetteer`` or ``model``."""


class NerTextResult(BaseModel):
    id: str
    entities: list[NerEntity]


class NerResponse(BaseModel):
    model: str
    """Which pipeline answered (the registered version, or the rules)."""
    results: list[NerTextResult]


class NerHtmlRequest(BaseModel):
    """One text to show with its names marked (displaCy's entity view)."""

    model_config = ConfigDict(extra="forbid")

    text: str


class RealBogusRequest(BaseModel):
    """Candidates' stamps to score: ``(n, C, S, S)`` or one ``(C, S, S)``, channels in the model's order
    (science, reference, difference for the default model); NaN (or null) marks masked pixels."""

    model_config = ConfigDict(extra="forbid")

    stamps: str | list[list[list[list[float | None]]]] | list[list[list[float | None]]] = Field(
        description="base64 of a .npy file (numeric dtype, no pickles), or nested lists")
    ids: list[str] | None = Field(default=None, description="an id per candidate, echoed back (default: position)")


class RealBogusResponse(BaseModel):
    model_name: str | None
    model_version: int | None
    threshold: float
    """Real at or above it (chosen at 1% false positives on validation, unless the config sets one)."""
    ids: list[str]
    scores: list[float | None]
    """Real probability per candidate (null: no finite pixel in its difference stamp)."""
    real: list[bool]


class LightCurveIn(BaseModel):
    """One light curve: a value per point in each list (fluxes in nJy, times in MJD)."""

    model_config = ConfigDict(extra="forbid")

    object_id: str = Field(default="", max_length=256, description="echoed back (default: its position)")
    mjd: list[float] = Field(max_length=100_000)
    band: list[str] = Field(max_length=100_000, description="u g r i z y (LSST) or g r i (ZTF)")
    flux: list[float | None] = Field(max_length=100_000, description="null: an upper limit")
    flux_err: list[float] = Field(max_length=100_000)
    detected: list[bool] | None = Field(default=None, description="default: every point with a flux")


class ClassifyRequest(BaseModel):
    """Light curves to classify with the registered light-curve transformer."""

    model_config = ConfigDict(extra="forbid")

    lightcurves: list[LightCurveIn] = Field(min_length=1, max_length=1000)


class ClassPrediction(BaseModel):
    object_id: str
    predicted_class: str
    probability: float
    """Of the predicted class."""
    probabilities: dict[str, float]
    """Calibrated probability of every class (they sum to 1)."""
    n_points: int
    """Points the model read (in its bands, after cleaning); 0: its answer for an empty light curve."""


class ClassifyResponse(BaseModel):
    model_name: str | None
    model_version: int | None
    calibrated: bool
    classes: list[str]
    predictions: list[ClassPrediction]
