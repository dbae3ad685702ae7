"""The shared engine's figures, measured in one run on one model, at the model's defaults (its decoder
candidates included) unless a figure says otherwise:

1. throughput: 8 users ask for one image each at once; the batching engine vs a one-at-a-time FIFO queue
   (AUTOMATIC1111's global lock: LocalEngine with max_batch=1);
2. overhead, like with like: the engine's submit-to-result time vs the raw diffusers pipeline calls, both
   drawing one decoder candidate at batch 1 (the raw prior draws the model's prior candidates too);
3. candidates: a lone picture through the engine at the defaults vs the raw pipeline drawing as many
   pictures per prompt (what the candidates cost without the verifier's early cuts), and vs the engine at
   one candidate;
4. fairness: user A asks for 32 images while 7 others ask for 1 each; the others' p95 latency vs a lone request;
and, outside the table, what a lone request costs once a second long-lived thread has run torch kernels.

Run: .venv/bin/python bench/engine.py [--model model/weights/embedded] [--device cpu] [--threads N]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from diffusers import KandinskyV22Pipeline

from model.engine import Engine, GenerationRequest, Progress
from model.engine.engine_local import LocalEngine, call_on_fresh_thread
from model.families import Family, Kandinsky22Family, StableDiffusionFamily, load_family
from model.families.schedulers import SchedulerBank

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "model" / "weights" / "embedded"
PROMPTS = [
    "a red circle on a white background",
    "a blue square at the top left",
    "a small green triangle",
    "a yellow star on a black background",
    "a big purple circle",
    "an orange square on a grey background",
    "a red triangle at the bottom right",
    "a blue circle next to a green square",
]


def ask(
    index: int, user: str, seed: int | None = None, num_images: int = 1, candidates: int | None = None
) -> GenerationRequest:
    return GenerationRequest(
        prompt=PROMPTS[index % len(PROMPTS)],
        seed=seed if seed is not None else index,
        user=user,
        num_images=num_images,
        candidates=candidates,
    )


def raw_pipeline_seconds(family: Family, request: GenerationRequest, pictures: int = 1) -> float:
    """The stock diffusers calls the engine wraps, for one prompt (no engine, no hook, scalar CFG), drawing
    ``pictures`` decoder pictures from one prior sample, with the engine's default scheduler."""
    info = family.info
    generator = torch.Generator().manual_seed(int(request.seed or 0))
    start = time.perf_counter()
    if isinstance(family, Kandinsky22Family):
        embeds = family.prior(
            request.prompt,
            generator=generator,
            num_inference_steps=info.prior_steps,
            num_images_per_prompt=family.prior_candidates,
        )
        decoder = KandinskyV22Pipeline(
            unet=family.decoder.unet,
            scheduler=SchedulerBank(family.decoder.scheduler).get(info.default_scheduler),
            movq=family.decoder.movq,
        )
        decoder.set_progress_bar_config(disable=True)
        decoder(
            image_embeds=embeds.image_embeds[:1],
            negative_image_embeds=embeds.negative_image_embeds[:1],
            height=info.default_size[1],
            width=info.default_size[0],
            generator=generator,
            num_inference_steps=info.default_steps,
            guidance_scale=info.default_guidance,
            num_images_per_prompt=pictures,
        )
    elif isinstance(family, StableDiffusionFamily):
        family.pipe(
            prompt=request.prompt,
            num_images_per_prompt=pictures,
            height=info.default_size[1],
            width=info.default_size[0],
            generator=generator,
            num_inference_steps=info.default_steps,
            guidance_scale=info.default_guidance,
        )
    else:
        raise TypeError(f"no raw pipeline call for {type(family).__name__}")
    return time.perf_counter() - start


def _stamp_when_finished(finished: list[float], index: int, progress: Progress) -> None:
    if progress.status.finished:
        finished[index] = time.perf_counter()


def burst(engine: Engine, requests: list[GenerationRequest]) -> tuple[float, list[float], list[float]]:
    """Submit all at once; (wall seconds until all done, per-request latencies, per-request queue waits)."""
    start = time.perf_counter()
    submitted, finished = [], [0.0] * len(requests)
    handles = []
    for index, request in enumerate(requests):
        handle = engine.submit(request)
        submitted.append(time.perf_counter())
        handle.subscribe(functools.partial(_stamp_when_finished, finished, index))
        handles.append(handle)
    waits = [handle.result().queue_wait_s for handle in handles]
    latencies = [done - sent for done, sent in zip(finished, submitted, strict=True)]
    return time.perf_counter() - start, latencies, waits


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[-1] if len(values) > 1 else values[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--device")
    parser.add_argument("--dtype", choices=("float32", "float16", "bfloat16"))
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure; the median is reported")
    parser.add_argument(
        "--max-batch",
        type=int,
        help="rows per batch (default: the engine's, 8 images at the model's candidates)",
    )
    args = parser.parse_args()
    if not args.model.is_dir():
        print(
            f"No model at {args.model}. Train the embedded model (python -m model.train) or pass "
            "--model PATH to a Kandinsky 2.2 or Stable Diffusion folder.",
            file=sys.stderr,
        )
        return 1
    if args.threads:
        torch.set_num_threads(args.threads)
    # Torch work runs on short-lived threads or an engine's worker, never on this thread, as in the studio
    # (see call_on_fresh_thread): the raw calls run before any engine exists, each figure on the only live
    # pool.
    family = call_on_fresh_thread(lambda: load_family(args.model, device=args.device, dtype=args.dtype))
    info = family.info
    candidates = info.default_candidates
    print(
        f"model {info.name} ({info.family}, {info.short_hash}) on {info.device}/{info.dtype}, "
        f"{info.default_steps} steps at {info.default_size[0]}x{info.default_size[1]}, "
        f"{candidates} decoder candidates, torch threads {torch.get_num_threads()}"
    )

    def raw_runs(pictures: int) -> list[float]:
        raw_pipeline_seconds(family, ask(0, "warm-up"), pictures)
        return [raw_pipeline_seconds(family, ask(r, "solo"), pictures) for r in range(args.repeats)]

    raw_s = statistics.median(call_on_fresh_thread(lambda: raw_runs(1)))
    raw_all_s = statistics.median(call_on_fresh_thread(lambda: raw_runs(candidates)))
    batching = LocalEngine(family, max_batch=args.max_batch)
    print(f"max batch {batching.max_batch} rows")
    batching.submit(ask(0, "warm-up")).result()  # first-call costs (allocations, kernels)
    lone_s = statistics.median([burst(batching, [ask(r, "solo")])[0] for r in range(args.repeats)])
    one_s = statistics.median(
        [burst(batching, [ask(r, "solo", candidates=1)])[0] for r in range(args.repeats)]
    )

    eight = [ask(i, f"user{i}") for i in range(8)]
    batched_walls = [burst(batching, eight)[0] for _ in range(args.repeats)]
    batching.shutdown()
    fifo = LocalEngine(family, max_batch=1, gather_s=0.0)
    fifo_walls = [burst(fifo, eight)[0] for _ in range(args.repeats)]
    fifo.shutdown()
    batched_s, fifo_s = statistics.median(batched_walls), statistics.median(fifo_walls)

    fair = LocalEngine(family, max_batch=args.max_batch)
    others_latency, others_wait = [], []
    for _ in range(args.repeats):
        greedy = [ask(0, "A", seed=100 + 8 * k, num_images=8) for k in range(4)]
        requests = greedy + [ask(i, f"user{i}") for i in range(1, 8)]
        _, latencies, waits = burst(fair, requests)
        others_latency += latencies[len(greedy) :]
        others_wait += waits[len(greedy) :]
    fair.shutdown()

    # Last, since it cannot be undone: this thread runs torch kernels too (as when a model loads on the main
    # thread), so two live threads hold libgomp pools; then the same lone request through a new engine.
    raw_pipeline_seconds(family, ask(0, "main thread"))
    second = LocalEngine(family, max_batch=args.max_batch)
    second.submit(ask(0, "warm-up")).result()
    two_pools_s = statistics.median([burst(second, [ask(r, "solo")])[0] for r in range(args.repeats)])
    second.shutdown()

    print()
    print("| figure | measured | target |")
    print("|---|---|---|")
    print(
        f"| throughput, 8 users x 1 image | batching {8 / batched_s:.2f} img/s "
        f"vs FIFO {8 / fifo_s:.2f} img/s = **{fifo_s / batched_s:.2f}x** | >= 2x (CPU), >= 3x (GPU) |"
    )
    print(
        f"| engine overhead at batch 1, one decoder candidate | engine {one_s:.3f}s vs raw pipeline "
        f"{raw_s:.3f}s = **{100 * (one_s / raw_s - 1):+.1f}%** | <= 3% |"
    )
    print(
        f"| a lone picture at the defaults ({candidates} candidates) | engine {lone_s:.3f}s = "
        f"**{lone_s / one_s:.2f}x** one candidate; raw pipeline drawing {candidates} pictures {raw_all_s:.3f}s "
        f"= {raw_all_s / raw_s:.2f}x its one | <= 2x |"
    )
    print(
        f"| fairness, A asks 32 + 7 users x 1 | others' p95 latency {p95(others_latency):.2f}s = "
        f"**{p95(others_latency) / lone_s:.2f}x** a lone request ({lone_s:.2f}s); p95 queue wait "
        f"{p95(others_wait):.2f}s = {p95(others_wait) / lone_s:.2f}x | <= 2x |"
    )
    print(
        f"\nlone request once a second long-lived thread has run torch kernels: {two_pools_s:.3f}s = "
        f"{two_pools_s / lone_s:.2f}x the engine's own (why the engine loads models on a short-lived thread)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
