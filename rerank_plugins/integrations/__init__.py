"""Framework adapters (LangChain, LlamaIndex); each imports its framework only when used."""
