"""Which folders the ``sluice`` distribution ships, and under which import names.

Each component folder at the top of the repository is the import package ``sluice.<folder>``
(``operator/`` is ``sluice.operator``), and every package below it is found here rather than
listed by hand, so a new subfolder such as ``operator/rollout/`` is in the wheel without a
change to this file. Everything else about the distribution is in pyproject.toml.
tests/packaging/ builds the wheel and imports every module from it.
"""

from setuptools import find_namespace_packages, setup

# A new component (a top-level folder of modules) is added here;
# tests/packaging/ fails until it is.
COMPONENTS = ("contracts", "operator", "router", "runtime")


def packages(folder: str) -> list[str]:
    """``sluice.<folder>`` and every package below it; folders are namespace packages when
    they have no ``__init__.py`` (``operator/`` must not have one: see docs/development.md)."""
    below = find_namespace_packages(folder, exclude=["__pycache__", "*.__pycache__"])
    return [f"sluice.{folder}", *(f"sluice.{folder}.{name}" for name in below)]


setup(
    package_dir={f"sluice.{folder}": folder for folder in COMPONENTS},
    packages=[name for folder in COMPONENTS for name in packages(folder)],
)
