"""URLs as they are recorded (evaluation reports, cards, release files, summaries, log lines): without credentials.

A base URL may carry `user:password@` or a key in its query (`?api-key=...`). What we write down says where
requests went, never how they were authorised.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

SECRET_QUERY_KEY = re.compile(
    r"(^|[_-])(api[_-]?key|key|token|access[_-]?token|secret|password|passwd|pwd|auth\w*|sig|signature|code)$",
    re.IGNORECASE,
)
"""Query parameters whose values are credentials (`?api-key=`, `?token=`, `?sig=` of a signed URL, ...)."""
REDACTED = "***"
URL_IN_TEXT = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>`]+")


def public_url(url: str) -> str:
    """`url` without its `user:password@` and with credential-like query values replaced by `***`."""
    parts = urlsplit(url)
    if not parts.netloc:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    query = parts.query
    pairs = parse_qsl(query, keep_blank_values=True)
    if any(SECRET_QUERY_KEY.search(key) for key, _ in pairs):
        query = urlencode([(key, REDACTED if SECRET_QUERY_KEY.search(key) else value) for key, value in pairs])
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def public_urls_in(text: str) -> str:
    """`text` with every URL in it passed through `public_url`."""
    return URL_IN_TEXT.sub(lambda match: public_url(match.group()), text) if "://" in text else text
