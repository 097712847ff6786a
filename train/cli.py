"""``grace train``: the same arguments as ``python -m grace_st.train`` (TRL's parser), with GRACE's error style.

Argument parsing belongs to TRL's ``TrlParser`` (YAML ``--config`` plus overrides of any field), so ``grace train``
hands its arguments over untouched; ``grace train --help`` lists every field.
"""

from __future__ import annotations

import argparse


def add_parser(commands: argparse._SubParsersAction) -> None:
    commands.add_parser(
        "train",
        help="train a GRACE model with TRL's GRPO (YAML --config plus overrides; --help lists every field)",
        add_help=False,
    )


def main(argv: list[str] | None = None) -> int:
    """Run training; user mistakes end with one ``grace: error:`` line and exit status 2, bugs with a traceback."""
    from ..errors import report_errors
    from ..logs import log_to_console
    from .console import quiet_dependency_warnings
    from .run import main as run_main

    quiet_dependency_warnings()
    log_to_console()
    return report_errors(lambda: run_main(argv))
