"""`sae-unlearn aggregate`: finished comparisons of different draws combined into what `compare --seeds N` writes
(compare_seeds.json/.md and the trade-off plot with intervals).

Why: on 2 CPU cores one SmolLM2 comparison of every method takes most of an hour, so its draws are run on
different machines, days or sessions; their numbers are only worth an interval if they came from the same
configuration, so anything but the draw differing is refused, saying which keys differ.
"""

from __future__ import annotations

from pathlib import Path

from sae_unlearn.config import DRAW_KEYS, RUN_PLACE_KEYS, config_differences
from sae_unlearn.errors import UserInputError
from sae_unlearn.io_utils import prepare_output_dir, read_comparison
from sae_unlearn.report.intervals import seed_summary, write_seed_summary

IGNORED_KEYS = DRAW_KEYS + RUN_PLACE_KEYS


def aggregate(runs: list[Path], out: Path, overwrite: bool = False) -> dict:
    """Mean, sd and 95 % bootstrap interval of every metric over ``runs`` (one finished comparison per draw),
    written to ``out``; refused before anything is written when the runs are not draws of one configuration."""
    if len(runs) < 2:
        raise UserInputError(f"aggregate needs at least 2 comparisons (one per draw), got {len(runs)}.")
    read = []
    for path in runs:
        file, data, config = read_comparison(path, "aggregate:")
        if config is None:
            raise UserInputError(f"aggregate: {file.parent} holds no config.yaml beside compare.json; was it finished?")
        read.append((file, data, config))
    first_file, _, first_cfg = read[0]
    draws = [(cfg.get("seed"), (cfg.get("world") or {}).get("seed")) for _, _, cfg in read]
    if len(set(draws)) < len(draws):
        raise UserInputError(f"the same draw twice (seed, world seed: {draws}): each comparison must be another draw.")
    for file, _, cfg in read[1:]:
        differ = config_differences(first_cfg, cfg, IGNORED_KEYS)
        if differ:
            raise UserInputError(
                f"{file} and {first_file} differ in more than the draw ({'; '.join(differ[:6])}): an interval over "
                "them would mix configurations. Run the draws with one configuration (e.g. `compare "
                "--settings-from DEV`)."
            )
    methods = [set(data["methods"]) for _, data, _ in read]
    if any(m != methods[0] for m in methods):
        raise UserInputError(
            f"the comparisons ran different methods ({[sorted(m) for m in methods]}); "
            "run the same --methods in every draw."
        )
    out = prepare_output_dir(out, overwrite)
    summary = seed_summary([data["methods"] for _, data, _ in read])
    where = ", ".join(f"`{file.parent}`" for file, _, _ in read)
    seeds = [seed for seed, _ in draws]
    return write_seed_summary(out, seeds, summary, where, {"runs": [str(file) for file, _, _ in read]})
