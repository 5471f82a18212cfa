"""RAF-DB (basic part): `EmoLabel/list_patition_label.txt` plus aligned or original images.

Format (docs/corpora.md §2, from the official README v1.1): one `<original image name> <code>` line per image, no
header, codes 1..7; the split is the name prefix (`train_` / `test_`); aligned images insert `_aligned` before `.jpg`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from seke_hf.schema import empty_row, expression_index

from .corpus_builder import CorpusBuilder, CorpusConfig, Skips, logger
from .raw_files import iter_files, local_path, read_lines, text_encoding

# RAF-DB basic codes (1-based) -> canonical expression (docs/corpora.md §2.2).
RAFDB_EXPRESSIONS = {
    1: "surprise", 2: "fear", 3: "disgust", 4: "happiness", 5: "sadness", 6: "anger", 7: "neutral",
}  # fmt: skip
LABEL_FILES = ("EmoLabel/list_patition_label.txt", "EmoLabel/list_partition_label.txt")  # the typo is on disk


@dataclass
class RafdbConfig(CorpusConfig):
    image_folder: str = "aligned"


class Rafdb(CorpusBuilder):
    SOURCE = "rafdb"
    BUILDER_CONFIG_CLASS = RafdbConfig
    BUILDER_CONFIGS: ClassVar[list[RafdbConfig]] = [
        RafdbConfig(name="aligned", image_folder="aligned", description="100x100 aligned faces (Image/aligned)."),
        RafdbConfig(name="original", image_folder="original", description="Original web images (Image/original)."),
    ]
    DEFAULT_CONFIG_NAME = "aligned"
    MARKERS = LABEL_FILES
    FINGERPRINT = ("EmoLabel/*.txt", "Image/aligned", "Image/original")
    LAYOUT = """\
  <RAF-DB>/basic/              (data_dir may be this folder or one above it)
    EmoLabel/list_patition_label.txt       lines "train_00001.jpg 5", codes 1..7
    Image/aligned/train_00001_aligned.jpg  (config "aligned", unzip Image/aligned.zip)
    Image/original/train_00001.jpg         (config "original", unzip Image/original.zip)"""
    DESCRIPTION = "RAF-DB basic: 15,339 in-the-wild faces with one of seven expressions (single-label subset)."
    HOMEPAGE = "http://whdeng.cn/RAF/model1.html"
    LICENSE = "RAF-DB academic licence: non-commercial research only, no redistribution."
    CITATION = """@inproceedings{li2017reliable,
  title={Reliable Crowdsourcing and Deep Locality-Preserving Learning for Expression Recognition in the Wild},
  author={Li, Shan and Deng, Weihong and Du, JunPing},
  booktitle={CVPR}, year={2017}}"""

    def split_kwargs(self, root: Path) -> dict[str, dict[str, Any]]:
        label_file = next(root / name for name in LABEL_FILES if (root / name).is_file())
        lines = read_lines(label_file)
        if not lines:
            raise self.layout_error(f"{label_file} is empty.")
        image_dir = root / "Image" / self.config.image_folder
        if not image_dir.is_dir():
            hint = " (unzip it first)" if image_dir.with_suffix(".zip").exists() else ""
            raise self.layout_error(f"image folder {image_dir} is missing{hint}.")
        if next(iter_files(image_dir), None) is None:
            raise self.layout_error(f"image folder {image_dir} holds no images.")
        splits: dict[str, list[str]] = {"train": [], "test": []}
        unknown = []
        for line in lines:
            prefix = line.split("_", 1)[0]
            if prefix in splits:
                splits[prefix].append(line)
            else:
                unknown.append(line)
        if unknown and not any(splits.values()):
            raise self.layout_error(
                f"none of the {len(lines)} lines of {label_file} names a train_ or test_ image (decoded as "
                f"{text_encoding(label_file)}; first: {lines[0][:80]!r}); is it the RAF-DB label file, unedited?"
            )
        if unknown:  # the split is the name prefix: without one, a line belongs to no split
            logger.warning("rafdb: skipped %d label line(s) without a train_/test_ name: %s", len(unknown), unknown[:3])
        return {
            split: {"lines": lines, "image_dir": str(image_dir), "label_file": str(label_file)}
            for split, lines in splits.items()
            if lines
        }

    def label_rows(
        self, root: Path, skips: Skips, lines: list[str], image_dir: str, label_file: str
    ) -> Iterator[tuple[dict, str]]:
        present = {path.name for path in iter_files(local_path(image_dir))}
        seen: set[str] = set()
        for line in skips.label_lines(label_file, lines):
            fields = line.split()
            if len(fields) != 2 or not fields[1].isdigit() or int(fields[1]) not in RAFDB_EXPRESSIONS:
                skips.add("label line not '<image> <code 1..7>'", line, label_file)
                continue
            name, code = fields[0], int(fields[1])
            stem = Path(name).stem
            if stem in seen:
                skips.add("duplicate label line", line)
                continue
            seen.add(stem)
            file_name = f"{stem}_aligned.jpg" if self.config.image_folder == "aligned" else name
            path = local_path(image_dir) / file_name
            if file_name not in present:
                skips.add("missing image", path)
                continue
            row = empty_row(f"rafdb/{stem}", self.SOURCE)
            row["expression"] = expression_index(RAFDB_EXPRESSIONS[code])
            yield row, str(path)
