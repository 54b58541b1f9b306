"""The project's own install files: environment.yml for GPU users, pyproject for pip."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _names(entries):
    names = []
    for entry in entries:
        if isinstance(entry, dict):
            names += _names(entry.get("pip", []))
        else:
            names.append(re.split(r"[<>=!\s\[]", entry, maxsplit=1)[0].lower())
    return names


def test_environment_yml_parses_and_names_the_gpu_stack():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["name"] == "graphgpo"
    names = _names(env["dependencies"])
    for needed in ["python", "pytorch", "pytorch-cuda", "triton", "cupy", "pylibcugraph", "transformers", "vllm",
                   "pytest", "pytest-benchmark"]:
        assert needed in names, f"environment.yml does not name {needed}"


def test_pyproject_never_pins_a_torch_that_drags_cuda():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    torch_specs = [d for d in project["dependencies"] if d.startswith("torch")]
    assert torch_specs == ["torch>=2.4"]  # a range the CPU wheel already on the machine satisfies
    for extra, deps in project["optional-dependencies"].items():
        assert not any(re.match(r"torch\b", d) for d in deps), f"extra {extra} pins torch"


def test_kernels_install_as_graphgpo_kernels_not_top_level():
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert tool["package-dir"]["graphgpo.kernels"] == "kernels"
    assert "kernels" not in tool["packages"]


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme.split("\n## ")[0], "README must open with its test command"
    assert "make test" in ci
