"""The thesis's embedding arithmetic on the embedded model, scored by the world's analyzer.

Three attribute swaps, each a prompt minus one matched text plus another, and one single text ingredient:

    colour      "a red circle on a white background" - "red" + "blue"            -> a blue circle on white
    shape       "a yellow square on a black background" - "square" + "circle"    -> a yellow circle on black
    background  "a red square on a white background" - "white background" + "black background"
                                                                                  -> a red square on black
    single      no prompt, "a green square on a black background" at weight 1     -> that picture

The swaps also run in a matched form, where the subtracted text is the phrase as the prompt says it and the
added one the same phrase edited ("a red circle" -> "a blue circle", "a yellow square" -> "a yellow circle",
"a white background" -> "a black background"): a difference of matched texts, and where the phrase opens the
prompt its tokens line up with the prompt's own.

A seed counts when the analyzer reads the target's colour and shape on its largest object and the target's
background. Each variant (where the texts are mixed, renormalisation, decoder candidates) runs every case
over the same seeds; the plain target prompts run beside them as the ceiling. Results are appended to a JSON
file as each variant finishes, so a long run can be resumed (``--out``) and reprinted (``--table``).

Run: .venv/bin/python bench/mixing.py [--samples 32] [--variants text image] [--out /tmp/mixing.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.engine import GenerationRequest, MixIngredient
from model.engine.engine_local import LocalEngine
from model.world import analyze

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "model" / "weights" / "embedded"


@dataclass(frozen=True)
class Case:
    """A mix and the picture it should draw: (colour, shape, background) as the analyzer names them."""

    prompt: str
    mix: tuple[MixIngredient, ...]
    target: tuple[str, str, str]
    matched: tuple[MixIngredient, ...] | None = None  # the same edit as matched phrases of the prompt

    @property
    def target_prompt(self) -> str:
        colour, shape, background = self.target
        return f"a {colour} {shape} on a {background} background"


CASES = {
    "colour": Case(
        "a red circle on a white background",
        (MixIngredient(-1.0, text="red"), MixIngredient(1.0, text="blue")),
        ("blue", "circle", "white"),
        (MixIngredient(-1.0, text="a red circle"), MixIngredient(1.0, text="a blue circle")),
    ),
    "shape": Case(
        "a yellow square on a black background",
        (MixIngredient(-1.0, text="square"), MixIngredient(1.0, text="circle")),
        ("yellow", "circle", "black"),
        (MixIngredient(-1.0, text="a yellow square"), MixIngredient(1.0, text="a yellow circle")),
    ),
    "background": Case(
        "a red square on a white background",
        (MixIngredient(-1.0, text="white background"), MixIngredient(1.0, text="black background")),
        ("red", "square", "black"),
        (MixIngredient(-1.0, text="a white background"), MixIngredient(1.0, text="a black background")),
    ),
    "single": Case(
        "", (MixIngredient(1.0, text="a green square on a black background"),), ("green", "square", "black")
    ),
}
VARIANTS: dict[str, dict[str, object]] = {
    "text": {"mix_space": "text"},
    "text, not renormalised": {"mix_space": "text", "renormalize_mix": False},
    "text, 1 decoder candidate": {"mix_space": "text", "candidates": 1},
    "text, not renormalised, 1 decoder candidate": {
        "mix_space": "text",
        "renormalize_mix": False,
        "candidates": 1,
    },
    "text, matched phrases": {"mix_space": "text", "matched": True},
    "image": {"mix_space": "image"},
    "image, not renormalised": {"mix_space": "image", "renormalize_mix": False},
    "plain target prompt": {},
    "plain target prompt, 1 decoder candidate": {"candidates": 1},
}
"""Request fields per variant; absent ones take the model's defaults. `matched` mixes each swap's matched
phrases instead (the single ingredient has none). The plain variants ask for each case's target directly (the
ceiling the arithmetic can reach)."""


def score(engine: LocalEngine, case: Case, fields: dict[str, object], seeds: range) -> float | None:
    """The share of seeds whose picture the analyzer reads as the case's target (None: not in this variant)."""
    fields = dict(fields)
    matched = fields.pop("matched", False)
    if fields.get("mix_space") is None:
        base = GenerationRequest(prompt=case.target_prompt)
    elif matched:
        if case.matched is None:
            return None
        base = GenerationRequest(prompt=case.prompt, mix=case.matched)
    else:
        base = GenerationRequest(prompt=case.prompt, mix=case.mix)
    base = dataclasses.replace(base, **fields)  # type: ignore[arg-type]
    handles = [engine.submit(dataclasses.replace(base, seed=seed, user=f"s{seed % 8}")) for seed in seeds]
    hits = 0
    for handle in handles:
        analysis = analyze(handle.result().images[0])
        first = analysis.objects[0] if analysis.objects else None
        seen = (first.colour, first.shape, analysis.background) if first else None
        hits += seen == case.target
    return hits / len(seeds)


def table(results: dict[str, dict[str, float | None]], samples: int) -> str:
    """The results as a markdown table, one row per variant, one column per case."""
    lines = [
        f"| variant ({samples} seeds) | " + " | ".join(CASES) + " |",
        "|---" * (len(CASES) + 1) + "|",
    ]
    for variant, rates in results.items():
        cells = ("-" if rates[name] is None else f"{rates[name]:.0%}" for name in CASES)
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--device")
    parser.add_argument("--samples", type=int, default=32, help="seeds 0..N-1 for every case")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument(
        "--out", type=Path, help="JSON file the results are kept in; variants there are skipped"
    )
    parser.add_argument("--table", action="store_true", help="only print the table kept in --out")
    args = parser.parse_args()
    kept: dict[str, dict[str, float | None]] = (
        json.loads(args.out.read_text()) if args.out is not None and args.out.exists() else {}
    )
    if args.table:
        print(table(kept, args.samples))
        return 0
    if not args.model.is_dir():
        print(f"No model at {args.model}; train the embedded model or pass --model PATH.", file=sys.stderr)
        return 1
    seeds = range(args.samples)
    with LocalEngine.from_path(args.model, device=args.device) as engine:
        for variant in args.variants:
            if variant in kept:
                continue
            start = time.perf_counter()
            kept[variant] = {
                name: score(engine, case, VARIANTS[variant], seeds) for name, case in CASES.items()
            }
            print(f"{variant}: {kept[variant]} in {time.perf_counter() - start:.0f} s", flush=True)
            if args.out is not None:
                args.out.write_text(json.dumps(kept, indent=1))
    print(table({variant: kept[variant] for variant in args.variants}, args.samples))
    return 0


if __name__ == "__main__":
    sys.exit(main())
