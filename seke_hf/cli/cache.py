"""`seke-hf cache push/pull`: copy answered requests between a local SQLite cache and a shared one (fsspec URL).

    seke-hf cache push s3://lab/seke-cache                    # this machine's answers, for the whole lab
    seke-hf cache pull s3://lab/seke-cache --cache-dir ./c    # the lab's answers, into a local cache
    seke-hf annotate ... --cache-dir s3://lab/seke-cache      # or use the shared cache directly

Entries are write-once: pushing never replaces an answer already shared, so every machine keeps reading the same
one. Credentials come from the environment or fsspec config (AWS_*, GOOGLE_APPLICATION_CREDENTIALS, ...).
"""

from __future__ import annotations

import argparse
import logging
from concurrent.futures import ThreadPoolExecutor

from seke_hf.cli import CLIError

logger = logging.getLogger(__name__)

THREADS = 16
"""Objects copied at once: each is one small HTTP request to the store."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "cache",
        help="push/pull the request cache to/from shared storage (s3://, gs://, ...)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("direction", choices=("push", "pull"), help="push: local -> shared; pull: shared -> local")
    p.add_argument("url", help="the shared cache, an fsspec URL such as s3://bucket/prefix")
    p.add_argument("--cache-dir", default=None, help="local cache folder (default: SEKE_HF_CACHE or ~/.cache/seke_hf)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from seke_hf.llm.cache import RequestCache
    from seke_hf.llm.shared_cache import SharedRequestCache, is_url, public_url

    if not is_url(args.url):
        raise CLIError(f"{args.url!r} is not a URL of shared storage (such as s3://bucket/prefix)")
    local = RequestCache.in_folder(args.cache_dir)
    shared = SharedRequestCache(args.url, local=False)
    if args.direction == "push":
        entries = list(local.items())

        def copy(entry: tuple[str, dict]) -> bool:
            return shared.create(*entry)

    else:
        have = set(local)
        entries = [key for key in shared if key not in have]

        def copy(key: str) -> bool:
            value = shared.fetch(key)
            if value is not None:
                local.put(key, value)
            return value is not None

    with ThreadPoolExecutor(THREADS) as pool:
        copied = sum(pool.map(copy, entries))
    local.close()
    where = public_url(args.url)
    if args.direction == "push":
        logger.info("pushed %d answers to %s (%d already there)", copied, where, len(entries) - copied)
    else:
        logger.info("pulled %d answers from %s into %s", copied, where, local.path)
    return 0
