"""Retrieval drift: snapshots of what an index returns, and their comparison.

Pure measurement, below the service (which runs snapshots on live versions and gates reindexes
with :func:`compare`): nothing here opens an index or imports the service.

- :mod:`.queries`: query sets (BEIR ``queries.jsonl``, plain text, a BEIR folder with qrels);
- :mod:`.snapshot`: the snapshot file format;
- :mod:`.stats`: RBO, Jaccard, paired bootstrap and randomization tests, KS;
- :mod:`.compare`: the comparison and its gates;
- :mod:`.embedding`: embedding drift between two versions' stored vectors;
- :mod:`.report`: the HTML report with plots, and ``drift.json``.
"""

from ragwall.eval.drift.compare import Gates, compare
from ragwall.eval.drift.queries import QuerySet, load_query_set
from ragwall.eval.drift.report import write_report
from ragwall.eval.drift.snapshot import Snapshot, load_snapshot, save_snapshot

__all__ = [
    "Gates",
    "QuerySet",
    "Snapshot",
    "compare",
    "load_query_set",
    "load_snapshot",
    "save_snapshot",
    "write_report",
]
