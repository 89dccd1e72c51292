"""The GRDR model: multi-view tokenizer, generative retriever, dense reranker, training, export.

Importing this package does not import torch: `ids` is numpy-only and used by the query layer.
Torch modules live in `grdr_plugin.model.{nets,train,export,runtime}` and are imported lazily.
"""
