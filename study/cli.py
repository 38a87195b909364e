"""Shared command-line plumbing: one-line errors with exit code 2, never a traceback for bad input."""
import argparse
import ast
import math
import signal
import sys

from study.errors import Interrupted, StudyError

EXIT_BAD_INPUT = 2
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)  # what timeout, SLURM and Kubernetes send; a closed terminal
_stopped_by = {"signal": signal.SIGINT}  # the last stop signal received; the exit code is 128 + its number


def exit_code_interrupted() -> int:
    """The shell's convention: 128 + the signal's number (130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP)."""
    return 128 + int(_stopped_by["signal"])


def handle_stop_signals() -> None:
    """Make SIGTERM and SIGHUP stop a run the way Ctrl-C does: they raise SIGINT, so Ray Tune saves its state and
    ends the search (its own SIGINT handler), and elsewhere Python raises KeyboardInterrupt; the exit code still
    names the signal received. Call again after ray.init, which installs a SIGTERM handler of its own."""
    def as_ctrl_c(signum, frame):
        _stopped_by["signal"] = signum
        signal.raise_signal(signal.SIGINT)

    # A command started in the background by a shell without job control (`cmd &` in a script, nohup) inherits
    # SIGINT ignored, and Python then installs no handler for it: the SIGINT raised above would be dropped and a
    # SIGTERM would not stop the run. Ctrl-C cannot reach such a process anyway, so its handler is Python's own.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    for stop in STOP_SIGNALS:
        signal.signal(stop, as_ctrl_c)


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (argparse prints the usage block first)."""

    def error(self, message):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see --help)\n")


def converted(text: str, convert, noun: str):
    """convert(text), or argparse's one-line error naming the text and what it should be."""
    try:
        return convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not {noun}") from None


def whole(low: int, high: int = None):
    """An argparse type: a whole number in [low, high]; argparse names the flag in its one-line error."""
    def parse(text: str) -> int:
        value = converted(text, int, "a whole number")
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{value} must be "
                                             + (f"between {low} and {high}" if high is not None else f">= {low}"))
        return value

    return parse


def number(low: float, above: bool = False):
    """An argparse type: a finite number >= low (> low with `above`); NaN and infinities are refused."""
    def parse(text: str) -> float:
        value = converted(text, float, "a number")
        if not math.isfinite(value) or value < low or (above and value == low):
            raise argparse.ArgumentTypeError(f"{text} must be a finite number {'>' if above else '>='} {low:g}")
        return value

    return parse


def ray_address(text: str) -> str:
    """An argparse type: a Ray cluster's address, 'auto' or host:port (what `ray start --head` prints)."""
    host, sep, port = text.rpartition(":")
    if text != "auto" and (not sep or not host or not port.isdigit() or "://" in text):
        raise argparse.ArgumentTypeError(f"malformed address '{text}': expected 'auto' or host:port (not a URL), "
                                         "e.g. 10.0.0.5:6379")
    return text


def parse_knobs(pairs, flag: str) -> dict:
    """['tau=0.5', 'layout=coarse'] -> {'tau': 0.5, 'layout': 'coarse'}; values are Python literals or strings."""
    knobs = {}
    for pair in pairs or []:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise StudyError(f"{flag} '{pair}' is not of the form name=value")
        try:
            knobs[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            knobs[key] = text
    return knobs


def run(main, argv=None) -> None:
    """Call main(argv); a StudyError becomes one line on stderr and exit code 2; Ctrl-C, SIGTERM and SIGHUP end it
    with 128 + the signal's number."""
    handle_stop_signals()
    try:
        main(argv)
    except Interrupted as error:
        end_worker_output()
        print(f"interrupted: {error}", file=sys.stderr)
        sys.exit(exit_code_interrupted())
    except StudyError as error:
        end_worker_output()
        print(f"error: {error}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        end_worker_output()
        print("interrupted", file=sys.stderr)
        sys.exit(exit_code_interrupted())


def end_worker_output() -> None:
    """Print nothing more of what Ray's workers write (Ray forwards their stdout and stderr to this console).

    Called once a run has ended with its own line: the trial workers that Ray stops as this process exits may still
    write their dying words, e.g. "Exception ignored ... SystemExit: 1" from Ray's SIGTERM handler, after the line
    that says what happened. Their logs stay in Ray's session folder. Ray is pinned (setup.cfg); the tests check
    that the switch is still where this looks for it (tests/test_bad_input.py)."""
    ray_worker = sys.modules.get("ray._private.worker")  # never imports Ray: a run that did not start it has none
    if ray_worker is not None:
        ray_worker._worker_logs_enabled = False
