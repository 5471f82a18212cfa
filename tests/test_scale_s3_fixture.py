"""The S3 test server itself: s3fs (and so every fsspec URL) reaches it with credentials from the environment."""

from __future__ import annotations

import subprocess
import sys

import fsspec


def test_objects_written_through_fsspec_urls_are_read_back_by_another_process(s3):
    bucket = s3.bucket()
    with fsspec.open(f"s3://{bucket}/a/b.txt", "w") as f:
        f.write("hello")
    assert s3.filesystem().ls(f"{bucket}/a", detail=False) == [f"{bucket}/a/b.txt"]
    read = [sys.executable, "-c", f"import fsspec; print(fsspec.open('s3://{bucket}/a/b.txt', 'r').open().read())"]
    assert subprocess.run(read, capture_output=True, text=True, check=True).stdout.strip() == "hello"
