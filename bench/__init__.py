"""clipbot's benchmark suite: ``make bench`` (full) or ``python -m bench.run --smoke`` (CI)."""
