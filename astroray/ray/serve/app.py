"""The HTTP ingress and the application builder used by ``configs/serve.yaml``.

The ingress validates requests (size, encoding) and forwards work to the
deployments through ``DeploymentHandle``s; more deployments (real/bogus,
light-curve classifier, NER) join as further handles in :func:`build_app`.
User errors come back as HTTP 4xx with a message, never as a 500.
"""

import base64
import binascii

from fastapi import Request
from fastapi_offline import FastAPIOffline
from ray import serve
from ray.serve.handle import DeploymentHandle

from astroray._version import __version__
from astroray.ray.serve.deployments import DifferencerDeployment
from astroray.ray.serve.http import json_body_openapi, raise_for_user_error, read_json_body, reject
from astroray.ray.serve.schemas import DifferenceRequest, DifferenceResponse, Health, ServeAppConfig

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


@serve.deployment(name="ingress", max_ongoing_requests=16)
@serve.ingress(api)
class Ingress:
    """FastAPI front door; holds one handle per inference deployment."""

    def __init__(self, differencer: DeploymentHandle, *, realbogus: DeploymentHandle | None = None,
                 classifier: DeploymentHandle | None = None, ner: DeploymentHandle | None = None,
                 max_request_mb: float = 256.0, request_timeout_s: float = 30.0):
        # model deployments are optional: an app without a model configured serves /difference alone
        self.differencer = differencer
        self.realbogus = realbogus
        self.classifier = classifier
        self.ner = ner
        self.max_request_bytes = int(max_request_mb * 2**20)
        self.request_timeout_s = float(request_timeout_s)

    def _require(self, handle: DeploymentHandle | None, name: str, route: str) -> DeploymentHandle:
        if handle is None:
            reject(404, f"no {name} model is configured in this application; add its section to the Serve config",
                   route=route)
        return handle

    @api.get("/healthz", response_model=Health)
    async def healthz(self) -> Health:
        present = [name for name in ("differencer", "realbogus", "classifier", "ner") if getattr(self, name) is not None]
        return Health(status="ok", version=__version__, deployments=present)

    @api.post("/difference", response_model=DifferenceResponse, openapi_extra=json_body_openapi(DifferenceRequest),
              responses={408: {"description": "the body did not arrive in time"},
                         413: {"description": "request too large"}, 422: {"description": "bad input"}})
    async def difference(self, request: Request) -> DifferenceResponse:
        """Difference a reference/science FITS pair sent as base64 in JSON; returns detections."""
        route = "/difference"
        req = await read_json_body(request, DifferenceRequest, limit=self.max_request_bytes,
                                   timeout_s=self.request_timeout_s, route=route)
        ref, sci = _decode("reference", req.reference, route), _decode("science", req.science, route)
        out = await self.differencer.difference.remote(ref, sci, return_difference=req.return_difference,
                                                       max_detections=req.max_detections)
        return DifferenceResponse(**raise_for_user_error(out, route=route))


def _serve_limits(args: ServeAppConfig):
    from astroray.io.limits import ReadLimits

    if args.read_limits is not None:
        return args.read_limits
    bound = 4 * args.max_request_mb
    return ReadLimits(max_file_mb=bound, max_decompressed_mb=bound)


def build_app(args: ServeAppConfig) -> serve.Application:
    """Compose the deployments behind the ingress (``import_path`` of ``configs/serve.yaml``)."""
    if isinstance(args, dict):  # `serve.run(build_app({...}))` from Python
        args = ServeAppConfig.model_validate(args)
    differencer = DifferencerDeployment.options(
        ray_actor_options={"num_gpus": args.differencer_num_gpus} if args.differencer_num_gpus else {}
    ).bind(args.pipeline.model_dump(mode="json"), read_limits=_serve_limits(args).model_dump(mode="json"))
    return Ingress.bind(differencer, max_request_mb=args.max_request_mb, request_timeout_s=args.request_timeout_s)
