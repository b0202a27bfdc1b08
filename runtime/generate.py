"""``Generator``: text generation from a verified ``text-generation`` bundle, torch-free.

    from edgeft.runtime.generate import Generator
    g = Generator.load("runs/lm-int4")                     # verifies every file's sha256 first
    g.generate("Tell me a joke", max_new_tokens=64).text   # greedy
    for piece in g.stream([{"role": "user", "content": "Hi"}], temperature=0.7, seed=1):
        print(piece, end="", flush=True)

A plain onnxruntime + numpy loop over one decoder graph with past key/values (the graph prefills
from an empty cache and then decodes one token per call; a builder graph writes the new keys and
values into one bound cache buffer, as onnxruntime-genai runs it: ``Generator._decoder``). Measured
against onnxruntime-genai on the same graph (benchmarks/generate.py): the time is inside the graph,
and the loop needs no extra package (onnxruntime-genai is another 11 MB wheel, and has no wheel for
the manylinux2014 / Android Python the base install reaches); every sampling rule below is ours to
test. The tensor names come from the manifest's ``generation`` section, so graphs from both export
routes (edgeft.compress.export_lm) run through the same loop.

Streaming decodes the whole reply on every step and emits only the new characters once they no
longer end in U+FFFD (a byte-level BPE token can end in the middle of a UTF-8 character), and holds
back text that could still turn into a stop string: the pieces joined equal ``generate().text``.

numpy, onnxruntime, tokenizers, stdlib (jinja2 only to apply a chat template).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeft.errors import BundleError, ConfigError
from edgeft.runtime.bundle import Bundle, load_bundle
from edgeft.runtime.session import open_session, settings_for

TASK = "text-generation"
Prefill = tuple[np.ndarray, list[np.ndarray]]  # a prompt's last logits (1, vocab) and its cache


@dataclass(frozen=True)
class Generation:
    """One reply: its text and ids, why it stopped, and how long it took."""

    text: str
    token_ids: list[int]
    finish_reason: str  # "eos" | "stop" (a stop string) | "length" (max_new_tokens)
    prompt_tokens: int
    ttft_s: float  # seconds from the call to the first new token (tokenizing + prefill)
    decode_tokens_per_s: float  # new tokens after the first / their time; 0 when there is one token

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class _Run:
    """The state a stream fills in; ``Generator.stream(...).result`` after the loop ends."""

    result: Generation | None = None
    pieces: list[str] = field(default_factory=list)


class Stream:
    """An iterator of text pieces; ``.result`` holds the ``Generation`` once it is exhausted."""

    def __init__(self, it: Iterator[str], run: _Run):
        self._it, self._run = it, run

    def __iter__(self) -> Iterator[str]:
        return self._it

    def __next__(self) -> str:
        return next(self._it)

    @property
    def result(self) -> Generation | None:
        return self._run.result


class Generator:
    """A causal LM bundle + an onnxruntime session + its tokenizer and chat template."""

    def __init__(self, bundle: Bundle, session: Any, tokenizer: Any):
        m = bundle.manifest
        self.bundle, self.session, self.tokenizer = bundle, session, tokenizer
        self.spec: dict[str, Any] = m.extra["generation"]
        self.context_length = int(self.spec["context_length"])
        self.eos_ids = {int(i) for i in self.spec.get("eos_token_ids") or ()}
        self.chat_template: str | None = self.spec.get("chat_template")
        names = {i.name for i in session.get_inputs()}
        self._mask = "attention_mask" in names
        self._positions = "position_ids" in names
        self._select = "logits_positions" in names  # the LM head runs on the positions asked for (export_lm)
        self._past = [(p["input"], p["output"]) for p in self.spec["past"]]
        self._kv_shape = (1, int(self.spec["kv_heads"]), 0, int(self.spec["head_dim"]))
        self._outputs = ["logits"] + [o for _, o in self._past]

    @classmethod
    def load(cls, path: str | Path, threads: int | None = None) -> "Generator":
        """Verify the bundle (every file's sha256, the external weights included), then open it."""
        bundle = load_bundle(path)
        m = bundle.manifest
        if m.task != TASK or "generation" not in m.extra:
            raise BundleError(f"{path} is a {m.task} bundle; `edgeft generate` needs a text-generation bundle "
                              "(`edgeft export-lm MODEL_DIR --out BUNDLE`)")
        if isinstance(bundle.model, bytes):
            raise BundleError(f"{path}: a text-generation bundle keeps its weights in {m.model_file}.data beside the "
                              "graph; unzip it and load the folder")
        from tokenizers import Tokenizer

        session = open_session(bundle.model, settings_for(m, threads))
        return cls(bundle, session, Tokenizer.from_str(bundle.tokenizer_json))

    # ---- prompts -------------------------------------------------------------------------------------
    def render(self, messages: Sequence[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """The chat template applied to ``messages`` ([{"role", "content"}, ...]), as transformers does."""
        if not self.chat_template:
            raise ConfigError(f"{self.bundle.source}: this model has no chat template; give a plain prompt instead "
                              "of chat messages")
        for i, msg in enumerate(messages):
            if not isinstance(msg, dict) or not isinstance(msg.get("role"), str) or not isinstance(msg.get("content"), str):
                raise ConfigError(f"message {i} must be {{\"role\": str, \"content\": str}}, not {msg!r}")
        try:
            from jinja2.sandbox import ImmutableSandboxedEnvironment
        except ImportError:
            raise ConfigError("chat messages need jinja2 to apply the chat template: pip install jinja2") from None

        def raise_exception(message):
            raise ConfigError(f"the chat template refuses these messages: {message}")

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = raise_exception
        return env.from_string(self.chat_template).render(
            messages=list(messages), add_generation_prompt=add_generation_prompt,
            bos_token=self.spec.get("bos_token") or "", eos_token=self.spec.get("eos_token") or "")

    def encode(self, prompt: str | Sequence[dict[str, str]]) -> list[int]:
        """Token ids of a plain prompt, or of chat messages through the chat template."""
        if isinstance(prompt, str):
            return self.tokenizer.encode(prompt).ids
        if all(isinstance(t, int) for t in prompt):  # already token ids
            return list(prompt)
        # The template already writes the special tokens (as transformers' apply_chat_template).
        return self.tokenizer.encode(self.render(prompt), add_special_tokens=False).ids

    def check_length(self, n_prompt: int, max_new_tokens: int) -> None:
        """Refuse a prompt that cannot fit with its reply in the model's context window."""
        if n_prompt < 1:
            raise ConfigError("the prompt is empty: give at least one token of text")
        if n_prompt + max_new_tokens > self.context_length:
            raise ConfigError(f"the prompt has {n_prompt} tokens and --max-new-tokens is {max_new_tokens}: "
                              f"{n_prompt + max_new_tokens} > the model's context length of {self.context_length} "
                              f"tokens; shorten the prompt or lower --max-new-tokens")

    # ---- the model -----------------------------------------------------------------------------------
    def empty_cache(self) -> list[np.ndarray]:
        return [np.zeros(self._kv_shape, dtype=np.float32) for _ in self._past]

    def forward(self, ids: Sequence[int], past: list[np.ndarray], last: bool = False
                ) -> tuple[np.ndarray, list[np.ndarray]]:
        """Run ``ids`` after the cached ``past``: (logits (len(ids), vocab) float32, the new cache).

        ``last``: only the last position's logits (1, vocab), which is all generation needs; a graph with
        a ``logits_positions`` input then skips the LM head on the others (a 128-token prompt's
        logits are 25 MB on SmolLM2's 49,152 tokens).
        """
        feeds = self._feeds(ids, past[0].shape[2] if past else 0, last)
        for (name, _), value in zip(self._past, past):
            feeds[name] = value
        out = self.session.run(self._outputs, feeds)
        return (out[0][0][-1:] if last else out[0][0]), out[1:]

    def _feeds(self, ids: Sequence[int], done: int, last: bool) -> dict[str, np.ndarray]:
        """Every input but the cache, for ``ids`` after ``done`` cached positions."""
        feeds = {"input_ids": np.asarray([ids], dtype=np.int64)}  # (1, seq)
        if self._select:
            feeds["logits_positions"] = np.arange(len(ids) - 1 if last else 0, len(ids), dtype=np.int64)
        if self._mask:
            feeds["attention_mask"] = np.ones((1, done + len(ids)), dtype=np.int64)
        if self._positions:
            feeds["position_ids"] = np.arange(done, done + len(ids), dtype=np.int64)[None]
        return feeds

    def _decoder(self, prompt: list[int], capacity: int, prefilled: Prefill | None = None
                 ) -> tuple[np.ndarray, Callable[[int], np.ndarray]]:
        """Prefill ``prompt``: (its last logits (1, vocab), step(token) → the next ones). A builder graph's
        GroupQueryAttention writes new keys/values in place when its present output is bound to its past
        input's memory (as onnxruntime-genai runs it): one buffer of ``capacity`` positions instead of a
        cache copied on every token. The prompt is prefilled by ``forward`` and copied in, so its attention
        scores stay (prompt x prompt). The exporter's graphs (Concat) keep the copying loop."""
        logits, past = prefilled or self.forward(prompt, self.empty_cache(), last=True)
        if self.spec.get("route") != "builder":
            def copying(token: int) -> np.ndarray:
                nonlocal past
                out, past = self.forward([token], past, last=True)
                return out
            return logits, copying
        import onnxruntime as ort

        done, binding, caches = len(prompt), self.session.io_binding(), []
        binding.bind_output(self._outputs[0])  # first: get_outputs() lists outputs as bound
        for (name, out), value in zip(self._past, past):
            buf = np.zeros(value.shape[:2] + (capacity,) + value.shape[3:], dtype=value.dtype)  # pages mapped as written
            buf[:, :, :done] = value
            caches.append(ort.OrtValue.ortvalue_from_numpy(buf))  # wraps buf's memory, holds buf
            binding.bind_ortvalue_input(name, caches[-1])
            binding.bind_ortvalue_output(out, caches[-1])

        def step(token: int) -> np.ndarray:
            nonlocal done
            for name, value in self._feeds([token], done, last=True).items():
                binding.bind_cpu_input(name, value)
            self.session.run_with_iobinding(binding)
            done += 1
            return binding.get_outputs()[0].numpy()[0][-1:]
        step.caches = caches  # the binding does not keep them alive: the step does
        return logits, step

    def perplexity(self, texts: Sequence[str]) -> dict[str, float]:
        """exp(mean next-token NLL) over ``texts`` (each cut to the context length); the ONNX graph's own."""
        nll, n = 0.0, 0
        for text in texts:
            ids = self.tokenizer.encode(text).ids[: self.context_length]
            if len(ids) < 2:
                continue
            nll += token_nll(self.forward(ids, self.empty_cache())[0], ids[1:])
            n += len(ids) - 1
        if not n:
            raise ConfigError("perplexity needs at least one text of two or more tokens")
        return {"perplexity": math.exp(nll / n), "tokens": n}

    # ---- generation ----------------------------------------------------------------------------------
    def generate(self, prompt: str | Sequence[dict[str, str]] | Sequence[int], **kwargs) -> Generation:
        """The whole reply at once; same arguments as ``stream``."""
        s = self.stream(prompt, **kwargs)
        for _ in s:
            pass
        return s.result

    def stream(self, prompt: str | Sequence[dict[str, str]], max_new_tokens: int = 128, temperature: float = 0.0,
               top_p: float = 1.0, top_k: int = 0, seed: int | None = None, repetition_penalty: float = 1.0,
               stop: Sequence[str] = (), ignore_eos: bool = False, prefilled: Prefill | None = None) -> Stream:
        """Generate a reply piece by piece.

        Args:
            prompt: a plain string, or chat messages [{"role", "content"}, ...] (the chat template formats them).
            max_new_tokens: at most this many new tokens.
            temperature: 0 = greedy (argmax); > 0 samples from softmax(logits / temperature).
            top_p, top_k: nucleus and top-k filtering before sampling (1.0 / 0 = off).
            seed: the sampler's seed: the same seed gives the same text.
            repetition_penalty: > 1 divides positive logits (multiplies negative ones) of tokens already seen.
            stop: strings that end the reply (not included in it).
            ignore_eos: keep going past EOS (benchmarks: a fixed number of tokens).
            prefilled: what ``forward(prompt ids, empty_cache(), last=True)`` returned, reused instead of
                prefilling again (``edgeft eval`` scores the reference reply after the same prefill).
        Returns:
            a Stream of text pieces; ``.result`` is the Generation afterwards.
        """
        if max_new_tokens < 1 or temperature < 0 or not 0 < top_p <= 1 or top_k < 0 or repetition_penalty <= 0:
            raise ConfigError(f"--max-new-tokens must be >= 1, --temperature >= 0, --top-p in (0, 1], --top-k >= 0, "
                              f"--repetition-penalty > 0 (got {max_new_tokens}, {temperature}, {top_p}, {top_k}, "
                              f"{repetition_penalty})")
        start = time.perf_counter()
        ids = self.encode(prompt)
        self.check_length(len(ids), max_new_tokens)
        run = _Run()
        sampler = _Sampler(temperature, top_p, top_k, seed, repetition_penalty)
        return Stream(self._loop(ids, max_new_tokens, sampler, tuple(s for s in stop if s), ignore_eos, start, run,
                                 prefilled), run)

    def _loop(self, prompt: list[int], max_new: int, sampler: "_Sampler", stop: tuple[str, ...], ignore_eos: bool,
              start: float, run: _Run, prefilled: Prefill | None) -> Iterator[str]:
        logits, step = self._decoder(prompt, len(prompt) + max_new, prefilled)
        seen = np.zeros(logits.shape[-1], dtype=bool)
        seen[prompt] = True
        new: list[int] = []
        text, sent, reason, ttft, t1 = "", 0, "length", 0.0, time.perf_counter()
        while True:
            token = sampler(logits[-1], seen)
            if not new:
                t1 = time.perf_counter()  # decode speed counts from the first token on
                ttft = t1 - start
            if token in self.eos_ids and not ignore_eos:
                reason = "eos"
                break
            new.append(token)
            seen[token] = True
            text = self.tokenizer.decode(new, skip_special_tokens=True)
            cut = _first_stop(text, stop)
            if cut is not None:
                text, reason = text[:cut], "stop"
                break
            safe = len(text) - _held_back(text, stop)
            if safe > sent and not text[:safe].endswith("\ufffd"):
                yield text[sent:safe]
                sent = safe
            if len(new) >= max_new:
                break
            logits = step(token)
        if len(text) > sent:
            yield text[sent:]
        elapsed = time.perf_counter() - t1
        rate = (len(new) - 1) / elapsed if len(new) > 1 and elapsed > 0 else 0.0
        run.result = Generation(text, new, reason, len(prompt), ttft, rate)


def token_nll(logits: np.ndarray, targets: Sequence[int], scored: np.ndarray | None = None) -> float:
    """Summed NLL of ``targets`` (the ``scored`` ones), ``logits[i]`` predicting ``targets[i]`` (float64)."""
    z = logits[:len(targets)].astype(np.float64)
    z -= z.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    picked = logp[np.arange(len(targets)), targets]
    return -float((picked if scored is None else picked[scored]).sum())


def _first_stop(text: str, stop: tuple[str, ...]) -> int | None:
    hits = [i for i in (text.find(s) for s in stop) if i >= 0]
    return min(hits) if hits else None


def _held_back(text: str, stop: tuple[str, ...]) -> int:
    """Length of the longest end of ``text`` that begins a stop string (it may still become one)."""
    best = 0
    for s in stop:
        for k in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:k]):
                best = k
                break
    return best


class _Sampler:
    """Next token from one row of logits: repetition penalty, then greedy or temperature/top-k/top-p."""

    def __init__(self, temperature: float, top_p: float, top_k: int, seed: int | None, penalty: float):
        self.t, self.p, self.k, self.penalty = temperature, top_p, top_k, penalty
        self.rng = np.random.default_rng(seed)

    def __call__(self, logits: np.ndarray, seen: np.ndarray) -> int:
        z = logits.astype(np.float64)  # (vocab,)
        if self.penalty != 1.0:  # as transformers' RepetitionPenaltyLogitsProcessor
            z[seen] = np.where(z[seen] > 0, z[seen] / self.penalty, z[seen] * self.penalty)
        if self.t == 0:
            return int(z.argmax())
        z /= self.t
        if 0 < self.k < z.size:
            z[z < np.partition(z, -self.k)[-self.k]] = -np.inf
        probs = np.exp(z - z.max())
        probs /= probs.sum()
        if self.p < 1.0:
            order = np.argsort(-probs, kind="stable")
            keep = np.cumsum(probs[order]) - probs[order] < self.p  # the smallest set reaching top_p
            mask = np.zeros_like(probs, dtype=bool)
            mask[order[keep]] = True
            probs = np.where(mask, probs, 0.0)
            probs /= probs.sum()
        return int(self.rng.choice(probs.size, p=probs))
