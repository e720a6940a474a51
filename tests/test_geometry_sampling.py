import pytest
import torch

from pinn.errors import ConfigError
from pinn.geometry import Box
from pinn.sampling import LatinHypercubeSampler, SobolSampler, UniformSampler


def unit(n, d, seed=0):
    return torch.rand(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("dim", [1, 2, 3, 6])
def test_box_interior_and_boundary(dim):
    box = Box([-1.0] * dim, [2.0] + [1.0] * (dim - 1))
    x = box.interior(unit(500, dim))
    assert box.contains(x).all()
    b = box.boundary(unit(500, box.boundary_unit_dim, seed=1))
    assert b.shape == (500, dim)
    assert box.contains(b).all()
    lo, hi = box.bounds
    on_face = ((b - lo).abs() < 1e-15) | ((b - hi).abs() < 1e-15)
    assert on_face.any(dim=1).all()  # every boundary point lies on some face
    n = box.normal(b)
    assert torch.allclose(n.norm(dim=1), torch.ones(500, dtype=torch.float64))
    # Outward: stepping along the normal leaves the box, stepping against it stays in.
    assert not box.contains(b + 1e-3 * n).any()
    assert box.contains(b - 1e-3 * n).all()


def test_box_boundary_is_uniform_in_area():
    # [0, 3] x [0, 1]: the two long faces carry 3/4 of the perimeter.
    box = Box([0.0, 0.0], [3.0, 1.0])
    b = box.boundary(unit(40000, 2))
    on_long = ((b[:, 1] == 0) | (b[:, 1] == 1)).double().mean().item()
    assert abs(on_long - 0.75) < 0.01


def test_box_rejects_bad_corners():
    with pytest.raises(ConfigError, match="lo < hi"):
        Box([0.0, 1.0], [1.0, 1.0])
    with pytest.raises(ConfigError, match="one per dimension"):
        Box([0.0], [1.0, 1.0])


@pytest.mark.parametrize("cls", [UniformSampler, SobolSampler, LatinHypercubeSampler])
def test_samplers_are_driven_by_the_generator(cls):
    box = Box(-1.0, 1.0, dim=3)
    sampler = cls(n_interior=256, n_boundary=64)
    a = sampler.sample(box, torch.Generator().manual_seed(7))
    b = sampler.sample(box, torch.Generator().manual_seed(7))
    c = sampler.sample(box, torch.Generator().manual_seed(8))
    assert set(a) == {"interior", "boundary"}
    assert a["interior"].shape == (256, 3) and a["boundary"].shape == (64, 3)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["interior"], c["interior"])
    assert box.contains(a["interior"]).all() and box.contains(a["boundary"]).all()
    gen = torch.Generator().manual_seed(7)
    first, second = sampler.sample(box, gen), sampler.sample(box, gen)
    assert not torch.equal(first["interior"], second["interior"])  # resampling gives new points


def test_sobol_covers_more_evenly_than_uniform():
    # Discrepancy proxy: the largest empty-cell count on a 16x16 grid is smaller for Sobol.
    box = Box(0.0, 1.0, dim=2)

    def empty_cells(sampler):
        x = sampler.sample(box, torch.Generator().manual_seed(0), ("interior",))["interior"]
        cells = (x * 16).long().clamp(max=15)
        return 256 - len(set(map(tuple, cells.tolist())))

    assert empty_cells(SobolSampler(n_interior=256, n_boundary=0)) < empty_cells(UniformSampler(n_interior=256, n_boundary=0))


@pytest.mark.parametrize("n,dim", [(1, 1), (7, 3), (500, 5)])
def test_latin_hypercube_puts_one_value_of_each_coordinate_in_each_slice(n, dim):
    x = LatinHypercubeSampler().unit(n, dim, torch.Generator().manual_seed(3))
    assert x.shape == (n, dim) and x.dtype == torch.float64 and ((x >= 0) & (x < 1)).all()
    for column in x.T:  # the n slices [i/n, (i+1)/n), each hit once
        assert sorted((column * n).floor().long().tolist()) == list(range(n))
    # and the points of a box keep it, scaled: one per slice of [-1, 1) along each axis
    box = Box(-1.0, 1.0, dim=dim)
    inside = LatinHypercubeSampler(n_interior=n, n_boundary=0).sample(box, torch.Generator().manual_seed(3),
                                                                       ("interior",))["interior"]
    for column in inside.T:
        assert sorted(((column + 1) / 2 * n).floor().long().tolist()) == list(range(n))


@pytest.mark.parametrize("kwargs,match", [({"n_interior": 0}, "n_interior"), ({"n_boundary": -1}, "n_boundary"),
                                          ({"n_interior": 2.5}, "n_interior")])
def test_samplers_reject_bad_sizes(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        UniformSampler(**kwargs)


def test_a_region_no_sampler_draws_is_named_with_what_to_do():
    box = Box(0.0, 1.0, dim=2)
    with pytest.raises(ConfigError, match="region 'hole' .* samplers draw only interior, boundary and initial points; "
                                          "take a part of the boundary from the boundary points"):
        SobolSampler().sample(box, torch.Generator().manual_seed(0), ("interior", "hole"))
    with pytest.raises(ConfigError, match="sampler.n_boundary=0; set sampler.n_boundary > 0"):
        SobolSampler(n_boundary=0).sample(box, torch.Generator().manual_seed(0))
    # one region named alone is that region, not its letters
    one = SobolSampler(n_interior=8).sample(box, torch.Generator().manual_seed(0), "interior")
    assert one.keys() == {"interior"} and one["interior"].shape == (8, 2)


def test_more_coordinates_than_sobol_points_have_is_one_line():
    with pytest.raises(ConfigError, match=r"Sobol points have at most 21201 coordinates, and this domain's points take "
                                          r"21202 .* use sampler=uniform or sampler=lhs"):
        SobolSampler().unit(4, 21202, torch.Generator().manual_seed(0))
