"""Rerank: cross-encoders scored in onnxruntime, and the training of Ragwall's own."""

from ragwall.rerank.onnx import OnnxCrossEncoder, export_onnx, load_reranker

__all__ = ["OnnxCrossEncoder", "export_onnx", "load_reranker"]
