"""`docker compose up` for real: the CPU images built, every CPU engine run in its container,
the verdict and the numbers checked against a host run of the same model, data and limit.

Needs a Docker engine with the Compose v2 plugin (docker/start-engine.sh starts one as root on
a Debian host). Where none answers these tests skip with the reason; with
QPARITY_REQUIRE_CONTAINERS=1 (CI sets it) they fail instead, so CI cannot pass by skipping.
The images are built from QPARITY_BASE_IMAGE when set (CI: the local Debian base from
docker/build-base.sh, since no registry is reachable), else from the Dockerfiles' default.

The runs are short on purpose: QPARITY_LIMIT images, QPARITY_WARMUP / QPARITY_RUNS latency
runs; the report records both as departures from the locked protocol (checked below).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
from builders import clean_env

pytestmark = pytest.mark.containers

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "qparity-test"  # compose project name: never clashes with a user's `qparity` stack
LIMIT, WARMUP, RUNS = 8, 3, 20
EXIT_FOR_VERDICT = {"pass": 0, "fail": 1, "error": 2}
PROFILE_ENGINES = {"cpu": ["ort-cpu", "qdq-ref"], "intel": ["ort-cpu", "qdq-ref", "openvino"]}
# Naming the collector (with its dependencies attached) matters: without it, Compose 5.6 hangs
# for ever once an engine's container fails (it waits for a collector that never starts).
UP_ARGS = ("up", "--attach-dependencies", "--exit-code-from", "collector",
           "--abort-on-container-failure", "collector")
REQUIRED = os.environ.get("QPARITY_REQUIRE_CONTAINERS", "").strip() == "1"


def unavailable(reason: str):
    if REQUIRED:
        pytest.fail(f"{reason} (QPARITY_REQUIRE_CONTAINERS=1: containers must run here)")
    pytest.skip(reason)


def docker(*args: str, timeout: float = 120, env: dict | None = None, check: bool = False):
    p = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout,
                       env=env)
    if check and p.returncode != 0:
        pytest.fail(f"`docker {' '.join(args)}` exited {p.returncode}:\n{p.stdout[-3000:]}\n"
                    f"{p.stderr[-3000:]}")
    return p


@pytest.fixture(scope="session")
def engine() -> str:
    """The engine's version, once it is known that `docker` and `docker compose` v2 answer."""
    if shutil.which("docker") is None:
        unavailable("no `docker` command (docker/start-engine.sh installs and starts an engine)")
    p = docker("info", "--format", "{{.ServerVersion}}", timeout=30)
    if p.returncode != 0:
        unavailable("no Docker engine answers `docker info` (docker/start-engine.sh starts one): "
                    + (p.stderr.strip().splitlines() or ["?"])[-1])
    c = docker("compose", "version", "--short", timeout=30)
    if c.returncode != 0 or int(c.stdout.strip().lstrip("v").split(".")[0]) < 2:
        unavailable("no Docker Compose v2 plugin (`docker compose version` fails)")
    return p.stdout.strip()


def run_as() -> tuple[int, int]:
    """The uid:gid the containers run as: the caller's, or the images' own user for root."""
    return (10001, 10001) if os.getuid() == 0 else (os.getuid(), os.getgid())


@pytest.fixture(scope="session")
def work(demo_assets) -> Path:
    """Model, data and results where the containers' user can read them (pytest's own temporary
    folders are private to the caller: 0700)."""
    model_dir, data_dir = demo_assets
    root = Path(tempfile.mkdtemp(prefix="qparity-containers-"))
    root.chmod(0o755)
    shutil.copytree(model_dir, root / "models")
    shutil.copytree(data_dir, root / "coco")
    (root / "results").mkdir()
    for p in [root, *root.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    if os.getuid() == 0:
        os.chown(root / "results", *run_as())
    yield root
    # the containers' files belong to their uid: root removes them; others may need `docker run`
    shutil.rmtree(root, ignore_errors=True)


def cpuset() -> str:
    return ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))


def compose_env(work: Path, run_id: str, results: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("QPARITY_") or k == "QPARITY_BASE_IMAGE"}
    uid, gid = run_as()
    env.update(QPARITY_MODEL_DIR=str(work / "models"), QPARITY_DATA_DIR=str(work / "coco"),
               QPARITY_RESULTS_DIR=str(results or work / "results"), QPARITY_RUN_ID=run_id,
               QPARITY_CPUSET=cpuset(), QPARITY_UID=str(uid), QPARITY_GID=str(gid),
               QPARITY_LIMIT=str(LIMIT), QPARITY_WARMUP=str(WARMUP), QPARITY_RUNS=str(RUNS))
    return env


def compose(*args: str, env: dict[str, str], files: tuple[Path, ...] = (), timeout: float = 600):
    cmd = ["compose", "-p", PROJECT, "--project-directory", str(ROOT),
           "-f", str(ROOT / "compose.yaml")]
    for f in files:
        cmd += ["-f", str(f)]
    return docker(*cmd, "--env-file", os.devnull, *args, timeout=timeout, env=env)


def up(profile: str, env: dict[str, str], files: tuple[Path, ...] = ()):
    """`up` exactly as the README runs it (without --build: the images fixture built them);
    returns the finished process and `docker inspect` of every container it made."""
    try:
        p = compose("--profile", profile, *UP_ARGS, env=env, files=files)
        ids = compose("--profile", profile, "ps", "--all", "--quiet", env=env,
                      files=files).stdout.split()
        inspected = json.loads(docker("inspect", *ids).stdout) if ids else []
    finally:
        compose("--profile", profile, "down", "--remove-orphans", env=env, files=files,
                timeout=120)
    return p, inspected


@pytest.fixture(scope="session")
def images(engine, work) -> dict[str, dict]:
    """Both CPU images, built by `docker compose --profile intel build`; docker inspect of each."""
    env = compose_env(work, "build")
    p = compose("--profile", "intel", "build", env=env, timeout=1800)
    if p.returncode != 0:
        pytest.fail(f"`docker compose --profile intel build` exited {p.returncode} (base "
                    f"{env.get('QPARITY_BASE_IMAGE', 'the Dockerfiles default')}):\n"
                    f"{p.stdout[-4000:]}\n{p.stderr[-4000:]}")
    tag = "0.1.0"
    return {name: json.loads(docker("image", "inspect", f"qparity/{name}:{tag}",
                                    check=True).stdout)[0] for name in ("ort-cpu", "openvino")}


def qparity_host(*args: str) -> subprocess.CompletedProcess:
    exe = Path(os.sys.executable).parent / "qparity"
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=clean_env(),
                          timeout=900)


@pytest.fixture(scope="session")
def host_run(work, tmp_path_factory) -> Path:
    """The same engines, model, data, limit, latency runs and CPUs, on the host."""
    out = tmp_path_factory.mktemp("host") / "results"
    n = len(os.sched_getaffinity(0))
    p = qparity_host("run", "--engines", "ort-cpu,qdq-ref,openvino", "--model",
                     str(work / "models" / "model-int8.onnx"), "--data", str(work / "coco"),
                     "--out", str(out), "--limit", str(LIMIT), "--warmup", str(WARMUP),
                     "--runs", str(RUNS), "--threads", str(n))
    assert (out / "eval_report.json").is_file(), p.stdout + p.stderr
    return out


def log_of(p: subprocess.CompletedProcess) -> str:
    return f"exit {p.returncode}\n--- stdout\n{p.stdout[-6000:]}\n--- stderr\n{p.stderr[-3000:]}"


@pytest.fixture(scope="session")
def profile_runs(images, work) -> dict[str, tuple]:
    """`up` of the cpu and intel profiles: (process, report, results folder, containers)."""
    runs = {}
    for profile in ("cpu", "intel"):
        run_id = f"up-{profile}"
        p, inspected = up(profile, compose_env(work, run_id))
        out = work / "results" / run_id
        report_file = out / "eval_report.json"
        assert report_file.is_file(), f"no eval_report.json after up --profile {profile}\n" + log_of(p)
        runs[profile] = (p, json.loads(report_file.read_text()), out, inspected)
    return runs


# ------------------------------------------------------------------------------------- images

def test_images_are_built_on_the_requested_base(images):
    base = os.environ.get("QPARITY_BASE_IMAGE", "python:3.12.12-slim-bookworm")
    for name, img in images.items():
        labels = img["Config"]["Labels"]
        assert labels["org.opencontainers.image.base.name"] == base, name
        assert labels["org.opencontainers.image.title"] == f"qparity-{name}"
        assert img["Config"]["User"] == "10001:10001" and img["Config"]["Entrypoint"] == ["qparity"]


def test_each_cpu_image_carries_its_extras(images):
    """One Dockerfile (docker/cpu.Dockerfile), EXTRAS per image: OpenVINO is in the openvino
    image only; ONNX Runtime (the core) is in both."""
    probe = ("import importlib.util as u; "
             "print(*(u.find_spec(m) is not None for m in ('onnxruntime', 'openvino')))")
    for name, wanted in {"ort-cpu": ["True", "False"], "openvino": ["True", "True"]}.items():
        p = docker("run", "--rm", "--network", "none", "--entrypoint", "python",
                   f"qparity/{name}:0.1.0", "-c", probe, check=True)
        assert p.stdout.split() == wanted, (name, p.stdout, p.stderr)


# --------------------------------------------------------------------------------- the verdict

@pytest.mark.parametrize("profile", ["cpu", "intel"])
def test_up_exit_status_is_the_collectors_verdict(profile_runs, profile):
    p, report, out, _ = profile_runs[profile]
    assert p.returncode == report["exit_code"] == EXIT_FOR_VERDICT[report["verdict"]], log_of(p)
    assert sorted(report["engines"]) == sorted(PROFILE_ENGINES[profile]), log_of(p)
    for name in PROFILE_ENGINES[profile]:
        res = json.loads((out / f"{name}.json").read_text())
        assert res["status"] == "ok", (name, res.get("reason"))
        # the short run is visible as such in every result: the limit and the latency runs
        assert res["data"]["limit"] == LIMIT and res["data"]["images_evaluated"] == LIMIT
        assert res["protocol"]["baseline"] is False
        assert res["protocol"]["overrides"] == {"warmup": {"locked": 50, "used": WARMUP},
                                                "runs": {"locked": 200, "used": RUNS}}
        assert res["latency_ms"]["n"] == RUNS
    if profile == "cpu":
        assert p.returncode == 0, log_of(p)  # the golden engine (and the reference) alone pass


def test_the_short_run_is_said_in_the_report(profile_runs):
    p, report, out, _ = profile_runs["intel"]
    text = json.dumps(report)
    assert f'"limit": {LIMIT}' in text, "the report does not record QPARITY_LIMIT"
    assert '"baseline": false' in text, "the report does not say the protocol was overridden"
    # and the collector's own table says so too
    assert "baseline" in p.stdout.lower() or "limit" in p.stdout.lower(), log_of(p)


def test_containers_equal_the_host(profile_runs, host_run):
    _, report, out, _ = profile_runs["intel"]
    host = json.loads((host_run / "eval_report.json").read_text())
    for name in PROFILE_ENGINES["intel"]:
        ours = json.loads((out / f"{name}.json").read_text())
        theirs = json.loads((host_run / f"{name}.json").read_text())
        assert theirs["status"] == "ok", (name, theirs.get("reason"))
        assert ours["model"]["md5"] == theirs["model"]["md5"]
        assert abs(ours["metrics"]["map50_95"] - theirs["metrics"]["map50_95"]) <= 0.01, name
        assert abs(ours["metrics"]["map50"] - theirs["metrics"]["map50"]) <= 0.01, name
    # the golden engine's detections are the same numbers, box by box
    a = np.load(out / "detections" / "ort-cpu.npz")["detections"]
    b = np.load(host_run / "detections" / "ort-cpu.npz")["detections"]
    assert a.shape == b.shape and a.size > 0 and np.array_equal(a, b)
    assert report["verdict"] == host["verdict"]


# ---------------------------------------------------------------------------------- hardening

PROBE = r"""
import errno, json, os, sys
def tries(path):
    try:
        with open(path, "w") as f:
            f.write("x")
        os.unlink(path)
        return "written"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
status = dict(line.split(":\t", 1) for line in open("/proc/self/status").read().splitlines()
              if ":\t" in line)
out = {"uid": os.getuid(), "gid": os.getgid(), "net": sorted(os.listdir("/sys/class/net")),
       "root": tries("/probe"), "etc": tries("/etc/probe"), "tmp": tries("/tmp/probe"),
       "cap_eff": int(status["CapEff"].strip(), 16), "no_new_privs": status["NoNewPrivs"].strip(),
       "cpus": sorted(os.sched_getaffinity(0))}
for mount in ("/models", "/data", "/results"):
    if os.path.isdir(mount):
        out[mount] = tries(mount + "/probe")
print(json.dumps(out))
"""


@pytest.mark.parametrize("service", ["ort-cpu", "qdq-ref", "openvino", "collector"])
def test_hardening_holds_inside_the_container(images, work, service):
    env = compose_env(work, "probe")
    p = compose("--profile", "intel", "run", "--rm", "--no-deps", "-T", "--entrypoint", "python",
                service, "-c", PROBE, env=env, timeout=300)
    assert p.returncode == 0, log_of(p)
    seen = json.loads(p.stdout.strip().splitlines()[-1])
    uid, gid = run_as()
    assert (seen["uid"], seen["gid"]) == (uid, gid)
    assert seen["net"] == ["lo"], "a network interface besides loopback"
    assert seen["root"] == "EROFS" and seen["etc"] == "EROFS", "root file system is writable"
    assert seen["tmp"] == "written"  # the tmpfs the engines' HOME points at
    assert seen["cap_eff"] == 0 and seen["no_new_privs"] == "1"
    if service != "collector":
        assert seen["/models"] == "EROFS" and seen["/data"] == "EROFS", seen
        assert seen["cpus"] == sorted(os.sched_getaffinity(0))
    assert seen["/results"] == "written"


def test_up_containers_ran_locked_down(profile_runs):
    _, _, _, inspected = profile_runs["intel"]
    services = {c["Config"]["Labels"]["com.docker.compose.service"]: c for c in inspected}
    assert set(services) == {"ort-cpu", "qdq-ref", "openvino", "collector"}
    uid, gid = run_as()
    for name, c in services.items():
        hc = c["HostConfig"]
        assert hc["NetworkMode"] == "none" and hc["ReadonlyRootfs"] is True, name
        assert hc["CapDrop"] == ["ALL"] and "no-new-privileges:true" in hc["SecurityOpt"], name
        assert c["Config"]["User"] == f"{uid}:{gid}", name
        assert c["State"]["ExitCode"] == (0 if name != "collector" else c["State"]["ExitCode"])
        ro = {m["Destination"]: m["RW"] for m in c["Mounts"]}
        if name != "collector":
            assert ro["/models"] is False and ro["/data"] is False and ro["/results"] is True


# ------------------------------------------------------------------------------------ failures

CRASHING_ENGINE = '''\
import os
import signal

from harness.engines.openvino import OpenVinoEngine


class CrashingOpenVino(OpenVinoEngine):
    """OpenVINO that dies in native-code fashion on its third image."""

    def run(self, x):
        self.calls = getattr(self, "calls", 0) + 1
        if self.calls == 3:
            os.kill(os.getpid(), signal.SIGSEGV)
        return super().run(x)
'''


def test_an_engine_crashing_in_its_container_leaves_a_verdict(images, work, tmp_path):
    plugins = work / "plugins"
    plugins.mkdir(mode=0o755, exist_ok=True)
    (plugins / "crashing_engine.py").write_text(CRASHING_ENGINE)
    (plugins / "crashing_engine.py").chmod(0o644)
    override = tmp_path / "crash.yaml"
    # A plugin may not take a built-in name (issue 11), so the crashing OpenVINO runs in the
    # openvino service under its own name.
    override.write_text(json.dumps({"services": {"openvino": {
        "environment": {"PYTHONPATH": "/plugins",
                        "QPARITY_EXTRA_ENGINES": "crashing-openvino=crashing_engine:CrashingOpenVino"},
        "command": ["run-engine", "--engine", "crashing-openvino", "--model",
                    "/models/model-int8.onnx", "--data", "/data", "--out",
                    "/results/${QPARITY_RUN_ID:-local}"],
        "volumes": [{"type": "bind", "source": str(plugins), "target": "/plugins",
                     "read_only": True}]}}}))
    p, _ = up("intel", compose_env(work, "up-crash"), files=(override,))
    out = work / "results" / "up-crash"
    assert (out / "eval_report.json").is_file(), log_of(p)
    report = json.loads((out / "eval_report.json").read_text())
    assert p.returncode == 2 and report["verdict"] == "error", log_of(p)
    crashed = json.loads((out / "crashing-openvino.json").read_text())
    assert crashed["status"] == "error" and "SIGSEGV" in crashed["reason"], crashed["reason"]
    for name in ("ort-cpu", "qdq-ref"):  # the others' results are kept and reported
        kept = json.loads((out / f"{name}.json").read_text())
        assert kept["status"] == "ok" and kept["metrics"]["map50_95"] > 0, name
        assert report["engines"][name]["status"] in {"pass", "reference"}, name
        assert report["engines"][name]["metrics"]["map50_95"] == kept["metrics"]["map50_95"], name


def test_an_unwritable_results_folder_fails_up_without_a_pass(images, work):
    results = work / "readonly-results"
    results.mkdir(mode=0o755)
    if os.getuid() != 0:
        pytest.skip("needs a results folder the containers' user cannot write: run as root")
    uid, _ = run_as()
    assert results.stat().st_uid != uid  # root's folder, 0755: the containers' user cannot write
    p, inspected = up("cpu", compose_env(work, "up-readonly", results=results))
    # Compose's own failure (status 1, the engine's container named), never 0, never a report
    assert p.returncode != 0, "up passed without being able to write a result\n" + log_of(p)
    assert 'service "ort-cpu" didn\'t complete successfully' in p.stderr, log_of(p)
    assert not any(results.rglob("eval_report.json")), log_of(p)
    ran = {c["Config"]["Labels"]["com.docker.compose.service"]: c["State"] for c in inspected}
    assert ran["ort-cpu"]["ExitCode"] != 0, ran
    assert "collector" not in ran or ran["collector"].get("StartedAt", "").startswith("0001"), ran
