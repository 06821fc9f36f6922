"""Architecture registry: published sizes, layer order against hand-written forward passes, torch.func
compatibility against per-sample autograd, TensorFlow-'SAME' windows and LRN against their definitions,
seeding, and one-line errors."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch.func import grad, jacrev, vmap

from stability.errors import ArchitectureError, BadInputError
from stability.functional import functionalize, stochastic_layers
from stability.models.layers import SameMaxPool, ShiftOnlyBatchNorm, same_padding
from stability.models.registry import ARCHITECTURES, build_model, count_parameters, describe_architectures
from stability.models.spec import ModelSpec

SHAPES = {"digits": (1, 8, 8), "mnist": (1, 28, 28), "cifar": (3, 32, 32), "mnist1d": (1, 40)}
CIFAR28 = (3, 28, 28)


def seeded(spec: ModelSpec, shape: tuple[int, ...], classes: int = 10, seed: int = 0) -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(spec, shape, classes)


def randomize_norms(model: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial running statistics and shifts, so eval-mode batch norm is not the identity."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, ShiftOnlyBatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)


# --- published sizes -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arch", "kwargs", "expected"),
    [
        # Zhang et al. (2017), as reported in the paper: 28x28x3 inputs, 10 classes.
        ("small-inception", {}, 1_649_402),
        ("small-inception", {"batch_norm": False}, 1_649_402),  # conv bias takes the place of beta
        ("small-alexnet", {}, 1_387_786),
        ("mlp", {"widths": [512]}, 1_209_866),
        ("mlp", {"widths": [512, 512, 512]}, 1_735_178),
    ],
)
def test_published_parameter_counts(arch, kwargs, expected):
    assert count_parameters(build_model(ModelSpec(arch, kwargs), CIFAR28, 10)) == expected


def test_inception_norms_have_shift_but_no_scale():
    model = build_model(ModelSpec("small-inception"), CIFAR28, 10)
    norms = [m for m in model.modules() if isinstance(m, ShiftOnlyBatchNorm)]
    assert len(norms) == 1 + 2 * 8 + 2  # stem, two per Inception, one per Downsample
    assert all(m.weight is None and m.bias.shape == (m.num_features,) for m in norms)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(c.bias is None for c in convs) and model.head.in_features == 336


def test_convnet_matches_author_dense_width_and_count():
    # The author's script hard-codes nn.Linear(20480, 10) for 32x32x3 CIFAR: 320 channels x 8 x 8.
    model = build_model(ModelSpec("convnet"), (3, 32, 32), 10)
    assert model.dense.in_features == 20_480
    convs = (3 * 25 + 1) * 60 + (60 * 25 + 1) * 80 + (80 * 9 + 1) * 160 + (160 * 9 + 1) * 320
    assert count_parameters(model) == convs + 20_480 * 10 + 10


def test_count_parameters_counts_shared_tensors_once():
    layer = torch.nn.Linear(4, 4)
    assert count_parameters(torch.nn.Sequential(layer, torch.nn.ReLU(), layer)) == 20


# --- shapes and registry ---------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
@pytest.mark.parametrize("dataset", sorted(SHAPES))
def test_forward_shapes(arch, dataset):
    shape = SHAPES[dataset]
    model = build_model(ModelSpec(arch), shape, 7).eval()
    with torch.no_grad():
        out = model(torch.randn(2, *shape))
    assert out.shape == (2, 7) and torch.isfinite(out).all()


def test_describe_lists_every_architecture_in_one_line():
    described = describe_architectures()
    assert list(described) == list(ARCHITECTURES)
    assert all(text and "\n" not in text for text in described.values())


def test_json_round_trip_of_kwargs_builds_the_same_model():
    spec = ModelSpec("mlp", {"widths": (16, 8), "activation": "tanh"})
    again = ModelSpec.from_dict(spec.to_dict())
    a, b = seeded(spec, (1, 8, 8)), seeded(again, (1, 8, 8))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


# --- layer order against hand-written forward passes (float64) ------------------------------------------


def test_mlp_and_linear_are_the_stated_maps():
    x = torch.randn(3, 1, 8, 8, dtype=torch.float64)
    v = x.flatten(1)
    m = seeded(ModelSpec("mlp", {"widths": [16, 8], "activation": "softplus"}), (1, 8, 8)).double()
    h = F.softplus(F.softplus(v @ m.fc1.weight.T + m.fc1.bias) @ m.fc2.weight.T + m.fc2.bias)
    torch.testing.assert_close(m(x), h @ m.out.weight.T + m.out.bias, rtol=1e-12, atol=1e-12)
    lin = seeded(ModelSpec("linear", {"bias": False}), (1, 8, 8)).double()
    assert count_parameters(lin) == 64 * 10
    torch.testing.assert_close(lin(x), v @ lin.out.weight.T, rtol=1e-12, atol=1e-12)


def test_convnet_layer_order_is_the_authors():
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    m = seeded(ModelSpec("convnet", {"channels": [4, 5, 6, 7]}), (3, 12, 12)).double()
    h = F.relu(F.conv2d(x, m.conv1.weight, m.conv1.bias, padding=2))
    h = F.max_pool2d(F.relu(F.conv2d(h, m.conv2.weight, m.conv2.bias, padding=2)), 2)
    h = F.max_pool2d(F.relu(F.conv2d(h, m.conv3.weight, m.conv3.bias, padding=1)), 2)
    h = F.relu(F.conv2d(h, m.conv4.weight, m.conv4.bias, padding=1))
    torch.testing.assert_close(m(x), h.flatten(1) @ m.dense.weight.T + m.dense.bias, rtol=1e-12, atol=1e-12)


def test_convnet_pools_never_shrink_below_one_pixel():
    model = build_model(ModelSpec("convnet", {"channels": [2, 2, 2, 3]}), (1, 1, 5), 4)
    assert model.dense.in_features == 3 * 1 * 1  # 1 -> 1 -> 1 and 5 -> 2 -> 1
    assert model(torch.randn(2, 1, 1, 5)).shape == (2, 4)


def lrn_reference(x: torch.Tensor) -> torch.Tensor:
    """tf.nn.lrn(depth_radius=4, bias=1, alpha=0.001/9, beta=0.75) over channels, written out."""
    c = x.shape[1]
    sums = torch.stack([(x[:, max(0, i - 4) : i + 5] ** 2).sum(1) for i in range(c)], dim=1)
    return x / (1 + 0.001 / 9 * sums) ** 0.75


def test_small_alexnet_layer_order_and_tf_windows():
    x = 3 * torch.randn(2, 3, 28, 28, dtype=torch.float64)  # large enough for LRN to matter
    m = seeded(ModelSpec("small-alexnet", {"channels": [12, 16], "hidden": [8, 6]}), (3, 28, 28)).double()

    def pool(h):  # TF 'SAME', 3x3/2, even side: one pixel of padding after, none before
        return F.max_pool2d(F.pad(h, (0, 1, 0, 1), value=-math.inf), 3, 2)

    h = lrn_reference(pool(F.relu(F.conv2d(x, m.conv1.weight, m.conv1.bias, padding=2))))
    h = lrn_reference(pool(F.relu(F.conv2d(h, m.conv2.weight, m.conv2.bias, padding=2))))
    assert h.shape[-2:] == (7, 7)
    h = F.relu(F.relu(h.flatten(1) @ m.fc1.weight.T + m.fc1.bias) @ m.fc2.weight.T + m.fc2.bias)
    torch.testing.assert_close(m(x), h @ m.out.weight.T + m.out.bias, rtol=1e-10, atol=1e-12)


def test_same_padding_follows_tensorflow():
    # TF 'SAME': out = ceil(n / s); the odd pixel of padding goes after.
    assert same_padding(28, 3, 2) == (0, 1) and same_padding(7, 3, 2) == (1, 1)
    assert same_padding(5, 3, 1) == (1, 1) and same_padding(1, 3, 2) == (1, 1)
    up = torch.arange(5.0)
    pool = SameMaxPool(1, 3, 2)
    # Windows for n = 4: [0, 2], [2, 4); for n = 5: [-1, 1], [1, 3], [3, 5).
    assert pool(up[:4].view(1, 1, 4)).flatten().tolist() == [2.0, 3.0]
    assert pool(-up[:4].view(1, 1, 4)).flatten().tolist() == [0.0, -2.0]
    assert pool(up.view(1, 1, 5)).flatten().tolist() == [1.0, 3.0, 4.0]
    assert pool(-up.view(1, 1, 5)).flatten().tolist() == [0.0, -1.0, -3.0]
    # Separable 2-D check: the max of a[i] + b[j] over a window is max a + max b.
    grid = up[:4].view(4, 1) - up[:5].view(1, 5)
    expected = torch.tensor([2.0, 3.0]).view(2, 1) - torch.tensor([0.0, 1.0, 3.0]).view(1, 3)
    assert torch.equal(SameMaxPool(2, 3, 2)(grid.view(1, 1, 4, 5)).view(2, 3), expected)


def test_inception_downsample_conv_uses_tf_windows_and_shift_only_norm():
    m = seeded(ModelSpec("small-inception"), (1, 8, 8)).double().eval()
    randomize_norms(m)
    down = m.blocks[2].conv
    x = torch.randn(2, down.conv.in_channels, 7, 8, dtype=torch.float64)
    z = F.conv2d(F.pad(x, (0, 1, 1, 1)), down.conv.weight, stride=2)  # 7 -> (1, 1), 8 -> (0, 1)
    bn = down.bn
    z = (z - bn.running_mean.view(-1, 1, 1)) / (bn.running_var.view(-1, 1, 1) + bn.eps).sqrt()
    torch.testing.assert_close(down(x), F.relu(z + bn.bias.view(-1, 1, 1)), rtol=1e-12, atol=1e-12)


# --- torch.func: functional_call + vmap(jacrev) over single samples -----------------------------------------


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 40)], ids=["image", "signal"])
def test_per_sample_derivatives_match_autograd_loop(arch, shape):
    model = seeded(ModelSpec(arch), shape, classes=4).eval()
    randomize_norms(model)
    fm = functionalize(model, dtype=torch.float64)
    ref = copy.deepcopy(model).double()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, *shape, generator=g, dtype=torch.float64)
    v = torch.randn(4, generator=g, dtype=torch.float64)

    torch.testing.assert_close(vmap(fm.single, in_dims=(None, 0))(fm.params, x), ref(x), rtol=1e-12, atol=1e-12)

    jac = vmap(jacrev(fm.single, argnums=1), in_dims=(None, 0))(fm.params, x)  # (B, K, *shape)
    pgrad = vmap(grad(lambda p, xi: fm.single(p, xi) @ v), in_dims=(None, 0))(fm.params, x)
    names = list(fm.params)
    for i in range(len(x)):
        xi = x[i : i + 1]
        expected = torch.autograd.functional.jacobian(lambda z: ref(z)[0], xi)[:, 0]
        torch.testing.assert_close(jac[i], expected, rtol=1e-10, atol=1e-12)
        params = dict(ref.named_parameters())
        grads = torch.autograd.grad(ref(xi)[0] @ v, [params[n] for n in names])
        for name, expected_grad in zip(names, grads, strict=True):
            torch.testing.assert_close(pgrad[name][i], expected_grad, rtol=1e-10, atol=1e-12)


# --- training-mode layers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arch", "shape"), [("mlp", (1, 8, 8)), ("convnet", (1, 8, 8)), ("small-alexnet", (1, 8, 8)), ("mlp", (1, 40))]
)
def test_dropout_is_random_in_training_and_inert_in_eval(arch, shape):
    with_dropout = seeded(ModelSpec(arch, {"dropout": 0.5}), shape)
    without = seeded(ModelSpec(arch), shape)
    assert stochastic_layers(with_dropout) and not stochastic_layers(without)
    without.load_state_dict(with_dropout.state_dict())  # same names: dropout adds no parameters
    x = torch.randn(3, *shape)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        a, b = with_dropout(x), with_dropout(x)
    assert not torch.equal(a, b)
    with_dropout.eval()
    assert not stochastic_layers(with_dropout)
    torch.testing.assert_close(with_dropout(x), without(x), rtol=0, atol=0)


def test_only_inception_has_batch_norm():
    for arch in ARCHITECTURES:
        model = build_model(ModelSpec(arch), (1, 8, 8), 10)
        assert bool(stochastic_layers(model)) == (arch == "small-inception"), arch
    no_bn = build_model(ModelSpec("small-inception", {"batch_norm": False}), (1, 8, 8), 10)
    assert not stochastic_layers(no_bn)


# --- seeding ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_initialization_is_seeded_by_the_caller_only(arch):
    spec, shape = ModelSpec(arch), (1, 8, 8)
    a, b, c = seeded(spec, shape, seed=3), seeded(spec, shape, seed=3), seeded(spec, shape, seed=4)
    same = [torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True)]
    assert all(same)
    assert not torch.equal(next(a.parameters()), next(c.parameters()))
    # Builders never reseed: consecutive unseeded builds draw different weights.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        d, e = build_model(spec, shape, 10), build_model(spec, shape, 10)
    assert not torch.equal(next(d.parameters()), next(e.parameters()))


# --- errors -----------------------------------------------------------------------------------------------


def one_line_error(spec, shape=(1, 8, 8), classes=10) -> str:
    with pytest.raises(ArchitectureError) as info:
        build_model(spec, shape, classes)
    assert isinstance(info.value, BadInputError)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_unknown_architecture_lists_the_known_ones():
    message = one_line_error(ModelSpec("transformer-xxl"))
    assert "transformer-xxl" in message and all(name in message for name in ARCHITECTURES)


def test_unknown_kwarg_lists_the_accepted_ones():
    message = one_line_error(ModelSpec("mlp", {"depth_of_field": 3}))
    assert "depth_of_field" in message
    assert all(k in message for k in ("widths", "activation", "bias", "dropout"))
    assert "batch_norm" in one_line_error(ModelSpec("small-inception", {"dropout": 0.1}))


@pytest.mark.parametrize(
    ("arch", "kwargs", "named"),
    [
        ("mlp", {"activation": "swish"}, "swish"),
        ("mlp", {"widths": [0]}, "widths"),
        ("mlp", {"widths": 512}, "widths"),
        ("mlp", {"widths": [True]}, "widths"),
        ("mlp", {"dropout": 1.0}, "dropout"),
        ("mlp", {"bias": "yes"}, "bias"),
        ("linear", {"bias": 1}, "bias"),
        ("convnet", {"channels": [8, 8, 8]}, "channels"),
        ("convnet", {"activation": "Relu"}, "Relu"),
        ("small-alexnet", {"hidden": [384]}, "hidden"),
        ("small-alexnet", {"dropout": -0.1}, "dropout"),
        ("small-inception", {"batch_norm": 1}, "batch_norm"),
    ],
)
def test_bad_kwarg_values(arch, kwargs, named):
    assert named in one_line_error(ModelSpec(arch, kwargs))


def test_bad_shapes_and_classes():
    assert "mlp" in one_line_error(ModelSpec("convnet"), shape=(784,))
    assert "(C, H, W)" in one_line_error(ModelSpec("small-inception"), shape=(1, 2, 8, 8))
    assert "input_shape" in one_line_error(ModelSpec("mlp"), shape=(0, 8, 8))
    assert "num_classes" in one_line_error(ModelSpec("mlp"), classes=0)
    assert "ModelSpec" in one_line_error({"arch": "mlp"})  # type: ignore[arg-type]
