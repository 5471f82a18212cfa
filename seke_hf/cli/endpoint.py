"""Before a command sends anything to a vision LLM: is there a key for OpenAI, and does the server answer at all?

Without these checks a build with no `OPENAI_API_KEY`, or against a server that is down, retried every row for
minutes and then reported "done" over a dataset of failed rows.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from seke_hf.cli import CLIError

OPENAI_HOST = "api.openai.com"


def resolve_base_url(base_url: str | None) -> str:
    """The endpoint a command talks to: `--base-url`, else OPENAI_BASE_URL, else OpenAI's."""
    from seke_hf.llm import DEFAULT_BASE_URL

    return (base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")


def is_openai(base_url: str) -> bool:
    return urlsplit(base_url).hostname == OPENAI_HOST


def require_api_key(base_url: str) -> None:
    """OpenAI's endpoint needs OPENAI_API_KEY; say so now rather than after every request has failed."""
    if is_openai(base_url) and not os.environ.get("OPENAI_API_KEY"):
        raise CLIError(
            f"OPENAI_API_KEY is not set, and {base_url} needs it: export OPENAI_API_KEY=... (a key is never taken "
            "from the command line), or point --base-url at another OpenAI-compatible server"
        )


def check_reachable(base_url: str, timeout: float = 10.0) -> None:
    """One cheap request (`GET /models`, which costs nothing) before the run: a server that cannot be reached, or
    that refuses the key, is an error now. A server without `/models` answers with an HTTP error and passes."""
    import openai

    client = openai.OpenAI(
        base_url=base_url, api_key=os.environ.get("OPENAI_API_KEY") or "unused", max_retries=1, timeout=timeout
    )
    try:
        client.models.list()
    except openai.APIConnectionError as e:  # refused, unresolvable, timed out
        raise CLIError(f"cannot reach the model server at {base_url}: {e}; is it running?") from None
    except openai.AuthenticationError:
        raise CLIError(f"{base_url} refused the API key (HTTP 401): check OPENAI_API_KEY") from None
    except openai.APIStatusError:
        pass  # reachable; some OpenAI-compatible servers do not list models
    finally:
        client.close()
