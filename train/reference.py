"""The PyTorch reference for ``edgeft bench --pytorch``: the fine-tuned HF model in eager mode.

It lives in ``edgeft.train`` (torch, transformers) so that nothing under ``runtime/`` imports them;
the bench worker imports this module only when a PyTorch column is asked for.
"""

from __future__ import annotations

import time


def load_for_bench(path: str, threads: int, texts: list[str], max_length: int, t0: float):
    """Load the model, predict one text, and hand the bench worker what it needs.

    Returns:
        ({"load_ms", "first_prediction_ms"}, run(feeds) taking numpy int64 arrays, a tokenizers
        Tokenizer for making feeds, the model's input names, the pad id).
    """
    import torch
    from tokenizers import Tokenizer
    import transformers
    from transformers import AutoConfig, AutoTokenizer

    torch.set_num_threads(threads)
    started = time.perf_counter()
    config = AutoConfig.from_pretrained(path, trust_remote_code=False)  # never a prompt, never code
    heads = {"TokenClassification": "AutoModelForTokenClassification", "QuestionAnswering": "AutoModelForQuestionAnswering"}
    head = next((cls for key, cls in heads.items() if any(key in a for a in config.architectures or [])),
                "AutoModelForSequenceClassification")
    cls = getattr(transformers, head)
    model = cls.from_pretrained(path, use_safetensors=True, trust_remote_code=False).eval()
    hf_tok = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    load_ms = (time.perf_counter() - started) * 1000
    with torch.inference_mode():
        first = texts[0] if isinstance(texts[0], str) else tuple(texts[0])  # QA: a (question, context) pair
        model(**hf_tok(*([first] if isinstance(first, str) else first), return_tensors="pt", truncation=True,
                       max_length=max_length))
    first_ms = (time.time() - t0) * 1000  # process start → first result
    tok = Tokenizer.from_str(hf_tok.backend_tokenizer.to_str())
    tok.no_padding()
    tok.enable_truncation(max_length=max_length)
    names = [n for n in hf_tok.model_input_names if n in ("input_ids", "attention_mask", "token_type_ids")]

    def run(feeds):
        with torch.inference_mode():  # from_numpy shares memory: no copy inside the timed call
            return model(**{k: torch.from_numpy(v) for k, v in feeds.items()})

    return {"load_ms": load_ms, "first_prediction_ms": first_ms}, run, tok, names, hf_tok.pad_token_id or 0
