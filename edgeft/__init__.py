"""edgeft: fine-tune → compress → run a language model on a device.

The package is split by stage (see ../README.md "How it works"):
``edgeft.train`` (torch), ``edgeft.compress`` (torch, onnx) and ``edgeft.runtime`` (numpy,
onnxruntime, tokenizers only). Importing ``edgeft`` itself is cheap: nothing heavy is loaded here.
"""

__version__ = "0.1.0"
