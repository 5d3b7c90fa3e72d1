"""The runtime, operator and router images built from the project's Dockerfiles
(``e2e.cluster.images``).

The pure parts (what a Dockerfile copies, the digest that tags an image, the apt source the
base comes from, the Helm flags) are tested here with no build. The tests marked ``cluster``
build the images through ``ensure`` (cached after the first time, about 3 minutes cold), run
each image's entry point in the image, load them into a containerd of their own, and render
the chart with the flags.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.cluster import binaries, debian_base, images
from e2e.cluster.waiting import wait_for
from tests.cluster import commands

ROOT = images.ROOT
CHART = ROOT / "helm" / "sluice"


def quiet(message: str) -> None:
    """A log that drops progress messages."""


# What a Dockerfile copies


def test_copied_sources_skip_other_stages_flags_and_comments() -> None:
    dockerfile = """\
FROM base AS build
# COPY commented/ out/
COPY a.toml b.py \\
     c.md ./
COPY --chown=1:1 pkg/ ./pkg
COPY ["spaced name", "/dst/"]
ADD extra.tar /opt/
COPY --from=build /opt/x /opt/x
RUN echo COPY not/this
"""
    assert images.copied_sources(dockerfile) == [
        "a.toml",
        "b.py",
        "c.md",
        "pkg",
        "spaced name",
        "extra.tar",
    ]


@pytest.mark.parametrize("recipe", images.RECIPES, ids=lambda recipe: recipe.name)
def test_each_image_copies_the_distribution_and_every_component(recipe: images.Recipe) -> None:
    copied = images.copied_sources((ROOT / recipe.dockerfile).read_text())
    # setup.py maps every component folder, so a build needs them all.
    assert {
        "pyproject.toml",
        "setup.py",
        "README.md",
        "contracts",
        "operator",
        "router",
        "runtime",
    } <= set(copied)


# The digest that tags an image


def copy_inputs(recipe: images.Recipe, target: Path) -> Path:
    """A build context holding only what ``recipe``'s Dockerfile reads, copied from the
    repository."""
    sources = [recipe.dockerfile, *images.copied_sources((ROOT / recipe.dockerfile).read_text())]
    for source in sources:
        (target / source).parent.mkdir(parents=True, exist_ok=True)
        if (ROOT / source).is_dir():
            shutil.copytree(ROOT / source, target / source, dirs_exist_ok=True)
        else:
            shutil.copy2(ROOT / source, target / source)
    return target


def digest(context: Path, recipe: images.Recipe = images.RUNTIME, **keys: str) -> str:
    return images.input_digest(
        recipe, context, base_key=keys.get("base", "b"), wheels=keys.get("wheels", "w")
    )


def test_a_copy_of_the_inputs_gets_the_repository_tag(tmp_path: Path) -> None:
    context = copy_inputs(images.RUNTIME, tmp_path)
    assert images.image(images.RUNTIME, context).tag == images.image(images.RUNTIME).tag


def test_runtime_tag_follows_its_sources_and_nothing_else(tmp_path: Path) -> None:
    context = copy_inputs(images.RUNTIME, tmp_path)
    before = digest(context)
    assert len(before) == 12
    assert digest(context) == before

    (context / "runtime" / "__pycache__").mkdir(exist_ok=True)
    (context / "runtime" / "__pycache__" / "stale.cpython-311.pyc").write_bytes(b"bytecode")
    (context / "unrelated.txt").write_text("not copied by the Dockerfile")
    assert digest(context) == before, "bytecode and files the build never copies"

    main = context / "runtime" / "__main__.py"
    main.write_text(main.read_text() + "\n# changed\n")
    changed = digest(context)
    assert changed != before

    main.chmod(0o755)
    assert digest(context) != changed, "the executable bit is copied too"


def test_runtime_tag_follows_dockerfile_base_wheels_and_extras(tmp_path: Path) -> None:
    context = copy_inputs(images.RUNTIME, tmp_path)
    before = digest(context)
    assert digest(context, base="other") != before
    assert digest(context, wheels="other") != before
    gpu = images.Recipe("sluice-runtime", "runtime/Dockerfile", ("gpu", "s3"), extras_arg=True)
    assert digest(context, gpu) != before
    dockerfile = context / "runtime" / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + "LABEL x=y\n")
    assert digest(context) != before


def test_a_missing_copied_source_is_an_error(tmp_path: Path) -> None:
    context = copy_inputs(images.RUNTIME, tmp_path)
    shutil.rmtree(context / "contracts")
    with pytest.raises(FileNotFoundError, match="contracts"):
        digest(context)


# The wheels


def test_wheels_are_the_cpu_runtime_the_operator_and_the_build_backend() -> None:
    requirements = images.wheel_requirements(ROOT / "pyproject.toml", ("operator", "runtime"))
    names = {r.split(">")[0].split("=")[0].split("[")[0] for r in requirements}
    assert {"setuptools", "kopf", "kubernetes", "onnxruntime"} <= names
    assert "onnxruntime-gpu" not in names


def test_local_builds_install_from_the_mounted_wheels_only() -> None:
    args = images.RUNTIME.build_args()
    assert args["BASE"] == debian_base.REFERENCE
    assert args["PIP_NO_INDEX"] == "1"
    assert args["PIP_FIND_LINKS"] == images.WHEELS_MOUNT
    assert args["EXTRAS"] == "runtime,s3"
    assert "EXTRAS" not in images.OPERATOR.build_args()
    assert images.ROUTER.build_args()["EXTRAS"] == "router"


# The base's Debian mirror, read from apt's own sources


def test_mirror_from_deb822_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        """\
Types: deb
URIs: http://disabled.example/debian
Suites: bookworm
Components: main
Enabled: no

Types: deb-src deb
# a comment
URIs: http://mirror.example/debian/ http://second.example/debian
Suites: bookworm bookworm-updates
Components: main contrib

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
"""
    )
    assert debian_base.debian_mirror(tmp_path) == "http://mirror.example/debian"


def test_mirror_from_one_line_sources_with_options(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "other.list.disabled").write_text(
        "deb http://ignored.example/debian bookworm main\n"
    )
    (tmp_path / "sources.list").write_text(
        "# deb http://commented.example/debian bookworm main\n"
        "deb http://security.example/debian-security bookworm-security main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bookworm main\n"
    )
    assert debian_base.debian_mirror(tmp_path) == "http://mirror.example/debian"


def test_no_bookworm_source_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text("deb http://mirror.example/debian trixie main\n")
    with pytest.raises(RuntimeError, match="bookworm"):
        debian_base.debian_mirror(tmp_path)


# The Helm flags


def built_for_test() -> images.Built:
    return images.Built(
        runtime=images.Image("sluice.local/sluice-runtime", "aaaaaaaaaaaa", Path("r.tar")),
        operator=images.Image("sluice.local/sluice-operator", "bbbbbbbbbbbb", Path("o.tar")),
        router=images.Image("sluice.local/sluice-router", "cccccccccccc", Path("e.tar")),
    )


def set_values(flags: str) -> dict[str, str]:
    words = shlex.split(flags)
    assert words[::2] == ["--set"] * (len(words) // 2)
    return dict(word.split("=", 1) for word in words[1::2])


def test_helm_flags_are_one_line_of_existing_chart_values() -> None:
    flags = images.helm_flags(built_for_test())
    assert "\n" not in flags
    values = set_values(flags)
    assert values == {
        "image.repository": "sluice.local/sluice-operator",
        "image.tag": "bbbbbbbbbbbb",
        "image.pullPolicy": "Never",
        "images.runtime.repository": "sluice.local/sluice-runtime",
        "images.runtime.tag": "aaaaaaaaaaaa",
        "images.router.repository": "sluice.local/sluice-router",
        "images.router.tag": "cccccccccccc",
    }
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    for name in values:
        node: Any = defaults
        for part in name.split("."):
            assert part in node, f"{name} is not a value of the chart"
            node = node[part]
    assert "Never" in schema["properties"]["image"]["properties"]["pullPolicy"]["enum"]


# Built images (slow the first time: marked like the other tests that build)


@pytest.fixture(scope="module")
def built() -> images.Built:
    return images.ensure(quiet)


@pytest.mark.cluster
def test_references_and_archives(built: images.Built) -> None:
    for recipe, item in zip(images.RECIPES, built.images, strict=True):
        assert item.reference == f"sluice.local/{recipe.name}:{images.image(recipe).tag}"
        assert item.archive.parent == images.cache_dir() / "archives"
        with tarfile.open(item.archive) as archive:
            member = archive.extractfile("manifest.json")
            assert member is not None
            [manifest] = json.load(member)
        assert manifest["RepoTags"] == [item.reference]


@pytest.mark.cluster
def test_a_second_call_builds_nothing(built: images.Built) -> None:
    modified = [item.archive.stat().st_mtime_ns for item in built.images]
    messages: list[str] = []
    again = images.ensure(messages.append)
    assert again == built
    assert [item.archive.stat().st_mtime_ns for item in built.images] == modified
    assert len(messages) == 1
    assert messages[0].startswith("images up to date")


@pytest.mark.cluster
def test_the_command_prints_the_helm_flags_last(built: images.Built) -> None:
    result = commands.cli("images", timeout=1800)
    assert result.stdout.splitlines()[-1] == images.helm_flags(built)
    assert "up to date" in result.stderr


@contextlib.contextmanager
def container_of(item: images.Image) -> Iterator[tuple[str, dict[str, Any]]]:
    """A buildah container made from the image's archive (what a node imports), and the
    image's configuration; both are removed afterwards."""
    buildah = images.storage()
    name = buildah.run("from", "--pull=never", f"docker-archive:{item.archive}").strip()
    try:
        info = json.loads(buildah.run("inspect", "--type", "image", item.reference))
        yield name, info["OCIv1"]["config"]
    finally:
        buildah.run("rm", name)
        buildah.run("rmi", item.reference)


def run_in(container: str, *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        images.storage().command("run", "--network=none", container, "--", *command),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.cluster
@pytest.mark.parametrize(
    ("kind", "user"),
    [("runtime", "10001:10001"), ("operator", "65532:65532"), ("router", "10001:10001")],
)
def test_entry_point_runs_in_the_image_as_its_user(
    built: images.Built, kind: str, user: str
) -> None:
    item: images.Image = getattr(built, kind)
    with container_of(item) as (container, config):
        assert config["User"] == user
        entrypoint = config["Entrypoint"]
        assert entrypoint == [f"sluice-{kind}"]
        result = run_in(container, *entrypoint, "--help")
        assert result.returncode == 0, result.stderr
        assert f"usage: sluice-{kind}" in result.stdout
        uid = run_in(container, "id", "-u")
        assert uid.stdout.strip() == user.split(":")[0]
        # The build's tools stay in the build stage.
        assert run_in(container, "python", "-m", "pip", "--version").returncode != 0
        if kind == "runtime":
            ort = run_in(container, "python", "-c", "import onnxruntime; print('ok')")
            assert ort.stdout.strip() == "ok", ort.stderr
        if kind == "router":
            envoy = run_in(container, "envoy", "--version")
            assert envoy.returncode == 0, envoy.stderr
            assert "envoy" in envoy.stdout


@pytest.mark.cluster
def test_helm_renders_the_local_images(built: images.Built) -> None:
    helm = binaries.ensure(quiet) / "helm"
    kubernetes = next(tool for tool in binaries.TOOLS if tool.folder == "kubernetes").version
    command = [str(helm), "template", "sluice", str(CHART), "--kube-version", kubernetes]
    rendered = subprocess.run(
        [*command, *shlex.split(images.helm_flags(built))],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    [deployment] = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "Deployment"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == built.operator.reference
    assert container["imagePullPolicy"] == "Never"
    assert f"--runtime-image={built.runtime.reference}" in container["args"]
    assert f"--router-image={built.router.reference}" in container["args"]


CONTAINERD_CONFIG = """\
version = 2
root = "{folder}/root"
state = "{folder}/state"
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.internal.v1.opt",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = "{folder}/containerd.sock"
"""


@pytest.fixture
def containerd() -> Iterator[str]:
    """A containerd of its own (no CRI, root, state and socket under /tmp); yields its
    socket and removes everything afterwards."""
    # Short: the socket's path must fit in 107 bytes.
    folder = Path(tempfile.mkdtemp(prefix="ctrd-", dir="/tmp"))
    (folder / "config.toml").write_text(CONTAINERD_CONFIG.format(folder=folder))
    socket = str(folder / "containerd.sock")
    with (folder / "containerd.log").open("w") as log:
        process = subprocess.Popen(
            ["containerd", f"--config={folder / 'config.toml'}"], stdout=log, stderr=log
        )
    try:
        wait_for(
            lambda: (
                subprocess.run(
                    ["ctr", f"--address={socket}", "version"], capture_output=True, timeout=10
                ).returncode
                == 0
            ),
            timeout=30,
            what="containerd to answer",
        )
        yield socket
    finally:
        process.terminate()
        process.wait(timeout=30)
        shutil.rmtree(folder)


@pytest.mark.cluster
def test_load_imports_into_containerd_once(built: images.Built, containerd: str) -> None:
    messages: list[str] = []
    images.load(built, containerd, messages.append)
    listed = subprocess.run(
        ["ctr", f"--address={containerd}", "--namespace=k8s.io", "images", "list", "--quiet"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()
    assert {item.reference for item in built.images} <= set(listed)
    assert all(message.startswith("imported") for message in messages)

    again: list[str] = []
    images.load(built, containerd, again.append)
    assert again == [f"{item.reference} already in containerd" for item in built.images]
