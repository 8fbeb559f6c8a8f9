"""``ragwall rerank train``, ``defend train`` and ``defend split``: train the shipped models.

Each runs a trainer (``ragwall.rerank.train``, ``ragwall.defend.trainer``, ``ragwall.defend.data``)
in this process; progress goes to stderr, the result (a card, counts) to stdout as JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from ragwall.api.cli.common import err, reported
from ragwall.defend.data import write_part


def rerank_train(
    corpus: Annotated[
        list[Path], typer.Option(help="A BEIR folder whose titled documents train it (repeat).")
    ],
    out: Annotated[Path, typer.Option(help="Output folder (model_int8.onnx, tokenizer, card).")],
    layers: Annotated[int, typer.Option(help="Encoder layers kept from the backbone.")] = 6,
    max_length: Annotated[int, typer.Option(help="Max tokens of query + passage.")] = 192,
    negatives: Annotated[int, typer.Option(help="Hard negatives per query.")] = 3,
    epochs: Annotated[int, typer.Option()] = 1,
    batch_size: Annotated[int, typer.Option()] = 16,
    lr: Annotated[float, typer.Option()] = 4e-5,
    seed: Annotated[int, typer.Option()] = 13,
    max_pairs: Annotated[int | None, typer.Option(help="Cap the pairs (quick runs).")] = None,
) -> None:
    """Fine-tune a cross-encoder from the packaged MiniLM on weak supervision; export ONNX int8."""
    # deferred: the trainer loads torch and transformers only to train
    from ragwall.rerank.train import TrainConfig, train

    out.mkdir(parents=True, exist_ok=True)
    card = train(
        TrainConfig(
            corpora=list(corpus),
            out_dir=out,
            layers=layers,
            max_length=max_length,
            negatives=negatives,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            max_pairs=max_pairs,
        ),
        say=lambda m: err.print(m),
    )
    err.print(f"trained on {card.pairs} pairs in {card.train_seconds} s; model in {out}")


def defend_train(
    data: Annotated[
        Path,
        typer.Option(
            help="A folder laid out like ../shared/data: bipia/, injection/*.jsonl, cranfield/, "
            "cisi/, squad/, docs/."
        ),
    ],
    out: Annotated[
        Path, typer.Option(help="Output folder (model.onnx, tokenizer.json, card.json).")
    ] = Path("defend/models/injection-minilm"),
    work: Annotated[
        Path,
        typer.Option(help="Checkpoints and finished steps; run the same command again to resume."),
    ] = Path(".train/defend"),
    steps: Annotated[int, typer.Option(min=1, help="Training steps of the shipped model.")] = 1200,
    layers: Annotated[
        int, typer.Option(min=1, max=6, help="Backbone layers kept (all fine-tuned).")
    ] = 6,
    train_tokens: Annotated[
        int, typer.Option(min=16, max=256, help="Token window per training text.")
    ] = 128,
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
    leave_out: Annotated[
        list[str] | None,
        typer.Option(
            help="A source to leave out for a leave-one-source-out figure (repeat it); "
            "default: injecagent, spikee, cyberseceval, tasktracker, bipia."
        ),
    ] = None,
    loso_steps: Annotated[int, typer.Option(min=1, help="Steps of each left-out model.")] = 250,
    no_leave_out: Annotated[
        bool, typer.Option("--no-leave-out", help="Skip the leave-one-source-out models.")
    ] = False,
    seed: Annotated[int, typer.Option()] = 7,
) -> None:
    """Fine-tune the injection classifier (every layer; CPU, or a GPU if torch sees one),
    calibrate it on held-back families, export ONNX int8 with its card. Resumable."""
    # deferred: torch and transformers load only to train
    from ragwall.defend.finetune import FineTune
    from ragwall.defend.trainer import DEFAULT_LOSO, train

    recipe = FineTune(
        layers=layers,
        train_tokens=train_tokens,
        steps=steps,
        loso_steps=loso_steps,
        batch_size=batch_size,
        seed=seed,
    )
    sources = () if no_leave_out else tuple(leave_out or DEFAULT_LOSO)
    command = "ragwall defend train " + " ".join(sys.argv[3:] if len(sys.argv) > 3 else [])
    with reported():
        card = train(data, out, work, recipe, sources, lambda m: err.print(m), command.strip())
    print(json.dumps(card))


def defend_split(
    data: Annotated[Path, typer.Option(help="The folder `defend train` reads.")],
    out: Annotated[Path, typer.Option(help="Where to write {dataset}.jsonl files.")],
    part: Annotated[str, typer.Option(help="train, val or test.")] = "test",
    seed: Annotated[int, typer.Option()] = 7,
) -> None:
    """Write one part of the training split (for `ragwall eval injection --dataset`)."""

    with reported():
        counts = write_part(data, part, out, seed)
    for name, n in counts.items():
        err.print(f"{out / (name + '.jsonl')}: {n} texts")
    print(json.dumps(counts))
