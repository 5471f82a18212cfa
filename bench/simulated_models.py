"""Two settings of the simulated vision LLM evaluated side by side on the demo's FEAB: the README's sample report.

    python bench/simulated_models.py [--out bench/_work/simulated_models] [--small]

Writes the demo's synthetic corpora (the full size: FEAB has 138 faces from the six corpora), builds FEAB through
the real loaders, serves its faces from two simulators, `sim-default` (the default noise model) and `sim-noisy`
(more expression and AU noise), both refusing 2 % of questions, evaluates both with `seke_hf.evaluate.run` over
HTTP, writes the report (`report.md`, `report.json`) and prints the overall rows of its three tables. Answers are
not cached between runs (`use_cache=False`): the same seed gives the same tables.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import datasets

from seke_hf import feid
from seke_hf.cli.demo import overall_rows
from seke_hf.evaluate import markdown_report, run, write_report
from seke_hf.simulate import SimulatedVLLM, truth_from_dataset
from seke_hf.synthetic.corpora import write_corpora

SETTINGS: dict[str, dict] = {
    "sim-default": {"refusal": 0.02},
    "sim-noisy": {
        "refusal": 0.02,
        "expression_error": (0.1, 0.8),
        "au_miss": (0.1, 0.6),
        "au_false": (0.05, 0.3),
    },
}
"""Name -> `SimulatedVLLM` keywords; every rate not given is the noise model's default."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench/_work/simulated_models"))
    parser.add_argument("--small", action="store_true", help="the demo's --small corpora (a quick look)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    datasets.disable_progress_bars()
    corpora = args.out / "corpora"
    write_corpora(corpora, seed=args.seed, small=args.small)
    splits = feid.build(corpora, progress=lambda line: None).datasets
    feab = splits["test"]
    truth = truth_from_dataset(datasets.concatenate_datasets([splits["train"], feab]), seed=args.seed)
    results = []
    for name, settings in SETTINGS.items():
        with SimulatedVLLM(truth=truth, seed=args.seed, **settings) as server:
            results.append(run(feab, name, server.base_url, "sim", name=name, use_cache=False, progress=False))
    paths = write_report(results, args.out / "report", plots=False)
    print(f"FEAB: {feab.num_rows} faces; report: {paths['markdown']}\n")
    print(overall_rows(markdown_report(results)))


if __name__ == "__main__":
    main()
