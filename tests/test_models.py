import pytest
import torch

from pinn.errors import ConfigError
from pinn.models import ACTIVATIONS, MLP


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_mlp_shapes_and_activations(activation):
    model = MLP(3, 2, width=8, depth=2, activation=activation)
    assert model(torch.rand(5, 3)).shape == (5, 2)
    linear = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [(3, 8), (8, 8), (8, 2)]


def test_mlp_is_pointwise():
    model = MLP(2, 1, width=8, depth=2)
    x = torch.rand(6, 2)
    whole = model(x)
    assert torch.allclose(torch.cat([model(x[i : i + 1]) for i in range(6)]), whole)


@pytest.mark.parametrize("kwargs,match", [
    ({"activation": "relu"}, "valid choices: tanh"),
    ({"width": 0}, "model.width"),
    ({"depth": -1}, "model.depth"),
])
def test_mlp_rejects_bad_settings(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        MLP(2, 1, **kwargs)


def test_mlp_rejects_wrong_input_shape():
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        MLP(2, 1)(torch.rand(4, 3))
