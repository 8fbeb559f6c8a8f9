"""A cross-encoder scored in onnxruntime, tokenized with ``tokenizers``: no torch at query time.

``load_reranker`` takes a ready ``.onnx`` file (with ``tokenizer.json`` beside it), a folder that
holds ``model.onnx``, any Hugging Face cross-encoder folder (exported to ONNX once, quantized int8
per channel, cached beside the data), or a Hugging Face id found in the local cache.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from ragwall.errors import ModelError
from ragwall.onnx_runtime import cpu_session, folder_digest, run_encodings
from ragwall.settings import Settings

ONNX_NAME = "model.onnx"
INT8_NAME = "model_int8.onnx"


class OnnxCrossEncoder:
    """Scores (query, passage) pairs; higher is more relevant."""

    def __init__(
        self,
        onnx_path: Path,
        tokenizer_path: Path,
        model_id: str,
        max_length: int = 256,
        threads: int | None = None,
    ) -> None:
        from tokenizers import Tokenizer

        self.model_id = model_id
        self.path = Path(onnx_path)
        self.session = cpu_session(onnx_path, threads)
        self.tokenizer = Tokenizer.from_file(str(tokenizer_path))
        # longest_first, not only_second: a query longer than max_length would make only_second
        # fail on every pair (and rerank be skipped); longest_first trims whichever side is longer.
        self.tokenizer.enable_truncation(max_length=max_length, strategy="longest_first")
        self.tokenizer.enable_padding()

    def score(self, query: str, passages: Sequence[str], batch_size: int = 32) -> list[float]:
        out: list[float] = []
        for start in range(0, len(passages), batch_size):
            pairs = [(query, p) for p in passages[start : start + batch_size]]
            logits = run_encodings(self.session, self.tokenizer.encode_batch(pairs))
            out.extend(float(x) for x in logits.reshape(len(pairs), -1)[:, 0])
        return out


def export_onnx(model_dir: Path, out_dir: Path, quantize: bool = True) -> Path:
    """Export a Hugging Face sequence-classification model to ONNX (and int8, per channel)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out_dir.mkdir(parents=True, exist_ok=True)
    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    tokenizer.save_pretrained(str(out_dir))  # writes tokenizer.json for the fast tokenizer
    sample = tokenizer(["a query"], ["a passage to score"], return_tensors="pt")
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in sample]
    dynamic = {n: {0: "batch", 1: "sequence"} for n in names} | {"logits": {0: "batch"}}
    fp32 = out_dir / ONNX_NAME
    with torch.no_grad():
        torch.onnx.export(
            model,
            tuple(sample[n] for n in names),
            str(fp32),
            input_names=names,
            output_names=["logits"],
            dynamic_axes=dynamic,
            opset_version=17,
            dynamo=False,
        )
    if not quantize:
        return fp32
    from onnxruntime.quantization import QuantType, quantize_dynamic

    int8 = out_dir / INT8_NAME
    quantize_dynamic(str(fp32), str(int8), per_channel=True, weight_type=QuantType.QInt8)
    return int8


def _cache_dir(model_dir: Path, base: Path | None) -> Path:
    base = base or Settings().models_dir
    key = folder_digest(
        model_dir.resolve(), ("config.json", "model.safetensors", "pytorch_model.bin")
    )
    return base / f"{model_dir.name}-{key}"


def load_reranker(
    spec: str, max_length: int = 256, cache_dir: Path | None = None
) -> OnnxCrossEncoder:
    """Load a reranker from an .onnx file, an exported folder, a HF folder, or a cached HF id.

    A Hugging Face model is exported once into ``cache_dir`` (default: ``$RAGWALL_DATA_DIR/models``).
    """
    path = Path(spec).expanduser()
    try:
        if path.is_file() and path.suffix == ".onnx":
            return OnnxCrossEncoder(
                path, path.parent / "tokenizer.json", spec, _max_len(path.parent, max_length)
            )
        if not path.is_dir():
            from huggingface_hub import snapshot_download

            path = Path(snapshot_download(spec, local_files_only=True))
        for name in (INT8_NAME, ONNX_NAME):
            if (path / name).exists() and (path / "tokenizer.json").exists():
                return OnnxCrossEncoder(
                    path / name, path / "tokenizer.json", spec, _max_len(path, max_length)
                )
        if not (path / "config.json").exists():
            raise ModelError(f"{path} holds neither an ONNX model nor a Hugging Face model")
        cache = _cache_dir(path, cache_dir)
        onnx_file = cache / INT8_NAME
        if not onnx_file.exists():
            onnx_file = export_onnx(path, cache)
        return OnnxCrossEncoder(
            onnx_file, cache / "tokenizer.json", spec, _max_len(path, max_length)
        )
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(
            f"could not load reranker {spec!r}: {type(exc).__name__}: {exc}. Give an .onnx file, "
            "a folder with model.onnx and tokenizer.json, a Hugging Face cross-encoder folder, or "
            "an id in the local Hugging Face cache."
        ) from exc


def _max_len(folder: Path, default: int) -> int:
    card = folder / "ragwall_reranker.json"
    if card.exists():
        return int(json.loads(card.read_text()).get("max_length", default))
    return default
