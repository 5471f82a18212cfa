"""The base of the six corpus builders: a corpus is declared, not re-implemented.

A builder states its `SOURCE`, the `MARKERS` that identify its root folder, the `LAYOUT` it expects (quoted in
errors), the `FINGERPRINT` files whose change must rebuild the cache, its splits (`split_kwargs`), how one split's
labels are read (`label_rows`: each row with a *locator* of its image, no pixel read) and how located images are
read (`read_images`). Features, root finding, clear layout errors, skip accounting and writing live here once, as
`folder_based_builder` does for `imagefolder`.

Labels and images are two passes so that FEID/FEAB can select on the labels of a whole corpus and then read the
images of the selected rows only (`label_table`, `seke_hf.corpus_labels`); loading a corpus itself runs both passes
over every row, so both paths yield the same rows with the same bytes.

Rows are yielded already in Arrow storage form (images as `{"bytes", "path"}`, labels as ints), so they are written
in record batches with `pa.Table.from_pylist` instead of through `datasets`' per-row `Features.encode_example`,
which cost most of the conversion time on the 45-leaf unified schema. Paths handed to a builder are plain
`pathlib.Path`s (`raw_files.local_path`), not the slower streaming paths `datasets` patches builder modules with.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import datasets
import pyarrow as pa

from seke_hf.schema import FEATURES

from .raw_files import (
    CorpusLayoutError,
    OversizedImage,
    UnreadableImage,
    find_root,
    image_payload,
    local_path,
    stat_fingerprint,
    text_encoding,
)
from .remote_files import RemotePath

logger = logging.getLogger("seke_hf.loading")


@dataclass
class CorpusConfig(datasets.BuilderConfig):
    """Config of every corpus builder. `raw_fingerprint` is set by seke_hf so the cache follows the raw files."""

    raw_fingerprint: str | None = None


class Skips:
    """Counts rows skipped for a reason (missing image, unreadable image, ...) and warns once per split.

    Bad input is skipped with a warning and counted, never turned into a wrong label. A label file none of whose
    lines could be read is not bad input but a wrong file (another encoding, another corpus' format): lines read
    through `label_lines` and skipped with their `label_file` are counted per file, and `unreadable_label_files`
    names such a file so that the build stops instead of dropping its rows one warning at a time.
    """

    def __init__(self, source: str, split: str, examples: int = 3):
        self.source, self.split, self.examples = source, split, examples
        self.counts: Counter[str] = Counter()
        self.samples: dict[str, list[str]] = {}
        self.lines_read: Counter[str] = Counter()
        self.lines_skipped: Counter[str] = Counter()
        self.first_skipped: dict[str, str] = {}

    def add(self, reason: str, item: str | Path, label_file: str | Path | None = None) -> None:
        """Count a skipped row; `label_file` when the row is a line of that file that could not be read."""
        self.counts[reason] += 1
        samples = self.samples.setdefault(reason, [])
        if len(samples) < self.examples:
            samples.append(str(item))
        if label_file is not None:
            self.lines_skipped[str(label_file)] += 1
            self.first_skipped.setdefault(str(label_file), str(item))

    def label_lines(self, label_file: str | Path, lines: Iterable[str]) -> Iterator[str]:
        """`lines` of `label_file` (after any header), counted for `unreadable_label_files`; blank lines pass
        uncounted."""
        for line in lines:
            if line.strip():
                self.lines_read[str(label_file)] += 1
            yield line

    def unreadable_label_files(self) -> list[str]:
        """A sentence for each label file of which every line read was skipped."""
        return [
            f"none of the {n} lines of {path} could be read (decoded as {text_encoding(path)}; first: "
            f"{self.first_skipped[path][:80]!r}); is it the corpus' own label file, unedited?"
            for path, n in self.lines_read.items()
            if n and self.lines_skipped[path] >= n
        ]

    def image(self, path: Path) -> dict[str, Any] | None:
        """The image's bytes for a row, or None with the skip counted as a missing, oversized or unreadable image."""
        try:
            return image_payload(path)
        except FileNotFoundError:
            self.add("missing image", path)
        except OversizedImage:
            self.add("oversized image (over PIL.Image.MAX_IMAGE_PIXELS)", path)
        except UnreadableImage:
            self.add("unreadable image", path)
        return None

    def report(self) -> None:
        if not self.counts:
            return
        parts = [f"{n} {reason} (e.g. {', '.join(self.samples[reason])})" for reason, n in self.counts.most_common()]
        logger.warning("%s/%s: skipped %d rows: %s", self.source, self.split, self.counts.total(), "; ".join(parts))


LABEL_FEATURES = datasets.Features({name: feature for name, feature in FEATURES.items() if name != "image"})
"""What the label pass yields of a row: every column of the unified schema but the image."""
LABEL_BATCH_ROWS = 10_000
"""Label rows converted to Arrow at a time, so a label pass over Aff-Wild2's ~3M frames keeps memory flat."""


def label_table_schema() -> pa.Schema:
    """The label pass's columns: the unified schema without `image`, plus the corpus `split` and the `locator`."""
    schema = LABEL_FEATURES.arrow_schema
    return schema.append(pa.field("split", pa.string())).append(pa.field("locator", pa.string()))


class CorpusBuilder(datasets.ArrowBasedBuilder):
    """Shared machinery; subclasses declare the corpus."""

    BUILDER_CONFIG_CLASS = CorpusConfig
    BATCH_ROWS: ClassVar[int] = 64
    """Rows per written record batch: large enough to amortise Arrow conversion, small enough for video frames."""
    IMAGE_BATCH_ROWS: ClassVar[int] = 256
    """Rows whose images `generate_rows` reads in one `read_images` call (a video is reopened once per batch)."""

    SOURCE: ClassVar[str]
    """The `source` column value and the sample_id prefix."""
    MARKERS: ClassVar[tuple[str, ...]]
    """Relative paths (globs allowed) any one of which identifies the corpus root below `data_dir`."""
    LAYOUT: ClassVar[str]
    """The expected folder tree, quoted in layout errors."""
    FINGERPRINT: ClassVar[tuple[str, ...]] = ()
    """Relative paths (globs allowed) of the label files and image folders whose change rebuilds the cache."""
    DESCRIPTION: ClassVar[str] = ""
    HOMEPAGE: ClassVar[str] = ""
    CITATION: ClassVar[str] = ""
    LICENSE: ClassVar[str] = ""

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description=self.DESCRIPTION,
            features=FEATURES,
            homepage=self.HOMEPAGE,
            citation=self.CITATION,
            license=self.LICENSE,
        )

    @classmethod
    def locate(cls, data_dir: str | Path | None) -> Path:
        """The corpus root at or below `data_dir`; a clear error naming what was expected otherwise."""
        if data_dir is None:
            raise CorpusLayoutError(f"{cls.SOURCE}: pass data_dir=<folder of your licensed copy>.\n{cls.LAYOUT}")
        data_dir = local_path(data_dir).expanduser()
        if isinstance(data_dir, RemotePath):
            data_dir.forget_listings()  # a new load sees the store as it is now
        if not data_dir.is_dir():
            raise CorpusLayoutError(f"{cls.SOURCE}: data_dir {data_dir} is not a folder.\n{cls.LAYOUT}")
        root = find_root(data_dir, cls.MARKERS)
        if root is None:
            raise CorpusLayoutError(
                f"{cls.SOURCE}: found none of {', '.join(cls.MARKERS)} in {data_dir} or the folders below it.\n"
                f"Expected layout:\n{cls.LAYOUT}"
            )
        return root

    @classmethod
    def raw_fingerprint(cls, data_dir: str | Path) -> str:
        return stat_fingerprint(cls.locate(data_dir), cls.FINGERPRINT)

    @classmethod
    def layout_error(cls, message: str) -> CorpusLayoutError:
        return CorpusLayoutError(f"{cls.SOURCE}: {message}\nExpected layout:\n{cls.LAYOUT}")

    # -- what a corpus implements -------------------------------------------------------------------------------

    def split_kwargs(self, root: Path) -> dict[str, dict[str, Any]]:
        """Split name -> keyword arguments of `label_rows` for that split (list values shard with num_proc)."""
        raise NotImplementedError

    def label_rows(self, root: Path, skips: Skips, **kwargs: Any) -> Iterator[tuple[dict[str, Any], Any]]:
        """(row without image, locator of its image) per row of one split, reading label files and folder listings
        only. A locator is JSON data that `read_images` understands (by default the image file's path)."""
        raise NotImplementedError

    def read_images(self, locators: Sequence[Any], skips: Skips) -> Iterator[dict[str, Any] | None]:
        """The `Image()` payload of each locator, in order; None where it is missing or unreadable (counted)."""
        for locator in locators:
            yield skips.image(local_path(locator))

    def generate_rows(self, root: Path, skips: Skips, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Rows of one split in the unified schema: its labels, with the images read a batch at a time."""
        batch: list[tuple[dict[str, Any], Any]] = []
        for item in self.label_rows(root, skips, **kwargs):
            batch.append(item)
            if len(batch) == self.IMAGE_BATCH_ROWS:
                yield from self._with_images(batch, skips)
                batch = []
        yield from self._with_images(batch, skips)

    def _with_images(self, batch: list[tuple[dict[str, Any], Any]], skips: Skips) -> Iterator[dict[str, Any]]:
        images = self.read_images([locator for _, locator in batch], skips)
        for (row, _), image in zip(batch, images, strict=True):
            if image is not None:
                row["image"] = image
                yield row

    # -- the label pass --------------------------------------------------------------------------------------------

    def label_table(self) -> pa.Table:
        """Every row's labels, its corpus split and its image locator (JSON), without reading an image.

        Rows are in the order the corpus yields them; columns are `LABEL_FEATURES` plus `split` and `locator`.
        """
        root = local_path(self.locate(self.config.data_dir))
        schema = label_table_schema()
        tables = []
        for split, kwargs in self.split_kwargs(root).items():
            skips = Skips(self.SOURCE, split)
            rows: list[dict[str, Any]] = []
            for row, locator in self.label_rows(root, skips, **kwargs):
                del row["image"]
                row["split"], row["locator"] = split, json.dumps(locator)
                rows.append(row)
                if len(rows) == LABEL_BATCH_ROWS:
                    tables.append(pa.Table.from_pylist(rows, schema=schema))
                    rows = []
            tables.append(pa.Table.from_pylist(rows, schema=schema))
            skips.report()
            if unreadable := skips.unreadable_label_files():
                raise self.layout_error("\n".join(unreadable))
        return pa.concat_tables(tables) if tables else schema.empty_table()

    # -- datasets plumbing ---------------------------------------------------------------------------------------

    def _split_generators(self, dl_manager: Any) -> list[datasets.SplitGenerator]:
        root = self.locate(self.config.data_dir)
        return [
            datasets.SplitGenerator(name=split, gen_kwargs={"root": str(root), "split": split, **kwargs})
            for split, kwargs in self.split_kwargs(root).items()
        ]

    def _generate_tables(self, root: str, split: str, **kwargs: Any) -> Iterator[tuple[int, pa.Table]]:
        skips = Skips(self.SOURCE, split)
        schema = self.info.features.arrow_schema
        batch: list[dict[str, Any]] = []
        written = 0
        for row in self.generate_rows(local_path(root), skips, **kwargs):
            batch.append(row)
            if len(batch) == self.BATCH_ROWS:
                yield written, pa.Table.from_pylist(batch, schema=schema)
                written, batch = written + len(batch), []
        if batch:
            yield written, pa.Table.from_pylist(batch, schema=schema)
            written += len(batch)
        skips.report()
        if unreadable := skips.unreadable_label_files():
            raise self.layout_error("\n".join(unreadable))
        if not written and skips.counts:
            raise self.layout_error(
                f"no row of split {split!r} could be read: all {skips.counts.total()} were skipped."
            )
