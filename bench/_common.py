"""Shared helpers of the benchmarks: device, timing, the demo world, the tiny model, peak memory.

Every benchmark script is run as ``.venv/bin/python bench/<name>.py`` from the repository
root; this module puts the repository root on ``sys.path`` so ``components`` imports.
Outputs go to ``bench/results/`` (git-ignored).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS = BENCH_DIR / "results"
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402

try:  # no weight-loading / shard-writing progress bars in the benchmark output
    from transformers.utils import logging as _hf_logging

    _hf_logging.disable_progress_bar()
except Exception:  # pragma: no cover - an older transformers
    pass


# ---------------------------------------------------------------- device and clocks
def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def sync(device: torch.device | str | None = None) -> None:
    """Wait for queued GPU work (a no-op on CPU)."""
    if torch.cuda.is_available() and (device is None or torch.device(device).type == "cuda"):
        torch.cuda.synchronize()


def now(device: torch.device | str | None = None) -> float:
    """perf_counter after the device has finished what was queued."""
    sync(device)
    return time.perf_counter()


def machine() -> dict[str, Any]:
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    try:
        info["loadavg_1m"] = os.getloadavg()[0]
    except OSError:
        pass
    return info


def summarise(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "median": statistics.median(values),
        "mean": statistics.fmean(values),
        "min": min(values),
        "max": max(values),
    }


# ---------------------------------------------------------------- the demo world and model
def world_dir() -> Path:
    """The seeded demo world and its teacher triplets (regenerated when missing; ~1 s)."""
    from components.config import TeacherConfig, WorldConfig
    from components.data.generate import generate_world
    from components.teacher import generate_triplets

    root = RESULTS / "cache" / "world"
    if not (root / "triplets.jsonl").exists():
        import contextlib
        import io

        with contextlib.redirect_stderr(io.StringIO()):  # the teacher's progress bar
            generate_world(WorldConfig(), root / "data")
            generate_triplets(root / "data", TeacherConfig(), root / "triplets.jsonl")
    return root


def load_demo() -> tuple[Any, list[dict]]:
    from components.data.io import load_world, read_jsonl

    root = world_dir()
    return load_world(root / "data"), read_jsonl(root / "triplets.jsonl")


def pipeline_corpus(world, triplets) -> list[str]:
    """The corpus the pipeline's cold-start step trains the tiny tokenizer on."""
    return world.catalog["title"].tolist() + world.split("train")["text"].tolist() + [t["cot"] for t in triplets]


def set_threads(threads: int) -> None:
    """CPU intra-op threads (0: leave torch's default). Ignored on a GPU."""
    if threads and not torch.cuda.is_available():
        torch.set_num_threads(threads)


def _model_key(corpus: list[str], cfg) -> str:
    """Cache key: corpus, ModelConfig, the model code and the library versions."""
    import hashlib

    import tokenizers
    import transformers

    h = hashlib.sha256()
    for text in corpus:
        h.update(text.encode())
        h.update(b"\0")
    h.update(repr(cfg).encode())
    h.update(f"{torch.__version__} {transformers.__version__} {tokenizers.__version__}".encode())
    for src in ("lrem.py", "tokenizer.py", "prompts.py"):
        h.update((REPO_ROOT / "components" / "model" / src).read_bytes())
    return h.hexdigest()[:16]


def get_model(corpus: list[str], name: str):
    """The tiny demo model (ModelConfig defaults, tokenizer trained on ``corpus``).

    Created with ``LREMModel.create`` and saved under results/cache/models/; later calls
    (memory subprocesses, other benchmarks, reruns) load it while the corpus, the config and
    the model code are unchanged. Returns (model, cache dir name for ``load_model``).
    """
    from components.config import ModelConfig
    from components.model.lrem import LREMModel

    cfg = ModelConfig()
    key = f"{name}-{_model_key(corpus, cfg)}"
    path = RESULTS / "cache" / "models" / key
    if (path / "lrem_config.json").exists():
        return LREMModel.load(path), key
    import contextlib
    import io

    model = LREMModel.create(cfg, corpus)
    with contextlib.redirect_stderr(io.StringIO()):  # the save progress bar
        model.save(path)
    return model, key


def describe_model(model) -> dict[str, Any]:
    """Backbone size and prompt style of an LREM model (public attributes only), with a one-line text."""
    cfg = model.lm.config
    info = {
        "architecture": type(model.lm).__name__,
        "hidden_size": cfg.hidden_size,
        "num_hidden_layers": cfg.num_hidden_layers,
        "parameters": sum(p.numel() for p in model.lm.parameters()),
        "vocab_size": cfg.vocab_size,
        "prompt_style": model.spec.prompts.style,
        "max_cot_tokens": model.spec.max_cot_tokens,
    }
    info["text"] = (f"{info['architecture']} {info['num_hidden_layers']} layers, hidden {info['hidden_size']}, "
                    f"{info['parameters'] / 1e6:.1f}M params, {info['prompt_style']} prompts")
    return info


def load_model(key: str, device: torch.device):
    import contextlib
    import io

    from components.model.lrem import LREMModel

    with contextlib.redirect_stderr(io.StringIO()):  # the weight-loading progress bar
        return LREMModel.load(RESULTS / "cache" / "models" / key, device=str(device))


# ---------------------------------------------------------------- peak memory
def _proc_status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak_rss() -> bool:
    """Reset this process's VmHWM (Linux >= 4.0: write 5 to /proc/self/clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def child_memory_report(rss_before_kb: int | None, setup_hwm_kb: int | None, reset: bool) -> dict[str, Any]:
    """What a memory subprocess reports about itself at its end (all in MiB)."""
    hwm = _proc_status_kb("VmHWM")
    mb = lambda kb: None if kb is None else kb / 1024  # noqa: E731
    out: dict[str, Any] = {
        "rss_before_measurement_mb": mb(rss_before_kb),
        "setup_peak_rss_mb": mb(setup_hwm_kb),
        "hwm_reset_before_measurement": reset,
        # peak RSS while the measurement ran (VmHWM was reset after the setup), else of the whole child
        "peak_rss_mb": mb(hwm),
        "process_peak_rss_mb": mb(max(hwm or 0, setup_hwm_kb or 0) or None),
    }
    if rss_before_kb is not None and hwm is not None and reset:
        out["peak_minus_rss_before_mb"] = (hwm - rss_before_kb) / 1024
    if torch.cuda.is_available():
        out["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
        out["cuda_max_reserved_mb"] = torch.cuda.max_memory_reserved() / 2**20
    return out


def rss_now_kb() -> int | None:
    return _proc_status_kb("VmRSS")


def run_memory_child(script: Path, variant: str, extra: list[str] | None = None,
                     timeout: float = 300) -> dict[str, Any]:
    """Run ``script --memory-variant variant`` in a fresh interpreter and collect its peak memory.

    The child reports its own /proc/self/status VmHWM. (``getrusage``'s ru_maxrss of a child is
    not used: exec() carries the launching process's high-water mark into it, so every child
    of a big parent would report the parent's peak.) The child's VmHWM is reset after its
    setup, so ``peak_rss_mb`` is the peak while only the measured call ran; the RSS it started
    from (interpreter, torch, model, data) is ``rss_before_measurement_mb``.
    """
    out_json = RESULTS / "cache" / f"mem-{script.stem}-{variant}-{os.getpid()}.json"
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.unlink(missing_ok=True)
    cmd = [sys.executable, str(script), "--memory-variant", variant, "--memory-out", str(out_json), *(extra or [])]
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=str(REPO_ROOT), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          timeout=timeout)
    log = proc.stdout.decode(errors="replace")
    if proc.returncode != 0 or not out_json.exists():
        raise RuntimeError(f"memory child {variant} failed (rc {proc.returncode}):\n{log[-3000:]}")
    report = json.loads(out_json.read_text())
    out_json.unlink(missing_ok=True)
    report["child_seconds"] = time.perf_counter() - started
    return report


def memory_child_main(args, variants: dict[str, Callable[[], Callable[[], Any]]]) -> None:
    """In a memory subprocess: set up the variant, reset the peak, run the measurement, report.

    ``variants[name]()`` does the setup (load the model, the data, a warm-up) and returns the
    measurement to run.
    """
    set_threads(args.threads)
    measure = variants[args.memory_variant]()
    sync()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    setup_hwm = _proc_status_kb("VmHWM")
    reset = reset_peak_rss()
    before = rss_now_kb()
    result = measure()
    sync()
    report = child_memory_report(before, setup_hwm, reset)
    report["variant"] = args.memory_variant
    if isinstance(result, dict):
        report["result"] = result
    Path(args.memory_out).write_text(json.dumps(report))


# ---------------------------------------------------------------- output
def write_result(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"benchmark": name, "machine": machine(), "unix_time": time.time(), **payload}
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=float))
    return path


def fmt_mem(report: dict[str, Any]) -> str:
    s = f"peak RSS {report['peak_rss_mb']:.0f} MiB"
    if report.get("rss_before_measurement_mb") is not None:
        s += f" (+{report.get('peak_minus_rss_before_mb', float('nan')):.0f} over the "
        s += f"{report['rss_before_measurement_mb']:.0f} MiB before the measured call)"
    if report.get("cuda_max_allocated_mb") is not None:
        s += f", CUDA max allocated {report['cuda_max_allocated_mb']:.1f} MiB"
    return s
