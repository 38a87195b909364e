"""Shared command-line plumbing: one-line errors with exit code 2, never a traceback for bad input."""
import argparse
import ast
import sys

from study.errors import Interrupted, StudyError

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # the shell's code for Ctrl-C


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (argparse prints the usage block first)."""

    def error(self, message):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see --help)\n")


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
    """Call main(argv); a StudyError becomes one line on stderr and exit code 2."""
    try:
        main(argv)
    except Interrupted as error:
        print(f"interrupted: {error}", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except StudyError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
