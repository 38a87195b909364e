"""The study's built-in A/A control: naive_softmax against softmax.

naive_softmax trains on log(softmax(z)), softmax on log_softmax(z): the same function wherever no target's
probability underflows to 0, which would make that batch's loss infinite. Every training loss of every final model
is summed over all of its batches, so a finite training loss in every epoch (no final model diverged) shows that
none underflowed. Both heads also evaluate with the same log-softmax. So, with nothing underflowing, any verdict
other than "not distinguishable" is a false one: a difference between the configurations the two searches selected
(or chance), not between the heads. When that happens, this run's verdicts are not to be trusted at its budget and
the report recommends no head.
"""
from dataclasses import dataclass

import pandas as pd

from analysis.results import BASELINE, VERDICTS

CONTROL = "naive_softmax"
PASSED, FAILED, VOID, UNTESTED, ABSENT = "passed", "failed", "void", "untested", "absent"


@dataclass(frozen=True)
class ControlResult:
    state: str  # PASSED, FAILED, VOID (an underflow: not the same function), UNTESTED or ABSENT
    sentence: str  # what the report says about it

    @property
    def failed(self) -> bool:
        return self.state == FAILED


def control_result(summary: pd.DataFrame, comparisons: pd.DataFrame) -> ControlResult:
    heads = set(summary["head"])
    if CONTROL not in heads or BASELINE not in heads or comparisons.empty:
        return ControlResult(ABSENT, f"No A/A control in this run: it needs {CONTROL} and {BASELINE} studied "
                                     f"together (`--head all` does), so nothing here checks that the procedure "
                                     f"finds no difference where there is none.")
    row = summary.set_index("head").loc[CONTROL]
    if row["diverged"] > 0:
        return ControlResult(VOID, f"A/A control void: {int(row['diverged'])} of {int(row['seeds_trained'])} "
                                   f"{CONTROL} final models had a non-finite training loss (a target's probability "
                                   f"underflowed to 0, the pitfall {CONTROL} exists to show), so here it is not the "
                                   f"same function as {BASELINE} and cannot serve as a control.")
    compared = comparisons.set_index("head").loc[CONTROL]
    verdict = compared["verdict"]
    same_function = (f"{CONTROL}, the same function as {BASELINE} while no probability underflows (none did: every "
                     f"training loss of its final models stayed finite)")
    if verdict == VERDICTS["same"]:
        return ControlResult(PASSED, f"A/A control passed: {same_function}, is not distinguishable from it "
                                     f"({difference(compared)}).")
    if verdict in (VERDICTS["better"], VERDICTS["worse"]):
        return ControlResult(FAILED, f"A/A control FAILED: {same_function}, came out {verdict} "
                                     f"({difference(compared)}). That is a difference between the configurations "
                                     f"the two searches selected, not between the heads, and the test took it for "
                                     f"one: this run's verdicts are not to be trusted at this budget, and it "
                                     f"recommends no head.")
    return ControlResult(UNTESTED, f"A/A control not tested: {CONTROL} is {verdict}.")


def difference(compared) -> str:
    p = compared["p_holm"]
    p_text = f"{p:.4f}" if p >= 1e-4 else f"{p:.1e}"  # tiny p-values keep their magnitude
    return (f"{100 * compared['accuracy_diff']:+.2f} pts [{100 * compared['diff_ci_low']:+.2f}, "
            f"{100 * compared['diff_ci_high']:+.2f}], Holm p={p_text}")
