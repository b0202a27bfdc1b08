"""Fine-tuning (torch, transformers): ``edgeft.train.finetune.finetune(model, out, splits, cfg)``.

``from edgeft.train import TrainConfig`` works; the config is imported on first use, so
``import edgeft.train`` loads neither torch nor transformers. (The stage function keeps its module
path: ``edgeft.train.finetune`` is the module, and a package attribute cannot be both.)
"""

from edgeft.lazy import lazy_exports

_EXPORTS = {"TrainConfig": "config"}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
