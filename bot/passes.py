"""The enrichment passes as the CLI runs them: after ``clipbot index``, or alone (``clipbot enrich``).

Which passes exist is decided here, in one list (core.gallery.enrichment explains the mechanism);
each runs with its own progress bar and prints what it did. A pass that fails (a model that cannot
load) is reported and the others still run: the images stay searchable and wait for the next run.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from core.errors import ModelLoadError
from core.gallery import Captions, Colors, Engine, Enrichment, TextInPictures, run_enrichment

__all__ = ["PASS_NAMES", "enrichments", "run_passes"]


def enrichments() -> list[Enrichment]:
    """Every enrichment pass, in the order they run: the cheap ones first."""
    return [Colors(), Captions(), TextInPictures()]


PASS_NAMES = tuple(p.name for p in enrichments())


async def run_passes(engine: Engine, passes: Sequence[Enrichment], collection: str | None, *,
                     say_unavailable: bool) -> int:
    """Run ``passes`` over the images of ``collection`` waiting for them; returns how many failed.

    ``say_unavailable``: print why a pass cannot run here (captions off) instead of skipping it
    quietly, for ``clipbot enrich``, where the operator asked for it.
    """
    from tqdm import tqdm

    failed = 0
    for enrichment in passes:
        reason = enrichment.unavailable(engine)
        if reason is not None:
            if say_unavailable:
                print(f"Skipped the {enrichment.name} pass: {reason}.")
            continue
        targets = await enrichment.waiting(engine, collection)
        if not targets:
            continue
        try:
            with tqdm(total=len(targets), unit="img", desc=enrichment.verb, file=sys.stderr, disable=None) as bar:
                done = await run_enrichment(engine, enrichment, records=targets, progress=bar.update)
        except ModelLoadError as exc:
            print(f"clipbot: warning: no {enrichment.name}: {exc}", file=sys.stderr)
            failed += 1
            continue
        print(f"{enrichment.done_phrase(done.done)}; {len(done.skipped)} skipped.")
        for what, reason in done.skipped:
            print(f"  skipped {what}: {reason}")
    return failed
