"""Inference engines behind the encoder families: torch, or an exported OpenVINO model.

An engine is a *runner*: a callable from the padded input tensors to the
model's logits. The families build their inputs once (see
:mod:`rerank_plugins.backends.sequence_classification`) and hand them to
whichever runner was chosen, so the tokenisation, truncation and windowing are
the same whatever the engine.

OpenVINO models are converted with ``openvino.convert_model`` from the loaded
torch model (not optimum-intel) and cached on disk under
``$RERANK_PLUGINS_CACHE`` (default ``~/.cache/rerank_plugins``), keyed by a hash
of the model's files and the OpenVINO version, so the second load skips the
conversion. The cache entry is written to a temporary directory and renamed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rerank_plugins.errors import missing_extra

if TYPE_CHECKING:
    import torch

__all__ = ["ENGINES", "Runner", "build_runner", "cache_root", "resolve_engine"]

logger = logging.getLogger(__name__)

ENGINES: tuple[str, ...] = ("auto", "torch", "openvino")
ENGINE_ENV = "RERANK_PLUGINS_ENGINE"
# Families whose model an exported engine can run (their input is plain encoder tensors).
EXPORTABLE_KINDS = frozenset({"cross-encoder", "sequence-classification"})
_MODEL_FILES = ("config.json", "model.safetensors", "pytorch_model.bin")

Runner = Callable[[dict[str, "torch.Tensor"]], "torch.Tensor"]


def openvino_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("openvino") is not None


def resolve_engine(engine: str, *, kind: str, device: Any, dtype: str) -> str:
    """The engine to run: ``"auto"`` is OpenVINO for encoder families on CPU when installed, else torch.

    ``"auto"`` first reads the ``RERANK_PLUGINS_ENGINE`` environment variable.

    Raises:
        ValueError: an unknown engine, or one that cannot run this family/device/dtype.
        MissingExtraError: OpenVINO asked for (or needed by ``dtype="int8"``) but not installed.
    """
    if engine == "auto" and dtype == "int8":
        engine = "openvino"  # the one engine that runs int8; an explicit dtype beats the environment's default
    if engine == "auto":
        engine = os.environ.get(ENGINE_ENV, "auto") or "auto"
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}; got {engine!r}")
    on_cpu = getattr(device, "type", str(device)) == "cpu"
    if engine == "auto":
        engine = "openvino" if (kind in EXPORTABLE_KINDS and on_cpu and openvino_available()) else "torch"
    if engine == "openvino":
        if kind not in EXPORTABLE_KINDS:
            raise ValueError(
                f"engine='openvino' supports the {' and '.join(sorted(EXPORTABLE_KINDS))} families; "
                f"{kind!r} runs on engine='torch'"
            )
        if not on_cpu:
            raise ValueError(f"engine='openvino' runs on the CPU; got device={str(device)!r}")
        if not openvino_available():
            raise missing_extra("openvino", "fast")
    if dtype == "int8" and engine != "openvino":
        raise ValueError("dtype='int8' needs engine='openvino' (pip install 'rerank-plugins[fast]')")
    return engine


def cache_root() -> Path:
    return Path(os.environ.get("RERANK_PLUGINS_CACHE", Path.home() / ".cache" / "rerank_plugins"))


def model_fingerprint(model_id: str) -> str:
    """A hash of the model's config and weights files (a hub name without local files hashes the name)."""
    digest = hashlib.sha256()
    folder = Path(model_id)
    files = [folder / name for name in _MODEL_FILES if (folder / name).is_file()] if folder.is_dir() else []
    if not files:
        digest.update(model_id.encode("utf-8"))
    for path in files:
        digest.update(path.name.encode("utf-8"))
        with path.open("rb") as fh:
            for chunk in iter(lambda fh=fh: fh.read(1 << 22), b""):
                digest.update(chunk)
    return digest.hexdigest()[:24]


def build_runner(
    engine: str, *, model: Any, model_id: str, kind: str, dtype: str, device: Any, example: dict[str, torch.Tensor]
) -> tuple[Runner, str]:
    """Return ``(runner, engine)`` for a loaded torch sequence-classification model."""
    if engine == "torch":
        return (lambda inputs: model(**inputs).logits), "torch"
    return _openvino_runner(model, model_id=model_id, dtype=dtype, example=example), "openvino"


def _openvino_runner(model: Any, *, model_id: str, dtype: str, example: dict[str, torch.Tensor]) -> Runner:
    import openvino as ov

    from rerank_plugins.hardware import cpu_has_native_bf16

    key = f"{model_fingerprint(model_id)}-ov{ov.__version__.split('-')[0]}"
    folder = cache_root() / "openvino" / key
    core = ov.Core()
    xml = folder / "model.xml"
    if xml.is_file():
        logger.info("loading the cached OpenVINO model %s", folder)
        ov_model = core.read_model(xml)
    else:
        logger.info("converting %s to OpenVINO (cached for the next load in %s)", model_id, folder)
        ov_model = ov.convert_model(model, example_input=dict(example))
        _save_atomically(ov, ov_model, folder)
    if dtype != "int8":
        precision = {"bfloat16": "bf16", "float16": "f16"}.get(dtype, "f32")
        return _compiled_runner(core, ov_model, precision)
    # int8: the layers NNCF leaves in floating point run in bf16 where the CPU has it.
    precision = "bf16" if cpu_has_native_bf16() else "f32"
    int8_folder = folder.with_name(f"{folder.name}-int8")
    if (int8_folder / "model.xml").is_file():
        logger.info("loading the cached int8 model %s", int8_folder)
        return _compiled_runner(core, core.read_model(int8_folder / "model.xml"), precision)
    return _CalibratingRunner(core, ov_model, int8_folder, precision)


def _save_atomically(ov: Any, ov_model: Any, folder: Path) -> None:
    """``ov.save_model`` into a temporary sibling, renamed to ``folder`` (another process's copy wins)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder.parent))
    try:
        ov.save_model(ov_model, tmp / "model.xml", compress_to_fp16=False)
        try:
            tmp.rename(folder)
        except OSError:  # another process cached it first; theirs is as good
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _compile_config(precision: str, threads: int) -> dict[str, Any]:
    """OpenVINO's CPU settings for a process that may use ``threads`` threads.

    The thread count is torch's (OMP_NUM_THREADS, torch.set_num_threads, a Ray
    actor's CPUs), so several processes or actors on one machine do not
    oversubscribe its cores. A process that may use fewer threads than the
    cores it can run on does not pin them: OpenVINO pins each process's
    threads from the first core, so two 1-thread Ray actors on 2 cores were
    both pinned to core 0 and shared it (measured: 50% of a core each, the
    other core idle).
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return {
        "INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "THROUGHPUT",
        "INFERENCE_NUM_THREADS": threads, "ENABLE_CPU_PINNING": threads >= cores,
    }


def _compiled_runner(core: Any, ov_model: Any, precision: str) -> Runner:
    """Compile for throughput and split each batch across the device's parallel streams.

    With ``PERFORMANCE_HINT=THROUGHPUT`` OpenVINO runs several inference
    streams, each on its own cores; one batch cut into that many chunks and run
    at once beat one stream over all cores by about 8% on 2 cores (101 against
    94 pairs/s, ms-marco-MiniLM-L-12-v2 in bf16), because the small matrices of
    a reranker leave threads waiting on each other inside one stream. Rows are
    computed independently, so the split changes a score only by the kernels'
    rounding (within 1e-5 in float32, tested).
    """
    import numpy as np
    import openvino as ov
    import torch

    compiled = core.compile_model(ov_model, "CPU", _compile_config(precision, torch.get_num_threads()))
    names = [port.get_any_name() for port in compiled.inputs]
    streams = max(1, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
    queue = ov.AsyncInferQueue(compiled, streams)
    output = compiled.output(0)

    def run(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        arrays = {name: inputs[name].numpy() for name in names}
        rows = len(arrays[names[0]])
        chunks = min(streams, rows)
        bounds = [rows * i // chunks for i in range(chunks + 1)]
        parts: list[Any] = [None] * chunks

        def keep(request: Any, i: int) -> None:
            parts[i] = request.get_tensor(output).data.copy()

        queue.set_callback(keep)
        for i in range(chunks):
            lo, hi = bounds[i], bounds[i + 1]
            queue.start_async({name: a[lo:hi] for name, a in arrays.items()}, i)
        queue.wait_all()
        return torch.from_numpy(np.concatenate(parts))

    return run


class _CalibratingRunner:
    """int8 by NNCF post-training quantisation, calibrated on the first batch the user scores.

    The first call's batch (the longest rows of the user's own pairs) is the
    calibration set; the quantised model is cached on disk, so later loads use
    it directly. Called under the backend's lock, so it quantises once.
    """

    def __init__(self, core: Any, ov_model: Any, folder: Path, precision: str) -> None:
        self.core, self.ov_model, self.folder, self.precision = core, ov_model, folder, precision
        self.names = [port.get_any_name() for port in ov_model.inputs]
        self.run: Runner | None = None

    def __call__(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.run is None:
            try:
                import nncf
            except ImportError as exc:
                raise missing_extra("nncf", "fast", exc) from None
            import openvino as ov

            logger.info(
                "calibrating int8 on this call's %d pairs (cached in %s)", len(inputs["input_ids"]), self.folder
            )
            sample = {name: inputs[name].numpy() for name in self.names}
            quantized = nncf.quantize(
                self.ov_model, nncf.Dataset([sample]), model_type=nncf.ModelType.TRANSFORMER, subset_size=1
            )
            _save_atomically(ov, quantized, self.folder)
            self.run = _compiled_runner(self.core, quantized, self.precision)
        return self.run(inputs)
