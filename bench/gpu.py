"""Real-size speed and memory of SD 1.5, SDXL and Kandinsky 2.2, through the engine and the raw pipeline.

Each family's architecture is built from the JSON configs in ``model/configs`` (sd15, sdxl, kandinsky22) with
random weights: the compute and the memory are the real model's, the pictures are noise. The pipelines are the
classes ``load_family`` loads, wrapped in the same family classes and run by ``LocalEngine``, so the engine's
figures include everything a served request pays except reading weights from disk. Measured on one card, 30
steps with CFG at 512 px (SDXL: 1024 px):

- seconds per image at batch 1 and at batch 8 (one job of 8 images), engine and raw diffusers pipeline;
- 8 users asking for one image each at once: the batching engine vs a one-at-a-time FIFO (max_batch=1);
- engine overhead: the engine's time vs the raw pipeline's, at batch 1 and 8;
- peak GPU memory of each figure (torch.cuda.max_memory_allocated).

The model runs as the studio would serve it with the same flags: ``--dtype`` (default fp16 on CUDA), ``--compile``,
``--channels-last``, ``--cpu-offload`` (model.device_options); the raw pipeline is the same pipeline object, so
both sides of a comparison run in the same configuration. A batch that runs out of GPU memory is retried in smaller
batches by the engine (its row cap is reported) rather than failing.

Results go to OUT/gpu_bench.json and OUT/gpu_bench.md, rewritten after each family. ``--budget-s`` bounds the
run: a figure whose estimated time no longer fits is skipped and listed as such.

``--smoke`` runs SD 1.5's real-size components on the CPU at 64 px for 2 steps through the same code (one raw
call, then through the engine a lone image and two users' images in one batch), saves those two images, and
checks every component's parameter count against the published one (exit status 1 if one is off).

Run: python bench/gpu.py --out DIR [--families sd15,kandinsky22,sdxl] [--budget-s 540] [--repeats 2]
                         [--dtype fp16|bf16|fp32] [--compile] [--channels-last] [--cpu-offload]
     python bench/gpu.py --smoke --out DIR
"""

from __future__ import annotations

import argparse
import gc
import inspect
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.device_options import DeviceOptions, add_device_arguments, device_options
from model.engine import GenerationRequest
from model.engine.engine_local import LocalEngine, call_on_fresh_thread
from model.families import Family, Kandinsky22Family, StableDiffusionFamily
from model.families.kandinsky22 import DEFAULTS as KANDINSKY_DEFAULTS
from model.families.loading import ModelLoadError, pick_device
from model.families.runtime import check_device_options, pick_dtype, place
from model.families.single_file import CONFIGS, clip_tokenizer

PROMPT = "a red fox in a snowy forest at dawn, detailed, soft light"
RANDOM_WEIGHTS = "random-init"  # the model hash the benchmark's families report
# family -> (config folders under model/configs, native size in px)
FAMILIES: dict[str, tuple[tuple[str, ...], int]] = {
    "sd15": (("sd15",), 512),
    "kandinsky22": (("kandinsky22/prior", "kandinsky22/decoder"), 512),
    "sdxl": (("sdxl",), 1024),
}
# Published parameter counts, in millions (model cards and the released safetensors), that the configs must match.
PUBLISHED_PARAMS_M = {
    "sd15/unet": 859.5,
    "sd15/text_encoder": 123.1,
    "sd15/vae": 83.7,
    "sdxl/unet": 2567.5,
    "sdxl/text_encoder": 123.1,
    "sdxl/text_encoder_2": 694.7,
    "sdxl/vae": 83.7,
    "kandinsky22/prior/prior": 1000.0,
    "kandinsky22/prior/image_encoder": 1800.0,
    "kandinsky22/prior/text_encoder": 694.7,
    "kandinsky22/decoder/unet": 1220.0,
    "kandinsky22/decoder/movq": 67.0,
}
PARAMS_TOLERANCE = 0.05


ALL_FIGURES = ("raw_b1", "raw_batch", "engine_b1", "engine_batch", "users_batching", "users_fifo")


@dataclass(frozen=True)
class Plan:
    """What to measure: steps, the batch size (= the number of users), repeats, picture size (None: each family's
    native), and which figures (``ALL_FIGURES``; the users' figures put ``batch`` users' jobs in one burst)."""

    steps: int = 30
    batch: int = 8
    repeats: int = 2
    size: int | None = None
    figures: tuple[str, ...] = ALL_FIGURES


# The CPU smoke run: a lone image and two users' images in one batch through the engine, and one raw call
SMOKE = Plan(steps=2, batch=2, repeats=1, size=64, figures=("raw_b1", "engine_b1", "users_batching"))


@dataclass
class Figure:
    """One measured figure: median seconds per image and the peak GPU memory (GiB) while it ran."""

    s_per_image: float
    peak_gib: float | None


@dataclass
class FamilyResult:
    family: str
    size: int
    steps: int
    guidance: float
    batch: int
    params_m: dict[str, float]
    weights_gib: float | None
    build_s: float = 0.0
    figures: dict[str, Figure] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    # batch kinds that ran out of GPU memory in the engine -> the rows per batch it then held them to
    row_caps: dict[str, int] = field(default_factory=dict)


def _component_class(library: str, class_name: str) -> Any:
    import diffusers
    import transformers

    return getattr(diffusers if library == "diffusers" else transformers, class_name)


def _model_components(root: Path) -> dict[str, tuple[str, str]]:
    """The weighted components model_index.json names: name -> (library, class)."""
    index = json.loads((root / "model_index.json").read_text())
    return {
        name: (spec[0], spec[1])
        for name, spec in index.items()
        if isinstance(spec, list)
        and spec[0] is not None
        and not spec[1].endswith(("Tokenizer", "Scheduler", "ImageProcessor"))
    }


def build_component(
    root: Path, name: str, library: str, class_name: str, *, device: torch.device, overrides: dict[str, Any]
) -> Any:
    """One component from its JSON config: models random-initialised on ``device``, tokenizers from the shipped
    CLIP BPE, schedulers and image processors on the CPU as ``from_pretrained`` makes them."""
    cls = _component_class(library, class_name)
    folder = root / name
    if class_name.endswith("Tokenizer"):
        return clip_tokenizer(json.loads((folder / "tokenizer_config.json").read_text()))
    if class_name.endswith("Scheduler"):
        return cls.from_pretrained(root, subfolder=name)
    if class_name.endswith("ImageProcessor"):
        return cls.from_pretrained(folder)
    with torch.device(device):
        if library == "diffusers":
            return cls.from_config({**cls.load_config(folder), **overrides}).eval()
        from transformers import AutoConfig

        return cls(AutoConfig.from_pretrained(folder)).eval()


def random_pipeline(
    root: Path,
    *,
    device: torch.device,
    dtype: torch.dtype,
    options: DeviceOptions | None = None,
    unet_sample_size: int | None = None,
) -> Any:
    """The pipeline model_index.json names, every component built from ``root``'s configs with random weights.

    Weights are initialised on ``device`` (fast on a GPU) in float32, cast to ``dtype``, then placed as the
    studio's loaders place them (``runtime.place``: SDPA, and ``options``' compile, channels_last, offload; the
    UNet is the denoiser where the pipeline has one). ``unet_sample_size`` sets the UNet's native latent size,
    which only sets the family's default and allowed picture sizes."""
    index = json.loads((root / "model_index.json").read_text())
    pipeline_cls = _component_class("diffusers", index["_class_name"])
    accepted = inspect.signature(pipeline_cls.__init__).parameters
    parts: dict[str, Any] = {}
    for name, spec in index.items():
        if name.startswith("_") or name not in accepted:
            continue
        if not isinstance(spec, list):
            parts[name] = spec  # a pipeline flag (requires_safety_checker, force_zeros_for_empty_prompt)
        elif spec[0] is None:
            parts[name] = None
        else:
            overrides = {"sample_size": unet_sample_size} if name == "unet" and unet_sample_size else {}
            parts[name] = build_component(root, name, spec[0], spec[1], device=device, overrides=overrides)
    pipe = pipeline_cls(**parts).to(dtype)
    place(pipe, device, options or DeviceOptions(), denoisers=("unet",) if "unet" in parts else ())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_family(
    name: str,
    *,
    device: torch.device,
    dtype: torch.dtype,
    options: DeviceOptions | None = None,
    size: int | None = None,
) -> Family:
    """A family of ``name``'s real-size architecture with random weights, as ``load_family`` would wrap it."""
    folders, native = FAMILIES[name]
    size = size or native
    common: dict[str, Any] = {"name": f"{name}-random", "model_hash": RANDOM_WEIGHTS, "settings": {}}
    if name == "kandinsky22":
        prior_root, decoder_root = (CONFIGS / folder for folder in folders)
        prior = random_pipeline(prior_root, device=device, dtype=dtype, options=options)
        decoder = random_pipeline(
            decoder_root, device=device, dtype=dtype, options=options, unet_sample_size=size // 8
        )
        return Kandinsky22Family(prior, decoder, path=str(CONFIGS / "kandinsky22"), device=device, **common)
    root = CONFIGS / folders[0]
    pipe = random_pipeline(root, device=device, dtype=dtype, options=options, unet_sample_size=size // 8)
    return StableDiffusionFamily(pipe, path=str(root), ip_adapter=False, device=device, **common)


def parameter_counts() -> dict[str, float]:
    """Every weighted component's parameter count in millions, built on the meta device (no memory, no init)."""
    counts = {}
    meta = torch.device("meta")
    for folders, _ in FAMILIES.values():
        for folder in folders:
            for name, (library, class_name) in _model_components(CONFIGS / folder).items():
                model = build_component(
                    CONFIGS / folder, name, library, class_name, device=meta, overrides={}
                )
                counts[f"{folder}/{name}"] = sum(p.numel() for p in model.parameters()) / 1e6
    return counts


def params_off_published(counts: dict[str, float]) -> list[str]:
    """The components whose parameter count is more than PARAMS_TOLERANCE off the published figure."""
    return [
        f"{key}: {counts.get(key, 0.0):.1f}M, published {published:.1f}M"
        for key, published in PUBLISHED_PARAMS_M.items()
        if abs(counts.get(key, 0.0) / published - 1) > PARAMS_TOLERANCE
    ]


def raw_pipeline(family: Family, *, size: int, steps: int, batch: int, seed: int) -> list[Any]:
    """The stock diffusers calls for ``batch`` images of one prompt (CFG on, the family's default scale)."""
    info = family.info
    generator = torch.Generator().manual_seed(seed)
    if isinstance(family, Kandinsky22Family):
        embeds = family.prior(
            PROMPT,
            num_images_per_prompt=batch,
            generator=generator,
            num_inference_steps=info.prior_steps,
            guidance_scale=KANDINSKY_DEFAULTS["prior_guidance"],
        )
        return family.decoder(
            image_embeds=embeds.image_embeds,
            negative_image_embeds=embeds.negative_image_embeds,
            height=size,
            width=size,
            generator=generator,
            num_inference_steps=steps,
            guidance_scale=info.default_guidance,
        ).images
    assert isinstance(family, StableDiffusionFamily)
    return family.pipe(
        prompt=PROMPT,
        num_images_per_prompt=batch,
        height=size,
        width=size,
        generator=generator,
        num_inference_steps=steps,
        guidance_scale=info.default_guidance,
    ).images


def _on_gpu(family: Family) -> bool:
    return family.info.device.startswith("cuda")


def timed(family: Family, run: Callable[[], object]) -> tuple[float, float | None]:
    """(seconds, peak GPU GiB) of one call; the peak is None off CUDA."""
    gpu = _on_gpu(family)
    if gpu:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    run()
    if gpu:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return seconds, torch.cuda.max_memory_allocated() / 2**30 if gpu else None


class Budget:
    """The run's time limit: a figure runs only if its estimated time still fits."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def fits(self, estimate_s: float) -> bool:
        return time.monotonic() + estimate_s <= self.deadline


def ask(size: int, steps: int, user: str, seed: int, num_images: int = 1) -> GenerationRequest:
    return GenerationRequest(
        prompt=PROMPT, seed=seed, user=user, num_images=num_images, width=size, height=size, steps=steps
    )


def run_jobs(engine: LocalEngine, requests: list[GenerationRequest]) -> list[Any]:
    """Submit every request at once (each its own user) and wait for all; their images in order."""
    handles = [engine.submit(request) for request in requests]
    return [image for handle in handles for image in handle.result().images]


def measure(family: Family, name: str, plan: Plan, budget: Budget, keep: list[Any]) -> FamilyResult:
    """The plan's figures for one family. Torch work runs on short-lived threads or an engine's worker, as in
    the studio (see call_on_fresh_thread); the raw calls run before any engine exists. ``keep`` gets the images
    of the last users' burst."""
    size = plan.size or FAMILIES[name][1]
    steps, batch, repeats = plan.steps, plan.batch, plan.repeats
    gpu = _on_gpu(family)
    result = FamilyResult(
        family=name,
        size=size,
        steps=steps,
        guidance=family.info.default_guidance,
        batch=batch,
        params_m={},
        weights_gib=torch.cuda.memory_allocated() / 2**30 if gpu else None,
    )
    wanted = [key for key in ALL_FIGURES if key in plan.figures]

    def median_figure(run: Callable[[], object], images: int) -> Figure:
        runs = [timed(family, run) for _ in range(repeats)]
        peaks = [peak for _, peak in runs if peak is not None]
        return Figure(statistics.median(s for s, _ in runs) / images, max(peaks) if peaks else None)

    def figure(key: str, run: Callable[[], object], images: int, unit_s: float) -> None:
        """Measure ``key`` if the plan wants it and its estimated time (from ``unit_s`` per image) fits."""
        if key not in wanted:
            return
        if budget.fits(unit_s * images * repeats):
            result.figures[key] = median_figure(run, images)
        else:
            result.skipped.append(key)

    def raw(images: int) -> Callable[[], object]:
        return lambda: raw_pipeline(family, size=size, steps=steps, batch=images, seed=0)

    def through(engine: LocalEngine, requests: list[GenerationRequest]) -> Callable[[], object]:
        def run() -> None:
            keep[:] = run_jobs(engine, requests)

        return run

    def raw_figures() -> float:
        """The raw figures; returns the seconds of one image, which size every estimate (first call: on a GPU,
        a warm-up whose first-call costs make the estimates generous)."""
        unit_s, _ = timed(family, raw(1))
        figure("raw_b1", raw(1), 1, unit_s)
        figure("raw_batch", raw(batch), batch, unit_s)
        return unit_s

    unit_s = call_on_fresh_thread(raw_figures)
    users = [ask(size, steps, f"user{i}", seed=i) for i in range(batch)]
    engine = LocalEngine(family, max_batch=batch, max_user_images=max(32, batch))
    try:
        if gpu:  # first-call costs (allocator, kernel choice) of the lone and the batched shapes
            run_jobs(engine, [ask(size, steps, "warm-up", seed=1)])
            run_jobs(engine, [ask(size, steps, "warm-up", seed=1, num_images=batch)])
        figure("engine_b1", through(engine, [ask(size, steps, "solo", seed=0)]), 1, unit_s)
        figure(
            "engine_batch",
            through(engine, [ask(size, steps, "solo", seed=0, num_images=batch)]),
            batch,
            unit_s,
        )
        figure("users_batching", through(engine, users), batch, unit_s)
    finally:
        engine.shutdown()
    result.row_caps = {repr(key): cap for key, cap in engine.row_caps.items()}
    if "users_fifo" in wanted:
        fifo = LocalEngine(family, max_batch=1, gather_s=0.0)
        try:
            figure("users_fifo", through(fifo, users), batch, unit_s)
        finally:
            fifo.shutdown()
    return result


def ratio(result: FamilyResult, numerator: str, denominator: str) -> float | None:
    """figures[numerator] / figures[denominator] (seconds per image), None if either was skipped."""
    top, bottom = result.figures.get(numerator), result.figures.get(denominator)
    return top.s_per_image / bottom.s_per_image if top and bottom else None


def markdown(results: list[FamilyResult], header: str) -> str:
    """The table docs/ENGINE.md quotes: one row per family; "-" marks a figure not measured."""

    def seconds(result: FamilyResult, key: str) -> str:
        figure = result.figures.get(key)
        return f"{figure.s_per_image:.3f}" if figure else "-"

    def peak(result: FamilyResult, key: str) -> str:
        figure = result.figures.get(key)
        return f"{figure.peak_gib:.1f}" if figure and figure.peak_gib is not None else "-"

    def percent(value: float | None) -> str:
        return f"{100 * (value - 1):+.1f}%" if value is not None else "-"

    n = results[0].batch if results else 8
    lines = [
        header,
        "",
        f"| model | size, steps | s/image at batch 1: engine (raw) | s/image at batch {n}: engine (raw) "
        f"| {n} users: batching vs FIFO | engine overhead at batch 1 / {n} | peak GiB at batch 1 / {n} (engine) |",
        "|---|---|---|---|---|---|---|",
    ]
    skipped = []
    for r in results:
        speedup = ratio(r, "users_fifo", "users_batching")
        lines.append(
            f"| {r.family} | {r.size} px, {r.steps} | {seconds(r, 'engine_b1')} ({seconds(r, 'raw_b1')}) "
            f"| {seconds(r, 'engine_batch')} ({seconds(r, 'raw_batch')}) "
            f"| {f'{speedup:.2f}x' if speedup else '-'} "
            f"| {percent(ratio(r, 'engine_b1', 'raw_b1'))} / {percent(ratio(r, 'engine_batch', 'raw_batch'))} "
            f"| {peak(r, 'engine_b1')} / {peak(r, 'engine_batch')} |"
        )
        skipped += [f"{r.family} {key}" for key in r.skipped]
    capped = [f"{r.family} {key} at {cap} rows" for r in results for key, cap in r.row_caps.items()]
    if capped:
        lines += ["", f"Out of GPU memory, so the engine held these batches smaller: {', '.join(capped)}."]
    if skipped:
        lines += ["", f"Skipped to stay within the time budget: {', '.join(skipped)}."]
    return "\n".join(lines) + "\n"


def runtime_label(options: DeviceOptions) -> str:
    """How the models ran, for the table's header: SDPA attention always, then the options that were on."""
    on = [
        label
        for label, flag in (
            ("compiled", options.compile),
            ("channels_last", options.channels_last),
            ("model CPU offload", options.cpu_offload),
        )
        if flag
    ]
    return " + ".join(["SDPA", *on])


def write(out: Path, results: list[FamilyResult], errors: dict[str, str], meta: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    payload = {**meta, "families": [asdict(result) for result in results], "errors": errors}
    (out / "gpu_bench.json").write_text(json.dumps(payload, indent=2))
    header = (
        f"{meta['card']}, torch {meta['torch']}, {meta['dtype']}, {meta['runtime']}, CFG on, "
        f"random weights at real size ({meta['weights']})"
    )
    failed = [f"{name}: {error}" for name, error in errors.items()]
    (out / "gpu_bench.md").write_text(
        markdown(results, header) + ("\nFailed: " + "; ".join(failed) + "\n" if failed else "")
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu_bench.json and gpu_bench.md")
    parser.add_argument("--smoke", action="store_true", help="SD 1.5 on the CPU at 64 px, 2 steps")
    parser.add_argument(
        "--families", default=",".join(FAMILIES), help="comma-separated: sd15,kandinsky22,sdxl"
    )
    parser.add_argument("--budget-s", type=float, default=540.0, help="skip figures that would end later")
    parser.add_argument("--repeats", type=int, default=2, help="runs per figure; the median is reported")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=8, help="the batch size and the number of users")
    add_device_arguments(parser)  # --device (default here: cpu with --smoke), --dtype, --compile, ...
    args = parser.parse_args(argv)
    names = ["sd15"] if args.smoke else args.families.split(",")
    unknown = [name for name in names if name not in FAMILIES]
    if unknown:
        parser.error(f"--families: unknown {', '.join(unknown)}; choose from {', '.join(FAMILIES)}")
    if args.smoke:
        plan = SMOKE
        device = torch.device(args.device or "cpu")
    else:
        plan = Plan(steps=args.steps, batch=args.batch, repeats=args.repeats)
        device = pick_device(args.device)
    options = device_options(args)
    try:
        dtype = pick_dtype(device, args.dtype)
        check_device_options(device, options)
    except ModelLoadError as error:
        parser.error(str(error))
    budget = Budget(float("inf") if args.smoke else args.budget_s)  # the smoke test runs its whole plan
    counts = parameter_counts()
    off = params_off_published(counts)
    meta = {
        "card": torch.cuda.get_device_name(device) if device.type == "cuda" else f"{device.type} (no GPU)",
        "torch": torch.__version__,
        "device": str(device),
        "dtype": str(dtype).removeprefix("torch."),
        "runtime": runtime_label(options),
        "options": asdict(options),
        "weights": RANDOM_WEIGHTS,
        "plan": asdict(plan),
        "params_m": counts,
        "params_off_published": off,
    }
    print(f"{meta['card']}: {', '.join(names)}, {plan}", flush=True)
    for problem in off:
        print(f"parameter count off the published size: {problem}", file=sys.stderr)
    results: list[FamilyResult] = []
    errors: dict[str, str] = {}  # a family that fails is reported, and the next one still runs
    for name in names:
        if not budget.fits(0):
            print(f"{name}: skipped, time budget spent", flush=True)
            continue
        started = time.monotonic()
        kept: list[Any] = []
        family: Family | None = None
        try:
            family = call_on_fresh_thread(
                partial(build_family, name, device=device, dtype=dtype, options=options, size=plan.size)
            )
            built_s = time.monotonic() - started
            result = measure(family, name, plan, budget, kept)
        except Exception as error:  # one run on a lent GPU: keep the other families' figures
            errors[name] = f"{type(error).__name__}: {error}"
            print(f"{name}: failed: {errors[name]}", file=sys.stderr, flush=True)
        else:
            result.build_s = built_s
            result.params_m = {key: value for key, value in counts.items() if key.split("/")[0] == name}
            results.append(result)
            if args.smoke:
                for index, image in enumerate(kept):
                    image.save(args.out / f"smoke_{name}_{index}.png")
            print(f"{name}: built in {built_s:.0f}s, measured in {time.monotonic() - started - built_s:.0f}s")
        write(args.out, results, errors, meta)
        family = None  # free this family's weights before the next one is built
        kept.clear()
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    print((args.out / "gpu_bench.md").read_text() if results else "no family measured")
    return 1 if off or errors or not results else 0


if __name__ == "__main__":
    sys.exit(main())
