"""The HTTP ingress and the application builder used by ``configs/serve.yaml``.

The ingress validates requests (size, encoding) and forwards work to the
deployments through ``DeploymentHandle``s; more deployments (real/bogus,
light-curve classifier, NER) join as further handles in :func:`build_app`.
User errors come back as HTTP 4xx with a message, never as a 500.
"""

import base64
import binascii

from fastapi import Request, Response
from fastapi.responses import HTMLResponse
from fastapi_offline import FastAPIOffline
from ray import serve
from ray.serve.handle import DeploymentHandle

from astroray._version import __version__
from astroray.ray.serve.deployments import DifferencerDeployment
from astroray.ray.serve.ner import NerDeployment
from astroray.ray.serve.http import json_body_openapi, raise_for_user_error, read_body, read_json_body, reject
from astroray.ray.serve.http import InFlightLimiter
from astroray.ray.serve.schemas import DifferenceRequest, DifferenceResponse, Health, ServeAppConfig
from astroray.ray.serve.schemas import NerHtmlRequest, NerRequest, NerResponse
from astroray.ray.serve.schemas import ClassifyRequest, ClassifyResponse
from astroray.ray.serve.schemas import RealBogusRequest, RealBogusResponse
from astroray.ray.serve.schemas import AlertsResponse

__all__ = ["Ingress", "build_app", "api"]

# Swagger UI and ReDoc from local files: /docs works without the network.
api = FastAPIOffline(
    title="astroray",
    version=__version__,
    description="Difference imaging, detection and alert scoring for time-domain surveys.",
)


def _decode(name: str, text: str, route: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        reject(422, f"{name}: not valid base64", route=route)


_ALERTS_BODY = {"requestBody": {"required": True, "content": {
    "application/avro": {"schema": {"type": "string", "format": "binary"},
                         "example": "an Avro container file of ZTF or Rubin alert packets"},
    "application/json": {"schema": {"oneOf": [{"type": "object", "description": "one alert packet (ZTF: candidate, "
                                                                                  "prv_candidates, cutout*; Rubin: "
                                                                                  "diaSource, ...)"},
                                              {"type": "array", "items": {"type": "object"}}]}},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"},
                                 "description": "Avro or Parquet alert files, recognised by their content"}}}}


# Past max_ongoing_requests, requests wait in a bounded queue; past that the proxy answers 503 at once
# (overload is refused, never queued without bound).
@serve.deployment(name="ingress", max_ongoing_requests=32, max_queued_requests=16)
@serve.ingress(api)
class Ingress:
    """FastAPI front door; holds one handle per inference deployment."""

    def __init__(self, differencer: DeploymentHandle, *, realbogus: DeploymentHandle | None = None,
                 classifier: DeploymentHandle | None = None, ner: DeploymentHandle | None = None,
                 alerts: DeploymentHandle | None = None, max_request_mb: float = 256.0,
                 request_timeout_s: float = 30.0, max_in_flight: dict[str, int] | None = None,
                 max_wait_ms: float = 0.0, ingress_replicas: int = 1):
        # model deployments are optional: an app without a model configured serves /difference alone
        self.differencer = differencer
        self.realbogus = realbogus
        self.classifier = classifier
        self.ner = ner
        self.alerts = alerts
        self.max_request_bytes = int(max_request_mb * 2**20)
        self.request_timeout_s = float(request_timeout_s)
        self._admit = InFlightLimiter(max_in_flight, max_wait_ms=max_wait_ms, ingress_replicas=ingress_replicas)

    def _require(self, handle: DeploymentHandle | None, name: str, route: str) -> DeploymentHandle:
        if handle is None:
            reject(404, f"no {name} model is configured in this application; add its section to the Serve config",
                   route=route)
        return handle

    @api.get("/healthz", response_model=Health)
    async def healthz(self) -> Health:
        present = [name for name in ("differencer", "realbogus", "classifier", "ner", "alerts")
                   if getattr(self, name) is not None]
        return Health(status="ok", version=__version__, deployments=present)

    @api.post("/difference", response_model=DifferenceResponse, openapi_extra=json_body_openapi(DifferenceRequest),
              responses={408: {"description": "the body did not arrive in time"},
                         413: {"description": "request too large"}, 422: {"description": "bad input"},
                         503: {"description": "overloaded: retry later"}})
    async def difference(self, request: Request, response: Response) -> DifferenceResponse:
        """Difference a reference/science FITS pair sent as base64 in JSON; returns detections."""
        route = "/difference"
        response.headers.update(self._admit.headers(route))
        async with self._admit(route, behind="differencer"):
            req = await read_json_body(request, DifferenceRequest, limit=self.max_request_bytes,
                                       timeout_s=self.request_timeout_s, route=route)
            ref, sci = _decode("reference", req.reference, route), _decode("science", req.science, route)
            out = await self.differencer.difference.remote(ref, sci, return_difference=req.return_difference,
                                                           max_detections=req.max_detections)
        return DifferenceResponse(**raise_for_user_error(out, route=route))

    @api.post("/ner", response_model=NerResponse, openapi_extra=json_body_openapi(NerRequest),
              responses={404: {"description": "no NER model in this application"},
                         413: {"description": "request, a text or the number of texts too large"},
                         422: {"description": "bad input (not UTF-8 JSON, not a list of strings)"}})
    async def ner(self, request: Request) -> NerResponse:
        """Source, event and facility names in each text, with character offsets and normalised names."""
        route = "/ner"
        handle = self._require(self.ner, "NER", route)
        req = await read_json_body(request, NerRequest, limit=self.max_request_bytes,
                                   timeout_s=self.request_timeout_s, route=route)
        if req.ids is not None and len(req.ids) != len(req.texts):
            reject(422, f"{len(req.ids)} ids for {len(req.texts)} texts: give one id per text, or none", route=route)
        out = raise_for_user_error(await handle.find.remote(req.texts), route=route)
        ids = req.ids if req.ids is not None else [str(i) for i in range(len(req.texts))]
        return NerResponse(model=out["model"], results=[{"id": i, "entities": ents}
                                                        for i, ents in zip(ids, out["results"])])

    @api.post("/ner/html", response_class=HTMLResponse, openapi_extra=json_body_openapi(NerHtmlRequest),
              responses={404: {"description": "no NER model in this application"},
                         413: {"description": "request or text too large"}, 422: {"description": "bad input"}})
    async def ner_html(self, request: Request) -> HTMLResponse:
        """One text with its names marked, as a displaCy HTML page for people."""
        route = "/ner/html"
        handle = self._require(self.ner, "NER", route)
        req = await read_json_body(request, NerHtmlRequest, limit=self.max_request_bytes,
                                   timeout_s=self.request_timeout_s, route=route)
        return HTMLResponse(raise_for_user_error(await handle.html.remote(req.text), route=route))

    @api.post("/classify", response_model=ClassifyResponse, openapi_extra=json_body_openapi(ClassifyRequest),
              responses={404: {"description": "no light-curve classifier in this application"},
                         413: {"description": "request too large"},
                         422: {"description": "bad input (lists of unequal length, a NaN time, ...)"}})
    async def classify(self, request: Request) -> ClassifyResponse:
        """Calibrated class probabilities of light curves (JSON lists per light curve), from the registered
        light-curve transformer."""
        route = "/classify"
        handle = self._require(self.classifier, "light-curve classifier", route)
        req = await read_json_body(request, ClassifyRequest, limit=self.max_request_bytes,
                                   timeout_s=self.request_timeout_s, route=route)
        items = [lc.model_dump() for lc in req.lightcurves]
        return ClassifyResponse(**raise_for_user_error(await handle.classify.remote(items), route=route))

    @api.post("/realbogus", response_model=RealBogusResponse, openapi_extra=json_body_openapi(RealBogusRequest),
              responses={404: {"description": "no real/bogus model in this application"},
                         413: {"description": "request too large, too many stamps or stamps too large"},
                         422: {"description": "bad input (not base64 .npy or numbers, wrong shape or channels)"}})
    async def realbogus(self, request: Request) -> RealBogusResponse:
        """Real/bogus scores of candidate stamps from the registered model (``models:/astroray-realbogus@champion``)."""
        route = "/realbogus"
        handle = self._require(self.realbogus, "real/bogus", route)
        req = await read_json_body(request, RealBogusRequest, limit=self.max_request_bytes,
                                   timeout_s=self.request_timeout_s, route=route)
        return RealBogusResponse(**raise_for_user_error(await handle.score.remote(req.stamps, req.ids), route=route))

    @api.post("/alerts", response_model=AlertsResponse, response_model_by_alias=True,
              openapi_extra=_ALERTS_BODY,
              responses={404: {"description": "no alert scorer in this application"},
                         413: {"description": "request too large, or more alerts than max_alerts"},
                         422: {"description": "malformed packets (not Avro/JSON/Parquet alerts, a missing field)"},
                         503: {"description": "overloaded (retry later), or the models are not registered yet"}})
    async def alerts(self, request: Request, response: Response) -> AlertsResponse:
        """Real/bogus on the cutouts, class probabilities on the history, rare-event and anomaly scores of one or
        many ZTF or Rubin alert packets (an Avro container, JSON, or Parquet), in one response."""
        route = "/alerts"
        response.headers.update(self._admit.headers(route))
        handle = self._require(self.alerts, "alert scorer", route)
        async with self._admit(route, behind="alert scorer"):
            body = await read_body(request, limit=self.max_request_bytes, timeout_s=self.request_timeout_s,
                                   route=route)
            out = await handle.score.remote(body)
        return raise_for_user_error(out, route=route)


def _options(args: ServeAppConfig, name: str, *, num_gpus: float = 0.0) -> dict:
    """``Deployment.options`` of deployment ``name`` from the app's ``deployments:`` section (and its GPU share)."""
    from astroray.ray.serve.schemas import ReplicaOptions

    return args.deployments.get(name, ReplicaOptions()).serve_options(num_gpus=num_gpus)


def _alerts(args: ServeAppConfig):
    """The alert deployment of the ``alerts:`` section, each model's store made absolute here (replicas may not
    share this process's ``ASTRORAY_HOME``)."""
    from astroray.ray.serve.alerts import AlertsDeployment
    from astroray.tracking import tracking_uri

    section = args.alerts
    scorer = section.scorer.with_updates(tracking_uri=tracking_uri(section.scorer.tracking_uri))
    if scorer.threads is None:  # the models' thread pools fit the CPUs the replica holds
        cpus = args.deployments["alerts"].num_cpus if "alerts" in args.deployments else None
        scorer = scorer.with_updates(threads=max(1, int(cpus or 1)))
    return AlertsDeployment.options(**_options(args, "alerts", num_gpus=section.num_gpus)).bind(
        scorer.model_dump(mode="json"), max_alerts=section.max_alerts, max_batch_size=section.max_batch_size,
        batch_wait_timeout_s=section.batch_wait_timeout_s, reload_check_s=section.reload_check_s,
        read_limits=_serve_limits(args).model_dump(mode="json"))


def _serve_limits(args: ServeAppConfig):
    from astroray.io.limits import ReadLimits

    if args.read_limits is not None:
        return args.read_limits
    bound = 4 * args.max_request_mb
    return ReadLimits(max_file_mb=bound, max_decompressed_mb=bound)


def _classifier(args: ServeAppConfig):
    """The light-curve classifier deployment of the ``classifier:`` section (torch is imported only here)."""
    from astroray.ray.serve.classifier import LightCurveClassifierDeployment
    from astroray.tracking import tracking_uri

    section = args.classifier
    # the store is resolved here: replicas may not share this process's environment (ASTRORAY_HOME)
    return LightCurveClassifierDeployment.options(**_options(args, "classifier", num_gpus=section.num_gpus)).bind(
        {"model_uri": section.model_uri, "tracking_uri": tracking_uri(section.tracking_uri), "device": section.device},
        max_batch_size=section.max_batch_size, batch_wait_timeout_s=section.batch_wait_timeout_s,
        reload_check_s=section.reload_check_s,
        rare_events_config=None if section.rare_events is None else {
            **section.rare_events,
            "tracking_uri": tracking_uri(section.rare_events.get("tracking_uri") or section.tracking_uri)})


def _realbogus(args: ServeAppConfig):
    """The real/bogus deployment of the ``realbogus:`` section (its model in ``user_config``: see reconfigure)."""
    from astroray.ray.serve.realbogus import RealBogusDeployment, scorer_user_config

    section = args.realbogus
    return RealBogusDeployment.options(**_options(args, "realbogus", num_gpus=section.num_gpus),
                                       user_config=scorer_user_config(section)).bind(
        max_batch_size=section.max_batch_size, batch_wait_timeout_s=section.batch_wait_timeout_s)


def _differencer_scoring(args: ServeAppConfig) -> dict:
    """The differencer's in-process scorer: the ``realbogus:`` section's model, when there is one."""
    if args.realbogus is None:
        return {}
    from astroray.ray.serve.realbogus import scorer_user_config

    return {"realbogus": scorer_user_config(args.realbogus)["scorer"], "reload_check_s": args.realbogus.reload_check_s}


def build_app(args: ServeAppConfig) -> serve.Application:
    """Compose the deployments behind the ingress (``import_path`` of ``configs/serve.yaml``)."""
    if isinstance(args, dict):  # `serve.run(build_app({...}))` from Python
        args = ServeAppConfig.model_validate(args)
    options = _options(args, "differencer", num_gpus=args.differencer_num_gpus)
    differencer = DifferencerDeployment.options(**options).bind(
        args.pipeline.model_dump(mode="json"), read_limits=_serve_limits(args).model_dump(mode="json"),
        **_differencer_scoring(args))
    ner = None if args.ner is None else NerDeployment.options(**_options(args, "ner")).bind(
        args.ner.model_dump(mode="json"))
    classifier = None if args.classifier is None else _classifier(args)
    realbogus = None if args.realbogus is None else _realbogus(args)
    alerts = None if args.alerts is None else _alerts(args)
    return Ingress.options(**_options(args, "ingress")).bind(
        differencer, ner=ner, classifier=classifier, realbogus=realbogus, alerts=alerts,
        max_request_mb=args.max_request_mb, request_timeout_s=args.request_timeout_s,
        max_in_flight=args.max_in_flight, max_wait_ms=args.max_wait_ms, ingress_replicas=_ingress_replicas(args))


def _ingress_replicas(args: ServeAppConfig) -> int:
    """The most ingress replicas ``args`` declares (1 when they are set elsewhere, e.g. in the Serve config's own
    ``deployments:``): the proxies admit that many times each route's ``max_in_flight``."""
    ingress = args.deployments.get("ingress")
    if ingress is None:
        return 1
    scaling = ingress.autoscaling_config or {}
    return int(scaling.get("max_replicas") or ingress.num_replicas or 1)
