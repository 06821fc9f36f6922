"""The shared argument checks: normal forms returned, one-line messages that name the parameter."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from stability import checks
from stability.errors import BadInputError


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (lambda: checks.check_positive_int("iters", 3), 3),
        (lambda: checks.check_positive_int("iters", np.int64(2)), 2),
        (lambda: checks.check_optional_positive_int("subset", None), None),
        (lambda: checks.check_chunk_size(4), 4),
        (lambda: checks.check_chunk_size(None), None),
        (lambda: checks.check_count("num_probes", 2, 2), 2),
        (lambda: checks.check_index("index", 0, 3), 0),
        (lambda: checks.check_positive("lr", 1), 1.0),
        (lambda: checks.check_positive("lr", torch.tensor(0.5)), 0.5),
        (lambda: checks.check_non_negative("s", 0), 0.0),
        (lambda: checks.check_range("momentum", 1.0, 0.0, 1.0), 1.0),
        (lambda: checks.check_choice("loss", "mse", ("mse", "cross-entropy")), "mse"),
    ],
)
def test_valid_values_come_back_in_normal_form(call, expected) -> None:
    value = call()
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: checks.check_positive_int("iters", 0), "iters must be a positive integer, got 0"),
        (lambda: checks.check_positive_int("iters", True), "iters must be a positive integer, got True"),
        (lambda: checks.check_positive_int("iters", 2.0), "iters must be a positive integer, got 2.0"),
        (lambda: checks.check_chunk_size(0), "chunk_size must be a positive integer or None, got 0"),
        (lambda: checks.check_chunk_size(-1, "vjp_chunk_size"), "vjp_chunk_size must be a positive integer or None"),
        (
            lambda: checks.check_count("num_samples", 1, 2, "for a standard error"),
            "num_samples must be an integer of at least 2 (for a standard error), got 1",
        ),
        (lambda: checks.check_index("index", 3, 3), "index must be an integer in [0, 3), got 3"),
        (lambda: checks.check_positive("sigma", 0.0), "sigma must be a positive finite number, got 0.0"),
        (lambda: checks.check_positive("sigma", math.inf), "sigma must be a positive finite number, got inf"),
        (lambda: checks.check_positive("sigma", math.nan), "sigma must be a positive finite number, got nan"),
        (lambda: checks.check_positive("sigma", "1"), "sigma must be a positive finite number, got '1'"),
        (lambda: checks.check_positive("sigma", False), "sigma must be a positive finite number, got False"),
        (lambda: checks.check_non_negative("s", -1e-3), "s must be a non-negative finite number"),
        (lambda: checks.check_range("momentum", 1.5, 0.0, 1.0), "momentum must lie in [0.0, 1.0], got 1.5"),
        (lambda: checks.check_range("momentum", math.nan, 0.0, 1.0), "momentum must lie in [0.0, 1.0], got nan"),
        (lambda: checks.check_choice("loss", "hinge", ("mse", "cross-entropy")), "loss 'hinge' is not one of: mse, "),
        (lambda: checks.as_generator(1.5, "cpu"), "generator must be a torch.Generator or an integer seed, got float"),
        (lambda: checks.as_generator(True, "cpu"), "generator must be a torch.Generator or an integer seed, got bool"),
    ],
)
def test_bad_values_get_one_line_naming_the_parameter(call, message) -> None:
    with pytest.raises(BadInputError, match=re.escape(message)) as info:
        call()
    assert "\n" not in str(info.value)


def test_a_seed_makes_a_fresh_generator_and_a_generator_is_passed_through() -> None:
    a, b = checks.as_generator(7, "cpu"), checks.as_generator(7, torch.device("cpu"))
    assert torch.equal(torch.rand(4, generator=a), torch.rand(4, generator=b))
    g = torch.Generator()
    assert checks.as_generator(g, "cpu") is g


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_generator_on_another_device_is_refused() -> None:
    with pytest.raises(BadInputError, match="generator is on cpu but the data is on cuda"):
        checks.as_generator(torch.Generator(), "cuda")
