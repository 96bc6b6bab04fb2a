"""cluster/ and infra/ checked without a cluster or Docker: every manifest, the launcher YAML, the
compose stack and the Dockerfile are parsed and held to what Ray, KubeRay and gkd's config expect."""

from __future__ import annotations

import argparse
import ast
import copy
import re
import shlex
from pathlib import Path

import pytest
import ray
import yaml

from gkd.cli import build_parser, config_from_args
from gkd.config import ExperimentConfig, build_config, parse_overrides, read_config_dict
from gkd.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "cluster"
KUBERAY = CLUSTER / "kuberay"
INFRA = ROOT / "infra"
LAUNCHER = CLUSTER / "launcher-aws-gpu.yaml"
COMPOSE = INFRA / "docker-compose.yml"
DOCKERFILE = INFRA / "Dockerfile"

RAY_KINDS = ("RayCluster", "RayJob", "RayService")
CODE_DIR = "/opt/gkd"  # where infra/Dockerfile puts gkd and jobs/
WORKING_DIR = f"local://{CODE_DIR}"  # runtime_env working_dir: the image's code, on every node
RUNS_MOUNT = f"{CODE_DIR}/runs"  # the shared work dir every node mounts
GPU_OVERRIDES = {"teacher.use_gpu", "distill.use_gpu", "rationale.num_gpus_per_actor",
                 "ingest.encoder.num_gpus_per_actor"}
SHELL_OPERATORS = ("&&", "||", ";", "|", ">", "<", "`", "$(")
RAY_SECRET = "gkd-ray-auth"  # the Ray token (key auth_token, fixed by KubeRay)
SERVE_SECRET = "gkd-serve-auth"  # the student API's bearer token (key token)


# ----------------------------------------------------------------------------- loading


def load_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def kuberay_objects() -> dict[str, tuple[Path, dict]]:
    """kind -> (file, object) over cluster/kuberay/*.yaml: one object per kind, Secrets as Secret/<name>."""
    out = {}
    for path in sorted(KUBERAY.glob("*.yaml")):
        for doc in load_docs(path):
            key = f"Secret/{doc['metadata']['name']}" if doc["kind"] == "Secret" else doc["kind"]
            assert key not in out, f"{path.name}: a second {key} (also in {out[key][0].name})"
            out[key] = (path, doc)
    return out


def ray_cluster_specs() -> dict[str, dict]:
    """The RayClusterSpec of each Ray object: the RayCluster's own, the RayJob's and the RayService's."""
    objs = kuberay_objects()
    return {"RayCluster": objs["RayCluster"][1]["spec"],
            "RayJob": objs["RayJob"][1]["spec"]["rayClusterSpec"],
            "RayService": objs["RayService"][1]["spec"]["rayClusterConfig"]}


def pod_specs(spec: dict) -> dict[str, dict]:
    """group name ('head' or the worker group's) -> pod spec."""
    pods = {"head": spec["headGroupSpec"]["template"]["spec"]}
    for group in spec["workerGroupSpecs"]:
        pods[group["groupName"]] = group["template"]["spec"]
    return pods


def gpus_per_pod(group: dict) -> int:
    limits = group["template"]["spec"]["containers"][0].get("resources", {}).get("limits", {})
    return int(limits.get("nvidia.com/gpu", 0))


def pvc_name() -> str:
    return kuberay_objects()["PersistentVolumeClaim"][1]["metadata"]["name"]


def dockerfile_instructions() -> list[str]:
    """Logical instructions (continuation lines joined, comments dropped)."""
    out, current = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        current += " " + stripped.rstrip("\\").strip()
        if not stripped.endswith("\\"):
            out.append(current.strip())
            current = ""
    return out


def dockerfile_arg(name: str) -> str:
    for ins in dockerfile_instructions():
        m = re.fullmatch(rf"ARG {name}=(\S+)", ins)
        if m:
            return m.group(1)
    raise AssertionError(f"infra/Dockerfile has no default for ARG {name}")


def test_the_cluster_serve_configs_set_the_ray_serve_env_gkd_serve_sets():
    from gkd.config import build_config
    from gkd.serve.app import serve_env

    want = serve_env(build_config({}).serve)
    assert "RAY_SERVE_HAPROXY_RETRY_ON" in want
    for doc in (serve_config(), yaml.safe_load((ROOT / "jobs" / "serve_config.yaml").read_text())):
        assert doc["controller_options"]["runtime_env"]["env_vars"] == want


# ----------------------------------------------------------------------------- job commands


def job_argv(command: str) -> list[str]:
    """The `python jobs/X.py ...` part of a shell command (what the Ray job driver runs)."""
    argv = shlex.split(command)
    starts = [i for i, a in enumerate(argv[:-1]) if a in ("python", "python3") and argv[i + 1].startswith("jobs/")]
    assert len(starts) == 1, f"expected one `python jobs/...` in {command!r}"
    return argv[starts[0] + 1:]


def job_config(where: str, argv: list[str]) -> tuple[argparse.Namespace, ExperimentConfig]:
    """What the job would do with argv: jobs/X.py calls gkd.cli.main([<command>, *argv]), so parse
    it with gkd's own parser and build the config the same way (ConfigError on a bad --set)."""
    script = ROOT / argv[0]
    assert script.is_file(), f"{where}: {argv[0]} does not exist"
    m = re.search(r"main\(\[\s*[\"'](\w+)[\"']", script.read_text())
    assert m, f"{argv[0]} does not call gkd.cli.main([<command>, ...])"
    try:
        args = build_parser().parse_args([m.group(1), *argv[1:]])
    except SystemExit:
        pytest.fail(f"{where}: `gkd {m.group(1)}` rejects the arguments {argv[1:]}")
    assert args.config, f"{where}: no --config"
    assert (ROOT / args.config).is_file(), f"{where}: {args.config} does not exist"
    args.config = str(ROOT / args.config)
    return args, config_from_args(args)


def readme_commands(path: Path) -> list[str]:
    """Commands in a README (fenced blocks and inline code) that run `python jobs/...`."""
    text = path.read_text()
    commands = []
    for block in re.findall(r"```(?:bash|sh)?\n(.*?)```", text, flags=re.S):
        for cmd in block.replace("\\\n", " ").splitlines():
            if re.search(r"\bpython3? jobs/", cmd):
                commands.append(cmd.split(" #")[0])
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    commands += [c for c in re.findall(r"`([^`\n]+)`", prose) if re.search(r"\bpython3? jobs/", c)]
    return commands


def job_commands() -> list[tuple[str, str]]:
    """(where, command) for every job command a manifest runs or a README tells a user to run."""
    out = [("cluster/kuberay/rayjob.yaml", kuberay_objects()["RayJob"][1]["spec"]["entrypoint"])]
    for readme in (CLUSTER / "README.md", INFRA / "README.md"):
        out += [(f"{readme.relative_to(ROOT)}:{i}", c) for i, c in enumerate(readme_commands(readme))]
    return out


def gpu_demand(cfg: ExperimentConfig) -> dict[str, float]:
    """GPUs each stage asks Ray for at once, per the config."""
    return {"ingest": cfg.ingest.encoder.num_actors * cfg.ingest.encoder.num_gpus_per_actor,
            "rationale": cfg.rationale.num_actors * cfg.rationale.num_gpus_per_actor,
            "teacher": cfg.teacher.num_workers if cfg.teacher.use_gpu else 0,
            "distill": cfg.distill.num_workers if cfg.distill.use_gpu else 0}


# ----------------------------------------------------------------------------- every file


ALL_YAML = sorted([*CLUSTER.rglob("*.yaml"), *CLUSTER.rglob("*.yml"), *INFRA.glob("*.yml"), *INFRA.glob("*.yaml")])


def test_the_expected_files_exist():
    names = {p.relative_to(ROOT).as_posix() for p in ALL_YAML}
    assert {"cluster/launcher-aws-gpu.yaml", "cluster/kuberay/raycluster.yaml", "cluster/kuberay/rayjob.yaml",
            "cluster/kuberay/rayservice.yaml", "cluster/kuberay/auth-secret.yaml",
            "infra/docker-compose.yml"} <= names
    for p in ("infra/Dockerfile", "infra/mlflow.Dockerfile", "infra/.env.example", "infra/README.md",
              "cluster/README.md"):
        assert (ROOT / p).is_file(), p


@pytest.mark.parametrize("path", ALL_YAML, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_yaml_parses_to_mappings(path):
    docs = load_docs(path)
    assert docs, f"{path} is empty"
    assert all(isinstance(d, dict) for d in docs)


# ----------------------------------------------------------------------------- KubeRay


def test_kuberay_objects_have_kind_api_version_and_name():
    objs = kuberay_objects()
    assert set(objs) == {*RAY_KINDS, f"Secret/{RAY_SECRET}", f"Secret/{SERVE_SECRET}", "PersistentVolumeClaim"}
    for kind, (path, obj) in objs.items():
        assert obj["apiVersion"] == ("ray.io/v1" if kind in RAY_KINDS else "v1"), path.name
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", obj["metadata"]["name"]), path.name


@pytest.mark.parametrize("owner", RAY_KINDS)
def test_ray_cluster_spec_is_complete(owner):
    spec = ray_cluster_specs()[owner]
    assert spec["rayVersion"] == ray.__version__ == dockerfile_arg("RAY_VERSION")
    assert isinstance(spec["headGroupSpec"]["rayStartParams"], dict)
    assert spec["headGroupSpec"]["rayStartParams"].get("num-cpus") == "0"  # the head runs no work
    assert spec["workerGroupSpecs"], f"{owner}: no worker group"
    for group in spec["workerGroupSpecs"]:
        assert isinstance(group["rayStartParams"], dict)
        counts = [group[k] for k in ("minReplicas", "replicas", "maxReplicas")]
        assert all(isinstance(n, int) for n in counts), f"{owner}/{group['groupName']}: {counts}"
        assert counts[0] <= counts[1] <= counts[2] and counts[2] >= 1, f"{owner}/{group['groupName']}: {counts}"
    for name, pod in pod_specs(spec).items():
        container = pod["containers"][0]
        assert re.fullmatch(r"[\w.-]+(:\d+)?/gkd:[\w.-]+", container["image"]), f"{owner}/{name}: {container['image']}"
        res = container["resources"]
        for key, limit in res["limits"].items():  # extended resources (GPUs) need request == limit
            assert str(res["requests"].get(key, limit)) == str(limit), f"{owner}/{name}: {key}"


@pytest.mark.parametrize("owner", RAY_KINDS)
def test_every_ray_container_gets_the_token_from_the_secret(owner):
    spec = ray_cluster_specs()[owner]
    assert spec["authOptions"] == {"mode": "token", "secretName": RAY_SECRET}
    for name, pod in pod_specs(spec).items():
        env = {e["name"]: e for e in pod["containers"][0]["env"]}
        assert env["RAY_AUTH_MODE"]["value"] == "token", f"{owner}/{name}"
        assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": RAY_SECRET, "key": "auth_token"}
        assert "value" not in env["RAY_AUTH_TOKEN"], f"{owner}/{name}: a token literal in a manifest"


@pytest.mark.parametrize("owner", RAY_KINDS)
def test_every_ray_container_logs_to_mlflow_and_mounts_the_shared_workdir(owner):
    for name, pod in pod_specs(ray_cluster_specs()[owner]).items():
        container = pod["containers"][0]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert re.fullmatch(r"https?://[\w.-]+:\d+", env["MLFLOW_TRACKING_URI"] or ""), f"{owner}/{name}"
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes[mounts[RUNS_MOUNT]]["persistentVolumeClaim"]["claimName"] == pvc_name(), f"{owner}/{name}"
        assert pod["securityContext"]["fsGroup"] == 100  # the image's ray user (gid 100) can write it


def test_shared_volume_is_read_write_many():
    pvc = kuberay_objects()["PersistentVolumeClaim"][1]
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]


@pytest.mark.parametrize("owner", ["RayCluster", "RayJob"])
def test_training_clusters_have_a_gpu_worker_group_on_the_gpu_image(owner):
    groups = [g for g in ray_cluster_specs()[owner]["workerGroupSpecs"] if gpus_per_pod(g) >= 1]
    assert groups, f"{owner}: no worker group with an nvidia.com/gpu limit"
    for g in groups:
        assert g["template"]["spec"]["containers"][0]["image"].endswith("-gpu"), f"{owner}/{g['groupName']}: CPU torch"
    assert ray_cluster_specs()[owner]["headGroupSpec"]["template"]["spec"]["containers"][0]["image"].endswith("-gpu")


@pytest.mark.parametrize("name,key", [(RAY_SECRET, "auth_token"), (SERVE_SECRET, "token")])
def test_the_secret_examples_hold_no_real_token(name, key):
    secret = kuberay_objects()[f"Secret/{name}"][1]
    assert secret["type"] == "Opaque"
    assert set(secret["stringData"]) == {key}  # auth_token: the key KubeRay reads
    assert "REPLACE" in secret["stringData"][key]


def test_the_student_api_wants_its_own_token_on_every_serve_pod():
    from gkd.config import ServeConfig

    for name, pod in pod_specs(ray_cluster_specs()["RayService"]).items():
        env = {e["name"]: e for e in pod["containers"][0]["env"]}
        ref = env[ServeConfig().token_env]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": SERVE_SECRET, "key": "token"}, name


# ----------------------------------------------------------------------------- RayJob


def test_rayjob_runs_the_pipeline_and_cleans_up():
    spec = kuberay_objects()["RayJob"][1]["spec"]
    assert "rayClusterSpec" in spec or "clusterSelector" in spec
    assert spec["shutdownAfterJobFinishes"] is True
    entry = " ".join(spec["entrypoint"].split())
    assert entry.startswith("python jobs/pipeline.py --config jobs/configs/debian.yaml")
    # the submitter runs `ray job submit ... -- <entrypoint>` in a shell: operators would run there
    assert not [op for op in SHELL_OPERATORS if op in entry], entry
    runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])
    assert runtime_env["working_dir"] == WORKING_DIR
    assert set(runtime_env) <= {"working_dir", "env_vars"}
    assert all(isinstance(v, str) for v in runtime_env["env_vars"].values())


def test_rayjob_turns_gpus_on_and_its_cluster_holds_what_the_config_asks_for():
    spec = kuberay_objects()["RayJob"][1]["spec"]
    args, cfg = job_config("rayjob.yaml", job_argv(spec["entrypoint"]))
    assert {s.split("=", 1)[0] for s in args.set} >= GPU_OVERRIDES
    demand = gpu_demand(cfg)
    assert all(n >= 1 for n in demand.values()), demand
    groups = spec["rayClusterSpec"]["workerGroupSpecs"]
    gpus = sum(g["replicas"] * gpus_per_pod(g) for g in groups)
    assert max(demand.values()) <= gpus, f"stages ask for {demand} GPUs, the RayJob's cluster has {gpus}"
    # the relative workdir resolves, from the working_dir, onto the shared volume
    assert not cfg.workdir.is_absolute() and (Path(CODE_DIR) / cfg.workdir).is_relative_to(RUNS_MOUNT)


# ----------------------------------------------------------------------------- RayService


def serve_config() -> dict:
    return yaml.safe_load(kuberay_objects()["RayService"][1]["spec"]["serveConfigV2"])


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Ray Serve's own pydantic Field(...) usage
def test_rayservice_serve_config_passes_ray_serve_schema():
    from ray.serve.schema import ServeDeploySchema

    schema = ServeDeploySchema.model_validate(serve_config())  # what the dashboard checks on deploy
    (app,) = schema.applications
    assert (app.name, app.import_path, app.route_prefix) == ("gkd-student", "gkd.serve.app:app_builder", "/")
    assert app.runtime_env["working_dir"] == WORKING_DIR
    assert schema.http_options.port == 8000


def test_rayservice_app_args_name_a_valid_config():
    (app,) = serve_config()["applications"]
    assert app["args"]["config"] == "jobs/configs/debian.yaml" and set(app["args"]) <= {"config", "overrides"}
    cfg = build_config(read_config_dict(ROOT / app["args"]["config"]), app["args"]["config"],
                       parse_overrides(app["args"].get("overrides", [])))
    assert (Path(CODE_DIR) / cfg.workdir).is_relative_to(RUNS_MOUNT)  # the graph the pipeline wrote


def test_rayservice_import_path_resolves_in_the_repo():
    (app,) = serve_config()["applications"]
    module, attr = app["import_path"].split(":")
    path = ROOT / (module.replace(".", "/") + ".py")
    assert path.is_file(), f"{path.relative_to(ROOT)} does not exist"
    tree = ast.parse(path.read_text())
    names = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    names |= {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
    assert attr in names, f"{path.relative_to(ROOT)} defines no top-level {attr}"


def test_rayservice_matches_jobs_serve_config():
    local = ROOT / "jobs" / "serve_config.yaml"
    assert local.is_file(), "jobs/serve_config.yaml is missing"
    keys = ("name", "import_path", "route_prefix", "args")
    ours = {k: serve_config()["applications"][0].get(k) for k in keys}
    theirs = {k: yaml.safe_load(local.read_text())["applications"][0].get(k) for k in keys}
    assert ours == theirs


# ----------------------------------------------------------------------------- job commands


@pytest.mark.parametrize("where,command", job_commands(), ids=[w for w, _ in job_commands()])
def test_every_job_command_names_real_files_and_valid_overrides(where, command):
    try:
        _, cfg = job_config(where, job_argv(command))
    except ConfigError as err:
        pytest.fail(f"{where}: {command}\n{err}")
    assert cfg.name


def test_the_raycluster_can_grow_to_what_the_readme_commands_ask_for():
    groups = ray_cluster_specs()["RayCluster"]["workerGroupSpecs"]
    gpus = sum(g["maxReplicas"] * gpus_per_pod(g) for g in groups)
    for where, command in job_commands():
        demand = gpu_demand(job_config(where, job_argv(command))[1])
        assert max(demand.values()) <= gpus, f"{where} asks for {demand} GPUs, the RayCluster reaches {gpus}"


def test_readme_gpu_commands_turn_on_the_same_gpus_as_the_rayjob():
    sets = [set(job_config(w, job_argv(c))[0].set) for w, c in job_commands() if "pipeline.py" in c]
    assert len(sets) >= 3 and all(s == sets[0] for s in sets), sets


def test_override_checking_catches_unknown_keys_and_arguments():
    with pytest.raises(ConfigError, match="use_gpus"):
        job_config("test", job_argv("python jobs/distill.py --config jobs/configs/debian.yaml --set teacher.use_gpus=1"))
    with pytest.raises(pytest.fail.Exception, match="rejects"):
        job_config("test", job_argv("python jobs/distill.py --config jobs/configs/debian.yaml --gpus 1"))


# ----------------------------------------------------------------------------- cluster launcher


def launcher() -> dict:
    return load_docs(LAUNCHER)[0]


def test_launcher_passes_ray_schema():
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(launcher())))  # what `ray up` runs first


def test_launcher_has_a_cpu_head_and_gpu_workers_in_the_gkd_image():
    c = launcher()
    assert c["cluster_name"] and c["provider"]["type"] == "aws"
    types = c["available_node_types"]
    assert c["head_node_type"] in types
    assert types[c["head_node_type"]]["resources"] == {"CPU": 0}
    gpu_types = [n for n, t in types.items()
                 if n != c["head_node_type"] and re.match(r"(g|p)\d", t["node_config"]["InstanceType"])]
    assert gpu_types and all(types[n]["min_workers"] >= 2 for n in gpu_types)
    assert c["docker"]["image"].endswith("-gpu")
    assert c["docker"]["image"] == ray_cluster_specs()["RayJob"]["workerGroupSpecs"][0]["template"]["spec"][
        "containers"][0]["image"]


def test_launcher_installs_nothing_at_run_time():
    c = launcher()
    for key in ("setup_commands", "head_setup_commands", "worker_setup_commands", "initialization_commands"):
        for cmd in c.get(key, []):
            assert not re.search(r"\b(pip|conda|apt|apt-get|yum)\b", cmd), f"{key}: {cmd}"


def test_launcher_starts_ray_with_token_auth_everywhere():
    c = launcher()
    run_options = c["docker"]["run_options"]
    assert "--env=RAY_AUTH_MODE=token" in run_options
    assert any(o.startswith("--env=MLFLOW_TRACKING_URI=http") for o in run_options)
    assert f"--volume=/mnt/gkd-runs:{RUNS_MOUNT}" in run_options
    assert c["file_mounts"] == {"/home/ray/.ray/auth_token": "~/.ray/auth_token"}  # Ray's default token path
    head = [x for x in c["head_start_ray_commands"] if "ray start" in x]
    worker = [x for x in c["worker_start_ray_commands"] if "ray start" in x]
    assert len(head) == len(worker) == 1
    assert "RAY_AUTH_MODE=token ray start --head" in " ".join(head[0].split())
    assert "--dashboard-host=127.0.0.1" in head[0]
    assert "RAY_AUTH_MODE=token ray start --address=$RAY_HEAD_IP:6379" in " ".join(worker[0].split())


# ----------------------------------------------------------------------------- MLflow stack


def compose() -> dict:
    return load_docs(COMPOSE)[0]


def env_example() -> dict[str, str]:
    out = {}
    for line in (INFRA / ".env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip()
    return out


def interpolate_defaults(text: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR:?err} with VAR from env (else the default)."""
    def sub(m):
        name, op, arg = m.group(1), m.group(2), m.group(3)
        if env.get(name):
            return env[name]
        return arg if op == ":-" else ""
    return re.sub(r"(?<!\$)\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", sub, text)


def test_compose_has_mlflow_postgres_minio_and_bucket_setup():
    services = compose()["services"]
    assert {"mlflow", "postgres", "minio", "minio-init"} <= set(services)
    assert services["postgres"]["healthcheck"]["test"]
    assert any(v.endswith(":/var/lib/postgresql/data") for v in services["postgres"]["volumes"])
    assert any(v.endswith(":/data") for v in services["minio"]["volumes"])
    assert "mc mb" in services["minio-init"]["command"][0]
    assert services["minio-init"]["image"].startswith("quay.io/minio/mc:RELEASE.")  # Docker Hub's is gone
    assert services["mlflow"]["depends_on"] == {"postgres": {"condition": "service_healthy"},
                                                "minio-init": {"condition": "service_completed_successfully"}}


def test_compose_mlflow_uses_postgres_backend_and_s3_artifacts():
    mlflow = compose()["services"]["mlflow"]
    cmd = mlflow["command"]
    assert cmd[:2] == ["mlflow", "server"]
    flags = dict(a.split("=", 1) for a in cmd[2:] if "=" in a)
    assert flags["--backend-store-uri"].startswith("postgresql://")
    assert flags["--backend-store-uri"].endswith("@postgres:5432/${POSTGRES_DB}")
    assert flags["--artifacts-destination"] == "s3://${MLFLOW_BUCKET}"
    assert "--serve-artifacts" in cmd
    assert flags["--host"] == "0.0.0.0" and flags["--port"] == "5000"
    assert mlflow["environment"]["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    dockerfile = (INFRA / mlflow["build"]["dockerfile"]).read_text()
    assert "psycopg2-binary" in dockerfile and "boto3" in dockerfile


def test_compose_publishes_only_on_loopback():
    published = []
    for name, service in compose()["services"].items():
        for port in service.get("ports", []):
            resolved = interpolate_defaults(str(port), env_example())
            assert resolved.startswith("127.0.0.1:"), f"{name}: {port} -> {resolved}"
            published.append(resolved)
    assert "127.0.0.1:5000:5000" in published
    assert "postgres" not in [n for n, s in compose()["services"].items() if s.get("ports")]


def test_every_compose_variable_is_in_env_example():
    used = set(re.findall(r"(?<!\$)\$\{(\w+)", COMPOSE.read_text()))
    assert used, "compose reads no variables"
    assert used <= set(env_example()), f"not in infra/.env.example: {sorted(used - set(env_example()))}"


def test_env_example_holds_placeholders_and_env_is_ignored():
    env = env_example()
    for key, value in env.items():
        if re.search(r"PASSWORD|SECRET", key):
            assert value.startswith("change-me"), f"{key} looks like a real secret"
    assert ".env" in (INFRA / ".gitignore").read_text().split()


def test_infra_readme_points_gkd_at_the_published_port():
    text = (INFRA / "README.md").read_text()
    assert "docker compose -f infra/docker-compose.yml up -d" in text
    assert "export MLFLOW_TRACKING_URI=http://127.0.0.1:5000" in text


# ----------------------------------------------------------------------------- node image


def test_dockerfile_builds_on_ray_and_installs_torch_before_gkd():
    ins = dockerfile_instructions()
    assert any(i.startswith("FROM rayproject/ray:${RAY_VERSION}-") and i.endswith("-${ACCELERATOR}") for i in ins)
    assert dockerfile_arg("ACCELERATOR") == "cpu"
    makefile_torch = re.search(r"^TORCH_VERSION \?= (\S+)$", (ROOT / "Makefile").read_text(), re.M).group(1)
    assert dockerfile_arg("TORCH_VERSION") == makefile_torch

    def first(pattern):
        hits = [n for n, i in enumerate(ins) if i.startswith("RUN") and re.search(pattern, i)]
        assert hits, f"no RUN matching {pattern}"
        return hits[0]

    torch = first(r"pip install [^&]*\"?torch==")
    deps = first(r"pip install [^&]*-r /tmp/requirements.txt")
    gkd = first(r"pip install [^&]*(-e \.|\s\.)(\s|$)")
    assert torch < deps < gkd, "torch must be installed before gkd's dependencies and gkd"
    assert "-c /tmp/constraints.txt" in ins[deps]  # and held there
    assert any(i.startswith("COPY") and " jobs " in f"{i} " for i in ins)
    assert any(i == "RUN gkd models fetch" for i in ins)  # the teacher is baked in
    assert any(i.startswith("WORKDIR") and i.split()[1] == CODE_DIR for i in ins)
