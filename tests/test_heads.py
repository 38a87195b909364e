"""Registry-driven head tests: every registered head (default knobs) and every tree layout gets them all."""
import math

import numpy as np
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
    cases += [("gumbel", {"tau": 2.0, "tau_final": 0.5}),
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


def test_bf16_autocast_on_the_cpu_as_a_gpu_run_does(head, batch):
    """A GPU run computes every head under bf16 autocast (study/trainer.py); the same autocast on the CPU: loss and
    gradients finite, log-probabilities finite and normalised to bf16's precision, and the predicted class that of
    fp32 wherever fp32's top two classes are further apart than bf16's rounding could move them."""
    h, y = batch
    head.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = head.loss(h, y)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in head.parameters() if p.grad is not None)
    head.eval()
    with torch.no_grad():
        reference = head.log_probs(h)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = head.log_probs(h).float()
    assert torch.isfinite(low).all()
    assert torch.allclose(torch.logsumexp(low, dim=1), torch.zeros(B), atol=0.05)  # bf16 keeps 8 mantissa bits
    top2 = reference.topk(2, dim=1).values
    clear = (top2[:, 0] - top2[:, 1]) > 0.1
    assert clear.sum() >= B // 2  # the check below is about most of the batch, not a handful of rows
    assert torch.equal(low.argmax(1)[clear], reference.argmax(1)[clear])


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


def test_scores_rank_as_log_probs_do_and_agree_with_predict(head, batch):
    """`scores` may break log_probs' ties (sparse heads' zeros) but never contradict their order."""
    h, _ = batch
    head.eval()
    with torch.no_grad():
        log_probs, scores = head.log_probs(h), head.scores(h)
    assert scores.shape == log_probs.shape
    assert torch.equal(scores.argmax(1), head.predict(h))
    higher = log_probs[:, :, None] > log_probs[:, None, :] + 1e-4  # [B, i, j]: i clearly above j
    assert (scores[:, :, None] > scores[:, None, :])[higher].all()


def test_biases_are_never_weight_decayed(head):
    from study.optim import parameter_groups

    decayed, not_decayed = parameter_groups(head, weight_decay=0.1)
    names = {id(p): n for n, p in head.named_parameters()}
    assert all(not names[id(p)].endswith("bias") for p in decayed["params"])
    assert all(names[id(p)].endswith("bias") or p.ndim < 2 for p in not_decayed["params"])
    assert decayed["weight_decay"] == 0.1 and not_decayed["weight_decay"] == 0.0


def test_hierarchical_weight_is_decayed_and_bias_is_not(tiny_class_info):
    """The head's flat [K - 1, d] weight is decayed and its [K - 1] bias is not; a bias is exempt by its name, not
    only by being 1-D, so a head with a matrix of biases keeps them undecayed too."""
    from study.optim import is_decayed, parameter_groups

    head = create_head("hierarchical", D, 10, class_info=tiny_class_info, layout="coarse", branching=3)
    decayed, not_decayed = parameter_groups(head, weight_decay=0.1)
    assert [p is head.weight for p in decayed["params"]] == [True]
    assert [p is head.bias for p in not_decayed["params"]] == [True]
    assert not is_decayed("head.bias", nn.Parameter(torch.zeros(3, 2)))


def test_entmax_declares_and_runs_the_solver_of_its_alpha(batch):
    import entmax

    from study.heads.entmax import BISECTION_ITERATIONS

    h, _ = batch
    exact, bisected = create_head("entmax", D, 10), create_head("entmax", D, 10, alpha=1.3)
    assert "log K" in exact.train_cost and "bisection" in bisected.train_cost and "bisection" in bisected.infer_cost
    with torch.no_grad():
        z = bisected.linear(h)
        expected = entmax.entmax_bisect(z, alpha=1.3, dim=-1, n_iter=BISECTION_ITERATIONS).clamp_min(1e-12).log()
        assert torch.allclose(bisected.log_probs(h), expected)
        expected15 = entmax.entmax15(exact.linear(h), dim=-1).clamp_min(1e-12).log()
        assert torch.allclose(exact.log_probs(h), expected15)


def test_hierarchical_declares_the_training_it_runs():
    from study.class_info import ClassInfo

    small = create_head("hierarchical", D, 10, class_info=ClassInfo.uniform(10))
    assert small.dense and small.train_cost.startswith("O(Kd)")
    large = create_head("hierarchical", 4, 4096, class_info=ClassInfo.uniform(4096))
    assert not large.dense and "depth" in large.train_cost


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


def test_gumbel_evaluates_softmax_of_the_clean_logits_at_any_temperature(batch):
    """Gumbel-max samples softmax(z) whatever tau: evaluation must not divide by the annealed temperature."""
    h, _ = batch
    head = create_head("gumbel", D, 10, tau=2.0, tau_final=0.1)
    head.on_epoch_start(4, 5)
    assert head.tau == pytest.approx(0.1)
    head.eval()
    with torch.no_grad():
        assert torch.allclose(head.log_probs(h), torch.log_softmax(head.linear(h), dim=1))


def test_gumbel_loss_against_its_formula(batch):
    """-log softmax((z + g) / tau)_y with g = -log(-log U), U ~ Uniform(0, 1): standard Gumbel noise."""
    h, y = batch
    head = create_head("gumbel", D, 10, tau=0.5)
    assert create_head("gumbel", D, 10).tau == 1.0  # the default temperature
    torch.manual_seed(3)
    noise = -torch.log(-torch.log(torch.empty(B, 10).uniform_(torch.finfo(torch.float32).tiny, 1)))
    torch.manual_seed(3)
    loss = head.loss(h, y)
    z = head.linear(h).float()
    expected = -torch.log_softmax((z + noise) / 0.5, dim=1)[torch.arange(B), y].mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_gumbel_noise_is_standard_gumbel():
    """The training noise against scipy's standard Gumbel distribution: a Kolmogorov-Smirnov test on 200,000 draws
    (seeded), its mean (Euler's constant) and variance (pi^2 / 6); every draw finite."""
    from scipy import stats

    from study.heads.gumbel import standard_gumbel

    torch.manual_seed(11)
    draws = standard_gumbel(torch.empty(2000, 100)).flatten().double().numpy()
    assert np.isfinite(draws).all()
    assert stats.kstest(draws, "gumbel_r").pvalue > 0.01
    assert draws.mean() == pytest.approx(np.euler_gamma, abs=0.01)
    assert draws.var() == pytest.approx(np.pi ** 2 / 6, rel=0.02)


def test_gumbel_schedule_edges():
    constant = create_head("gumbel", D, 10, tau=2.0)
    constant.on_epoch_start(3, 5)
    assert constant.tau == 2.0  # no tau_final: no schedule
    one_epoch = create_head("gumbel", D, 10, tau=2.0, tau_final=0.5)
    one_epoch.on_epoch_start(0, 1)
    assert one_epoch.tau == 2.0
    two = create_head("gumbel", D, 10, tau=2.0, tau_final=0.5)
    two.on_epoch_start(1, 2)
    assert two.tau == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="tau_final=0"):
        create_head("gumbel", D, 10, tau_final=0.0)


def test_gumbel_has_no_hard_mode():
    with pytest.raises(ConfigError, match="unknown knob 'hard' for head 'gumbel'"):
        create_head("gumbel", D, 10, hard=True)


def test_gumbel_temperature_anneals_geometrically():
    head = create_head("gumbel", D, 10, tau=2.0, tau_final=0.5)
    expected = {0: 2.0, 1: 2.0 * 0.25 ** 0.25, 2: 1.0, 4: 0.5}  # tau * (tau_final / tau) ** (epoch / 4)
    for epoch, tau in expected.items():
        head.on_epoch_start(epoch, 5)
        assert head.tau == pytest.approx(tau)


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


@pytest.mark.parametrize("name", ["sparsemax", "entmax"])
def test_sparse_heads_give_exact_zeros_and_rank_them_by_their_scores(name):
    head = create_head(name, D, 10)
    with torch.no_grad():
        head.linear.weight.zero_()
        head.linear.bias.copy_(torch.tensor([9.0, 8.7, 0.0, 3.0, 1.0, 2.0, 0.5, 4.0, 1.5, 2.5]))
        log_probs, scores = head.log_probs(torch.zeros(2, D)), head.scores(torch.zeros(2, D))
    assert not head.ranks_by_log_probs
    zero = log_probs[0] <= math.log(1e-12) + 1e-4
    assert zero.sum() >= 5 and torch.equal(log_probs[0][zero], torch.full((int(zero.sum()),), log_probs[0].min()))
    assert scores[0].topk(5).indices.tolist() == [0, 1, 7, 3, 9]  # tied zeros ordered by the model's scores
