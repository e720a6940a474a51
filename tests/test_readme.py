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
    snippet = next(block for block in fenced("python") if "def residual" in block and "class " not in block)
    source = (ROOT / "pinn" / "pdes" / "poisson.py").read_text()
    for line in snippet.strip().splitlines():
        assert line.strip() in source, line


def test_operator_snippet_runs():
    snippet = next(block for block in fenced("python") if "from pinn.operators import" in block)
    exec(compile(snippet, "README.md", "exec"), {})


def test_custom_pde_snippets_are_the_example_files():
    example = ROOT / "examples" / "custom_pde"
    snippet = next(block for block in fenced("python") if "class NonlinearPoisson" in block)
    source = (example / "my_pdes.py").read_text()
    for line in snippet.strip().splitlines():
        assert line.strip() in source, line
    yaml = next(block for block in fenced("yaml") if "my_pdes.NonlinearPoisson" in block)
    config = (example / "pde" / "nonlinear_poisson.yaml").read_text()
    assert all(line in config for line in yaml.strip().splitlines())


def test_custom_network_snippet_is_the_example_file():
    snippet = next(block for block in fenced("python") if "class StreamFunction" in block)
    source = (ROOT / "examples" / "custom_network" / "my_networks.py").read_text()
    for line in snippet.strip().splitlines():
        assert line.strip() in source, line


def test_custom_network_command_is_the_one_the_suite_runs():
    """tests/test_problems.py::test_user_defined_network_from_its_own_folder runs this command."""
    command = next(block.strip() for block in fenced("bash") if "examples/custom_network" in block)
    assert command == ("PYTHONPATH=examples/custom_network python train.py pde=kovasznay "
                       "model._target_=my_networks.StreamFunction")


def test_custom_pde_command_is_the_one_the_suite_runs():
    """tests/test_problems.py::test_user_defined_pde_from_its_own_folder runs this command."""
    command = next(block.strip() for block in fenced("bash") if "hydra.searchpath" in block)
    assert command == ("PYTHONPATH=examples/custom_pde python train.py "
                       "hydra.searchpath=[file://examples/custom_pde] pde=nonlinear_poisson")
