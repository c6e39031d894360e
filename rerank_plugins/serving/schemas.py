"""Request and response bodies of the two rerank endpoints (pydantic models).

``POST /rerank`` follows text-embeddings-inference; ``POST /v1/rerank`` follows Cohere's rerank API
(also spoken by Jina, vLLM and Infinity). Types are strict: a number where a string belongs is a 422
naming the field, never a silent conversion.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

__all__ = [
    "CohereDocument",
    "CohereRerankRequest",
    "CohereRerankResponse",
    "CohereResult",
    "CohereUsage",
    "ErrorBody",
    "TEIRank",
    "TEIRerankRequest",
]


class TEIRerankRequest(BaseModel):
    """text-embeddings-inference ``/rerank``: one query, its texts.

    Attributes:
        raw_scores: ``True``: each score is the model's raw logit; ``False``: the served
            normalisation (``rerank-plugins serve --normalize``, sigmoid by default).
        return_text: echo each text in its result.
        truncate: ``False``: a pair longer than the model's ``max_length`` is a 413 instead of
            being truncated.
    """

    model_config = ConfigDict(extra="ignore")

    query: StrictStr
    texts: list[StrictStr]
    raw_scores: StrictBool = False
    return_text: StrictBool = False
    truncate: StrictBool = True


class TEIRank(BaseModel):
    index: int
    score: float
    text: str | None = None


class CohereDocument(BaseModel):
    model_config = ConfigDict(extra="ignore")

    text: StrictStr


class CohereRerankRequest(BaseModel):
    """Cohere ``/v1/rerank``: ``documents`` are strings or ``{"text": ...}`` objects."""

    model_config = ConfigDict(extra="ignore")

    model: StrictStr | None = None
    query: StrictStr
    documents: list[StrictStr | CohereDocument]
    top_n: StrictInt | None = Field(default=None, ge=1)
    return_documents: StrictBool = False


class CohereResult(BaseModel):
    index: int
    relevance_score: float
    document: CohereDocument | None = None


class CohereUsage(BaseModel):
    total_tokens: int


class CohereRerankResponse(BaseModel):
    model: str
    results: list[CohereResult]
    usage: CohereUsage


class ErrorBody(BaseModel):
    """Every error answer: ``message`` (Cohere's field) and ``error`` (TEI's) carry the same text."""

    message: str
    error: str
    error_type: str
