"""Functions of the points alone, computed once per point set (``pinn.point_cache``): the same
numbers as computed afresh, brought up to date in place when the points are written (as a
resampling writes the tensors a captured step reads), and never stored where that would be wrong."""

import pytest
import torch
from torch import nn

from pinn.cuda_graph import copy_points
from pinn.derivatives import ForwardEngine, OnePass
from pinn.models import MLP
from pinn.optim import Adam
from pinn.pdes import Burgers, Helmholtz, Poisson, PoissonBall, PoissonInverse
from pinn.point_cache import MAX_STORED, PointCache, at_points
from pinn.sampling import SobolSampler, UniformSampler
from pinn.trainer import Trainer


class Counted:
    """``sin(x)`` summed per point, counting its calls."""

    def __init__(self):
        self.calls = 0

    def __call__(self, x):
        self.calls += 1
        return torch.sin(x).sum(dim=1, keepdim=True)


def points(seed=0, n=8):
    gen = torch.Generator().manual_seed(seed)
    return {"interior": torch.rand(n, 2, generator=gen, dtype=torch.float64),
            "boundary": torch.rand(n // 2, 2, generator=gen, dtype=torch.float64)}


def test_a_value_is_computed_once_per_point_set():
    cache, f, pts = PointCache(), Counted(), points()
    with cache.active(pts):
        first = at_points(f, f, pts["interior"])
        again = at_points(f, f, pts["interior"].detach())  # a detached view is the same set
        other = at_points(f, f, pts["boundary"])
    assert f.calls == 2 and again is first and len(cache) == 2
    assert torch.equal(first, torch.sin(pts["interior"]).sum(dim=1, keepdim=True))
    assert torch.equal(other, torch.sin(pts["boundary"]).sum(dim=1, keepdim=True))


def test_written_points_update_the_stored_value_in_place():
    cache, f, pts = PointCache(), Counted(), points()
    with cache.active(pts):
        stored = at_points(f, f, pts["interior"])
    fresh = points(seed=1)
    copy_points(pts, fresh)  # as a resampling in a captured run
    cache.refresh()  # what a replayed graph relies on: it calls nothing
    assert f.calls == 2
    assert torch.equal(stored, torch.sin(fresh["interior"]).sum(dim=1, keepdim=True))
    pts["interior"].mul_(2)  # written again: the next call sees it without a refresh
    with cache.active(pts):
        assert at_points(f, f, pts["interior"]) is stored
    assert f.calls == 3 and torch.equal(stored, torch.sin(2 * fresh["interior"]).sum(dim=1, keepdim=True))


def test_new_point_sets_replace_the_old_ones():
    cache, f = PointCache(), Counted()
    for seed in range(5):  # resampled eagerly: new tensors each time
        pts = points(seed)
        with cache.active(pts):
            value = at_points(f, f, pts["interior"])
        assert torch.equal(value, torch.sin(pts["interior"]).sum(dim=1, keepdim=True))
    assert f.calls == 5 and len(cache) == 1


def test_what_must_not_be_stored_is_computed_every_time():
    cache, f, pts = PointCache(), Counted(), points()
    scale = nn.Parameter(torch.tensor(2.0, dtype=torch.float64))

    def trained(x):  # depends on a trained parameter: not a function of the points alone
        return scale * x[:, :1]

    with cache.active(pts):
        at_points(f, f, pts["interior"].clone())  # not a tracked set
        at_points(f, f, pts["interior"].detach().requires_grad_())  # differentiated through (autograd engine)
        for _ in range(2):
            out = at_points(trained, trained, pts["interior"])
            assert out.requires_grad
            (grad,) = torch.autograd.grad(out.sum(), scale)
            assert grad == pts["interior"][:, 0].sum()
    at_points(f, f, pts["interior"])  # no active cache
    assert f.calls == 3 and len(cache) == 0


def test_nothing_is_stored_without_gradients_or_in_inference_mode():
    """Whether a result would require gradients cannot be seen with gradients off: a value first
    asked for under no_grad (a loss logged there, say) is not stored, nor one in inference mode,
    where the points' version counters cannot be read; training afterwards is unaffected."""
    cache, pts = PointCache(), points()
    scale = nn.Parameter(torch.tensor(2.0, dtype=torch.float64))

    def trained(x):
        return scale * x[:, :1]

    with cache.active(pts):
        with torch.no_grad():
            at_points(trained, trained, pts["interior"])
        with torch.inference_mode():
            at_points(trained, trained, pts["interior"])
            inference_points = {k: v.clone() for k, v in pts.items()}
            with cache.active(inference_points):
                at_points(trained, trained, inference_points["interior"])
        assert len(cache) == 0
        assert at_points(trained, trained, pts["interior"]).requires_grad


def test_functions_made_at_every_call_are_stored_up_to_a_limit():
    cache, pts = PointCache(), points()
    with cache.active(pts):
        for i in range(MAX_STORED + 10):
            fresh = lambda x, i=i: x[:, :1] + i  # noqa: E731 -- a new function each time, as built in a loop
            assert torch.equal(at_points(fresh, fresh, pts["interior"]), pts["interior"][:, :1] + i)
    assert len(cache) == MAX_STORED


def test_an_error_inside_the_function_is_raised_once():
    cache, pts, calls = PointCache(), points(), []

    def failing(x):
        calls.append(1)
        raise TypeError("not a function of the points")

    with cache.active(pts), pytest.raises(TypeError) as raised:
        at_points(failing, failing, pts["interior"].detach().requires_grad_())
    assert len(calls) == 1 and raised.value.__context__ is None


def test_a_key_that_cannot_be_hashed_is_computed_every_time():
    cache, f, pts = PointCache(), Counted(), points()
    with cache.active(pts):
        for _ in range(2):
            at_points([f], f, pts["interior"])
    assert f.calls == 2 and len(cache) == 0


def test_an_expanded_value_is_kept_as_one_that_can_be_rewritten():
    cache, pts = PointCache(), points()

    def first_coordinate_everywhere(x):  # every row the same: an expanded tensor (of a copy)
        return (2 * x[:1, :1]).expand(x.shape[0], 1)

    with cache.active(pts):
        stored = at_points(first_coordinate_everywhere, first_coordinate_everywhere, pts["interior"])
    assert torch.equal(stored, 2 * pts["interior"][:1, :1].expand(8, 1))
    pts["interior"].add_(1)
    cache.refresh()  # writes into the stored tensor, which a captured step would read
    assert torch.equal(stored, 2 * pts["interior"][:1, :1].expand(8, 1))


def test_tuples_are_rewritten_in_place_and_numbers_replaced():
    cache, pts = PointCache(), points()

    def parts(x):  # tensors, a number that depends on the points, and None
        return x[:, :1] * 2, (x[:1, 1:] + 1).expand(x.shape[0], 1), float(x[0, 0]), None

    with cache.active(pts):
        doubled, expanded, number, nothing = stored = at_points(parts, parts, pts["interior"])
        assert at_points(parts, parts, pts["interior"]) is stored
    assert number == float(pts["interior"][0, 0]) and nothing is None
    pts["interior"].add_(1)
    cache.refresh()
    with cache.active(pts):
        fresh = at_points(parts, parts, pts["interior"])
    assert fresh[0] is doubled and fresh[1] is expanded  # the same tensors, which a captured step reads
    assert torch.equal(doubled, pts["interior"][:, :1] * 2) and torch.equal(expanded, pts["interior"][:1, 1:].expand(8, 1) + 1)
    assert fresh[2] == float(pts["interior"][0, 0]) and fresh[3] is None


def test_a_stored_tensor_is_a_point_set_of_its_own():
    """A function of a stored value (of the stacked sets, say) is stored, brought up to date
    after that value, and forgotten with it."""
    cache, f, pts = PointCache(), Counted(), points()

    def stack(*sets):
        return torch.cat(sets)

    with cache.active(pts):
        stacked = at_points(stack, stack, pts["interior"], pts["boundary"])
        of_stack = at_points(f, f, stacked)
        assert at_points(f, f, stacked) is of_stack and f.calls == 1
    copy_points(pts, points(seed=1))
    cache.refresh()
    assert f.calls == 2 and torch.equal(of_stack, f(torch.cat([pts["interior"], pts["boundary"]])))
    with cache.active(points(seed=2)):  # new sets: both values go
        assert len(cache) == 0


def test_a_function_that_changes_its_shape_is_an_error():
    cache, pts = PointCache(), points()
    shapes = iter([(8, 1), (1, 1)])

    def unsteady(x):
        return torch.zeros(next(shapes), dtype=x.dtype)

    with cache.active(pts):
        at_points(unsteady, unsteady, pts["interior"])
    pts["interior"].add_(1)
    with pytest.raises(RuntimeError, match="keeps its shape"):
        cache.refresh()


@pytest.mark.parametrize("pde", [Poisson(dim=2), Poisson(dim=3, solution="sum"), PoissonBall(dim=4, hard_constraint=False),
                                 Helmholtz(), PoissonInverse(), Burgers(), Helmholtz(hard_constraint=True),
                                 PoissonBall(dim=4)],
                         ids=["poisson", "poisson-sum", "ball", "helmholtz", "inverse", "burgers", "helmholtz-hard",
                              "ball-hard"])
@pytest.mark.parametrize("one_pass", [False, True], ids=["separate", "one-pass"])
def test_trainer_losses_equal_those_computed_afresh(pde, one_pass):
    """The cached source, boundary data and hard constraints give the losses of an uncached
    evaluation, to the last bit, before and after the points are written in place."""
    torch.manual_seed(0)
    sampler = SobolSampler(n_interior=32, n_boundary=16, n_initial=16)
    pts = {k: v for k, v in sampler.sample(pde.domain, torch.Generator().manual_seed(0), pde.point_sets).items()}
    model = pde.constrain(MLP(pde.dim, pde.n_outputs, width=8, depth=2).double())
    engine = ForwardEngine(one_pass=one_pass)
    engine.check_pde(pde)
    trainer = Trainer()

    def afresh():
        return Trainer._losses(trainer, pde, model, engine, {k: v.clone() for k, v in pts.items()})

    for _ in range(2):
        total, terms = trainer.losses(pde, model, engine, pts)
        expected_total, expected = afresh()
        assert torch.equal(total, expected_total) and all(torch.equal(terms[k], expected[k]) for k in expected)
    assert len(trainer.point_cache) >= 1 + one_pass  # the data, and the stacked sets
    copy_points(pts, sampler.sample(pde.domain, torch.Generator().manual_seed(1), pde.point_sets))
    trainer.point_cache.refresh()
    total, terms = trainer.losses(pde, model, engine, pts)
    expected_total, expected = afresh()
    assert torch.equal(total, expected_total) and all(torch.equal(terms[k], expected[k]) for k in expected)


def test_one_pass_stacks_the_tracked_sets_once():
    pts = points()
    model, engine, cache = MLP(2, 1, width=8, depth=1).double(), ForwardEngine(one_pass=True), PointCache()
    with cache.active(pts):
        first = OnePass(model, engine, pts)._field().points
        second = OnePass(model, engine, pts)._field().points
    assert second.data_ptr() == first.data_ptr()
    assert torch.equal(first, torch.cat([pts["interior"], pts["boundary"]]))


class CountedCalls:
    """``f``, counting its calls."""

    def __init__(self, f):
        self.f, self.calls = f, 0

    def __call__(self, x):
        self.calls += 1
        return self.f(x)


@pytest.mark.parametrize("second", ["laplacian", "hessian"])
@pytest.mark.parametrize("one_pass", [False, True], ids=["separate", "one-pass"])
def test_a_hard_constraint_is_computed_once_per_point_set(second, one_pass):
    """The base's and scale's jets are kept while the points stay, and brought up to date by
    a refresh: the loss evaluated afterwards, as a captured step replays it, computes none."""
    torch.manual_seed(0)
    pde, pts, engine, trainer = Poisson(dim=2, hard_constraint=True), points(), ForwardEngine(second=second, one_pass=one_pass), Trainer()
    model = pde.constrain(MLP(2, 1, width=8, depth=2).double())
    model.scale = scale = CountedCalls(model.scale)

    def afresh():
        return Trainer._losses(trainer, pde, model, engine, {k: v.clone() for k, v in pts.items()})

    for _ in range(3):
        total, terms = trainer.losses(pde, model, engine, pts)
    calls = scale.calls
    expected = afresh()
    # its value, and a pass per axis (per pair of axes for the Hessian)
    assert torch.equal(total, expected[0]) and calls == 1 + (2 if second == "laplacian" else 4)
    copy_points(pts, points(seed=1))
    trainer.point_cache.refresh()
    calls = scale.calls
    total, terms = trainer.losses(pde, model, engine, pts)
    assert scale.calls == calls and torch.equal(total, afresh()[0])


def test_resampling_runs_keep_one_value_per_function(tmp_path):
    trainer = Trainer(max_steps=8, resample_every=2, eval_every=8, checkpoint_every=0, n_test=16,
                      image_resolution=4, progress=False)
    trainer.fit(pde=Poisson(dim=2), model=MLP(2, 1, width=8, depth=1), engine=ForwardEngine(),
                sampler=UniformSampler(n_interior=16, n_boundary=8), optimizer=Adam(),
                generator=torch.Generator().manual_seed(0), run_dir=tmp_path)
    assert len(trainer.point_cache) == 2  # the source at the interior, the boundary data
