"""One module per reranker family (or transport), each implementing ``Backend.encode`` and ``Backend.forward``."""
