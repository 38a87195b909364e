"""Registry-driven head tests: every registered head (default knobs) and every tree layout gets them all."""
import math

import pytest
import torch
from torch import nn

from study.errors import ConfigError
from study.heads import create_head, head_knobs, list_heads
from study.heads.trees import list_tree_layouts

D, B = 16, 32


def head_cases():
    cases = [(name, {}) for name in list_heads()]
    cases += [("hierarchical", {"layout": layout, "branching": b}) for layout in list_tree_layouts() for b in (2, 3)]
    cases += [("gumbel", {"hard": True}), ("gumbel", {"tau": 2.0, "tau_final": 0.5}),
              ("entmax", {"alpha": 1.3}), ("sampled", {"proposal": "unigram", "num_sampled": 3}),
              ("softmax", {"label_smoothing": 0.1}), ("adaptive", {"num_clusters": 1, "div_value": 2.0})]
    return cases


CASES = head_cases()
IDS = [name + "".join(f"-{k}={v}" for k, v in knobs.items()) for name, knobs in CASES]


@pytest.fixture(params=CASES, ids=IDS)
def head(request, tiny_class_info):
    name, knobs = request.param
    torch.manual_seed(0)
    return create_head(name, D, tiny_class_info.num_classes, class_info=tiny_class_info, **knobs)


@pytest.fixture
def batch(tiny_class_info):
    g = torch.Generator().manual_seed(1)
    return torch.randn(B, D, generator=g), torch.randint(0, tiny_class_info.num_classes, (B,), generator=g)


def test_log_probs_shape_and_normalised(head, batch):
    h, _ = batch
    head.eval()
    log_probs = head.log_probs(h)
    assert log_probs.shape == (B, head.num_classes)
    assert torch.allclose(torch.logsumexp(log_probs, dim=1), torch.zeros(B), atol=1e-5)


def test_loss_finite_scalar(head, batch):
    h, y = batch
    head.train()
    loss = head.loss(h, y)
    assert loss.dim() == 0 and torch.isfinite(loss)


def test_gradient_reaches_backbone(head, batch):
    h, y = batch
    backbone = nn.Linear(D, D)
    head.train()
    head.loss(backbone(h), y).backward()
    assert backbone.weight.grad is not None and backbone.weight.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())


def test_predict_matches_log_probs_argmax(head, batch):
    h, _ = batch
    head.eval()
    assert torch.equal(head.predict(h), head.log_probs(h).argmax(dim=1))


def test_evaluation_is_deterministic(head, batch):
    h, _ = batch
    head.eval()
    assert torch.equal(head.log_probs(h), head.log_probs(h))


def test_declares_costs(head):
    assert head.train_cost.startswith("O(") and head.infer_cost.startswith("O(")


def test_unknown_head_lists_valid_names():
    with pytest.raises(ValueError, match="unknown head 'bogus'; choose from: .*softmax"):
        create_head("bogus", D, 10)


@pytest.mark.parametrize("name", list_heads())
def test_unknown_knob_lists_valid_knobs(name):
    with pytest.raises(ConfigError, match=f"unknown knob 'bogus' for head '{name}'"):
        create_head(name, D, 10, bogus=1)
    assert "class_info" not in head_knobs(name)


@pytest.mark.parametrize("name,knobs,message", [
    ("entmax", {"alpha": 3.0}, "alpha=3.0"),
    ("gumbel", {"tau": 0.0}, "tau=0.0"),
    ("softmax", {"label_smoothing": 1.5}, "label_smoothing=1.5"),
    ("sampled", {"proposal": "zipf"}, "unknown proposal 'zipf'"),
    ("adaptive", {"head_fraction": 1.0}, "head_fraction=1.0"),
    ("hierarchical", {"layout": "spiral"}, "unknown tree layout 'spiral'; choose from: balanced"),
    ("hierarchical", {"branching": 1}, "branching=1"),
])
def test_bad_knob_values_are_named(name, knobs, message):
    with pytest.raises(ValueError, match=message):
        create_head(name, D, 10, **knobs)


def test_gumbel_training_is_noisy_eval_is_clean(tiny_class_info, batch):
    h, y = batch
    head = create_head("gumbel", D, 10, class_info=tiny_class_info)
    head.train()
    assert not torch.equal(head.loss(h, y), head.loss(h, y))
    head.eval()
    assert torch.allclose(head.log_probs(h), torch.log_softmax(head.linear(h), dim=1))


def test_gumbel_temperature_anneals():
    head = create_head("gumbel", D, 10, tau=2.0, tau_final=0.5)
    head.on_epoch_start(0, 5)
    assert head.tau == pytest.approx(2.0)
    head.on_epoch_start(4, 5)
    assert head.tau == pytest.approx(0.5)


def test_naive_softmax_fails_where_softmax_does_not():
    """A logit gap of 200 underflows softmax to exactly 0 in fp32: log(0) = -inf, and the gradient turns NaN."""
    torch.manual_seed(0)
    naive, stable = create_head("naive_softmax", D, 10), create_head("softmax", D, 10)
    stable.load_state_dict(naive.state_dict())
    with torch.no_grad():
        naive.linear.bias.zero_()
        naive.linear.bias[0] = 200.0  # every example is confidently class 0
        stable.linear.bias.copy_(naive.linear.bias)
    h, y = torch.randn(4, D) * 0.01, torch.tensor([1, 2, 3, 4])
    naive_loss = naive.loss(h, y)
    naive_loss.backward()
    assert math.isinf(naive_loss.item())
    assert torch.isnan(naive.linear.weight.grad).any()
    stable_loss = stable.loss(h, y)
    stable_loss.backward()
    assert stable_loss.item() == pytest.approx(200.0, rel=1e-3)
    assert torch.isfinite(stable.linear.weight.grad).all()


def test_adaptive_equals_torch(tiny_class_info, batch):
    h, y = batch
    head = create_head("adaptive", D, 10, class_info=tiny_class_info)
    reference = nn.AdaptiveLogSoftmaxWithLoss(D, 10, head.cutoffs, div_value=4.0)
    reference.load_state_dict(head.adaptive.state_dict())
    assert torch.allclose(head.log_probs(h), reference.log_prob(h))
    assert torch.allclose(head.loss(h, y), reference(h, y).loss)


def test_sampled_touches_only_targets_and_samples(tiny_class_info):
    torch.manual_seed(0)
    head = create_head("sampled", D, 10, class_info=tiny_class_info, num_sampled=2)
    h, y = torch.randn(3, D), torch.tensor([0, 0, 1])
    head.loss(h, y).backward()
    touched = (head.linear.weight.grad.abs().sum(1) > 0).sum().item()
    assert 1 <= touched <= 2 + 2  # two targets + at most two sampled classes, not all 10


def test_sampled_evaluates_with_the_full_softmax(batch):
    h, _ = batch
    head = create_head("sampled", D, 10)
    assert torch.allclose(head.log_probs(h), torch.log_softmax(head.linear(h), dim=1))


def test_sparse_heads_give_exact_zeros():
    head = create_head("sparsemax", D, 10)
    with torch.no_grad():
        head.linear.bias.copy_(torch.arange(10.0) * 10)
    probs = head.log_probs(torch.zeros(2, D)).exp()
    assert (probs < 1e-20).sum() > 0
