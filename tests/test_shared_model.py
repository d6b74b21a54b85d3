"""The shared model: counters by hooks, eval mode during attacks with every mode restored, one device."""

from __future__ import annotations

import torch
from torch import nn

from bridge.models.shared import SharedModel, resolve_device


def _model() -> SharedModel:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 3))
    return SharedModel(net, (1, 2, 2), 3)


def test_counts_forward_and_backward_passes() -> None:
    model = _model()
    x = torch.rand(5, 1, 2, 2, requires_grad=True)
    with model.counting() as counters:
        model(x).sum().backward()  # one forward, one backward
        for _ in range(3):  # three forwards, one of which is differentiated
            out = model(x[:2])
        torch.autograd.grad(out.sum(), x)
        with torch.no_grad():
            model(x)
    assert counters.forward_calls == 5
    assert counters.forward_samples == 5 + 3 * 2 + 5
    assert counters.backward_calls == 2
    assert counters.backward_samples == 5 + 2
    model(x).sum().backward()  # outside the block: not counted
    assert counters.forward_calls == 5


def test_counts_passes_through_an_outer_wrapper() -> None:
    """Toolkits wrap the module; the hook sits on the network, so calls through any wrapper count."""
    model = _model()
    wrapper = nn.Sequential(model)
    with model.counting() as counters:
        wrapper(torch.rand(2, 1, 2, 2))
    assert counters.forward_calls == 1


def test_eval_mode_restores_each_submodule() -> None:
    model = _model()
    model.train()
    model.net[2].eval()  # a mixed state must come back exactly
    before = {name: m.training for name, m in model.named_modules()}
    with model.eval_mode():
        assert not any(m.training for m in model.modules())
    assert {name: m.training for name, m in model.named_modules()} == before


def test_predict_is_batched_and_deterministic() -> None:
    model = _model()
    model.train()  # dropout on: predict must still be deterministic (eval mode)
    x = torch.rand(10, 1, 2, 2)
    with model.counting() as counters:
        a = model.predict(x, batch_size=3)
    assert counters.forward_calls == 4
    assert torch.allclose(a, model.predict(x, batch_size=10), atol=1e-6)  # dropout would differ by far more
    assert model.training


def test_auto_device_is_cpu_without_cuda() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")


def test_query_budget_answers_past_the_limit_without_information() -> None:
    model = _model().eval()
    x, y = torch.rand(3, 1, 2, 2), torch.tensor([0, 1, 2])
    with model.counting() as counters, model.query_budget(x, y, max_queries=2):
        real = model(x)  # 3 sample-forwards of 6
        model(x[:2] + 0.01)  # 5 of 6
        late = model(x[[2, 0]] + 0.01)  # 7 > 6: answered with each input's nearest clean sample's label
    assert counters.queries_blocked == 2
    assert late.argmax(1).tolist() == [2, 0]
    assert not torch.allclose(real[[2, 0]], late)
    xg = x.clone().requires_grad_(True)
    with model.counting(), model.query_budget(x, y, max_queries=1):
        model(x)
        blocked = model(xg)
        (grad,) = torch.autograd.grad(blocked[:, 0].sum(), xg)
    assert torch.count_nonzero(grad) == 0  # nothing leaks through the gradient either
    assert model(x).argmax(1).tolist() == real.argmax(1).tolist()  # outside the block: the real model


def test_bf16_forward_returns_float32_logits_with_gradients() -> None:
    model = _model().eval()
    fast = SharedModel(model.net, (1, 2, 2), 3, precision="bf16")
    x = torch.rand(6, 1, 2, 2, requires_grad=True)
    out = fast(x)
    assert out.dtype == torch.float32
    assert torch.allclose(out, model(x), atol=0.05)  # bf16 keeps ~3 significant digits
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert grad.dtype == torch.float32 and grad.abs().sum() > 0
