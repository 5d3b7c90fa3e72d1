"""The built wheel ships every module of every component, and each one imports from it.

The editable install serves whatever the source folders hold, so a module the wheel leaves out
passes every other test and breaks only the images. Here the distribution is built the way a
release is (``python -m build``: an sdist in an isolated build environment, then the wheel from
that sdist), installed into a new virtualenv, and every module is imported there, with the
working directory outside the repository.
"""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# Top-level folders that hold Python files but are not shipped: tests, tooling, build output.
NOT_SHIPPED = {"tests", "e2e", "benchmarks", "build", "dist"}


def source_modules() -> set[str]:
    """``sluice.<folder>.<module>`` for every Python file of every top-level source folder."""
    modules = set()
    for folder in REPO.iterdir():
        if not folder.is_dir() or folder.name.startswith(".") or folder.name in NOT_SHIPPED:
            continue
        for path in folder.rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            modules.add(".".join(("sluice", *parts)).removesuffix(".__init__"))
    return modules


def wheel_modules(wheel: Path) -> set[str]:
    """The module names of the wheel's Python files."""
    with zipfile.ZipFile(wheel) as archive:
        names = [name for name in archive.namelist() if name.endswith(".py")]
    return {name.removesuffix(".py").replace("/", ".").removesuffix(".__init__") for name in names}


def purelib(python: Path) -> Path:
    """The site-packages folder of the interpreter ``python``."""
    done = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
    )
    return Path(done.stdout.strip())


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from an sdist of the working tree."""
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(REPO)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (built,) = out.glob("*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The interpreter of a new virtualenv holding the wheel and nothing else of Sluice.

    The wheel goes in without its dependencies, which this virtualenv borrows from the one
    running the tests as a plain path entry: a path listed in a .pth file is not a site
    directory, so the development install's own .pth (the editable link tree) is not read.
    """
    root = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    python = root / "bin" / "python"
    (purelib(python) / "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet"]
    subprocess.run([*pip, "--no-deps", "--no-index", str(wheel)], check=True)
    return python


def test_the_wheel_holds_every_source_module(wheel: Path) -> None:
    shipped = wheel_modules(wheel)
    assert {"sluice.operator.__main__", "sluice.runtime.__main__"} <= shipped
    assert source_modules() - shipped == set()
    assert shipped - source_modules() == set()


def test_nothing_is_shipped_as_a_bare_top_level_package(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        tops = {name.split("/")[0] for name in archive.namelist()}
    assert {top for top in tops if not top.endswith(".dist-info")} == {"sluice"}


def test_the_wheel_marks_every_component_as_typed(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        markers = {
            name.rsplit("/", 1)[0] for name in archive.namelist() if name.endswith("/py.typed")
        }
    components = {module.split(".")[1] for module in wheel_modules(wheel)}
    assert markers == {f"sluice/{component}" for component in components}


def test_every_module_imports_from_the_installed_wheel(
    wheel: Path, venv: Path, tmp_path: Path
) -> None:
    script = (
        "import importlib, json, sys\n"
        "print(json.dumps({name: importlib.import_module(name).__file__ for name in sys.argv[1:]}))"
    )
    modules = sorted(wheel_modules(wheel))
    done = subprocess.run(
        [venv, "-I", "-c", script, *modules],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    files: dict[str, str] = json.loads(done.stdout)
    installed = purelib(venv)
    for module in modules:
        assert Path(files[module]).is_relative_to(installed), (module, files[module])


def test_the_repository_root_does_not_shadow_the_standard_library(venv: Path) -> None:
    """``python -m ...`` from the repository root puts the root first on ``sys.path``: the
    folder operator/ must stay a namespace portion (no ``__init__.py``) so that the import
    system goes on to the standard library's ``operator``."""
    script = "import operator, sys; sys.stdout.write(operator.__file__)"
    done = subprocess.run(
        [venv, "-c", script], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout).parent == Path(sysconfig.get_path("stdlib"))
