"""One module per reranker family, each implementing ``Backend.score_batch``."""
