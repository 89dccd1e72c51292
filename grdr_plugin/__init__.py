"""grdr: generative recall with dense reranking for text-to-video search on OpenSearch."""

__version__ = "0.1.0"
