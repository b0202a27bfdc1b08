"""Compression stages (torch, onnx): distil, trim the vocabulary, export to ONNX, quantize to INT8.

The stage configs are importable from here (``from edgeft.compress import QuantizeConfig``),
imported on first use. The stage functions keep their module paths
(``edgeft.compress.quantize.quantize``): ``edgeft.compress.quantize`` is the module, and a package
attribute cannot be both.
"""

from edgeft.lazy import lazy_exports

_EXPORTS = {"DistillConfig": "distill", "TrimConfig": "trim_vocab", "ExportConfig": "export",
            "QuantizeConfig": "quantize"}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
