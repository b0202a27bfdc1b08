"""Tiny randomly-initialised models of every architecture edgeft supports, built in seconds.

``make_tiny_model(out_dir, arch, task, labels)`` writes a normal Hugging Face folder (config,
safetensors, tokenizer) that ``edgeft train`` / ``export`` accept exactly like a real checkpoint.
All four architectures share one tiny WordPiece tokenizer trained on the test slices: the model
does not care which algorithm produced its ids, and one tokenizer keeps the fixtures simple.
"""

from __future__ import annotations

import json
import random
from functools import lru_cache
from pathlib import Path

DATA = Path(__file__).parent / "data"
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]  # ids 0..4

ARCHS = ("bert", "distilbert", "roberta", "gpt2")


def cue_rows(path: Path, n: int = 160, seed: int = 0) -> Path:
    """Sentences whose label is one cue word among filler: a tiny model learns them in seconds, so its
    probabilities are far from 0.5 and move when the numerics do (a random model's sit near 0.5)."""
    rng = random.Random(seed)
    filler = "the a movie film story plot actors scene was is and it of to with this that".split()
    with open(path, "w") as f:
        for i in range(n):
            label = ("negative", "positive")[i % 2]
            words = [rng.choice(filler) for _ in range(rng.randint(4, 12))]
            words.insert(rng.randint(0, len(words)), "awful" if label == "negative" else "great")
            f.write(json.dumps({"text": " ".join(words), "label": label}) + "\n")
    return path


def corpus() -> list[str]:
    """Every text of the real test slices (SST-2, BANKING77, WNUT-17)."""
    texts = []
    for name in ("sst2_300.jsonl", "banking77_300.jsonl", "wnut17_200.jsonl"):
        for line in (DATA / name).read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            texts.append(row["text"] if "text" in row else " ".join(row["tokens"]))
    return texts


@lru_cache(maxsize=1)
def tokenizer_json(vocab_size: int = 600) -> str:
    """A lowercasing BERT-style WordPiece tokenizer, serialised.

    The vocabulary is chosen deterministically (specials, every character and its ## piece, then
    the most frequent words, ties broken alphabetically) rather than by the WordPiece trainer,
    whose choice varies between processes: a test that compares two processes' runs needs the
    same ids in both.
    """
    from collections import Counter

    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True)
    splitter = pre_tokenizers.BertPreTokenizer()
    words = Counter(w for text in corpus() for w, _ in splitter.pre_tokenize_str(normalizer.normalize_str(text)))
    chars = sorted({c for w in words for c in w})
    vocab = [*SPECIALS, *chars, *(f"##{c}" for c in chars)]
    room = max(0, vocab_size - len(vocab))
    vocab += [w for w, _ in sorted(words.items(), key=lambda kv: (-kv[1], kv[0])) if len(w) > 1][:room]
    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizer
    tok.pre_tokenizer = splitter
    tok.decoder = decoders.WordPiece()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return tok.to_str()


def _config(arch: str, vocab_size: int, num_labels: int, id2label: dict, seed_kwargs: dict):
    from transformers import BertConfig, DistilBertConfig, GPT2Config, RobertaConfig

    common = dict(vocab_size=vocab_size, id2label=id2label, label2id={v: k for k, v in id2label.items()}, **seed_kwargs)
    if arch == "bert":
        return BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                          max_position_embeddings=128, pad_token_id=0, **common)
    if arch == "distilbert":
        return DistilBertConfig(dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=128,
                                pad_token_id=0, **common)
    if arch == "roberta":  # positions start at pad_token_id + 1, hence 128 + 2
        return RobertaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                             max_position_embeddings=130, pad_token_id=0, bos_token_id=2, eos_token_id=3, **common)
    if arch == "gpt2":  # decoder: classification pools the last non-pad token, so pad must be set
        return GPT2Config(n_embd=32, n_layer=2, n_head=2, n_positions=128, pad_token_id=0, bos_token_id=2,
                          eos_token_id=3, use_cache=False, **common)
    raise ValueError(f"unknown arch {arch!r}; choose from {ARCHS}")


def make_tiny_model(out_dir: str | Path, arch: str = "bert", task: str = "text-classification",
                    labels: tuple[str, ...] = ("negative", "positive"), seed: int = 0,
                    init_range: float = 0.02) -> Path:
    """Write a tiny random HF model folder for ``task`` and return its path.

    ``init_range`` is the weights' init std: with the default 0.02, a tiny random model gives nearly
    the same scores to every text; 0.5 makes the label depend on the text (for tests comparing labels).
    """
    import torch
    from tokenizers import Tokenizer
    from transformers import (AutoModelForQuestionAnswering, AutoModelForSequenceClassification,
                              AutoModelForTokenClassification, PreTrainedTokenizerFast)

    out = Path(out_dir)
    tok = Tokenizer.from_str(tokenizer_json())
    id2label = dict(enumerate(labels))
    config = _config(arch, tok.get_vocab_size(), len(labels), id2label, {"initializer_range": init_range})
    torch.manual_seed(seed)
    cls = {"token-classification": AutoModelForTokenClassification,  # question answering: start/end per token
           "question-answering": AutoModelForQuestionAnswering}.get(task, AutoModelForSequenceClassification)
    model = cls.from_config(config)
    model.save_pretrained(out)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", model_max_length=128)
    fast.save_pretrained(out)
    return out


LM_ARCHS = ("llama", "gpt2")
# A chat template in the ChatML spirit, over special tokens the tiny tokenizer gains for it.
TINY_CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }}{% if m['role'] == 'assistant' %}"
                      "[SEP]{% endif %} {% endfor %}{% if add_generation_prompt %}<|assistant|> {% endif %}")


def make_tiny_lm(out_dir: str | Path, arch: str = "llama", chat_template: bool = True, seed: int = 0,
                 init_range: float = 0.3, positions: int = 128) -> Path:
    """Write a tiny random causal LM folder (2 layers, 32 wide, ``positions`` long) and return its path.

    The tokenizer is the shared WordPiece one without the [CLS] … [SEP] wrapping (a decoder reads text as
    is), EOS = [SEP]; ``chat_template`` adds <|system|>/<|user|>/<|assistant|> tokens and a template, else
    the model has none (like GPT-2). ``init_range`` 0.3, not 0.02: with a frozen 32-wide head, LoRA can
    only reach logits of about ``init_range * 32``, and 0.02 leaves every word near-equally likely.
    """
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig, PreTrainedTokenizerFast

    out = Path(out_dir)
    tok = Tokenizer.from_str(tokenizer_json())
    tok.post_processor = None
    roles = ["<|system|>", "<|user|>", "<|assistant|>"] if chat_template else []
    tok.add_special_tokens(roles)
    ids = dict(pad_token_id=0, bos_token_id=2, eos_token_id=3, initializer_range=init_range)
    if arch == "llama":
        config = LlamaConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=positions, **ids)
    elif arch == "gpt2":
        config = GPT2Config(vocab_size=tok.get_vocab_size(), n_embd=32, n_layer=2, n_head=2, n_positions=positions, **ids)
    else:
        raise ValueError(f"unknown arch {arch!r}; choose from {LM_ARCHS}")
    torch.manual_seed(seed)
    AutoModelForCausalLM.from_config(config).save_pretrained(out)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", bos_token="[CLS]",
                                   eos_token="[SEP]", model_max_length=positions)
    if chat_template:
        fast.chat_template = TINY_CHAT_TEMPLATE
    fast.save_pretrained(out)
    return out


WORDS = "the a movie film story plot actors scene was is and it of to with this that".split()


def repeat_pairs(path: Path, n: int = 40, seed: int = 0) -> Path:
    """'repeat film' → 'film film': prompt/response rows a tiny causal LM learns in a few dozen steps."""
    rng = random.Random(seed)
    with open(path, "w") as f:
        for _ in range(n):
            w = rng.choice(WORDS)
            f.write(json.dumps({"prompt": f"repeat {w}", "response": f"{w} {w}"}) + "\n")
    return path
