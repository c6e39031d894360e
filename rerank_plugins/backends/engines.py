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
        MissingExtraError: OpenVINO asked for but not installed.
    """
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
    import torch

    precision = {"bfloat16": "bf16", "float16": "f16"}.get(dtype, "f32")
    key = f"{model_fingerprint(model_id)}-ov{ov.__version__.split('-')[0]}"
    folder = cache_root() / "openvino" / key
    xml = folder / "model.xml"
    core = ov.Core()
    if xml.is_file():
        logger.info("loading the cached OpenVINO model %s", folder)
        ov_model = core.read_model(xml)
    else:
        logger.info("converting %s to OpenVINO (cached for the next load in %s)", model_id, folder)
        ov_model = ov.convert_model(model, example_input=dict(example))
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
    compiled = core.compile_model(ov_model, "CPU", {"INFERENCE_PRECISION_HINT": precision})
    names = [port.get_any_name() for port in compiled.inputs]
    request = compiled.create_infer_request()

    def run(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        result = request.infer({name: inputs[name].numpy() for name in names})
        return torch.from_numpy(result[compiled.output(0)].copy())

    return run
