"""The benchmark scripts run as documented (tiny sizes; timings are printed, never asserted)."""

import importlib.util
import os
import subprocess
import sys

import pytest

from conftest import ROOT


def run(script, *args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], cwd=ROOT,
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_vs_deepxde_trains_every_variant_on_the_same_problem():
    variants = ["autograd", "forward", "forward+fused"] + (["deepxde"] if importlib.util.find_spec("deepxde") else [])
    out = run("vs_deepxde.py", "--iterations", "3", "--interior", "32", "--boundary", "8", "--variants", *variants)
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.split() and line.split()[0] in variants}
    assert set(rows) == set(variants), out
    # The same initial weights, points and optimizer (Adam's fused update is the same arithmetic
    # in another order): after 13 Adam steps every variant holds the same network, to float32
    # round-off.
    errors = [float(row[2]) for row in rows.values()]
    assert max(errors) - min(errors) <= 1e-5 * max(errors), out


def test_derivatives_benchmark_prints_a_row_per_variant():
    variants = ["autograd", "forward", "forward+gram", "stochastic"]
    out = run("derivatives.py", "--dims", "2", "--points", "64", "--variants", *variants, "--seconds", "0.05")
    rows = [line.split() for line in out.splitlines() if line.split()[:2] == ["2", "64"]]
    assert [r[2] for r in rows] == variants, out
    assert all(float(r[3]) > 0 for r in rows) and rows[1][5].endswith("x"), out


def test_jet_revisions_compares_with_a_git_revision():
    if subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True).returncode != 0:
        pytest.skip("not a git checkout: there is no revision to compare with")
    cases = ["forward:2:16", "stochastic:3:16", "diagonal:2:16"]
    out = run("jet_revisions.py", "--rev", "HEAD", "--cases", *cases, "--repeats", "1", "--seconds", "0.01")
    rows = [line.split() for line in out.splitlines() if line.split()[:1] in [[c] for c in cases]]
    assert [r[0] for r in rows] == cases, out
    assert all(float(r[1]) > 0 and float(r[3]) > 0 and r[5].endswith("x") for r in rows), out
    for args, message in ((["--rev", "no-such-revision"], "cannot read pinn/jet.py at revision 'no-such-revision'"),
                          (["--rev", "HEAD", "--cases", "forward:2"], "case 'forward:2' is not kind:d:N"),
                          (["--rev", "HEAD", "--cases", "hessian:2:16"],
                           "the kind must be forward, stochastic or diagonal")):
        bad = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "jet_revisions.py"), *args],
                             cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert bad.returncode != 0 and message in bad.stderr and not bad.stdout, bad.stdout + bad.stderr


def test_ball_factor_benchmark_compares_the_closed_form_with_torch_func():
    cases = ["stochastic:3:16", "forward:2:16"]
    out = run("ball_factor.py", "--cases", *cases, "--repeats", "1", "--seconds", "0.01")
    rows = [line.split() for line in out.splitlines() if line.split()[:1] in [[c] for c in cases]]
    assert [r[0] for r in rows] == cases, out
    assert all(float(r[1]) > 0 and float(r[3]) > 0 and r[5].endswith("x") for r in rows), out
    for case, message in (("forward:2", "is not engine:d:N"), ("autograd:2:16", "the engine must be forward or stochastic"),
                          ("forward:1:16", "d at least 2")):
        bad = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "ball_factor.py"), "--cases", case],
                             cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert bad.returncode != 0 and message in bad.stderr and not bad.stdout, bad.stdout + bad.stderr
