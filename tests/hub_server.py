"""A local Hugging Face Hub for tests: standard-library HTTP on 127.0.0.1 speaking what `huggingface_hub` 2.x and
`datasets` really send, so publishing and reading back run the real clients over real HTTP.

Covered (read from the clients' source: `hf_api.py`, `_commit_api.py`, `lfs.py`, `file_download.py`,
`hf_file_system.py`, `datasets/load.py`):

- `POST /api/repos/create`, `PUT /api/{type}s/{id}/settings` (private, gated), `GET /api/whoami-v2`
- `GET /api/{type}s/{id}[/revision/{rev}]` (repo info: sha, siblings, cardData, private, gated)
- `POST /api/{type}s/{id}/preupload/{rev}` (upload mode and remote oid per file, from `.gitattributes`)
- `POST /{prefix}{id}.git/info/lfs/objects/batch`, then `PUT` upload and `POST` verify (basic LFS transfer)
- `POST /api/{type}s/{id}/commit/{rev}` (NDJSON: header, file, lfsFile, deletedFile, deletedFolder; create_pr)
- `GET /api/{type}s/{id}/tree/{rev}[/{path}]`, `POST /api/{type}s/{id}/paths-info/{rev}`, `GET .../refs`
  (with pull requests), `GET .../commits/{rev}` (history), `POST .../super-squash/{branch}` (history rewritten)
- `GET`/`HEAD /{prefix}{id}/resolve/{rev}/{path}` with `Range` (206/416), ETag, X-Repo-Commit, X-Linked-*
- `POST /api/validate-yaml` (the Hub's card metadata checks, as far as the published rules say)

Access follows the Hub: private repos are visible to their owner only (401/404 `RepoNotFound` otherwise); the
files of a gated repo need an owner or a user granted access (403 `GatedRepo`); writes need the owner's token.
Every request is recorded in `HubServer.requests`, every LFS upload in `HubServer.lfs_uploads`, and
`HubServer.fail_commits` makes the next commits fail server-side after their uploads, as an interrupted push would.
"""

from __future__ import annotations

import base64
import datetime as dt
import fnmatch
import hashlib
import hmac
import json
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import yaml

PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/"}
"""URL prefix of each repo type, as `huggingface_hub.constants.REPO_TYPES_URL_PREFIXES`."""

DEFAULT_GITATTRIBUTES = "".join(
    f"{pattern} filter=lfs diff=lfs merge=lfs -text\n"
    for pattern in ("*.parquet", "*.arrow", "*.bin", "*.jpg", "*.jpeg", "*.png", "*.zip", "*.tar", "*.gz", "*.mp4")
)
"""The `.gitattributes` a new repo starts with (a subset of the Hub's)."""

LFS_SIZE_THRESHOLD = 10 * 1024 * 1024
"""Files from this size up go through LFS whatever their name (the Hub's rule)."""


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


LICENSES = _words(
    """apache-2.0 mit openrail bigscience-openrail-m creativeml-openrail-m bigscience-bloom-rail-1.0 bigcode-openrail-m
    afl-3.0 artistic-2.0 bsl-1.0 bsd bsd-2-clause bsd-3-clause bsd-3-clause-clear c-uda cc cc0-1.0 cc-by-2.0 cc-by-2.5
    cc-by-3.0 cc-by-4.0 cc-by-sa-3.0 cc-by-sa-4.0 cc-by-nc-2.0 cc-by-nc-3.0 cc-by-nc-4.0 cc-by-nd-4.0 cc-by-nc-nd-3.0
    cc-by-nc-nd-4.0 cc-by-nc-sa-2.0 cc-by-nc-sa-3.0 cc-by-nc-sa-4.0 cdla-sharing-1.0 cdla-permissive-1.0
    cdla-permissive-2.0 wtfpl ecl-2.0 epl-1.0 epl-2.0 etalab-2.0 eupl-1.1 agpl-3.0 gfdl gpl gpl-2.0 gpl-3.0 lgpl
    lgpl-2.1 lgpl-3.0 isc lppl-1.3c ms-pl mpl-2.0 odc-by odbl openrail++ osl-3.0 postgresql ofl-1.1 ncsa unlicense
    zlib pddl lgpl-lr deepfloyd-if-license llama2 llama3 gemma unknown other"""
)
"""License ids the Hub accepts in card metadata (huggingface.co/docs/hub/repositories-licenses)."""

TASK_CATEGORIES = _words(
    """image-classification image-to-text image-text-to-text visual-question-answering zero-shot-image-classification
    image-feature-extraction object-detection image-segmentation text-classification text-generation
    question-answering tabular-classification tabular-regression video-classification video-text-to-text
    feature-extraction other"""
)
"""The task categories this server knows (a subset of the Hub's list)."""

SIZE_CATEGORIES = frozenset(
    ["n<1K", "1K<n<10K", "10K<n<100K", "100K<n<1M", "1M<n<10M", "10M<n<100M", "100M<n<1B", "1B<n<10B", "n>1T"]
)
GATED_FIELD_TYPES = frozenset(["text", "checkbox", "date_picker", "country"])


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


@dataclass(frozen=True)
class Blob:
    """A file as committed: regular content, or an LFS object referenced by its sha256."""

    data: bytes
    lfs: bool

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def oid(self) -> str:
        """The git oid: of the content, or of the LFS pointer file for LFS files."""
        return git_blob_oid(lfs_pointer(self.sha256, len(self.data)) if self.lfs else self.data)

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.oid

    def entry(self, path: str) -> dict[str, Any]:
        entry: dict[str, Any] = {"type": "file", "oid": self.oid, "size": len(self.data), "path": path}
        if self.lfs:
            pointer_size = len(lfs_pointer(self.sha256, len(self.data)))
            entry["lfs"] = {"oid": self.sha256, "size": len(self.data), "pointerSize": pointer_size}
        return entry


@dataclass
class Commit:
    sha: str
    parent: str | None
    title: str
    date: str
    files: dict[str, Blob]


@dataclass
class Repo:
    type: str
    id: str
    private: bool
    gated: str | bool = False
    refs: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)
    lfs: dict[str, bytes] = field(default_factory=dict)
    granted: set[str] = field(default_factory=set)
    pull_requests: int = 0

    @property
    def owner(self) -> str:
        return self.id.split("/")[0]

    def resolve(self, revision: str) -> Commit | None:
        sha = self.refs.get(revision) or self.refs.get(revision.removeprefix("refs/heads/"))
        return self.commits.get(sha or revision)

    def prune(self) -> None:
        """Forget the commits no ref reaches."""
        reachable: set[str] = set()
        for sha in self.refs.values():
            while sha and sha not in reachable:
                reachable.add(sha)
                sha = self.commits[sha].parent
        self.commits = {sha: c for sha, c in self.commits.items() if sha in reachable}

    def commit(self, branch: str, title: str, files: dict[str, Blob]) -> Commit:
        parent = self.refs.get(branch)
        date = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
        listing = json.dumps([parent, title, date, len(self.commits), {p: b.oid for p, b in sorted(files.items())}])
        commit = Commit(hashlib.sha1(listing.encode()).hexdigest(), parent, title, date, files)
        self.commits[commit.sha] = commit
        self.refs[branch] = commit.sha
        return commit


class HubError(Exception):
    """An error answered as the Hub does: status, `X-Error-Code` header and a JSON `error` body."""

    def __init__(self, status: int, message: str, code: str | None = None, **extra: Any):
        super().__init__(message)
        self.status, self.message, self.code, self.extra = status, message, code, extra


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, value: Any, status: int = 200) -> Reply:
        return cls(status, json.dumps(value).encode(), {"Content-Type": "application/json"})


@dataclass
class Request:
    method: str
    path: str  # raw (still percent-encoded) path
    query: dict[str, list[str]]
    headers: Any
    body: bytes
    user: str | None

    def json(self) -> Any:
        return json.loads(self.body or b"null")


class HubServer:
    """The server and its state. Tests read `requests`, `lfs_uploads` and `repos`; they set `fail_commits`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, tokens: dict[str, str] | None = None):
        self.tokens: dict[str, str] = dict(tokens or {})
        self.orgs: dict[str, set[str]] = {}
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[tuple[str, str, int]] = []
        self.lfs_uploads: list[tuple[str, str, int]] = []
        self.fail_commits = 0
        self._secret = os.urandom(16)
        self._lock = threading.RLock()
        self._httpd = ThreadingHTTPServer((host, port), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> HubServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="hub-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def add_user(self, name: str, token: str, orgs: tuple[str, ...] = ()) -> None:
        self.tokens[token] = name
        for org in orgs:
            self.orgs.setdefault(org, set()).add(name)

    def repo(self, repo_id: str, repo_type: str = "dataset") -> Repo:
        return self.repos[(repo_type, repo_id)]

    def clear_log(self) -> None:
        with self._lock:
            self.requests.clear()
            self.lfs_uploads.clear()

    # ---- dispatch -------------------------------------------------------------------------------------------------

    def handle(self, request: Request) -> Reply:
        routes = (
            ("POST", r"/api/repos/create", self._create_repo),
            ("POST", r"/api/validate-yaml", self._validate_yaml),
            ("GET", r"/api/whoami-v2", self._whoami),
            ("GET", r"/api/(?P<type>models|datasets|spaces)/(?P<id>[^/]+/[^/]+)(?:/revision/(?P<rev>[^/]+))?",
             self._repo_info),
            ("PUT", r"/api/(?P<type>models|datasets|spaces)/(?P<id>[^/]+/[^/]+)/settings", self._settings),
            ("POST", r"/api/(?P<type>models|datasets|spaces)/(?P<id>[^/]+/[^/]+)/preupload/(?P<rev>[^/]+)",
             self._preupload),
            ("POST", r"/api/(?P<type>models|datasets|spaces)/(?P<id>[^/]+/[^/]+)/commit/(?P<rev>[^/]+)", self._commit),
            ("GET", r"/api/(?P<type>models|datasets|spaces)/(?P<id>[^/]+/[^/]+)/tree/(?P<rev>[^/]+)(?:/(?P<path>.+))?",
             self._tree),
            ("POST", r"/api/(?P<type>models|datasets|spaces)/(?P<id>[^/]+/[^/]+)/paths-info/(?P<rev>[^/]+)",
             self._paths_info),
            ("GET", r"/api/(?P<type>models|datasets|spaces)/(?P<id>[^/]+/[^/]+)/refs", self._refs),
            ("GET", r"/api/(?P<type>models|datasets|spaces)/(?P<id>[^/]+/[^/]+)/commits/(?P<rev>[^/]+)", self._commits),
            ("POST", r"/api/(?P<type>models|datasets|spaces)/(?P<id>[^/]+/[^/]+)/super-squash/(?P<rev>[^/]+)",
             self._super_squash),
            ("POST", r"/(?P<prefix>datasets/|spaces/)?(?P<id>[^/]+/[^/]+)\.git/info/lfs/objects/batch",
             self._lfs_batch),
            ("PUT", r"/_lfs/(?P<type>model|dataset|space)/(?P<id>[^/]+/[^/]+)/(?P<oid>[0-9a-f]{64})", self._lfs_put),
            ("POST", r"/_lfs/(?P<type>model|dataset|space)/(?P<id>[^/]+/[^/]+)/(?P<oid>[0-9a-f]{64})/verify",
             self._lfs_verify),
            ("GET", r"/(?P<prefix>datasets/|spaces/)?(?P<id>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)",
             self._resolve),
        )  # fmt: skip
        method = "GET" if request.method == "HEAD" else request.method
        try:
            for route_method, pattern, handler in routes:
                match = re.fullmatch(pattern, request.path)
                if route_method == method and match:
                    with self._lock:
                        return handler(request, **{k: v for k, v in match.groupdict().items() if v is not None})
            raise HubError(404, f"no route for {request.method} {request.path}")
        except HubError as e:
            reply = Reply.json({"error": e.message, **e.extra}, e.status)
            reply.headers["X-Error-Message"] = e.message
            if e.code:
                reply.headers["X-Error-Code"] = e.code
            return reply

    # ---- access ---------------------------------------------------------------------------------------------------

    def _is_owner(self, user: str | None, repo: Repo) -> bool:
        return user is not None and (user == repo.owner or user in self.orgs.get(repo.owner, ()))

    def _readable(self, request: Request, type_: str, repo_id: str, files: bool = False) -> Repo:
        repo = self.repos.get((type_.removesuffix("s"), unquote(repo_id)))
        if repo is None or (repo.private and not self._is_owner(request.user, repo)):
            status = 401 if request.user is None else 404
            raise HubError(status, "Repository not found", "RepoNotFound")
        if files and repo.gated and not (self._is_owner(request.user, repo) or request.user in repo.granted):
            status = 401 if request.user is None else 403
            raise HubError(status, f"Access to dataset {repo.id} is restricted.", "GatedRepo")
        return repo

    def _writable(self, request: Request, type_: str, repo_id: str) -> Repo:
        repo = self._readable(request, type_, repo_id)
        if not self._is_owner(request.user, repo):
            raise HubError(403, "You don't have the rights to write to this repo")
        return repo

    @staticmethod
    def _commit_at(repo: Repo, revision: str) -> Commit:
        commit = repo.resolve(unquote(revision))
        if commit is None:
            raise HubError(404, f"Invalid rev id: {unquote(revision)}", "RevisionNotFound")
        return commit

    # ---- repos ----------------------------------------------------------------------------------------------------

    def _create_repo(self, request: Request) -> Reply:
        payload = request.json()
        repo_type = payload.get("type") or "model"
        namespace = payload.get("organization") or request.user
        if request.user is None:
            raise HubError(401, "You must be authenticated to create a repo")
        if namespace != request.user and request.user not in self.orgs.get(namespace, ()):
            raise HubError(403, f"You don't have the rights to create a repo under the namespace {namespace!r}")
        repo_id = f"{namespace}/{payload['name']}"
        url = f"{self.endpoint}/{PREFIXES[repo_type]}{repo_id}"
        if (repo_type, repo_id) in self.repos:
            raise HubError(409, "You already created this repo", url=url)  # the Hub answers with the url too
        repo = Repo(repo_type, repo_id, private=payload.get("visibility", "public") != "public")
        repo.commit("main", "initial commit", {".gitattributes": Blob(DEFAULT_GITATTRIBUTES.encode(), False)})
        self.repos[(repo_type, repo_id)] = repo
        return Reply.json({"url": url, "name": repo_id, "id": repo_id})

    def _whoami(self, request: Request) -> Reply:
        if request.user is None:
            raise HubError(401, "Invalid credentials in Authorization header")
        orgs = [{"name": org, "type": "org"} for org, members in self.orgs.items() if request.user in members]
        return Reply.json({"type": "user", "name": request.user, "orgs": orgs, "auth": {"type": "access_token"}})

    def _settings(self, request: Request, type: str, id: str) -> Reply:
        repo = self._writable(request, type, id)
        payload = request.json()
        if "gated" in payload:
            if payload["gated"] not in ("auto", "manual", False):
                raise HubError(400, f"Invalid gated value {payload['gated']!r}")
            repo.gated = payload["gated"]
        if "visibility" in payload:
            repo.private = payload["visibility"] != "public"
        elif "private" in payload:
            repo.private = bool(payload["private"])
        return Reply.json({})

    def _repo_info(self, request: Request, type: str, id: str, rev: str = "main") -> Reply:
        repo = self._readable(request, type, id)
        commit = self._commit_at(repo, rev)
        blobs = request.query.get("blobs", ["false"])[0].lower() == "true"
        siblings = []
        for path, blob in sorted(commit.files.items()):
            sibling: dict[str, Any] = {"rfilename": path}
            if blobs:
                entry = blob.entry(path)
                sibling.update(size=entry["size"], blobId=entry["oid"])
                if blob.lfs:
                    lfs = entry["lfs"]
                    sibling["lfs"] = {"sha256": lfs["oid"], "size": lfs["size"], "pointerSize": lfs["pointerSize"]}
            siblings.append(sibling)
        card = commit.files.get("README.md")
        card_data = _front_matter(card.data.decode()) if card else None
        return Reply.json(
            {
                "_id": hashlib.sha1(repo.id.encode()).hexdigest()[:24],
                "id": repo.id,
                "author": repo.owner,
                "sha": commit.sha,
                "lastModified": commit.date,
                "createdAt": repo.commits[next(iter(repo.commits))].date,
                "private": repo.private,
                "gated": repo.gated,
                "disabled": False,
                "downloads": 0,
                "likes": 0,
                "tags": list((card_data or {}).get("tags") or []),
                "cardData": card_data if isinstance(card_data, dict) else None,
                "siblings": siblings,
                "usedStorage": sum(len(b) for b in repo.lfs.values()),
            }
        )

    def _refs(self, request: Request, type: str, id: str) -> Reply:
        repo = self._readable(request, type, id)
        branches = [
            {"name": n, "ref": f"refs/heads/{n}", "targetCommit": s} for n, s in repo.refs.items() if "/" not in n
        ]
        converts = [
            {"name": n.removeprefix("refs/convert/"), "ref": n, "targetCommit": s}
            for n, s in repo.refs.items()
            if n.startswith("refs/convert/")
        ]
        reply: dict[str, Any] = {"branches": branches, "converts": converts, "tags": []}
        if request.query.get("include_prs", ["0"])[0] in ("1", "true", "True"):
            reply["pullRequests"] = [
                {"name": n.removeprefix("refs/pr/"), "ref": n, "targetCommit": s}
                for n, s in repo.refs.items()
                if n.startswith("refs/pr/")
            ]
        return Reply.json(reply)

    def _commits(self, request: Request, type: str, id: str, rev: str) -> Reply:
        """The history of a revision, newest first (one page: the client follows no `Link` header then)."""
        repo = self._readable(request, type, id)
        commit: Commit | None = self._commit_at(repo, rev)
        history = []
        while commit is not None:
            history.append({
                "id": commit.sha, "title": commit.title, "message": "", "date": commit.date,
                "authors": [{"user": repo.owner}],
            })  # fmt: skip
            commit = repo.commits.get(commit.parent) if commit.parent else None
        return Reply.json(history)

    def _super_squash(self, request: Request, type: str, id: str, rev: str) -> Reply:
        """Replace the branch by one commit holding its head's files; commits no ref reaches any more are gone,
        as on the Hub (their files can no longer be resolved, by any revision)."""
        repo = self._writable(request, type, id)
        branch = unquote(rev)
        head = self._commit_at(repo, branch)
        message = (request.json() or {}).get("message") or f"Super-squash branch '{branch}'"
        del repo.refs[branch]
        repo.commit(branch, message, dict(head.files))
        repo.prune()
        return Reply.json({"commitId": repo.refs[branch]})

    # ---- upload ---------------------------------------------------------------------------------------------------

    def _preupload(self, request: Request, type: str, id: str, rev: str) -> Reply:
        repo = self._writable(request, type, id)
        commit = repo.resolve(unquote(rev)) or self._commit_at(repo, "main")
        gitattributes = commit.files.get(".gitattributes")
        lfs_patterns = _lfs_patterns(gitattributes.data.decode() if gitattributes else "")
        files = []
        for item in request.json()["files"]:
            path, size, sample = item["path"], item["size"], base64.b64decode(item["sample"])
            is_lfs = size >= LFS_SIZE_THRESHOLD or b"\0" in sample or _matches(path, lfs_patterns)
            existing = commit.files.get(path)
            oid = None if existing is None else existing.sha256 if existing.lfs else existing.oid
            files.append(
                {"path": path, "uploadMode": "lfs" if is_lfs else "regular", "shouldIgnore": False, "oid": oid}
            )
        return Reply.json({"files": files, "commitOid": commit.sha})

    def _lfs_batch(self, request: Request, id: str, prefix: str = "") -> Reply:
        repo_type = {"": "model", "datasets/": "dataset", "spaces/": "space"}[prefix]
        repo = self._writable(request, repo_type + "s", id)
        payload = request.json()
        if payload.get("operation") != "upload":
            raise HubError(400, "only the upload operation is supported")
        objects = []
        for obj in payload["objects"]:
            oid, size = obj["oid"], obj["size"]
            if oid in repo.lfs:
                objects.append({"oid": oid, "size": size})  # already stored: no actions, nothing to upload
                continue
            href = f"{self.endpoint}/_lfs/{repo_type}/{repo.id}/{oid}"
            upload = f"{href}?signature={self._signature(repo.id, oid)}"
            actions = {"upload": {"href": upload}, "verify": {"href": f"{href}/verify"}}
            objects.append({"oid": oid, "size": size, "authenticated": True, "actions": actions})
        return Reply.json({"transfer": "basic", "objects": objects, "hash_algo": "sha256"})

    def _signature(self, repo_id: str, oid: str) -> str:
        return hmac.new(self._secret, f"{repo_id}/{oid}".encode(), "sha256").hexdigest()

    def _lfs_put(self, request: Request, type: str, id: str, oid: str) -> Reply:
        """Upload hrefs are pre-signed like the Hub's S3 URLs: the client sends no token, the signature authorises."""
        repo = self.repos.get((type, unquote(id)))
        signature = request.query.get("signature", [""])[0]
        if repo is None or not hmac.compare_digest(signature, self._signature(repo.id, oid)):
            raise HubError(403, "Request has expired or its signature does not match")
        if hashlib.sha256(request.body).hexdigest() != oid:
            raise HubError(400, "uploaded content does not match its oid")
        repo.lfs[oid] = request.body
        self.lfs_uploads.append((repo.id, oid, len(request.body)))
        return Reply()

    def _lfs_verify(self, request: Request, type: str, id: str, oid: str) -> Reply:
        repo = self._writable(request, type + "s", id)
        payload = request.json()
        if oid not in repo.lfs or len(repo.lfs[oid]) != payload.get("size"):
            raise HubError(404, f"LFS object {oid} not found")
        return Reply.json({"success": True})

    def _commit(self, request: Request, type: str, id: str, rev: str) -> Reply:
        repo = self._writable(request, type, id)
        lines = [json.loads(line) for line in request.body.decode().splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "a commit starts with a header line")
        if self.fail_commits > 0:
            self.fail_commits -= 1
            raise HubError(500, "Internal Error: the commit could not be created")
        header = lines[0]["value"]
        branch = unquote(rev)
        base = self._commit_at(repo, branch)
        if header.get("parentCommit") and header["parentCommit"] != base.sha:
            raise HubError(412, "A commit has happened since. Please refresh and try again.")
        files = dict(base.files)
        for line in lines[1:]:
            key, value = line["key"], line["value"]
            path = value["path"]
            if key == "file":
                files[path] = Blob(base64.b64decode(value["content"]), False)
            elif key == "lfsFile":
                stored = repo.lfs.get(value["oid"])
                if stored is None or ("size" in value and len(stored) != value["size"]):
                    raise HubError(422, f"LFS object {value['oid']} for {path} was never uploaded")
                files[path] = Blob(stored, True)
            elif key == "deletedFile":
                if files.pop(path, None) is None:
                    raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
            elif key == "deletedFolder":
                prefix = path.rstrip("/") + "/"
                files = {p: b for p, b in files.items() if not p.startswith(prefix)}
            else:
                raise HubError(400, f"unknown commit operation {key!r}")
        readme = files.get("README.md")
        if readme is not None and readme is not base.files.get("README.md"):
            errors, _ = validate_card_metadata(readme.data.decode(), repo.type)
            if errors:
                raise HubError(400, "Invalid metadata in README.md.\n" + "\n".join(f"- {e}" for e in errors))
        pr_url = None
        if request.query.get("create_pr", ["0"])[0] == "1":
            repo.pull_requests += 1
            branch = f"refs/pr/{repo.pull_requests}"
            repo.refs[branch] = base.sha
            pr_url = f"{self.endpoint}/{PREFIXES[repo.type]}{repo.id}/discussions/{repo.pull_requests}"
        commit = repo.commit(branch, header.get("summary") or "update", files)
        reply = {"success": True, "commitOid": commit.sha, "hookOutput": ""}
        reply["commitUrl"] = f"{self.endpoint}/{PREFIXES[repo.type]}{repo.id}/commit/{commit.sha}"
        if pr_url:
            reply.update(pullRequestUrl=pr_url, pullRequestRevision=branch)
        return Reply.json(reply)

    # ---- read -----------------------------------------------------------------------------------------------------

    def _entries(self, commit: Commit, folder: str, recursive: bool, expand: bool) -> Iterator[dict[str, Any]]:
        prefix = f"{folder.strip('/')}/" if folder.strip("/") else ""
        folders: dict[str, list[str]] = {}
        for path, blob in sorted(commit.files.items()):
            if not path.startswith(prefix):
                continue
            rest = path[len(prefix) :].split("/")
            for depth in range(1, len(rest)):
                folders.setdefault(prefix + "/".join(rest[:depth]), []).append(blob.oid)
            if recursive or len(rest) == 1:
                entry = blob.entry(path)
                if expand:
                    entry["lastCommit"] = {"id": commit.sha, "title": commit.title, "date": commit.date}
                yield entry
        for path, oids in sorted(folders.items()):
            if recursive or "/" not in path[len(prefix) :]:
                tree_oid = hashlib.sha1("".join(oids).encode()).hexdigest()
                yield {"type": "directory", "oid": tree_oid, "size": 0, "path": path}

    def _tree(self, request: Request, type: str, id: str, rev: str, path: str = "") -> Reply:
        commit = self._commit_at(self._readable(request, type, id), rev)
        folder = unquote(path)
        recursive = request.query.get("recursive", ["false"])[0].lower() == "true"
        expand = request.query.get("expand", ["false"])[0].lower() == "true"
        entries = list(self._entries(commit, folder, recursive, expand))
        if folder and not entries:
            raise HubError(404, f"{folder} does not exist on {rev}", "EntryNotFound")
        return Reply.json(entries)

    def _paths_info(self, request: Request, type: str, id: str, rev: str) -> Reply:
        commit = self._commit_at(self._readable(request, type, id), rev)
        form = parse_qs(request.body.decode())
        expand = form.get("expand", ["false"])[0].lower() == "true"
        infos = []
        for path in form.get("paths", []):
            path = path.strip("/")
            if path in commit.files:
                entry = commit.files[path].entry(path)
                if expand:
                    entry["lastCommit"] = {"id": commit.sha, "title": commit.title, "date": commit.date}
                infos.append(entry)
            elif any(p.startswith(path + "/") for p in commit.files):
                tree_oid = hashlib.sha1(path.encode() + commit.sha.encode()).hexdigest()
                infos.append({"type": "directory", "oid": tree_oid, "size": 0, "path": path})
        return Reply.json(infos)

    def _resolve(self, request: Request, id: str, rev: str, path: str, prefix: str = "") -> Reply:
        repo_type = {"": "model", "datasets/": "dataset", "spaces/": "space"}[prefix]
        repo = self._readable(request, repo_type + "s", id, files=True)
        commit = self._commit_at(repo, rev)
        blob = commit.files.get(unquote(path))
        if blob is None:
            reply = Reply.json({"error": "Entry not found"}, 404)
            reply.headers.update({"X-Error-Code": "EntryNotFound", "X-Repo-Commit": commit.sha})
            return reply
        headers = {
            "X-Repo-Commit": commit.sha,
            "ETag": f'"{blob.etag}"',
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        if blob.lfs:
            headers.update({"X-Linked-Etag": f'"{blob.etag}"', "X-Linked-Size": str(len(blob.data))})
        data, status = blob.data, 200
        byte_range = request.headers.get("Range")
        if byte_range:
            match = re.fullmatch(r"bytes=(\d*)-(\d*)", byte_range.strip())
            if not match:
                raise HubError(400, f"unsupported Range {byte_range!r}")
            total = len(data)
            start_text, end_text = match.groups()
            if start_text:
                start, end = int(start_text), min(int(end_text) if end_text else total - 1, total - 1)
            else:  # suffix range: the last N bytes
                start, end = max(total - int(end_text), 0), total - 1
            if start >= total:
                return Reply(416, b"", {**headers, "Content-Range": f"bytes */{total}"})
            data, status = data[start : end + 1], 206
            headers["Content-Range"] = f"bytes {start}-{end}/{total}"
        return Reply(status, data, headers)

    # ---- card validation ------------------------------------------------------------------------------------------

    def _validate_yaml(self, request: Request) -> Reply:
        payload = request.json()
        errors, warnings = validate_card_metadata(payload.get("content", ""), payload.get("repoType") or "model")
        body = {"errors": [{"message": e} for e in errors], "warnings": [{"message": w} for w in warnings]}
        if errors:
            reply = Reply.json({**body, "error": "\n".join(errors)}, 400)
            reply.headers["X-Error-Message"] = "Invalid metadata in README.md"
            return reply
        return Reply.json(body)


def _lfs_patterns(gitattributes: str) -> list[str]:
    return [line.split()[0] for line in gitattributes.splitlines() if "filter=lfs" in line and line.split()]


def _matches(path: str, patterns: list[str]) -> bool:
    name = path.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(path, p) for p in patterns)


def _front_matter(content: str) -> Any:
    match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", content, re.DOTALL)
    return yaml.safe_load(match.group(1)) if match else None


def validate_card_metadata(content: str, repo_type: str) -> tuple[list[str], list[str]]:
    """The Hub's checks on a README's YAML metadata, as documented (huggingface.co/docs/hub/datasets-cards,
    /datasets-manual-configuration, /datasets-gated, /repositories-licenses). Returns (errors, warnings)."""
    try:
        metadata = _front_matter(content)
    except yaml.YAMLError as e:
        return [f"YAML metadata is not valid YAML: {e}"], []
    if metadata is None:
        return [], ["Empty metadata: the card has no YAML header"]
    if not isinstance(metadata, dict):
        return ["YAML metadata must be a mapping"], []
    errors: list[str] = []
    licenses = metadata.get("license")
    for license_id in [licenses] if isinstance(licenses, str) else licenses or []:
        if license_id not in LICENSES:
            errors.append(f'"license" must be a known license id, got {license_id!r}')
    if licenses == "other" or (isinstance(licenses, list) and "other" in licenses):
        name = metadata.get("license_name")
        if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9][a-z0-9.\-]*", name):
            errors.append('"license_name" is required with license "other", in lowercase letters, digits, "-", "."')
        if not isinstance(metadata.get("license_link"), str):
            errors.append('"license_link" is required with license "other" (a URL or a file in the repo)')
    for key, allowed in (("task_categories", TASK_CATEGORIES), ("size_categories", SIZE_CATEGORIES)):
        values = metadata.get(key)
        for value in [values] if isinstance(values, str) else values or []:
            if value not in allowed:
                errors.append(f'"{key}" has an unknown value {value!r}')
    for key in ("tags", "source_datasets", "language"):
        if key in metadata and not (isinstance(metadata[key], list) and all(isinstance(v, str) for v in metadata[key])):
            errors.append(f'"{key}" must be a list of strings')
    if "pretty_name" in metadata and not isinstance(metadata["pretty_name"], str):
        errors.append('"pretty_name" must be a string')
    if repo_type == "dataset":
        errors += _config_errors(metadata.get("configs"))
        errors += _dataset_info_errors(metadata.get("dataset_info"))
    errors += _gating_errors(metadata)
    return errors, []


def _config_errors(configs: Any) -> list[str]:
    if configs is None:
        return []
    if not isinstance(configs, list):
        return ['"configs" must be a list']
    errors, names, defaults = [], set(), 0
    for config in configs:
        if not isinstance(config, dict) or not isinstance(config.get("config_name"), str):
            errors.append('each entry of "configs" needs a "config_name" string')
            continue
        name = config["config_name"]
        if name in names:
            errors.append(f"config {name!r} is declared twice")
        names.add(name)
        defaults += bool(config.get("default"))
        data_files = config.get("data_files")
        items = [data_files] if isinstance(data_files, (str, dict)) else data_files or []
        for item in items:
            if isinstance(item, str):
                continue
            path = item.get("path") if isinstance(item, dict) else None
            paths = [path] if isinstance(path, str) else path
            if not (isinstance(item, dict) and isinstance(item.get("split"), str) and isinstance(paths, list)):
                errors.append(f'config {name!r}: "data_files" entries need "split" and "path"')
            elif not all(isinstance(p, str) for p in paths):
                errors.append(f'config {name!r}: "path" must be a string or a list of strings')
    if defaults > 1:
        errors.append('only one config can be "default"')
    return errors


def _dataset_info_errors(info: Any) -> list[str]:
    if info is None:
        return []
    infos = info if isinstance(info, list) else [info]
    errors = []
    for item in infos:
        if not isinstance(item, dict):
            errors.append('"dataset_info" entries must be mappings')
            continue
        if isinstance(info, list) and not isinstance(item.get("config_name"), str):
            errors.append('"dataset_info" as a list needs a "config_name" in each entry')
        for feature in item.get("features") or []:
            if not (isinstance(feature, dict) and "name" in feature):
                errors.append('each of "dataset_info.features" needs a "name"')
            elif not {"dtype", "class_label", "list", "struct", "sequence", "_type"} & set(feature):
                errors.append(f"feature {feature['name']!r} has no type")
        for split in item.get("splits") or []:
            if not (isinstance(split, dict) and isinstance(split.get("name"), str)):
                errors.append('each of "dataset_info.splits" needs a "name"')
            elif not isinstance(split.get("num_examples", 0), int):
                errors.append(f"split {split['name']!r}: num_examples must be an integer")
    return errors


def _gating_errors(metadata: dict) -> list[str]:
    errors = []
    if "extra_gated_prompt" in metadata and not isinstance(metadata["extra_gated_prompt"], str):
        errors.append('"extra_gated_prompt" must be a string')
    fields = metadata.get("extra_gated_fields")
    if fields is not None and not isinstance(fields, dict):
        return [*errors, '"extra_gated_fields" must be a mapping of label to field type']
    for label, kind in (fields or {}).items():
        if isinstance(kind, str) and kind in GATED_FIELD_TYPES:
            continue
        if isinstance(kind, dict) and kind.get("type") == "select" and isinstance(kind.get("options"), list):
            continue
        errors.append(f"extra_gated_fields {label!r}: type must be one of {sorted(GATED_FIELD_TYPES)} or a select")
    return errors


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length else b""


def _handler_for(server: HubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            url = urlsplit(self.path)
            auth = self.headers.get("Authorization", "")
            token = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else None
            body = _read_body(self)
            request = Request(self.command, url.path, parse_qs(url.query), self.headers, body, None)
            if token is not None and token not in server.tokens:
                reply = Reply.json({"error": "Invalid credentials in Authorization header"}, 401)
                reply.headers["X-Error-Message"] = "Invalid credentials in Authorization header"
            else:
                request.user = server.tokens.get(token) if token else None
                reply = server.handle(request)
            with server._lock:
                server.requests.append((self.command, url.path, reply.status))
            self.send_response(reply.status)
            for key, value in reply.headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(reply.body)

        do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:  # the request log is `server.requests`
            pass

    return Handler


_SHARED: HubServer | None = None


def shared_server() -> HubServer:
    """The one test Hub of this process, on the port tests/conftest.py chose (HF_ENDPOINT points at it)."""
    global _SHARED
    if _SHARED is None:
        _SHARED = HubServer(port=int(os.environ["SEKE_TEST_HUB_PORT"])).start()
    return _SHARED


def hub_url(repo_id: str, repo_type: str = "dataset") -> str:
    return f"{shared_server().endpoint}/{PREFIXES[repo_type]}{quote(repo_id)}"
