"""`seke-hf publish DIR --repo-id org/feid`: push a release folder written by `seke_hf.publish.build_repo`.

The token comes from `HF_TOKEN` or `huggingface-cli login`, never from the command line, where it would be kept
in shell histories and process lists.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

logger = logging.getLogger("seke_hf.cli.publish")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "publish",
        help="push a FEID/FEAB release folder to the Hub",
        description="Push a release folder (written by seke_hf.publish.build_repo) to a Hub dataset repo as one "
        "commit: exactly the files build_repo wrote, nothing else. A release with images must be private or gated; "
        "a public, ungated one needs --allow-public-images. A repo whose history holds images is not made public "
        "and ungated (use a new repo, or --squash-history). The token is read from HF_TOKEN or your saved login.",
        epilog="""examples:
  seke-hf publish feid_build/hub/feid --repo-id my-org/feid                  # private, gated (manual approval)
  seke-hf publish feid_build/hub/feid --repo-id my-org/feid-labels --annotations-only --public --gated none
  seke-hf publish feid_build/hub/feab --repo-id my-org/feab --create-pr     # propose instead of committing""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("dir", type=Path, help="the release folder (README.md, LICENSE, data/)")
    parser.add_argument("--repo-id", required=True, help="target dataset repo, e.g. my-org/feid")
    parser.add_argument(
        "--annotations-only",
        action="store_true",
        help="publish without images (sample ids and labels); restore them with attach_images",
    )
    parser.add_argument(
        "--private",
        dest="private",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="make the repo private (default) or not",
    )
    parser.add_argument("--public", dest="private", action="store_false", help="same as --no-private")
    parser.add_argument(
        "--allow-public-images",
        action="store_true",
        help="allow a public, ungated release WITH images (check the corpora's licences first)",
    )
    parser.add_argument(
        "--gated",
        choices=("manual", "auto", "none"),
        default="manual",
        help="access requests: approved by hand (default), automatically, or no gate",
    )
    parser.add_argument("--endpoint", default=None, help="Hub endpoint (default: HF_ENDPOINT or huggingface.co)")
    parser.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing to main")
    parser.add_argument(
        "--squash-history",
        action="store_true",
        help="rewrite the history of main to this one commit (irreversible): needed to make public a repo whose "
        "earlier revisions hold images",
    )
    parser.add_argument("--message", default=None, help="commit message")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from seke_hf.publish import push
    from seke_hf.urls import public_url

    options = dict(
        repo_id=args.repo_id, private=args.private, gated=args.gated, endpoint=args.endpoint,
        create_pr=args.create_pr, allow_public_images=args.allow_public_images, commit_message=args.message,
        squash_history=args.squash_history,
    )  # fmt: skip
    if not args.annotations_only:
        commit = push(args.dir, **options)
    else:
        with tempfile.TemporaryDirectory(prefix="seke_annotations_") as tmp:
            commit = push(annotations_copy(args.dir, Path(tmp) / "release", repo_id=args.repo_id), **options)
    print(public_url(commit.pr_url or commit.commit_url))
    return 0


def annotations_copy(folder: Path, out: Path, repo_id: str | None = None) -> Path:
    """The annotations-only release of a release folder: every config re-read, images dropped, card re-rendered."""
    import datasets

    from seke_hf.publish import build_repo, read_release
    from seke_hf.publish.manifest import expected_files

    release = read_release(folder)
    expected_files(folder)  # read only what build_repo wrote: a stray shard would otherwise be read as a split
    if release["mode"] == "annotations":
        return folder
    configs = {name: datasets.load_dataset(str(folder), name) for name in release["configs"]}
    return build_repo(configs, out, kind=release["kind"], mode="annotations", build_info=release["build_info"],
                      repo_id=repo_id)  # fmt: skip
