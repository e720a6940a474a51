"""The README's commands and code are the ones that actually run."""

import re

from conftest import ROOT

README = (ROOT / "README.md").read_text()


def fenced(language):
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def test_ci_runs_the_readme_test_command():
    test_command = next(block.strip() for block in fenced("bash") if "pytest" in block)
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert test_command in ci_lines


def test_readme_train_command_is_there():
    assert any(block.strip() == "pip install -e . && python train.py pde=poisson" for block in fenced("bash"))


def test_residual_snippet_is_the_real_code():
    snippet = next(block for block in fenced("python") if "def residual" in block)
    source = (ROOT / "pinn" / "pdes" / "poisson.py").read_text()
    for line in snippet.strip().splitlines():
        assert line.strip() in source, line


def test_operator_snippet_runs():
    snippet = next(block for block in fenced("python") if "from pinn.operators import" in block)
    exec(compile(snippet, "README.md", "exec"), {})
