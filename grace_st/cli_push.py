"""``grace push DIR REPO_ID``: publish a saved GRACE model folder to the Hugging Face Hub."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(commands: argparse._SubParsersAction) -> None:
    push = commands.add_parser(
        "push",
        help="upload a saved GRACE model folder (with its card) to the Hugging Face Hub",
        description="Upload a saved GRACE model folder to the Hub in one commit (TRL checkpoints stay local).",
    )
    push.add_argument("folder", type=Path, metavar="DIR", help="output folder of `grace train` or `grace build`")
    push.add_argument("repo_id", metavar="REPO_ID", help="e.g. my-org/grace-qwen2.5-1.5b")
    push.add_argument("--private", action="store_true", help="create the repo as private")
    push.add_argument("--token", help="Hub token (default: HF_TOKEN or the saved login)")
    push.add_argument("--commit-message", default="Upload GRACE model")
    push.add_argument("--create-pr", action="store_true", help="open a pull request instead of pushing to main")


def run(args: argparse.Namespace) -> None:
    from .push import push_grace_model

    url = push_grace_model(
        args.folder,
        args.repo_id,
        private=args.private or None,
        token=args.token,
        commit_message=args.commit_message,
        create_pr=args.create_pr,
    )
    print(f"grace: pushed {args.folder} to {args.repo_id}: {url}", file=sys.stderr)
