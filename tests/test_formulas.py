"""Head formulas, the learning-rate schedule and the optimiser against references written out here: the textbook
formula, a per-example loop, or a root finder, never the code's own expression."""
import math

import numpy as np
import pytest
import torch
from scipy.optimize import brentq

from analysis.confusions import superclass_matrix
from study.predictions import Compact
from study.class_info import ClassInfo
from study.config import OptimConfig
from study.heads import create_head
from study.heads.adaptive import adaptive_cutoffs
from study.heads.entmax import BISECTION_ITERATIONS
from study.optim import build_optimizer, build_scheduler, lr_factor

D = 6


def test_sampled_softmax_against_a_per_example_loop():
    """Loss = -log of the target's share among {target} + sampled classes, every score minus log(S * Q(c)),
    and a sampled class equal to the example's own target left out (accidental hit)."""
    torch.manual_seed(0)
    # A skewed proposal: with a uniform one, log(S * Q) is the same for every class and would cancel out.
    skewed = ClassInfo(num_classes=8, class_counts=(40, 20, 10, 8, 6, 4, 2, 1))
    head = create_head("sampled", D, 8, class_info=skewed, num_sampled=5, proposal="unigram")
    h, y = torch.randn(4, D), torch.tensor([0, 3, 3, 7])
    torch.manual_seed(11)
    sampled = torch.multinomial(head.proposal, 5, replacement=True)
    torch.manual_seed(11)  # the head draws the same classes
    loss = head.loss(h, y)
    assert (sampled[:, None] == y[None, :]).any()  # this draw has accidental hits, so the mask matters
    z = (h @ head.linear.weight.t() + head.linear.bias).double()
    log_sq = torch.log(5 * head.proposal.double())
    expected = []
    for b in range(4):
        target = z[b, y[b]] - log_sq[y[b]]
        others = [z[b, c] - log_sq[c] for c in sampled.tolist() if c != y[b]]
        scores = torch.stack([target, *others])
        expected.append(-(target - torch.logsumexp(scores, 0)))
    assert loss.item() == pytest.approx(torch.stack(expected).mean().item(), rel=1e-5)


def test_taylor_softmax_against_its_formula():
    torch.manual_seed(1)
    head = create_head("taylor", D, 5)
    h, y = torch.randn(3, D), torch.tensor([0, 2, 4])
    z = (h @ head.linear.weight.t() + head.linear.bias).double()
    scores = 1 + z + z ** 2 / 2
    probs = scores / scores.sum(1, keepdim=True)
    assert torch.allclose(head.log_probs(h).double(), probs.log(), atol=1e-6)
    assert head.loss(h, y).item() == pytest.approx(-probs[torch.arange(3), y].log().mean().item(), rel=1e-5)


def entmax_by_root_finding(z, alpha):
    """p_i = [(alpha - 1) z_i - tau]_+ ^ (1 / (alpha - 1)), tau chosen so that sum p = 1 (Peters et al. 2019)."""
    z = np.asarray(z, dtype=float) * (alpha - 1)

    def mass(tau):
        return (np.clip(z - tau, 0, None) ** (1 / (alpha - 1))).sum() - 1

    tau = brentq(mass, z.max() - 1, z.max(), xtol=1e-14)
    return np.clip(z - tau, 0, None) ** (1 / (alpha - 1))


@pytest.mark.parametrize("alpha", [1.5, 1.3, 2.0])
def test_entmax_and_sparsemax_against_root_finding(alpha):
    torch.manual_seed(2)
    name, knobs = ("sparsemax", {}) if alpha == 2.0 else ("entmax", {"alpha": alpha})
    head = create_head(name, D, 7, **knobs)
    h = torch.randn(3, D) * 3
    with torch.no_grad():
        z = (h @ head.linear.weight.t() + head.linear.bias).numpy()
        probs = head.log_probs(h).exp().numpy()
    for row, p in zip(z, probs):
        expected = entmax_by_root_finding(row, alpha)
        np.testing.assert_allclose(np.where(expected > 0, p, 0), expected, atol=2e-5)
        assert (p[expected == 0] <= 1.01e-12).all()  # zeros are exactly the floor


@pytest.mark.parametrize("alpha", [1.1, 1.3, 1.7, 2.0])
@pytest.mark.parametrize("scale", [0.1, 1.0, 20.0])
def test_entmax_bisection_has_converged_in_float32(alpha, scale):
    """The head's halvings are enough: 100 more (in float32, as training runs) move no probability by more than
    float32 rounding, and both stay within rounding of float64 root finding (K = 100, as CIFAR-100)."""
    from study.heads.sparse_maps import entmax_bisect

    torch.manual_seed(3)
    head = create_head("entmax", D, 100, alpha=alpha)
    h = torch.randn(64, D) * scale
    with torch.no_grad():
        z = head.linear(h)
        probs = head.log_probs(h).exp()
        more = entmax_bisect(z, alpha, 100 + BISECTION_ITERATIONS)
    torch.testing.assert_close(torch.where(more > 0, probs, torch.zeros(())), more, atol=1e-6, rtol=0)
    for row, p in zip(z.double().numpy()[:8], probs.numpy()[:8]):
        expected = entmax_by_root_finding(row, alpha)
        np.testing.assert_allclose(np.where(expected > 0, p, 0), expected, atol=1e-5)


@pytest.mark.parametrize("alpha", [1.05, 1.3, 1.7, 2.0])
@pytest.mark.parametrize("scale", [0.1, 1.0, 20.0])
def test_entmax_bisection_matches_the_entmax_package(alpha, scale):
    """The head's bisection (a cheaper power in each halving) against the entmax package's, run in float64 with 100
    halvings: the same probabilities and support, the same loss, and the same gradients of both, within float32
    rounding (K = 100)."""
    import entmax

    from study.heads.sparse_maps import entmax_bisect, entmax_bisect_loss

    torch.manual_seed(5)
    z = (torch.randn(64, 100) * scale).requires_grad_()
    z64 = z.detach().double().requires_grad_()
    target = torch.randint(0, 100, (64,))
    probs, reference = entmax_bisect(z, alpha, BISECTION_ITERATIONS), entmax.entmax_bisect(z64, alpha, -1, 100)
    torch.testing.assert_close(probs.double(), reference, atol=5e-6, rtol=0)
    assert torch.equal(probs > 0, reference > 0)
    weights = torch.randn(64, 100)
    (probs * weights).sum().backward()
    (reference * weights.double()).sum().backward()
    torch.testing.assert_close(z.grad.double(), z64.grad, atol=1e-5, rtol=0)
    z.grad, z64.grad = None, None
    loss, reference_loss = entmax_bisect_loss(z, target, alpha, BISECTION_ITERATIONS), \
        entmax.entmax_bisect_loss(z64, target, alpha, 100)
    torch.testing.assert_close(loss.double(), reference_loss, atol=2e-5, rtol=0)
    row_weights = torch.rand(64) + 0.5  # a mean over rows scales each row's gradient: it must pass through
    (loss * row_weights).sum().backward()
    (reference_loss * row_weights.double()).sum().backward()
    torch.testing.assert_close(z.grad.double(), z64.grad, atol=5e-6, rtol=0)


@pytest.mark.parametrize("scale", [0.1, 1.0, 20.0])
def test_sparsemax_matches_the_entmax_package(scale):
    """The sparsemax head's projection and loss (scores sorted with NumPy on a CPU) against the entmax package's:
    the same probabilities, support, loss and gradients of both, with ties among the scores too."""
    import entmax

    from study.heads.sparse_maps import sparsemax, sparsemax_loss

    torch.manual_seed(7)
    z = torch.randn(64, 100) * scale
    z[:8, :10] = z[:8, :1]  # tied top scores
    z = z.requires_grad_()
    reference_z = z.detach().clone().requires_grad_()
    target = torch.randint(0, 100, (64,))
    probs, reference = sparsemax(z), entmax.sparsemax(reference_z, dim=-1)
    torch.testing.assert_close(probs, reference, atol=1e-7, rtol=0)
    assert torch.equal(probs > 0, reference > 0)
    weights = torch.randn(64, 100)
    (probs * weights).sum().backward()
    (reference * weights).sum().backward()
    torch.testing.assert_close(z.grad, reference_z.grad, atol=1e-6, rtol=0)
    z.grad, reference_z.grad = None, None
    row_weights = torch.rand(64) + 0.5
    loss, reference_loss = sparsemax_loss(z, target), entmax.sparsemax_loss(reference_z, target)
    torch.testing.assert_close(loss, reference_loss, atol=1e-5, rtol=1e-6)
    (loss * row_weights).sum().backward()
    (reference_loss * row_weights).sum().backward()
    torch.testing.assert_close(z.grad, reference_z.grad, atol=1e-6, rtol=0)


def test_sorting_by_numpy_and_by_torch_agree():
    """The CPU's NumPy sort and the torch sort a GPU runs give the same rows, largest first."""
    from study.heads.sparse_maps import sorted_descending

    torch.manual_seed(8)
    scores = torch.randn(32, 50)
    scores[0, :5] = 1.0  # ties
    by_numpy, by_torch = sorted_descending(scores, with_numpy=True), sorted_descending(scores, with_numpy=False)
    assert torch.equal(by_numpy, by_torch)
    assert torch.equal(by_numpy, scores.sort(dim=-1).values.flip(-1))
    assert torch.equal(sorted_descending(scores), by_numpy)  # a CPU tensor: NumPy's


def test_sparsemax_on_a_cpu_never_calls_torchs_sort(monkeypatch):
    """What the NumPy sort is for: torch's CPU sort of short rows is some fifteen times slower (module docstring)."""
    from study.heads import sparse_maps

    def refuse(*args, **kwargs):
        raise AssertionError("torch.sort called on the CPU")

    monkeypatch.setattr(sparse_maps.torch, "sort", refuse)
    probs = sparse_maps.sparsemax(torch.randn(4, 30))
    torch.testing.assert_close(probs.sum(dim=-1), torch.ones(4))


def test_adaptive_cutoffs_by_hand():
    assert adaptive_cutoffs(100, 0.2, 2) == [20, 60]  # head 20 classes; two tails of 40
    assert adaptive_cutoffs(10, 0.5, 3) == [5, 6, 8]  # tails of 1, 2 and 2 classes
    assert adaptive_cutoffs(10, 0.1, 1) == [1]  # one class in the head, the other nine in one tail
    with pytest.raises(ValueError, match=r"head_fraction=0.05 puts round\(10 x 0.05\) = 0 classes"):
        adaptive_cutoffs(10, 0.05, 1)  # refused, not raised to one class
    with pytest.raises(ValueError, match="num_clusters=3 is more tail clusters than the 2 tail classes"):
        adaptive_cutoffs(10, 0.8, 3)  # refused, not cut to two clusters


def test_adaptive_head_equals_torch_with_independent_cutoffs():
    head = create_head("adaptive", 16, 100, head_fraction=0.2, num_clusters=2, div_value=2.0)
    reference = torch.nn.AdaptiveLogSoftmaxWithLoss(16, 100, [20, 60], div_value=2.0)
    reference.load_state_dict(head.adaptive.state_dict())
    h, y = torch.randn(5, 16), torch.tensor([0, 19, 20, 59, 99])
    assert torch.allclose(head.log_probs(h), reference.log_prob(h))
    assert torch.allclose(head.loss(h, y), reference(h, y).loss)
    assert head.adaptive.head.out_features == 20 + 2  # the head's classes plus one slot per tail cluster


def config(**changes):
    return OptimConfig(**{"lr": 1.0, "warmup_fraction": 0.2, "epochs": 1, **changes})


def test_lr_factor_warm_up_then_linear_or_cosine_decay():
    total = 10  # 2 warm-up steps, then 8 decaying ones
    linear, cosine = config(schedule="onecycle"), config(schedule="cosine")
    assert [lr_factor(s, total, linear) for s in (0, 1)] == [0.5, 1.0]
    assert lr_factor(2, total, linear) == 1.0 and lr_factor(4, total, linear) == pytest.approx(0.75)
    assert lr_factor(4, total, cosine) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert lr_factor(10, total, linear) == 0.0 and lr_factor(10, total, cosine) == pytest.approx(0.0)
    assert lr_factor(0, total, config(warmup_fraction=0.0)) == 1.0


def test_scheduler_applies_the_factor_to_the_peak_lr():
    model = torch.nn.Linear(2, 2)
    cfg = config(lr=0.4)
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, 10, cfg)
    seen = []
    for _ in range(6):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    np.testing.assert_allclose(seen, [0.2, 0.4, 0.4, 0.35, 0.3, 0.25])


def test_optimizers_and_their_settings():
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.BatchNorm1d(3))
    sgd = build_optimizer(model, config(momentum=0.8, weight_decay=0.01))
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["nesterov"] and sgd.defaults["momentum"] == 0.8
    adamw = build_optimizer(model, config(optimizer="adamw", momentum=0.85, weight_decay=0.01))
    assert isinstance(adamw, torch.optim.AdamW) and adamw.defaults["betas"] == (0.85, 0.999)
    decayed, plain = adamw.param_groups
    assert [p.shape for p in decayed["params"]] == [(3, 2)] and decayed["weight_decay"] == 0.01
    assert len(plain["params"]) == 3 and plain["weight_decay"] == 0.0  # linear bias, norm weight and bias


def test_sgd_steps_follow_nesterov_with_decay_on_weights_only():
    """The optimiser's update (torch's fused CPU kernel) against the textbook: g' = g + wd * w (weights only),
    buffer = momentum * buffer + g' (the first step: buffer = g'), w -= lr * (g' + momentum * buffer)."""
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    cfg = config(lr=0.1, momentum=0.9, weight_decay=0.05)
    optimizer = build_optimizer(model, cfg)
    assert optimizer.defaults.get("fused")  # parameters on the CPU: the fused kernel
    weights = {name: p.detach().double().clone() for name, p in model.named_parameters()}
    buffers = {}
    generator = torch.Generator().manual_seed(1)
    for step in range(5):
        for name, p in model.named_parameters():
            p.grad = torch.randn(p.shape, generator=generator)
            grad = p.grad.double() + (cfg.weight_decay * weights[name] if name == "weight" else 0)
            buffers[name] = grad if step == 0 else cfg.momentum * buffers[name] + grad
            weights[name] = weights[name] - cfg.lr * (grad + cfg.momentum * buffers[name])
        optimizer.step()
        for name, p in model.named_parameters():
            np.testing.assert_allclose(p.detach().double().numpy(), weights[name].numpy(), rtol=1e-5, atol=1e-6)


def test_adamw_steps_are_torchs_unfused_adamw_with_decay_on_weights_only():
    """The fused CPU AdamW against torch's own for-loop AdamW over the same parameter groups and gradients."""
    from study.optim import parameter_groups

    torch.manual_seed(0)
    model, reference = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    reference.load_state_dict(model.state_dict())
    cfg = config(optimizer="adamw", lr=0.01, momentum=0.85, weight_decay=0.05)
    optimizer = build_optimizer(model, cfg)
    assert optimizer.defaults.get("fused")
    plain = torch.optim.AdamW(parameter_groups(reference, cfg.weight_decay), lr=cfg.lr, betas=(cfg.momentum, 0.999),
                              foreach=False)
    generator, initial = torch.Generator().manual_seed(1), model.weight.detach().clone()
    for _ in range(5):
        for p, q in zip(model.parameters(), reference.parameters()):
            p.grad = torch.randn(p.shape, generator=generator)
            q.grad = p.grad.clone()
        optimizer.step()
        plain.step()
    for p, q in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    assert not torch.equal(model.weight, initial)  # it moved


def test_superclass_matrix_by_hand():
    fine = np.array([[5, 1, 0, 2],
                     [0, 4, 3, 0],
                     [1, 0, 6, 1],
                     [0, 2, 0, 7]])  # rows true, columns predicted: that many examples of each pair
    pairs = [(t, p) for t in range(4) for p in range(4) for _ in range(fine[t, p])]
    labels, predicted = (np.array(column) for column in zip(*pairs))
    log_probs = np.log(np.full((len(labels), 4), 0.1))
    log_probs[np.arange(len(labels)), predicted] = np.log(0.7)
    coarse_of_fine = [0, 0, 1, 1]
    expected = np.array([[5 + 1 + 0 + 4, 0 + 2 + 3 + 0],
                         [1 + 0 + 0 + 2, 6 + 1 + 0 + 7]])
    np.testing.assert_array_equal(superclass_matrix(Compact.of(log_probs, labels), coarse_of_fine), expected)


def test_sampled_proposal_and_sample_count():
    counts = (40, 20, 10, 8, 6, 4, 2, 1)
    info = ClassInfo(num_classes=8, class_counts=counts)
    unigram = create_head("sampled", D, 8, class_info=info, proposal="unigram", num_sampled=7)
    np.testing.assert_allclose(unigram.proposal.numpy(), np.array(counts) / sum(counts), rtol=1e-6)
    assert unigram.num_sampled == 7  # at most K - 1 negatives
    with pytest.raises(ValueError, match=r"num_sampled=8 must be below the 8 classes \(at most 7\)"):
        create_head("sampled", D, 8, num_sampled=8)  # refused, never cut to 7
    assert create_head("sampled", D, 8).num_sampled == 7  # not given: 20, or every other class when fewer
    assert create_head("sampled", D, 100).num_sampled == 20
    uniform = create_head("sampled", D, 8, class_info=info, num_sampled=1)
    np.testing.assert_allclose(uniform.proposal.numpy(), np.full(8, 1 / 8))
    assert uniform.num_sampled == 1 and "proposal" not in uniform.state_dict()  # derived from the data, not saved
    with pytest.raises(ValueError, match="num_sampled=0"):
        create_head("sampled", D, 8, num_sampled=0)


def test_adaptive_knob_boundaries():
    assert adaptive_cutoffs(10, 0.9, 1) == [9]  # the largest head that leaves a tail
    with pytest.raises(ValueError, match="= 10 classes in the adaptive head; it needs 1 to 9"):
        adaptive_cutoffs(10, 0.99, 2)  # refused, not cut to nine
    create_head("adaptive", 16, 2, head_fraction=0.5, num_clusters=1, div_value=1.0)  # the smallest valid case
    for knobs in ({"head_fraction": 0.0}, {"div_value": 0.5}, {"num_clusters": 0}):
        with pytest.raises(ValueError):
            create_head("adaptive", 16, 10, **knobs)
    with pytest.raises(ValueError, match="leave no dimensions"):  # 16 // 4**3 = 0 dimensions for the last tail
        create_head("adaptive", 16, 100, num_clusters=3, div_value=4.0)


def test_entmax_alpha_boundaries_and_declared_cost():
    assert create_head("entmax", D, 5).train_cost == "O(Kd + K log K)"
    create_head("entmax", D, 5, alpha=2.0)
    with pytest.raises(ValueError, match="alpha=1.0"):
        create_head("entmax", D, 5, alpha=1.0)


def test_kmeans_recovers_separated_groups():
    from study.heads.trees import kmeans

    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    truth = np.repeat(np.arange(3), 20)
    points = centres[truth] + rng.normal(0, 0.5, size=(60, 2))
    for seed in range(5):
        assign = kmeans(points, 3, seed=seed)
        assert len(set(assign)) == 3
        for group in range(3):  # each true group lands in one cluster of its own
            assert len(set(assign[truth == group])) == 1
        assert len({assign[truth == g][0] for g in range(3)}) == 3
