"""Peak memory of scoring a large predictions file, against loading the same references without scoring.

    python bench/score_memory.py --samples 50000

Writes a JSONL of predictions as `seke_hf.evaluate.run` writes them (one record per sample and task: a raw answer,
its parse and the run's settings; a few unparseable answers and errors among them) for `--samples` references, then
measures the peak RSS of two fresh processes: one that builds the references only (the baseline) and one that also
scores the file. The difference is what scoring costs; it is printed with its ratio to the file's size.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile

from seke_hf.schema import AUS, EXPRESSIONS

ANSWERS = {
    "expression": lambda rng: json.dumps({"expression": rng.choice(EXPRESSIONS[:8]), "reason": "the brows " * 8}),
    "valence_arousal": lambda rng: json.dumps({"valence": round(rng.uniform(-1, 1), 3), "arousal": 0.25}),
    "aus": lambda rng: json.dumps({"action_units": rng.sample(AUS, 3)}),
}


def references(samples: int) -> list[dict]:
    rng = random.Random(0)
    return [
        {
            "sample_id": f"rafdb/test_{i:06d}",
            "source": ("rafdb", "affectnet", "disfa")[i % 3],
            "expression": rng.randrange(8),
            "valence": rng.uniform(-1, 1),
            "arousal": rng.uniform(-1, 1),
            "aus": {au: rng.randrange(2) for au in AUS},
        }
        for i in range(samples)
    ]


def write_predictions(path: str, samples: int) -> None:
    rng = random.Random(1)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(samples):
            for task, answer in ANSWERS.items():
                record = {
                    "sample_id": f"rafdb/test_{i:06d}", "task": task, "model": "gpt-4o-2024-08-06",
                    "answer_format": "json_schema", "prompt_version": 1, "answer": answer(rng),
                }  # fmt: skip
                if i % 97 == 0:
                    record["answer"] = "I cannot tell from this image."
                if i % 101 == 0:
                    record.update(answer=None, error="RequestFailed: server unreachable")
                f.write(json.dumps(record) + "\n")


def child(mode: str, path: str, samples: int) -> None:
    refs = references(samples)
    if mode == "score":
        from seke_hf.evaluate import score

        result = score(path, refs)
        assert result["overall"]["expression"]["answers"]["n"] == samples
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)  # kB on Linux


def peak(mode: str, path: str, samples: int) -> int:
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--file", path, "--samples", str(samples)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return int(out.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=50_000)
    parser.add_argument("--child", choices=("baseline", "score"))
    parser.add_argument("--file")
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.file, args.samples)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "predictions.jsonl")
        write_predictions(path, args.samples)
        size = os.path.getsize(path)
        baseline, scored = peak("baseline", path, args.samples), peak("score", path, args.samples)
    mb = 1 << 20
    print(f"predictions file: {size / mb:.1f} MB, {3 * args.samples} records")
    print(f"peak RSS, references only (baseline): {baseline / mb:.0f} MB")
    print(f"peak RSS, references + score(file):   {scored / mb:.0f} MB")
    print(f"scoring costs {(scored - baseline) / mb:.0f} MB = {(scored - baseline) / size:.2f} x the file's size")


if __name__ == "__main__":
    main()
