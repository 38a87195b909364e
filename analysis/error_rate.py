"""How often the verdict "head X differs from softmax" is wrong: the study's statistical procedure, simulated.

Why. A real run called two identical heads different: naive_softmax and softmax (the same function) came out
+0.19 points apart at p = 0.0012. Each head had been tuned by one search and its one selected configuration
retrained with 5 seeds, the seeds shared by all heads, and the test paired seed s of one head with seed s of the
other. Two heads that train almost identically from the same seed differ by nearly the same amount on every seed, so
the paired test's standard error is tiny, and the one thing that does differ, the configuration each search happened
to pick, is counted as a property of the head. With the configuration treated as fixed, any configuration
difference looks significant. The new procedure tunes each head by R independent searches, retrains each search's
configuration with S seeds (search r of every head on the same S seeds) and tests with one row per search, so the
configuration is drawn again R times and its spread enters the standard error.

What is simulated: the 0/1 correctness tables of one study's final models on N test images, for softmax (head 0)
and `heads` other heads, each with its true accuracy difference `delta` in points (0: a null head).
- Images: logit-scale image effects b_i ~ N(0, sd_image^2) (sd_image = 1.5), centred to mean 0 in each study, plus
  an intercept mu set so the population mean accuracy E[sigmoid(mu + b)] is `accuracy` (default 0.33; expectation
  by Gauss-Hermite quadrature). The images are drawn afresh in each study (the test split is a sample).
- Configurations: for head h and search r an independent effect c_{h,r} ~ N(0, sd_config^2) on the logit scale (each
  search ends on its own configuration, independently for each head).
- Seeds: for search r, seed s (seed id r*S + s, the same for every head) a shift e_{r,s} shared by all heads plus
  an independent part f_{h,r,s}, with Var(e + f) = sd_seed^2 and corr(head h, head h') = seed_corr (default 0.9: heads
  trained from the same seed train similarly). The old procedure's paired test reports a standard error of about
  0.09 points under these defaults; the real A/A run implies about 0.02 (0.19 points at p = 0.0012 with about 4
  df), so real heads are even more alike, which makes the old procedure worse still.
- True effect: a logit shift x_h solved (root finder) so that E[sigmoid(mu + x_h + b)] - accuracy = delta_h / 100
  exactly in the population.
- Per-image draws: model (h, r, s) gets image i right iff U_{r,s,i} < sigmoid(mu + b_i + x_h + c_{h,r} + e_{r,s} +
  f_{h,r,s}), with one uniform U_{r,s,i} shared by all heads: two heads with the same logits give identical tables,
  and heads whose logits differ slightly disagree on few images. Different seeds draw independent U, so a model's
  accuracy also varies by about sqrt(mean p(1-p) / N) from these draws alone (1.3 points at N = 1000), a part shared
  by all heads trained from that seed.
sd_config and sd_seed are given in accuracy POINTS and put on the logit scale by the derivative of the mean accuracy
with respect to a logit shift at mu: sd_logit = sd_points / 100 / E[p(1-p)] (first order; at 0.3 points the
curvature is negligible).

Estimator: for each head, `seed_image_test(rows of the head, rows of softmax, ids, ids)`, Holm-adjusted over all
heads compared with softmax, a verdict where the adjusted p <= ALPHA.
- new ("search rows"): rows = `search_rows` of the R x S models, one row per search, paired by search id.
- old ("seed rows"): R = 1 search, S = 5 seeds, rows = the models, paired by seed id (the configuration fixed).
family_error_rate is the fraction of simulated studies in which at least one null head gets a verdict (family-wise
false-positive rate; with every head null by default, Holm's hardest case); power is the per-head fraction with a
verdict. Rates come with exact (Clopper-Pearson) 95 % binomial intervals.

    python -m analysis.error_rate [--studies 1000] [--images 1000] [--searches 4] [--seeds 2] [--sd-config 0.3]
                                  [--sd-seed 0.3] [--seed-corr 0.9] [--rng-seed 0]
"""
import functools
import math
from dataclasses import dataclass, replace

import numpy as np
from scipy import optimize, special
from scipy import stats as sps

from analysis.stats import ALPHA, holm, search_rows, seed_image_test

UNITS = ("search", "seed")  # what one row of the test is: a search (mean of its seeds) or a single seed's model
_NODES, _WEIGHTS = np.polynomial.hermite_e.hermegauss(80)  # E[f(Z)], Z ~ N(0, 1) = sum(w f(z)) / sqrt(2 pi)
_WEIGHTS = _WEIGHTS / _WEIGHTS.sum()


@dataclass(frozen=True)
class Design:
    """The generative model of one study and the design its heads are tuned and retrained with."""
    images: int = 1000  # N test images
    accuracy: float = 0.33  # population mean accuracy of softmax
    sd_image: float = 1.5  # sd of the image effects, logit scale
    sd_config: float = 0.3  # sd of a search's configuration effect, accuracy points
    sd_seed: float = 0.3  # sd of a seed's effect, accuracy points
    seed_corr: float = 0.9  # correlation of the seed effect between heads trained from the same seed
    searches: int = 4  # R searches per head
    seeds: int = 2  # S seeds per search
    unit: str = "search"  # the test's rows: "search" (new) or "seed" (old)

    def __post_init__(self):
        if self.unit not in UNITS:
            raise ValueError(f"unit must be one of {UNITS}, got {self.unit!r}")
        if self.images < 2 or self.searches < 1 or self.seeds < 1:
            raise ValueError(f"need >= 2 images and >= 1 search and seed, got {self}")
        if not 0 < self.accuracy < 1 or not 0 <= self.seed_corr <= 1:
            raise ValueError(f"accuracy must be in (0, 1) and seed_corr in [0, 1], got {self}")
        if min(self.sd_image, self.sd_config, self.sd_seed) < 0:
            raise ValueError(f"standard deviations must be >= 0, got {self}")


NEW = Design()  # R = 4 searches x S = 2 seeds, one row per search
OLD = Design(searches=1, seeds=5, unit="seed")  # one search, its configuration retrained with 5 seeds, seed rows


def population_accuracy(mu: float, sd_image: float) -> float:
    """E[sigmoid(mu + b)], b ~ N(0, sd_image^2)."""
    return float(_WEIGHTS @ special.expit(mu + sd_image * _NODES))


@functools.lru_cache(maxsize=64)
def calibrate(accuracy: float, sd_image: float):
    """(mu, slope): the intercept giving that population mean accuracy, and d accuracy / d logit shift there."""
    mu = optimize.brentq(lambda m: population_accuracy(m, sd_image) - accuracy, -30, 30, xtol=1e-12)
    p = special.expit(mu + sd_image * _NODES)
    return mu, float(_WEIGHTS @ (p * (1 - p)))


@functools.lru_cache(maxsize=256)
def logit_shift(delta_points: float, mu: float, sd_image: float) -> float:
    """The logit shift that moves the population mean accuracy by exactly delta_points / 100."""
    target = population_accuracy(mu, sd_image) + delta_points / 100
    if not 0 < target < 1:
        raise ValueError(f"a difference of {delta_points} points leaves accuracy outside (0, 1)")
    return optimize.brentq(lambda x: population_accuracy(mu + x, sd_image) - target, -60, 60, xtol=1e-12)


def simulate_study(rng: np.random.Generator, deltas, design: Design = NEW):
    """One study: (correct, searches, seeds). correct: bool [1 + heads, R * S, N], head 0 = softmax, head h >= 1
    with true difference deltas[h - 1] points; row r * S + s = search r, seed s. searches / seeds: the [R * S] search
    and seed ids of those rows (the same for every head)."""
    d = design
    mu, slope = calibrate(d.accuracy, d.sd_image)
    to_logit = 1 / (100 * slope)
    shifts = np.array([0.0] + [logit_shift(x, mu, d.sd_image) for x in deltas])
    heads, r, s = len(shifts), d.searches, d.seeds
    images = rng.normal(0.0, d.sd_image, d.images)
    images -= images.mean()
    config = rng.normal(0.0, d.sd_config * to_logit, (heads, r))
    shared = rng.normal(0.0, d.sd_seed * to_logit * math.sqrt(d.seed_corr), (r, s))
    own = rng.normal(0.0, d.sd_seed * to_logit * math.sqrt(1 - d.seed_corr), (heads, r, s))
    uniform = rng.random((r, s, d.images))
    model = shifts[:, None, None] + config[:, :, None] + shared[None] + own  # [heads, R, S]
    correct = uniform[None] < special.expit(mu + images + model[..., None])
    return correct.reshape(heads, r * s, d.images), np.repeat(np.arange(r), s), np.arange(r * s)


def adjusted_pvalues(correct, searches, seeds, unit: str):
    """Holm-adjusted p-values of every head (rows 1..) against softmax (row 0) of one study's table."""
    if unit == "search":
        base, ids = search_rows(correct[0], searches)
        tests = [seed_image_test(search_rows(c, searches)[0], base, ids, ids) for c in correct[1:]]
    else:
        tests = [seed_image_test(c, correct[0], seeds, seeds) for c in correct[1:]]
    return holm([t.p for t in tests])


def verdicts(deltas, design: Design = NEW, studies: int = 1000, seed: int = 0) -> np.ndarray:
    """bool [studies, heads]: whether head h got a verdict against softmax (Holm p <= ALPHA) in each study."""
    rng = np.random.default_rng(seed)
    out = np.zeros((studies, len(deltas)), dtype=bool)
    for k in range(studies):
        out[k] = adjusted_pvalues(*simulate_study(rng, deltas, design), design.unit) <= ALPHA  # NaN: no verdict
    return out


@dataclass(frozen=True)
class Rate:
    """hits out of n simulated studies, with the exact 95 % binomial (Clopper-Pearson) interval."""
    hits: int
    n: int

    @property
    def rate(self) -> float:
        return self.hits / self.n

    @property
    def se(self) -> float:
        return math.sqrt(self.rate * (1 - self.rate) / self.n)

    @property
    def interval(self):
        low = sps.beta.ppf(0.025, self.hits, self.n - self.hits + 1) if self.hits > 0 else 0.0
        high = sps.beta.ppf(0.975, self.hits + 1, self.n - self.hits) if self.hits < self.n else 1.0
        return float(low), float(high)


def family_error_rate(design: Design = NEW, heads: int = 8, studies: int = 1000, seed: int = 0,
                      deltas=None) -> Rate:
    """The fraction of studies in which at least one null head (delta 0) gets a verdict. deltas: the heads' true
    differences in points (default: `heads` null heads, all identical to softmax)."""
    deltas = [0.0] * heads if deltas is None else list(deltas)
    null = np.array([x == 0 for x in deltas])
    if not null.any():
        raise ValueError("no null head: there is no false positive to count")
    hits = verdicts(deltas, design, studies, seed)[:, null].any(1)
    return Rate(int(hits.sum()), studies)


def power(deltas, design: Design = NEW, studies: int = 1000, seed: int = 0) -> list:
    """Per head, the fraction of studies in which it gets a verdict against softmax (its detection rate when its
    delta is not 0), all heads tested and Holm-corrected together."""
    hits = verdicts(list(deltas), design, studies, seed)
    return [Rate(int(h), studies) for h in hits.sum(0)]


def table(new: Design, old: Design, studies: int, heads: int = 8, seed: int = 0) -> str:
    """The printed comparison: per procedure, the FWER over `heads` null heads and the detection rates of a -2 and
    a -4 point head (tested beside heads - 2 null heads)."""
    seeds = np.random.SeedSequence(seed).generate_state(4)
    lines = [f"{'procedure':<28} {'R x S':>5}  {'FWER':>6}  {'95 % interval':>15}  {'-2 pts':>6}  {'-4 pts':>6}"]
    for k, (name, design) in enumerate([("new: search rows, paired", new), ("old: seed rows, paired", old)]):
        fwer = family_error_rate(design, heads, studies, int(seeds[2 * k]))
        detect = power([-2.0, -4.0] + [0.0] * (heads - 2), design, studies, int(seeds[2 * k + 1]))
        low, high = fwer.interval
        lines.append(f"{name:<28} {design.searches:>1} x {design.seeds:<1}  {fwer.rate:>6.3f}  [{low:.3f}, {high:.3f}]"
                     f"  {detect[0].rate:>6.3f}  {detect[1].rate:>6.3f}")
    d = new
    lines += ["", f"{studies} simulated studies per cell; {heads} heads + softmax, Holm at {ALPHA}; "
              f"N = {d.images} images, mean accuracy {d.accuracy:.2f}, image sd {d.sd_image} (logit); "
              f"sd_config {d.sd_config} pts, sd_seed {d.sd_seed} pts, seed correlation between heads {d.seed_corr}; "
              f"rng seed {seed}.",
              "FWER: studies with any null head called different (all heads null). -2 / -4 pts: detection rate of "
              f"those heads beside {heads - 2} null heads."]
    return "\n".join(lines)


def build_parser():
    from study import cli

    parser = cli.ArgumentParser(prog="python -m analysis.error_rate", description=__doc__.split("\n")[0])
    parser.add_argument("--studies", type=cli.whole(1), default=1000, help="simulated studies per cell")
    parser.add_argument("--images", type=cli.whole(2), default=NEW.images, help="test images N")
    parser.add_argument("--heads", type=cli.whole(2), default=8, help="heads compared with softmax")
    parser.add_argument("--searches", type=cli.whole(2), default=NEW.searches, help="R of the new procedure")
    parser.add_argument("--seeds", type=cli.whole(1), default=NEW.seeds, help="S of the new procedure")
    parser.add_argument("--old-seeds", type=cli.whole(2), default=OLD.seeds, help="seeds of the old procedure")
    parser.add_argument("--sd-config", type=cli.number(0), default=NEW.sd_config,
                        help="SD of a search's configuration effect, accuracy points (a report's 'SD between "
                             "searches' measures it)")
    parser.add_argument("--sd-seed", type=cli.number(0), default=NEW.sd_seed, help="SD of a seed's effect, points")
    parser.add_argument("--seed-corr", type=cli.number(0), default=NEW.seed_corr,
                        help="correlation of a seed's effect between heads, 0 to 1")
    parser.add_argument("--accuracy", type=cli.number(0, above=True), default=NEW.accuracy,
                        help="softmax's mean accuracy, a fraction below 1")
    parser.add_argument("--rng-seed", type=cli.whole(0), default=0)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.seed_corr > 1:
        parser.error(f"--seed-corr {args.seed_corr:g} must be between 0 and 1")
    if args.accuracy >= 1:
        parser.error(f"--accuracy {args.accuracy:g} must be a fraction between 0 and 1")
    try:
        new = replace(NEW, images=args.images, searches=args.searches, seeds=args.seeds, sd_config=args.sd_config,
                      sd_seed=args.sd_seed, seed_corr=args.seed_corr, accuracy=args.accuracy)
        old = replace(new, searches=1, seeds=args.old_seeds, unit="seed")
    except ValueError as error:
        parser.error(str(error))
    print(table(new, old, args.studies, args.heads, args.rng_seed))


if __name__ == "__main__":
    from study import cli

    cli.run(main)
