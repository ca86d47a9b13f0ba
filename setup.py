"""Packaging beyond pyproject.toml: the repository's ``configs/`` ships inside the package as ``funcgen/configs``
(package data), so ``funcgen bench`` finds its default configs in a non-editable install
(:func:`funcgen.config.config_root`). Everything else is declared in pyproject.toml."""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["funcgen", "funcgen.*"]) + ["funcgen.configs"],
    package_dir={"funcgen.configs": "configs"},
    package_data={"funcgen.configs": ["*.yaml", "**/*.yaml"]},
)
