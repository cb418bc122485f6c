"""The HTTP ingress and the application builder used by ``configs/serve.yaml``.

The ingress validates requests (size, encoding) and forwards work to the
deployments through ``DeploymentHandle``s; more deployments (real/bogus,
light-curve classifier, NER) join as further handles in :func:`build_app`.
User errors come back as HTTP 4xx with a message, never as a 500.
"""

import base64
import binascii

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from ray import serve
from ray.serve.handle import DeploymentHandle

from astroray._version import __version__
from astroray.errors import InvalidInputError
from astroray.ray.serve.deployments import DifferencerDeployment
from astroray.ray.serve.schemas import DifferenceRequest, DifferenceResponse, Health, ServeAppConfig

__all__ = ["Ingress", "build_app", "api"]

api = FastAPI(
    title="astroray",
    version=__version__,
    description="Difference imaging, detection and alert scoring for time-domain surveys.",
)


def _user_message(exc: InvalidInputError) -> str:
    """The user's error without Ray's remote traceback (a handle re-raises it as RayTaskError)."""
    cause = getattr(exc, "cause", None)
    return str(cause if isinstance(cause, InvalidInputError) else exc)


def _decode(name: str, text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise HTTPException(status_code=422, detail=f"{name}: not valid base64") from None


@serve.deployment(name="ingress", max_ongoing_requests=16)
@serve.ingress(api)
class Ingress:
    """FastAPI front door; holds one handle per inference deployment."""

    def __init__(self, differencer: DeploymentHandle, max_request_mb: float = 256.0):
        self.differencer = differencer
        self.max_request_bytes = int(max_request_mb * 2**20)

    @api.get("/healthz", response_model=Health)
    async def healthz(self) -> Health:
        return Health(status="ok", version=__version__, deployments=["differencer"])

    @api.post("/difference", response_model=DifferenceResponse,
              responses={413: {"description": "request too large"}, 422: {"description": "bad input"}})
    async def difference(self, request: Request) -> DifferenceResponse:
        """Difference a reference/science FITS pair sent as base64 in JSON; returns detections."""
        length = request.headers.get("content-length")
        if length is not None and int(length) > self.max_request_bytes:
            raise HTTPException(status_code=413, detail=(
                f"request body of {int(length)} bytes exceeds the limit of {self.max_request_bytes} bytes "
                "(max_request_mb in the Serve config)"))
        body = await request.body()
        if len(body) > self.max_request_bytes:
            raise HTTPException(status_code=413, detail=f"request body exceeds {self.max_request_bytes} bytes")
        try:
            req = DifferenceRequest.model_validate_json(body)
        except ValueError as exc:
            raise HTTPException(status_code=422, detail=f"malformed request: {exc}") from None
        ref, sci = _decode("reference", req.reference), _decode("science", req.science)
        try:
            out = await self.differencer.difference.remote(ref, sci, return_difference=req.return_difference,
                                                           max_detections=req.max_detections)
        except InvalidInputError as exc:
            raise HTTPException(status_code=422, detail=_user_message(exc)) from None
        return DifferenceResponse(**out)


@api.exception_handler(InvalidInputError)
async def _invalid_input(request: Request, exc: InvalidInputError):
    return JSONResponse(status_code=422, content={"detail": str(exc)})


def build_app(args: ServeAppConfig) -> serve.Application:
    """Compose the deployments behind the ingress (``import_path`` of ``configs/serve.yaml``)."""
    if isinstance(args, dict):  # `serve.run(build_app({...}))` from Python
        args = ServeAppConfig.model_validate(args)
    differencer = DifferencerDeployment.options(
        ray_actor_options={"num_gpus": args.differencer_num_gpus} if args.differencer_num_gpus else {}
    ).bind(args.pipeline.model_dump(mode="json"))
    return Ingress.bind(differencer, max_request_mb=args.max_request_mb)
