"""Why a push was refused or failed. Messages name what to do, and never contain the token."""

from __future__ import annotations


class PublishError(RuntimeError):
    """A push failed; the message says why (and never contains the token)."""


class UnsafeReleaseError(PublishError, ValueError):
    """A push was refused before anything changed on the Hub: the folder holds files `build_repo` did not write, a
    file changed since, or images would become public (in the release, or in the repo's history)."""
