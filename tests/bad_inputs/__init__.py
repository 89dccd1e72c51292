"""The bad-input corpus (issue 7): cases.jsonl, its loader, and the files it needs, made on demand."""
