"""Request and response bodies of the HTTP API (they make the OpenAPI schema)."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from astroray.config import AstrorayConfig
from astroray.imaging.pipeline import ImagePipelineConfig
from astroray.io.limits import ReadLimits
from astroray.models.alert_scoring import AlertScorerConfig
from astroray.models.scoring import StampScorerConfig

__all__ = ["ServeAppConfig", "DifferenceRequest", "Detection", "DifferenceResponse", "Health"]
__all__ += ["NerServeConfig", "NerRequest", "NerEntity", "NerResponse", "NerHtmlRequest"]
__all__ += ["ClassifierServeConfig", "LightCurveIn", "ClassifyRequest", "ClassPrediction", "ClassifyResponse",
            "RareEventPrediction"]
__all__ += ["RealBogusServeConfig", "RealBogusRequest", "RealBogusResponse"]
__all__ += ["AlertsServeConfig", "AlertScoreOut", "AlertsResponse", "ReplicaOptions", "DEPLOYMENT_NAMES"]


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
    rare_events: dict | None = None
    """A rare-event model beside the classifier (:class:`~astroray.models.rare_events.RareEventScorerConfig`;
    ``{}``: ``models:/astroray-protonet@champion``): every prediction also carries its rare-event class
    probabilities, "none of these", anomaly score and uncertainty.  None: not used."""


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


DEPLOYMENT_NAMES = ("ingress", "differencer", "alerts", "classifier", "realbogus", "ner")


class ReplicaOptions(AstrorayConfig):
    """Serve options of one deployment's replicas (None: the deployment's own default)."""

    num_cpus: float | None = Field(default=None, ge=0)
    """CPUs each replica reserves (default 1); fractions let a small machine hold the whole graph."""
    num_replicas: int | None = Field(default=None, ge=1)
    max_ongoing_requests: int | None = Field(default=None, ge=1)
    """Requests a replica works on at once."""
    max_queued_requests: int | None = Field(default=None, ge=-1)
    """Requests waiting for a replica; past it callers get 503 at once (-1: unbounded)."""
    autoscaling_config: dict | None = None
    """Serve's ``autoscaling_config`` (``min_replicas``, ``max_replicas``, ``target_ongoing_requests``, ...)."""

    def serve_options(self, *, num_gpus: float = 0.0) -> dict:
        """Keyword arguments of ``Deployment.options``."""
        out = {k: v for k, v in (("num_replicas", self.num_replicas),
                                 ("max_ongoing_requests", self.max_ongoing_requests),
                                 ("max_queued_requests", self.max_queued_requests),
                                 ("autoscaling_config", self.autoscaling_config)) if v is not None}
        actor = {k: v for k, v in (("num_cpus", self.num_cpus), ("num_gpus", num_gpus or None)) if v is not None}
        if actor:
            out["ray_actor_options"] = actor
        return out


class AlertsServeConfig(AstrorayConfig):
    """The ``alerts:`` section of the Serve app's args: the alert scorer behind ``/alerts``."""

    scorer: AlertScorerConfig = Field(default_factory=AlertScorerConfig)
    """The models (``realbogus``, ``classifier``, ``rare_events``: a section set to null is not run) and their store."""
    max_alerts: int = Field(default=1000, ge=1)
    """Alerts per request (more: HTTP 413)."""
    max_batch_size: int = Field(default=8, ge=1)
    """Requests gathered into one pass of each model (``@serve.batch``)."""
    batch_wait_timeout_s: float = Field(default=0.005, ge=0)
    reload_check_s: float = Field(default=30.0, ge=0)
    """How often a replica checks whether an alias moved (0: before every batch)."""
    num_gpus: float = Field(default=0.0, ge=0)


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
    alerts: AlertsServeConfig | None = None
    """The alert scorer behind ``/alerts`` (None: not deployed, the route answers 404)."""
    max_in_flight: dict[str, int] = Field(default_factory=dict)
    """Requests of a route (``difference``, ``alerts``, ...) each ingress replica lets in at once; past that, 503
    before the body is read (refusing costs less than the work refused).  Set it to what the deployment behind
    the route holds (``max_ongoing_requests + max_queued_requests`` times its replicas); absent: no limit here."""
    max_wait_ms: float = Field(default=0.0, ge=0, le=10_000)
    """How long a request past ``max_in_flight`` waits for a slot (behind at most that many others) before its
    503 (0: none).  A short wait absorbs the jitter of arrivals below capacity; in overload it keeps every slot
    busy, which raises the admitted requests' latency (``benchmarks/bench_serve.py`` measures both)."""
    deployments: dict[str, ReplicaOptions] = Field(default_factory=dict)
    """Replica options by deployment name (``ingress``, ``differencer``, ``alerts``, ``classifier``,
    ``realbogus``, ``ner``): CPUs, replicas or autoscaling, and the request bounds that turn overload into 503s.
    From Python (``build_app``) and tests; a Serve config file's own ``deployments:`` list overrides them."""

    @field_validator("deployments")
    @classmethod
    def _known_deployments(cls, value):
        unknown = sorted(set(value) - set(DEPLOYMENT_NAMES))
        if unknown:
            raise ValueError(f"unknown deployment(s) {unknown}; known: {', '.join(DEPLOYMENT_NAMES)}")
        return value


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


class RareEventPrediction(BaseModel):
    """The rare-event model's scores of one light curve (nulls: no point it could use)."""

    predicted_class: str | None
    probabilities: dict[str, float | None]
    """Over the rare-event model's classes (its support)."""
    open_set_score: float | None
    """Normalised distance to the nearest class prototype (higher: more foreign)."""
    none_of_these: bool
    """``open_set_score`` above the model's threshold: like none of its classes."""
    anomaly_score: float | None
    """Strangeness percentile among the model's reference objects, 0-1."""
    entropy: float | None
    """Predictive entropy of ``probabilities`` (nats)."""
    mutual_information: float | None
    """The part of ``entropy`` from the ensemble members disagreeing (high: unlike anything seen in training)."""


class ClassPrediction(BaseModel):
    object_id: str
    predicted_class: str
    probability: float
    """Of the predicted class."""
    probabilities: dict[str, float]
    """Calibrated probability of every class (they sum to 1)."""
    n_points: int
    """Points the model read (in its bands, after cleaning); 0: its answer for an empty light curve."""
    rare_events: RareEventPrediction | None = None
    """The rare-event model's view (null: none configured, or not registered yet)."""


class ClassifyResponse(BaseModel):
    model_name: str | None
    model_version: int | None
    calibrated: bool
    classes: list[str]
    predictions: list[ClassPrediction]
    rare_events_model: dict | None = None
    """``name``, ``version`` and ``classes`` of the rare-event model (null: none in use)."""


class AlertScoreOut(BaseModel):
    """The scores of one alert (null: that model could not score it; ``notes`` says why)."""

    alert_id: str
    object_id: str
    survey: str
    source: str | None = None
    mjd: float | None
    band: str
    ra: float | None
    dec: float | None
    rb: float | None = Field(description="real/bogus probability from the cutouts")
    real: bool | None = Field(description="rb at or above the model's threshold")
    class_: str | None = Field(alias="class", description="most probable light-curve class")
    class_probability: float | None
    class_probabilities: dict[str, float] | None = Field(description="calibrated probability of every class")
    n_points: int | None = Field(description="points of the history the classifier read")
    rare_class: str | None = Field(description="nearest ProtoNet prototype among the support classes")
    rare_probability: float | None
    open_set_score: float | None = Field(description="distance to the nearest prototype (higher: more foreign)")
    none_of_these: bool | None = Field(description="open_set_score above the threshold set on known objects")
    anomaly_score: float | None = Field(description="percentile among the reference objects, 0..1 (1: strangest)")
    survey_scores: dict[str, float] | None = Field(description="the survey's own scores (ZTF rb/drb, Rubin "
                                                               "reliability)")
    realbogus_version: int | None
    classifier_version: int | None
    rare_events_version: int | None
    notes: str | None = Field(description="why a model left its scores null")

    model_config = ConfigDict(populate_by_name=True)


class AlertsResponse(BaseModel):
    n_alerts: int
    models: dict[str, dict] = Field(description="name, version, run id and URI of each model that scored")
    classes: list[str]
    rare_classes: list[str]
    alerts: list[AlertScoreOut]
