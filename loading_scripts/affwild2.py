"""Aff-Wild2 as shipped for the ABAW challenges (docs/corpora.md §6): `cropped_aligned/<video>/<00001>.jpg` frames and
one annotation file per video and task (VA, EXPR, AU), merged into one row per frame.

Every edition's layout is read: the task folders are found by name (`VA_Set` in ABAW1/2, `VA_Estimation_Challenge`
later, `EXPR_*_Challenge` whatever ABAW6 copies call it) and the label columns by each file's header line (7 or 8
expressions, 8 or 12 AUs). Line k after the header is frame `{k:05d}.jpg`. Videos are read one at a time, line by line,
so memory stays flat over the corpus's ~3M frames, and the video list is what `num_proc` splits.

Splits: a video can be in a task's validation set and in another task's training set (docs/corpora.md §6.3). With the
default `split_rule="any_validation"` a video in any task's validation set goes to `validation` with all its labels,
as the ABAW3 multi-task builder does (`get_val_videos_set`): no frame is ever in both splits and nothing trained on
was held out by an official task split. `split_rule="per_task"` instead keys the split by (task, video): a frame's
labels go to the split of the file they come from, so such a frame appears once per split with different labels.
"""

from __future__ import annotations

import fnmatch
import functools
import itertools
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from seke_hf.schema import au_name, empty_row, expression_index, is_known_au

from .corpus_builder import CorpusBuilder, CorpusConfig, Skips
from .raw_files import file_names, iter_dirs, iter_files, local_path, open_text

CROPS = "cropped_aligned"
"""Crop folder; ABAW6 copies may add more beside it (`cropped_aligned_new_50_vids`, docs/corpora.md §6.2 [R])."""
TASK_FOLDERS = {
    "VA": ("VA_Set", "VA_*_Challenge"),
    "EXPR": ("EXPR_Set", "EXPR_*_Challenge"),  # ABAW6: EXPR_Recognition_Challenge, some copies _Classification_
    "AU": ("AU_Set", "AU_*_Challenge"),
}
"""Task folder names over the editions (docs/corpora.md §6.2); `MTL_Challenge` repeats the same frames, not read."""
SPLIT_FOLDERS = {"train_set": "train", "training_set": "train", "validation_set": "validation"}
"""`Training_Set` in ABAW1, `Train_Set` later; test labels were never released."""
VA_INVALID = -5.0
LABEL_INVALID = -1
"""Sentinels of an unlabelled frame: -5 for valence/arousal, -1 for expression and AUs (docs/corpora.md §6.1)."""
SPLIT_RULES = ("any_validation", "per_task")
ANNOTATION_SEARCH_DEPTH = 4


@dataclass
class Affwild2Config(CorpusConfig):
    frame_stride: int = 1
    """Keep every n-th frame (frames 1, 1+n, ...), for a subsample of the ~3M."""
    split_rule: str = "any_validation"
    """How a video whose split differs between tasks is split: "any_validation" or "per_task" (module docstring)."""
    annotations: str | None = None
    """The annotation folder (relative to the corpus root) when a copy holds several editions."""


class Affwild2(CorpusBuilder):
    SOURCE = "affwild2"
    BUILDER_CONFIG_CLASS = Affwild2Config
    BUILDER_CONFIGS: ClassVar[list[Affwild2Config]] = [
        Affwild2Config(name="cropped_aligned", description="Organisers' aligned face crops.")
    ]
    DEFAULT_CONFIG_NAME = "cropped_aligned"
    MARKERS = (CROPS,)
    FINGERPRINT = (
        "cropped_aligned*", "annotations/*/*_Set", "*ABAW*/*_Challenge/*_Set", "*ABAW*/*/*_Challenge/*_Set",
    )  # fmt: skip
    LAYOUT = """\
  <Aff-Wild2>/                  (data_dir may be this folder or one above it)
    cropped_aligned/2-30-640x360/00001.jpg ...            (also cropped_aligned_new_50_vids/ if you have it)
    and the annotations of one ABAW edition, e.g.
    annotations/{VA_Set,EXPR_Set,AU_Set}/{Train_Set,Validation_Set}/2-30-640x360.txt                  (ABAW2)
    3rd ABAW Annotations/Third ABAW Annotations/{VA_Estimation_Challenge,EXPR_Classification_Challenge,
        AU_Detection_Challenge}/{Train_Set,Validation_Set}/<video>.txt                               (ABAW3)
    5th_ABAW_Annotations/... or 6th ABAW Annotations/{...,EXPR_Recognition_Challenge,...}/...      (ABAW5, 6)
  each file: a header line ("valence,arousal" / "Neutral,...,Surprise[,Other]" / "AU1,AU2,..."), then one line
  per frame; -5 (VA) and -1 (EXPR, AU) mark unlabelled frames."""
    DESCRIPTION = "Aff-Wild2: in-the-wild videos with per-frame valence/arousal, expression and 12 AUs (ABAW)."
    HOMEPAGE = "https://ibug.doc.ic.ac.uk/resources/aff-wild2/"
    LICENSE = "Aff-Wild2 academic licence: non-commercial research only, no redistribution."
    CITATION = """@inproceedings{kollias2019expression,
  title={Expression, Affect, Action Unit Recognition: Aff-Wild2, Multi-Task Learning and ArcFace},
  author={Kollias, Dimitrios and Zafeiriou, Stefanos}, booktitle={BMVC}, year={2019}}"""

    def split_kwargs(self, root: Path) -> dict[str, dict[str, Any]]:
        if self.config.split_rule not in SPLIT_RULES:
            raise ValueError(f"affwild2: split_rule must be one of {SPLIT_RULES}, not {self.config.split_rule!r}")
        if self.config.frame_stride < 1:
            raise ValueError(f"affwild2: frame_stride must be >= 1, not {self.config.frame_stride}")
        files: dict[str, dict[str, tuple[str, str]]] = {}  # video -> task -> (split, annotation file)
        for task, folder in self._task_folders(root).items():
            for split_dir in iter_dirs(folder):
                split = SPLIT_FOLDERS.get(split_dir.name.lower())
                for path in iter_files(split_dir, [".txt"]) if split else ():
                    files.setdefault(path.stem, {})[task] = (split, str(path))
        crop_roots = [d for d in iter_dirs(root) if d.name.startswith(CROPS)]
        units: dict[str, list[tuple[str, str | None, dict[str, str]]]] = {"train": [], "validation": []}
        for video, by_task in sorted(files.items()):
            crops = next((str(d / video) for d in crop_roots if (d / video).is_dir()), None)
            for split, tasks in split_of(by_task, self.config.split_rule).items():
                units[split].append((video, crops, {task: by_task[task][1] for task in tasks}))
        if not any(units.values()):
            raise self.layout_error(f"no <video>.txt in the Train_Set/Validation_Set folders under {root}.")
        return {split: {"videos": videos} for split, videos in units.items() if videos}

    def label_rows(self, root: Path, skips: Skips, videos: list) -> Iterator[tuple[dict[str, Any], str]]:
        for video, crops, files in videos:
            yield from self._video_rows(root, skips, video, crops, files)

    def _task_folders(self, root: Path) -> dict[str, Path]:
        """The task folders of the one annotation set under `root` (or under `annotations=`)."""
        base = root / self.config.annotations if self.config.annotations else root
        sets = find_annotation_sets(base)
        if not sets:
            raise self.layout_error(f"no VA/EXPR/AU task folder (VA_Set, VA_Estimation_Challenge, ...) in {base}.")
        if len(sets) > 1:
            found = ", ".join(repr(str(p.relative_to(root))) for p in sorted(sets))
            raise self.layout_error(f"{root} holds several annotation sets ({found}); choose one with annotations=...")
        return next(iter(sets.values()))

    def _video_rows(
        self, root: Path, skips: Skips, video: str, crops: str | None, files: dict[str, str]
    ) -> Iterator[tuple[dict[str, Any], str]]:
        """Frames of one video that carry a valid label in any task, streamed from its annotation files."""
        with ExitStack() as stack:
            readers: list[tuple[str, str, Iterator[str], Callable[[str], Any]]] = []
            for task, path in sorted(files.items()):
                lines = stack.enter_context(open_text(path))
                parse = label_parser(task, next(lines, ""))
                if parse is None:
                    skips.add(f"{task} file without a {task} header line (file not read)", path)
                    continue
                readers.append((task, path, skips.label_lines(path, lines), parse))
            names = set(file_names(crops)) if crops else set()
            stride = self.config.frame_stride
            for k, lines in enumerate(itertools.zip_longest(*(r[2] for r in readers)), start=1):
                if (k - 1) % stride:
                    continue
                labels = {}
                for (task, path, _, parse), line in zip(readers, lines, strict=True):
                    try:
                        value = parse(line) if line is not None else None
                    except ValueError:
                        skips.add(f"malformed {task} line (read as unlabelled)", f"{path}:{k + 1}", path)
                        continue
                    if value is not None:
                        labels[task] = value
                if not labels:
                    continue
                name = f"{k:05d}.jpg"
                crop = local_path(crops or root / CROPS / video, name)
                if name not in names:
                    skips.add("labelled frame without a crop image", crop)
                    continue
                row = empty_row(f"affwild2/{video}/{k:05d}", self.SOURCE, subject=video, frame=k - 1)
                if "VA" in labels:
                    row["valence"], row["arousal"] = labels["VA"]
                if "EXPR" in labels:
                    row["expression"] = labels["EXPR"]
                if "AU" in labels:
                    row["aus"].update(labels["AU"])
                yield row, str(crop)


def split_of(by_task: dict[str, tuple[str, str]], rule: str) -> dict[str, list[str]]:
    """Split -> the tasks whose labels of this video go there, under `rule` (see the module docstring)."""
    if rule == "per_task":
        out: dict[str, list[str]] = {}
        for task, (split, _) in sorted(by_task.items()):
            out.setdefault(split, []).append(task)
        return out
    held_out = any(split == "validation" for split, _ in by_task.values())
    return {"validation" if held_out else "train": sorted(by_task)}


def find_annotation_sets(base: Path, depth: int = ANNOTATION_SEARCH_DEPTH) -> dict[Path, dict[str, Path]]:
    """Folders below `base` holding task folders -> {task: folder}; crop folders (millions of files) are not walked."""
    sets: dict[Path, dict[str, Path]] = {}
    queue = deque([(base, 0)])
    while queue:
        folder, level = queue.popleft()
        for child in iter_dirs(folder):
            task = task_of(child.name)
            if task is not None:
                sets.setdefault(folder, {})[task] = child
            elif level + 1 < depth and not child.name.startswith(CROPS):
                queue.append((child, level + 1))
    return sets


def task_of(folder_name: str) -> str | None:
    """ "VA_Set" / "EXPR_Recognition_Challenge" / ... -> the task, None for any other folder."""
    return next((t for t, names in TASK_FOLDERS.items() if any(fnmatch.fnmatch(folder_name, n) for n in names)), None)


# -- one line of each task ---------------------------------------------------------------------------------------


def header_tokens(line: str) -> list[str]:
    """`"Neutral,...,Other, \\n"` -> names: some tools write a trailing comma and space (docs/corpora.md §6.4)."""
    return [token.strip() for token in line.strip().split(",") if token.strip()]


def label_parser(task: str, header: str) -> Callable[[str], Any] | None:
    """The line parser a task file's header calls for, or None if the header is not that task's."""
    names = header_tokens(header)
    if not names:
        return None
    if task == "VA":
        return parse_va if [n.lower() for n in names] == ["valence", "arousal"] else None
    try:
        if task == "EXPR":
            return functools.partial(parse_expression, classes=tuple(expression_index(n.lower()) for n in names))
        if task == "AU":
            aus = tuple(au_name(n) for n in names)
            return functools.partial(parse_aus, aus=aus) if aus and all(map(is_known_au, aus)) else None
    except ValueError:
        return None
    raise ValueError(f"unknown Aff-Wild2 task {task!r}")


def parse_va(line: str) -> tuple[float, float] | None:
    """`v,a` -> the pair, None if either is -5 (or outside [-1, 1]); ValueError if not two numbers."""
    fields = _fields(line)
    if not fields:
        return None
    if len(fields) != 2:
        raise ValueError(line)
    valence, arousal = float(fields[0]), float(fields[1])
    if VA_INVALID in (valence, arousal) or not (-1 <= valence <= 1 and -1 <= arousal <= 1):
        return None
    return valence, arousal


def parse_expression(line: str, classes: tuple[int, ...]) -> int | None:
    """A code of the header's classes -> canonical expression index; None for -1; ValueError otherwise."""
    fields = _fields(line)
    if not fields:
        return None
    code = _code(fields[0]) if len(fields) == 1 else None
    if code == LABEL_INVALID:
        return None
    if code is None or not 0 <= code < len(classes):
        raise ValueError(line)
    return classes[code]


def parse_aus(line: str, aus: tuple[str, ...]) -> dict[str, int] | None:
    """0/1 per header AU -> {AU: 0/1}; None if any is -1 (public readers drop such rows); ValueError otherwise."""
    fields = _fields(line)
    if not fields:
        return None
    codes = [_code(field) for field in fields]
    if len(codes) != len(aus):
        raise ValueError(line)
    if LABEL_INVALID in codes:
        return None
    if any(code not in (0, 1) for code in codes):
        raise ValueError(line)
    return dict(zip(aus, codes, strict=True))  # type: ignore[arg-type]


def _fields(line: str) -> list[str]:
    return [field.strip() for field in line.strip().rstrip(",").split(",")] if line.strip() else []


def _code(text: str) -> int | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return int(number) if number.is_integer() else None
