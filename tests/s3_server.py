"""An S3-protocol server on 127.0.0.1 for the tests (moto's standalone server), reached by s3fs like real S3.

Credentials are fake and come from the environment, as in production (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_ENDPOINT_URL), so every process a test starts (subprocesses, Ray workers) finds the server the same way and
`s3://bucket/...` URLs work anywhere a path is taken, with no storage_options.
"""

from __future__ import annotations

import logging
import os
import uuid

FAKE_KEY_ID = "seke-test-key-id"
FAKE_SECRET = "seke-test-secret-never-in-output"


class S3Server:
    """moto's ThreadedMotoServer on a free port, with the environment pointing boto/s3fs at it while running."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.endpoint = ""
        self._saved: dict[str, str | None] = {}

    def start(self) -> S3Server:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request otherwise
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        env = {
            "AWS_ACCESS_KEY_ID": FAKE_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": FAKE_SECRET,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": self.endpoint,
        }
        self._saved = {name: os.environ.get(name) for name in env}
        os.environ.update(env)
        return self

    def stop(self) -> None:
        for name, value in self._saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._server.stop()

    def filesystem(self):
        """A fresh s3fs filesystem on this server (no instance cache: each test sees the store as it is)."""
        import s3fs

        return s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False)

    def bucket(self) -> str:
        """A new empty bucket, named uniquely so tests never see each other's objects."""
        name = f"seke-{uuid.uuid4().hex[:12]}"
        self.filesystem().mkdir(name)
        return name

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
