"""The device runtime: load a bundle, verify it, predict, evaluate, benchmark.

Imports only numpy, onnxruntime, tokenizers and the standard library — never torch or
transformers — so it runs on a Raspberry Pi with ``pip install edgeft``.
"""
