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


def test_the_dashboard_is_not_exposed_by_default_and_the_files_say_how_to_expose_it():
    """The dashboard is the job-submission API: loopback on the launcher's head, in-cluster only on KubeRay."""
    text = (ROOT / "cluster/aws-gpu.yaml").read_text()
    launcher = yaml.safe_load(text)
    head = " ".join(launcher["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head and "0.0.0.0" not in head
    assert "What is exposed" in text and "To expose the dashboard deliberately" in text
    assert "ray dashboard cluster/aws-gpu.yaml" in text  # how to reach it without exposing it
    for name in ("kuberay-rayjob.yaml", "kuberay-rayservice.yaml"):
        text = (ROOT / "cluster" / name).read_text()
        spec = yaml.safe_load(text)["spec"]
        head = (spec.get("rayClusterSpec") or spec.get("rayClusterConfig"))["headGroupSpec"]
        assert head["serviceType"] == "ClusterIP", name
        assert "LoadBalancer" not in yaml.safe_dump(spec) and "NodePort" not in yaml.safe_dump(spec), name
        assert "To expose it deliberately" in text and "kubectl port-forward" in text, name
