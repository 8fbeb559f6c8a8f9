"""The ``ragwall`` command line (output for scripts and logs: see ``ragwall.api.terminal``).

This module only assembles: it builds the Typer ``app`` (the console script
``ragwall = "ragwall.api.cli:app"``) from the command modules, one per area, in the order
``--help`` lists them. What the commands share (the consoles, the service they open, how a
Ragwall error ends them) is ``ragwall.api.cli.common``; the command modules import it and never
each other.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from ragwall.api.cli import (  # noqa: E402
    audit,
    drift,
    eval,
    index,
    ingest,
    keys,
    mcp,
    serve,
    sources,
    train,
    usage,
)
from ragwall.api.terminal import typer_app  # noqa: E402

app = typer_app("Ragwall: retrieval that AI agents can trust.")

sources_app = typer_app("Register and inspect sources.")
app.add_typer(sources_app, name="sources")
sources_app.command("add")(sources.sources_add)
sources_app.command("list")(sources.sources_list)
sources_app.command("set")(sources.sources_set)
sources_app.command("remove")(sources.sources_remove)
sources_app.command("quarantine")(sources.sources_quarantine)
sources_app.command("release")(sources.sources_release)

keys_app = typer_app("Create, list and revoke API keys, and set their budgets.")
app.add_typer(keys_app, name="keys")
keys_app.command("create")(keys.keys_create)
keys_app.command("list")(keys.keys_list)
keys_app.command("revoke")(keys.keys_revoke)
keys_app.command("set")(keys.keys_set)

eval_app = typer_app("Measure retrieval quality (commands a CI can gate on).")
app.add_typer(eval_app, name="eval")
eval_app.command("retrieval")(eval.eval_retrieval)
eval_app.command("poisoning")(eval.eval_poisoning)
eval_app.command("injection")(eval.eval_injection)
eval_app.command("snapshot")(drift.eval_snapshot)
eval_app.command("drift")(drift.eval_drift)

rerank_app = typer_app("Train and check cross-encoder rerankers.")
app.add_typer(rerank_app, name="rerank")
rerank_app.command("train")(train.rerank_train)

audit_app = typer_app("Inspect the audit trail.")
app.add_typer(audit_app, name="audit")
audit_app.command("verify")(audit.audit_verify)

documents_app = typer_app("Quarantine or release single documents.")
app.add_typer(documents_app, name="documents")
documents_app.command("quarantine")(sources.documents_quarantine)
documents_app.command("release")(sources.documents_release)

defend_app = typer_app("Train and inspect the injection defenses.")
app.add_typer(defend_app, name="defend")
defend_app.command("train")(train.defend_train)
defend_app.command("split")(train.defend_split)

app.command()(ingest.ingest)
app.command()(serve.serve)
app.command()(mcp.mcp)
app.command()(usage.usage)

index_app = typer_app("List, activate and roll back index versions.")
app.add_typer(index_app, name="index")
index_app.command("list")(index.index_list)
index_app.command("activate")(index.index_activate)
index_app.command("rollback")(index.index_rollback)
app.command()(index.reindex)

__all__ = ["app", "main"]


def main() -> None:  # pragma: no cover - console entry
    app()
