"""Deployment files: the launcher YAML follows Ray's own schema; KubeRay specs embed valid Serve args."""
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_launcher_yaml_validates_against_ray_schema():
    import json

    import jsonschema
    import ray.autoscaler

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    config = yaml.safe_load((ROOT / "cluster/aws-gpu.yaml").read_text())
    jsonschema.validate(config, schema)
    assert config["head_node_type"] in config["available_node_types"]


def test_kuberay_specs_are_well_formed():
    from astroray.ray.serve.schemas import ServeAppConfig

    job = yaml.safe_load((ROOT / "cluster/kuberay-rayjob.yaml").read_text())
    assert job["kind"] == "RayJob" and job["spec"]["entrypoint"].startswith("python jobs/")
    assert (ROOT / job["spec"]["entrypoint"].split()[1]).is_file()
    svc = yaml.safe_load((ROOT / "cluster/kuberay-rayservice.yaml").read_text())
    serve_cfg = yaml.safe_load(svc["spec"]["serveConfigV2"])
    for app in serve_cfg["applications"]:
        ServeAppConfig.model_validate(app["args"])
    gpu = svc["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]
    assert gpu["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
