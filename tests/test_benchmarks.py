"""The benchmark scripts run as documented (tiny sizes; timings are printed, never asserted)."""

import importlib.util
import os
import subprocess
import sys

import pytest
import torch

from conftest import ROOT
from pinn import fused


#: the benchmarks' Triton variants run here (in Triton's interpreter, which conftest.py turns on)
INTERPRETED_TRITON = (bool(importlib.util.find_spec("triton")) and os.environ.get("TRITON_INTERPRET") == "1"
                      and fused.interpreter_problem() is None)


def run(script, *args, returncode=0):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], cwd=ROOT,
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == returncode, result.stderr
    return result.stdout


def test_vs_deepxde_trains_every_variant_on_the_same_problem():
    variants = ["autograd", "forward", "forward+fused"] + (["deepxde"] if importlib.util.find_spec("deepxde") else [])
    variants += ["forward+triton"] if INTERPRETED_TRITON else []
    out = run("vs_deepxde.py", "--iterations", "3", "--interior", "32", "--boundary", "8", "--variants", *variants)
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.split() and line.split()[0] in variants}
    assert set(rows) == set(variants), out
    # The same initial weights, points and optimizer (Adam's fused update is the same arithmetic
    # in another order): after 13 Adam steps every variant holds the same network, to float32
    # round-off.
    errors = [float(row[2]) for row in rows.values()]
    assert max(errors) - min(errors) <= 1e-5 * max(errors), out


@pytest.mark.skipif(torch.cuda.is_available(), reason="a variant that fails needs a machine without CUDA")
def test_vs_deepxde_reports_a_failed_variant_and_goes_on():
    """The failure has its row, the next variant runs, and the exit status says a variant failed."""
    out = run("vs_deepxde.py", "--iterations", "2", "--interior", "16", "--boundary", "4", "--variants",
              "forward+graph", "forward", returncode=1)
    lines = [line.split() for line in out.splitlines()]
    assert ["forward+graph", "failed:"] in [line[:2] for line in lines], out
    assert any(line[0] == "forward" and float(line[1]) > 0 for line in lines if line), out


def test_vs_deepxde_runs_the_variants_after_a_crash_in_a_new_process(monkeypatch):
    # A variant that kills its process (a CUDA error stays for the process's life) costs only its own row.
    monkeypatch.setenv("VS_DEEPXDE_CRASH", "forward")
    out = run("vs_deepxde.py", "--iterations", "2", "--interior", "16", "--boundary", "4", "--variants",
              "forward", "autograd", returncode=1)
    lines = [line.split() for line in out.splitlines()]
    assert ["forward", "failed:"] in [line[:2] for line in lines], out
    assert "# the variants after it run in a new process" in out
    assert any(line[0] == "autograd" and float(line[1]) > 0 for line in lines if line), out


def test_vs_deepxde_tells_a_lost_device_from_a_failed_variant():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import vs_deepxde

    for lost in ("CUDA error: an illegal memory access was encountered",
                 "Triton Error [CUDA]: an illegal memory access was encountered"):
        assert vs_deepxde.device_lost(RuntimeError(lost))
    assert not vs_deepxde.device_lost(ValueError("forward+graph: CUDA graphs need a CUDA device, not cpu"))


def test_vs_deepxde_finds_rows_after_other_output_and_skips_broken_ones():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import vs_deepxde

    assert vs_deepxde.read_row('progress 3/10\r{"variant": "forward", "rel_l2": 0.5}\n') == {"variant": "forward",
                                                                                            "rel_l2": 0.5}
    assert vs_deepxde.read_row('{"variant": "forw') is None
    assert vs_deepxde.read_row("UserWarning: something\n") is None


def test_derivatives_benchmark_prints_a_row_per_variant():
    variants = ["autograd", "forward", "forward+gram", "stochastic"]
    out = run("derivatives.py", "--dims", "2", "--points", "64", "--variants", *variants, "--seconds", "0.05")
    rows = [line.split() for line in out.splitlines() if line.split()[:2] == ["2", "64"]]
    assert [r[2] for r in rows] == variants, out
    assert all(float(r[3]) > 0 for r in rows) and rows[1][5].endswith("x"), out
    # timed in turns in one process: the same rows, without peak memory; a variant that fails is named
    out = run("derivatives.py", "--dims", "2", "--points", "64", "--variants", "autograd", "forward", "forward+graph",
              "--seconds", "0.02", "--rounds", "2")
    rows = [line.split() for line in out.splitlines() if line.split()[:2] == ["2", "64"]]
    assert [r[2] for r in rows] == ["autograd", "forward", "forward+graph"], out
    assert float(rows[1][3]) > 0 and rows[1][4] == "-" and rows[1][5].endswith("x") and rows[2][3] == "failed:", out


@pytest.mark.skipif(not INTERPRETED_TRITON,
                    reason="needs Triton's interpreter (a GPU run times the settings: benchmarks/gpu.sh)")
def test_triton_blocks_runs_every_setting():
    out = run("triton_blocks.py", "--points", "16", "--device", "cpu")
    rows = [line.split() for line in out.splitlines() if line.split()[:1] == ["16"]]
    assert [r[1] for r in rows] == ["forward"] + ["forward+triton"] * 10, out
    assert float(rows[0][3]) > 0 and all(float(r[9]) > 0 for r in rows[1:]), out


def test_step_kernels_counts_fewer_operations_with_the_triton_kernels_and_one_pass():
    variants = ["forward+fused", "forward+onepass+fused"]
    variants += ["forward+triton+fused", "forward+triton+onepass+fused"] if INTERPRETED_TRITON else []
    out = run("step_kernels.py", "--points", "16", "--variants", *variants)
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.split()[:1] and line.split()[0] in variants}
    assert set(rows) == set(variants), out
    count = {variant: int(row[1]) for variant, row in rows.items()}
    assert count["forward+fused"] > 100 and rows["forward+fused"][2] == "0", out
    # the boundary's own pass, forward and backward, and the sums of the two passes' gradients
    assert count["forward+onepass+fused"] <= count["forward+fused"] - 15, out
    if INTERPRETED_TRITON:  # six kernel launches (three layers, forward and backward) replace most of them
        assert rows["forward+triton+fused"][2] == "6" and count["forward+triton+fused"] < 100, out
        assert rows["forward+triton+onepass+fused"][2] == "6", out
        assert count["forward+triton+onepass+fused"] <= count["forward+triton+fused"] - 15, out


def test_tf32_benchmark_emulates_the_products_and_runs_each_engine():
    """Three TF32 products per float32 one come within a factor of two or so of float32's error;
    one loses three digits."""
    out = run("tf32.py", "--device", "cpu", "--points", "20", "--steps", "1")
    emulated = dict(part.rsplit(" ", 1) for part in out.splitlines()[1].split(": ")[1].split(", "))
    errors = {name: float(err) for name, err in emulated.items()}
    assert errors["3 x tf32"] < 3 * errors["float32"] < 1e-6 and errors["tf32"] > 100 * errors["float32"], out
    engines = {line.split()[1] for line in out.splitlines() if line.split()[:1] == ["20"]}
    assert {"autograd", "forward"} <= engines, out


@pytest.mark.skipif(fused.why_unavailable(torch.device("cuda")) is not None,
                    reason=f"the kernels cannot be compiled here: {fused.why_unavailable(torch.device('cuda'))}")
def test_fused_kernels_compile_for_an_h100_and_fit_it():
    """What the interpreter cannot tell: every kernel compiles for sm_90 in both dtypes and both
    modes with tanh, and with the other activations in float32's laplacian mode, and its shared
    memory fits an H100's."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    activations = ["tanh", "sin", "sigmoid", "silu", "gelu", "softplus"]
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "kernel_resources.py"), "--directions", "2",
                             "--activations", *activations],
                            cwd=ROOT, capture_output=True, text=True, env={**env, "OMP_NUM_THREADS": "1"}, timeout=600)
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines() if line.split()[:1]
            and line.split()[0].endswith("_kernel")]
    assert [r[1] for r in rows] == ["tanh"] * 20 + [a for a in activations[1:] for _ in range(4)], result.stdout
    assert all(r[-1] == "yes" for r in rows), result.stdout


def test_jet_revisions_compares_with_a_git_revision():
    if subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True).returncode != 0:
        pytest.skip("not a git checkout: there is no revision to compare with")
    cases = ["forward:2:16", "stochastic:3:16", "diagonal:2:16", "hard:3:16", "hard_stochastic:3:16"]
    out = run("jet_revisions.py", "--rev", "HEAD", "--cases", *cases, "--repeats", "1", "--seconds", "0.01")
    rows = [line.split() for line in out.splitlines() if line.split()[:1] in [[c] for c in cases]]
    assert [r[0] for r in rows] == cases, out
    assert all(float(r[1]) > 0 and float(r[3]) > 0 and r[5].endswith("x") for r in rows), out
    for args, message in ((["--rev", "no-such-revision"], "cannot read pinn/jet.py at revision 'no-such-revision'"),
                          (["--rev", "HEAD", "--cases", "forward:2"], "case 'forward:2' is not kind:d:N"),
                          (["--rev", "HEAD", "--cases", "hessian:2:16"],
                           "the kind must be forward, stochastic, diagonal, hard or hard_stochastic")):
        bad = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "jet_revisions.py"), *args],
                             cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert bad.returncode != 0 and message in bad.stderr and not bad.stdout, bad.stdout + bad.stderr


@pytest.mark.parametrize("domain", ["ball", "box"])
def test_ball_factor_benchmark_compares_the_closed_form_with_torch_func(domain):
    # the box: one case, the stochastic engine's, whose check of the losses takes the exact engine,
    # on the same points at every step
    cases = ["stochastic:3:16", "forward:2:16", "forward+gram:4:16"] if domain == "ball" else ["stochastic:3:16"]
    points = "new" if domain == "ball" else "fixed"
    out = run("ball_factor.py", "--cases", *cases, "--repeats", "1", "--seconds", "0.01", "--domain", domain,
              "--points", points)
    rows = [line.split() for line in out.splitlines() if line.split()[:1] in [[c] for c in cases]]
    assert [r[0] for r in rows] == cases and f"the {domain}'s factor, {points} points at every step" in out, out
    assert all(float(r[1]) > 0 and float(r[3]) > 0 and r[5].endswith("x") for r in rows), out
    if domain == "box":
        return  # the refusals below are the same
    for case, message in (("forward:2", "is not engine:d:N"), ("autograd:2:16", "the engine must be forward, forward+gram or stochastic"),
                          ("forward:1:16", "d at least 2")):
        bad = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "ball_factor.py"), "--cases", case],
                             cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert bad.returncode != 0 and message in bad.stderr and not bad.stdout, bad.stdout + bad.stderr


def test_ball_baselines_fit_the_solution_better_with_each_kind_of_term():
    out = run("ball_baselines.py", "--dims", "6", "--ranks", "2", "4", "--n-test", "400")
    errors = {" ".join(line.split()[3:-1]): float(line.split()[-1]) for line in out.splitlines() if line.startswith("d =")}
    assert list(errors) == ["constant", "linear", "linear + quadratic", "rank 2", "rank 4"], out
    assert errors["constant"] > errors["linear"] > errors["rank 2"] > errors["linear + quadratic"], out
    bad = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "ball_baselines.py"), "--dims", "1"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "at least 2" in bad.stderr and not bad.stdout


def test_ball_baselines_quadratic_term_is_the_taylor_term():
    # g(εx) = g(0) + ε ∇g(0)·x + ε² xᵀAx + O(ε³): the remainder shrinks 8-fold when ε halves.
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from ball_baselines import quadratic_term
    from pinn.pdes import PoissonBall

    pde = PoissonBall(dim=5, coefficient_seed=2)
    a = quadratic_term(pde)
    g = lambda x: pde._terms(x)[0]  # noqa: E731
    x = torch.randn(3, 5, dtype=torch.float64)
    zero = torch.zeros(1, 5, dtype=torch.float64)
    gradient = torch.func.jacrev(lambda p: g(p[None])[0, 0])(zero[0])
    remainders = [(g(eps * x) - g(zero) - eps * x @ gradient[:, None] - eps**2 * ((x @ a) * x).sum(1, keepdim=True))
                  .abs().max().item() for eps in (1e-2, 5e-3)]
    assert 6 < remainders[0] / remainders[1] < 10


def test_the_gpu_script_asks_the_benchmarks_only_for_what_they_take():
    """benchmarks/gpu.sh runs only where a GPU is lent, for minutes: every option it passes is one
    its benchmark declares, every variant one the benchmarks build on a CUDA device, and every
    test file it runs is there (checked here, without a GPU)."""
    import re

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from common import check_variant

    script = (ROOT / "benchmarks" / "gpu.sh").read_text().replace("\\\n", " ")
    commands = re.findall(r'"\$py" (benchmarks/[\w-]+\.py)([^;]*);;', script)
    assert {path for path, _ in commands} == {"benchmarks/vs_deepxde.py", "benchmarks/triton_blocks.py",
                                              "benchmarks/tf32.py", "benchmarks/derivatives.py"}, commands
    # every benchmark the script names is among the commands read (one written otherwise would go unchecked)
    assert set(re.findall(r"benchmarks/[\w-]+\.py", script)) == {path for path, _ in commands}
    for path, args in commands:
        declared = set(re.findall(r'add_argument\([^)]*?"(--[\w-]+)"', (ROOT / path).read_text()))
        words = args.split()
        assert {w for w in words if w.startswith("--")} <= declared, (path, args)
        if "--variants" in words:
            variants = words[words.index("--variants") + 1:]
            variants = variants[:next((i for i, w in enumerate(variants) if w.startswith("--")), len(variants))]
            assert variants, (path, args)
            for variant in variants:
                if not (path.endswith("vs_deepxde.py") and variant == "deepxde"):
                    check_variant(variant, "cuda")  # raises where the benchmark would refuse it
    tests = re.search(r"tests\) run tests \d+ .*?((?:tests/\S+\.py ?)+)", script).group(1).split()
    assert tests and all((ROOT / t).is_file() for t in tests), tests
