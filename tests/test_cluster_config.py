"""The cluster-launcher configs (ray_cluster.yaml, deploy/ray_cluster_gcp.yaml) against Ray's own
schema and validation, and the properties docs/cluster.md promises: workers scale from zero, the
pins match pyproject.toml, MLflow runs on the head over PostgreSQL and an object store, nothing is
exposed to the internet, and no credential is written in a file.

All offline: Ray's `prepare_config` and `validate_config` read only the package's defaults; the
provider bootstrap (which calls AWS/GCP) is never run.
"""

from __future__ import annotations

import copy
import importlib.metadata as md
import importlib.util
import json
import re
import subprocess
import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {
    "aws": ROOT / "ray_cluster.yaml",
    "gcp": ROOT / "deploy" / "ray_cluster_gcp.yaml",
}
ARTIFACT_SCHEME = {"aws": "s3://", "gcp": "gs://"}


def _ray_schema() -> dict:
    """ray/autoscaler/ray-schema.json, found without importing ray."""
    ray_dir = Path(importlib.util.find_spec("ray").origin).parent
    return json.loads((ray_dir / "autoscaler" / "ray-schema.json").read_text())


def _load(cloud: str) -> dict:
    return yaml.safe_load(CONFIGS[cloud].read_text())


@pytest.fixture(params=sorted(CONFIGS))
def cloud(request) -> str:
    return request.param


def test_config_matches_rays_cluster_schema(cloud):
    jsonschema.validate(_load(cloud), _ray_schema())


def test_config_passes_rays_own_validation_after_defaults(cloud):
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(_load(cloud)))
    validate_config(prepared)
    # Ray merged setup_commands into the head's: the head gets the same venv as the workers.
    setup = prepared["setup_commands"]
    assert prepared["head_setup_commands"][: len(setup)] == setup


@pytest.mark.parametrize(
    "breakage",
    [
        lambda c: c.update(max_wrokers=3),  # a typo'd top-level key
        lambda c: c["available_node_types"][c["head_node_type"]].pop("node_config"),
        lambda c: c["available_node_types"][c["head_node_type"]]["resources"].update(x=0.5),
    ],
    ids=["unknown-key", "missing-node-config", "fractional-resource"],
)
def test_schema_check_rejects_a_broken_config(breakage):
    config = _load("aws")
    breakage(config)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(config, _ray_schema())


def test_gpu_workers_scale_from_zero_and_one_type_is_spot(cloud):
    config = _load(cloud)
    head = config["head_node_type"]
    workers = {k: v for k, v in config["available_node_types"].items() if k != head}
    assert workers, "no worker node types"
    assert all(v.get("min_workers", 0) == 0 for v in workers.values())
    assert all(0 < v["max_workers"] <= config["max_workers"] for v in workers.values())
    spot = [
        k
        for k, v in workers.items()
        if v["node_config"].get("InstanceMarketOptions", {}).get("MarketType") == "spot"
        or v["node_config"].get("scheduling", {}).get("provisioningModel") == "SPOT"
    ]
    assert spot, "no spot/preemptible worker type"
    head_cfg = config["available_node_types"][head]["node_config"]
    assert "InstanceMarketOptions" not in head_cfg and "scheduling" not in head_cfg  # on demand


def _pins_from_pyproject() -> dict[str, str]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = {}
    for dep in deps:
        name = re.split(r"[\[=<>~ ]", dep, maxsplit=1)[0]
        pins[name] = dep
    return pins


def test_every_node_installs_the_pinned_versions_and_the_project(cloud):
    setup = " ".join(_load(cloud)["setup_commands"])
    pins = _pins_from_pyproject()
    for name in ("torch", "torchaudio"):
        assert f'"{pins[name]}"' in setup, f"{name}: pyproject pins {pins[name]!r}"
    # The cluster runs exactly the Ray this checkout is tested with.
    assert f'"ray[default,train,tune,data]=={md.version("ray")}"' in setup
    lock = "-c ~/slmscale/constraints.txt"  # every node installs what CI tested, nothing newer
    assert f"uv pip install --python ~/venv/bin/python {lock} ~/slmscale" in setup
    assert setup.count(lock) == 2
    assert _load(cloud)["file_mounts"]["~/slmscale"] == "."


def test_head_serves_mlflow_over_postgres_and_an_object_store(cloud):
    config = _load(cloud)
    head_start = config["head_start_ray_commands"]
    mlflow_cmd = next(c for c in head_start if "start_mlflow.sh" in c)
    assert mlflow_cmd.split()[2].startswith(ARTIFACT_SCHEME[cloud])
    assert head_start.index(mlflow_cmd) < next(
        i for i, c in enumerate(head_start) if "ray start --head" in c
    ), "MLflow must be up before Ray (and its jobs) start"
    assert any("setup_postgres.sh" in c for c in config["head_setup_commands"])
    script = (ROOT / "deploy" / "start_mlflow.sh").read_text()
    assert "postgresql+psycopg2://" in script and "--artifacts-destination" in script


def test_jobs_and_trials_get_a_tracking_uri_they_can_reach(cloud):
    """Head: its private address (the driver passes it on to trials on other nodes)."""
    config = _load(cloud)
    head = next(c for c in config["head_start_ray_commands"] if "ray start --head" in c)
    worker = next(c for c in config["worker_start_ray_commands"] if "ray start" in c)
    assert "MLFLOW_TRACKING_URI=http://$(hostname -I" in head
    assert "MLFLOW_TRACKING_URI=http://$RAY_HEAD_IP:5000" in worker
    for cmd in (head, worker):
        assert "127.0.0.1" not in cmd and "localhost" not in cmd
        assert cmd.index("MLFLOW_TRACKING_URI") < cmd.index("ray start")
        assert "RAY_AUTH_MODE=token" in cmd
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"


def test_nothing_is_opened_to_the_internet(cloud):
    config = _load(cloud)
    rules = config["provider"].get("security_group", {}).get("IpPermissions", [])
    open_rules = [r for r in rules if any(x.get("CidrIp") == "0.0.0.0/0" for x in r["IpRanges"])]
    assert open_rules == []


CREDENTIAL_PATTERNS = [
    r"AKIA[0-9A-Z]{16}",  # AWS access key id
    r"(?i)aws_secret_access_key",
    r"(?i)aws_session_token",
    r"(?i)password\s*[:=]",
    r"://[^/\s:@]+:[^/\s@]+@",  # user:password@host in a URI
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
    r"(?i)ssh_private_key",
    r"(?i)private_key_id",
]


@pytest.mark.parametrize(
    "path", [*CONFIGS.values(), *sorted((ROOT / "deploy").glob("*.sh"))], ids=lambda p: p.name
)
def test_no_credentials_are_written_in_deploy_files(path):
    text = path.read_text()
    found = [p for p in CREDENTIAL_PATTERNS if re.search(p, text)]
    assert found == [], f"{path.name} contains something credential-like: {found}"


def test_credential_scan_catches_a_planted_key():
    planted = "aws_access_key_id: AKIAABCDEFGHIJKLMNOP\nuri: postgresql://mlflow:hunter2@db/mlflow"
    assert sum(bool(re.search(p, planted)) for p in CREDENTIAL_PATTERNS) == 2


def test_aws_nodes_get_credentials_from_instance_profiles():
    config = _load("aws")
    for name, node_type in config["available_node_types"].items():
        assert "IamInstanceProfile" in node_type["node_config"], name


@pytest.mark.parametrize("script", sorted((ROOT / "deploy").glob("*.sh")), ids=lambda p: p.name)
def test_deploy_scripts_parse(script):
    subprocess.run(["bash", "-n", str(script)], check=True)


def test_the_docs_name_each_clouds_node_types_and_custom_resources_as_its_config_does():
    """docs/cluster.md's table and `custom:` examples match the configs (a10g on AWS, l4 on GCP)."""
    docs = (ROOT / "docs" / "cluster.md").read_text()
    rows = {
        "aws": re.search(r"^\s*\| AWS \| `ray_cluster.yaml` \| (.*) \|$", docs, re.M),
        "gcp": re.search(r"^\s*\| GCP \| `deploy/ray_cluster_gcp.yaml` \| (.*) \|$", docs, re.M),
    }
    for cloud, row in rows.items():
        assert row, f"docs/cluster.md: no table row for {cloud}"
        types = _load(cloud)["available_node_types"]
        for name, resource in re.findall(r"`([\w.]+)` \(`(\w+)`\)", row.group(1)):
            assert types[name]["resources"].get(resource, 0) >= 1, (cloud, name, resource)
        example = re.search(rf"custom: \{{(\w+): 1\}}\}}\s+# {cloud.upper()}", docs)
        assert example, f"docs/cluster.md: no `custom:` example for {cloud}"
        offered = {r for t in types.values() for r in t["resources"]}
        assert example.group(1) in offered, (cloud, example.group(1))


def test_every_node_type_writes_out_its_cpus_and_gpu_types_their_gpus(cloud):
    """slmscale reads CPU and GPU from the config (grid.cluster_limits): none may be missing."""
    for name, node_type in _load(cloud)["available_node_types"].items():
        resources = node_type["resources"]
        assert resources.get("CPU", 0) >= 1, name
        accelerators = set(resources) - {"CPU", "GPU", "memory", "object_store_memory"}
        assert sum(resources[a] for a in accelerators) == resources.get("GPU", 0), name
