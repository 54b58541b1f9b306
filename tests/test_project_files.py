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


def test_make_install_chooses_the_cpu_torch_index_overridably():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^TORCH_INDEX_URL \?= .*https://download\.pytorch\.org/whl/cpu", makefile, re.M)
    assert "--no-deps --index-url $(TORCH_INDEX_URL)" in makefile  # only torch from that index
    assert "scripts/preflight.py" in makefile.split("install:")[1].split("\n\n")[0]


def test_preflight_refuses_old_and_externally_managed_pythons(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("preflight", ROOT / "scripts" / "preflight.py")
    preflight = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(preflight)
    (tmp_path / "EXTERNALLY-MANAGED").write_text("[externally-managed]\n")
    assert preflight.problems((3, 11, 7), "/usr", "/usr", str(tmp_path / "none")) == []
    old = preflight.problems((3, 9, 18), "/usr", "/usr", str(tmp_path / "none"))
    assert len(old) == 1 and "Python >= 3.10" in old[0]
    managed = preflight.problems((3, 12, 3), "/usr", "/usr", str(tmp_path))
    assert len(managed) == 1 and "python3 -m venv .venv" in managed[0]
    assert preflight.problems((3, 12, 3), "/work/.venv", "/usr", str(tmp_path)) == []  # inside a venv


def test_internal_working_documents_are_not_shipped():
    assert not (ROOT / "docs" / "HELPERS.md").exists() and not (ROOT / "docs" / "CONTRACT.md").exists()
    for path in [ROOT / "README.md", *ROOT.glob("docs/**/*.md"), *ROOT.glob("graphgpo/**/*.py")]:
        text = path.read_text()
        assert "CONTRACT.md" not in text and "HELPERS.md" not in text, path
        assert "/work/" not in text, path


def test_readme_estimator_example_runs_and_says_what_it_prints():
    import contextlib
    import io

    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Estimators")[1].split("\n## ")[0]
    code = section.split("```python\n")[1].split("```")[0]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})
    lines = out.getvalue().splitlines()
    steps = {line.split()[0] + " " + " ".join(line.split()[1:4]): line.split()[-1] for line in lines[:7]}
    assert len(steps) == 7
    prose = section.split("```")[2]
    # the numbers the text quotes are the ones the snippet prints
    assert steps["task0/r2 C -> B"] == "+0.12" and "+0.12" in prose
    assert (steps["task0/r0 A -> B"], steps["task0/r0 B -> goal"]) == ("+2.62", "+2.17") and "+2.62 and +2.17" in prose
    # GRPO, by hand: rewards (10, 0, 0), mean 10/3, unbiased std sqrt(100/3): a failure gets -1/sqrt(3) = -0.58
    assert "-0.58" in prose
