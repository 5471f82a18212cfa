"""What each noise profile of the simulated vision LLM is like, in the terms issue 14 measured a real model in.

    python bench/profiles.py [--faces 3000] [--seeds 2]

For faces of the eight FEID expressions (difficulty as the simulator derives it, no human labels stated), straight
from the noise model (no server): the accuracy of the greedy (T=0) answer and of the majority of 16 samples at
T=0.8, the share of faces whose first 4 samples are unanimous and the share of those that are wrong, and the AUROC
with which the model's own probability of its greedy answer (what its logprobs report) ranks the greedy errors. The
real expression classifier of issue 14 measured 0.826 / 0.688 accuracy, 56 % unanimous of which 26 % wrong, and
0.75 AUROC. No method can rank errors by the model's own probability on a profile where that AUROC is low.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from seke_hf.schema import EXPRESSIONS
from seke_hf.simulate.noise import PROFILES, Labels, NoiseModel, Priors
from seke_hf.simulate.truth import derived_difficulty

sys.path.insert(0, str(Path(__file__).parent))
from annotate import auroc  # bench/annotate.py: one AUROC for every benchmark


def profile_stats(profile: str, faces: int, seed: int) -> dict[str, float]:
    noise = NoiseModel.from_profile(profile, seed=seed)
    rng = np.random.default_rng(seed)
    doubt, wrong, unanimous, unanimous_wrong, majority_right = [], [], 0, 0, 0
    for i in range(faces):
        truth = EXPRESSIONS[i % 8]
        belief = noise.belief(Labels(truth, 0.0, 0.0), derived_difficulty(f"face/{i}", seed), Priors(), f"face/{i}")
        doubt.append(1.0 - belief.confidence)
        wrong.append(belief.top_expression != truth)
        votes = [noise.sample(belief, rng, 0.8).expression for _ in range(16)]
        if len(set(votes[:4])) == 1:
            unanimous += 1
            unanimous_wrong += votes[0] != truth
        majority_right += max(sorted(set(votes)), key=votes.count) == truth
    return {
        "greedy": 1.0 - sum(wrong) / faces,
        "majority": majority_right / faces,
        "unanimous": unanimous / faces,
        "unanimous wrong": unanimous_wrong / max(unanimous, 1),
        "own-probability AUROC": auroc(doubt, wrong),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=int, default=3000)
    parser.add_argument("--seeds", type=int, default=2)
    args = parser.parse_args()
    print("| profile | greedy accuracy | majority-of-16 accuracy | 4 samples unanimous | wrong among them | "
          "own-probability AUROC |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|")
    print("| issue 14's real classifier | 0.826 | 0.688 | 0.56 | 0.26 | 0.75 |")
    for profile in PROFILES:
        runs = [profile_stats(profile, args.faces, seed) for seed in range(args.seeds)]
        mean = {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}
        print(
            f"| `{profile}` | {mean['greedy']:.3f} | {mean['majority']:.3f} | {mean['unanimous']:.2f} | "
            f"{mean['unanimous wrong']:.2f} | {mean['own-probability AUROC']:.2f} |"
        )


if __name__ == "__main__":
    main()
