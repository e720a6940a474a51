"""Figures: every output drawn, at the right coordinates, on readable axes, written atomically."""

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from pinn.checkpoint import CheckpointError, write_atomically
from pinn.errors import ConfigError
from pinn.models import MLP
from pinn.pdes import Cavity, Heat, Kovasznay, Poisson
from pinn.plotting import _draw, save_figures, solution_figure, solution_slice
from pinn.trainer import Trainer

PNG = b"\x89PNG\r\n\x1a\n"


def _slice(pde, resolution=9):
    torch.manual_seed(0)
    model = MLP(pde.dim, pde.n_outputs, width=8, depth=2).double()
    return solution_slice(pde, model, resolution, "cpu", torch.float64)


def test_every_output_is_drawn_and_named(tmp_path):
    s = _slice(Kovasznay())
    assert s.names == ("u", "v", "p")
    assert s.predicted.shape == (9, 9, 3) and s.exact.shape == (9, 9, 3)
    assert not np.allclose(s.predicted[..., 0], s.predicted[..., 1])  # not one field three times
    one = _slice(Poisson(dim=2))
    assert one.predicted.shape == (9, 9, 1)
    # one row per output in TensorBoard's image
    assert solution_figure(s).shape[0] == 3 * solution_figure(one).shape[0]
    written = save_figures(s, tmp_path)
    assert [p.name for p in written] == ["solution.png", "error.png"]
    assert all(p.read_bytes()[:8] == PNG for p in written)
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_reference_without_a_closed_form_gets_no_error_figure(tmp_path):
    s = _slice(Cavity())
    assert s.exact is None and s.error is None
    assert [p.name for p in save_figures(s, tmp_path)] == ["solution.png"]


def test_space_time_slices_are_labelled_x_t_and_not_squashed():
    s = _slice(Heat(t_end=10.0))
    assert s.labels == ("x", "t") and s.aspect == "auto"
    fig = Figure()
    ax = fig.subplots()
    _draw(fig, ax, s, s.predicted[..., 0], "u", "viridis")
    assert ax.get_aspect() == "auto" and ax.get_ylabel() == "t"
    assert s.coords[1].max() == pytest.approx(10.0)
    spatial = _slice(Poisson(dim=3))
    assert spatial.labels == ("x0", "x1") and spatial.aspect == "equal"


def test_pixels_are_centred_on_the_grid_points():
    s = _slice(Poisson(dim=2), resolution=5)  # grid points -1, -0.5, 0, 0.5, 1 on each axis
    fig = Figure()
    ax = fig.subplots()
    _draw(fig, ax, s, s.predicted[..., 0], "u", "viridis")
    assert ax.images[0].get_extent() == pytest.approx([-1.25, 1.25, -1.25, 1.25])


def test_one_dimensional_problems_draw_every_output_as_a_curve(tmp_path):
    s = _slice(Poisson(dim=1))
    assert s.coords.shape == (9,) and s.predicted.shape == (9, 1)
    assert solution_figure(s).ndim == 3
    assert [p.name for p in save_figures(s, tmp_path)] == ["solution.png", "error.png"]


def test_evaluate_pys_curve_has_the_exact_one_beside_it_as_tensorboards_has(tmp_path, monkeypatch):
    from pinn import plotting

    s, drawn = _slice(Poisson(dim=1)), []
    draw = plotting._draw

    def recording(fig, ax, s, values, title, cmap, **kwargs):
        drawn.append((title, kwargs.get("overlay") is not None))
        draw(fig, ax, s, values, title, cmap, **kwargs)

    monkeypatch.setattr(plotting, "_draw", recording)
    save_figures(s, tmp_path)
    assert drawn == [("u", True), ("|u - u_exact|", False)]
    drawn.clear()
    solution_figure(s)
    assert drawn == [("predicted u", True), ("|u - u_exact|", False)]


def test_a_failed_write_keeps_the_previous_file(tmp_path):
    target = tmp_path / "solution.png"
    target.write_bytes(b"the good one")

    def fails_midway(f):
        f.write(b"half of a new")
        raise OSError(28, "No space left on device")

    with pytest.raises(CheckpointError, match="solution.png \\(No space left on device\\); the file there before"):
        write_atomically(target, fails_midway)
    assert target.read_bytes() == b"the good one"
    assert list(tmp_path.iterdir()) == [target]  # no temporary file left behind


@pytest.mark.parametrize("resolution", [1, 2002])
def test_image_resolution_outside_its_range_is_refused(resolution):
    with pytest.raises(ConfigError, match=f"image_resolution must be from 2 to 2001.*; got {resolution}"):
        Trainer(image_resolution=resolution)


@pytest.mark.parametrize("every", [-1, 2.5, True])
def test_image_every_that_is_not_a_count_of_steps_is_refused(every):
    with pytest.raises(ConfigError, match=f"trainer.image_every must be an integer >= 0; got {every!r}"):
        Trainer(image_every=every)


def test_a_slice_that_would_miss_the_domain_goes_through_its_middle_and_says_where_it_is():
    from pinn.pdes import PoissonBall

    # In a unit ball of six or more dimensions the plane at x2 = ... = -0.5 misses the ball
    ball = _slice(PoissonBall(dim=8))
    assert np.isfinite(ball.predicted).mean() > 0.5  # the unit disk in its square (49 of 81 grid points)
    assert ball.where == "x2..x7 = 0"
    assert _slice(Poisson(dim=5)).where == "x2..x4 = -0.5"
    assert _slice(Poisson(dim=4)).where == "x2 = -0.5, x3 = -0.5"
    assert _slice(Heat(dim=2)).where == "t = 0.25"
    assert _slice(Poisson(dim=2)).where == "" and _slice(Heat()).where == ""


def test_a_line_of_exactly_zero_errors_keeps_its_log_axis_readable():
    # a hard constraint makes the error exactly 0 at the boundary: left out on a log axis, where
    # 1e-300 stretched the axis over 300 decades
    s = _slice(Poisson(dim=1))
    values = np.abs(np.sin(3 * s.coords)) * 1e-3
    values[[0, -1]] = 0.0
    fig = Figure()
    ax = fig.subplots()
    _draw(fig, ax, s, values, "error", "magma", log=True)
    assert ax.get_yscale() == "log" and ax.get_ylim()[0] > 1e-10
    ax = fig.subplots()
    _draw(fig, ax, s, np.zeros_like(values), "error", "magma", log=True)  # nothing positive: a plain axis
    assert ax.get_yscale() == "linear"
