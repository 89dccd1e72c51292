"""Benchmarks and tools around the product: `grdr bench`, `grdr loadtest`, `make demo`, the reference
decoder, the trie-build and ingest benchmarks.  Serving code never imports this package."""
