"""A GGUF model, its generations, and compressed contexts."""

from __future__ import annotations

import codecs
import os
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from . import _core
from .presses import AdaKVPress, BasePress, CriticalAdaKVPress, CriticalKVPress

__all__ = ["Model", "Context", "TextStream", "PressLike"]

PressLike = Union[BasePress, AdaKVPress, CriticalKVPress, CriticalAdaKVPress]
Message = Mapping[str, str]


def _press_options(press: Optional[PressLike], compress_every: Optional[int] = None) -> Optional[_core.PressOptions]:
    if press is None and compress_every is None:
        return None
    if press is None:
        o = _core.PressOptions()
        o.kv_type = ""  # the model's
    elif callable(getattr(press, "options", None)):
        o = press.options()
    else:
        raise TypeError(f"press must be a kvsqueeze press (e.g. SnapKVPress), not {type(press).__name__}")
    if compress_every is not None:
        if int(compress_every) < 1:
            raise ValueError(f"compress_every must be >= 1 (got {compress_every})")
        o.compress_every = int(compress_every)
    return o


def _message_pairs(messages: Sequence[Message]) -> List[Tuple[str, str]]:
    pairs = []
    for m in messages:
        try:
            pairs.append((str(m["role"]), str(m["content"])))
        except (KeyError, TypeError):
            raise ValueError("each message is a mapping with 'role' and 'content'") from None
    return pairs


class TextStream(Iterator[str]):
    """A generation handed on piece by piece (``for piece in stream``). Pieces are whole
    UTF-8 characters and never contain (the start of) a stop string. After the end,
    ``text``, ``token_ids``, ``finish_reason`` ("stop" or "length") and ``stats`` tell
    what happened. Ctrl-C between pieces stops it; iterate again to go on."""

    def __init__(self, generation: _core.Generation) -> None:
        self._gen = generation
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._parts: List[str] = []
        self._ended = False

    def __iter__(self) -> "TextStream":
        return self

    def __next__(self) -> str:
        while not self._ended:
            piece = self._gen.next_piece()
            if piece is None:
                self._ended = True
                rest = self._decoder.decode(b"", final=True)
                if rest:
                    self._parts.append(rest)
                    return rest
                break
            text = self._decoder.decode(piece)
            if text:
                self._parts.append(text)
                return text
        raise StopIteration

    def read(self) -> str:
        """Runs the generation to its end and returns all of its text."""
        for _ in self:
            pass
        return self.text

    @property
    def text(self) -> str:
        """The text handed on so far."""
        return "".join(self._parts)

    @property
    def token_ids(self) -> List[int]:
        return list(self._gen.tokens)

    @property
    def finish_reason(self) -> Optional[str]:
        """"stop" (end-of-generation token or stop string), "length", or None while running."""
        return self._gen.finish_reason or None

    @property
    def stats(self) -> Dict[str, Any]:
        """Token counts, seconds and rates of the prompt and the decode, KV bytes before
        compression, after the prompt and now, the press's seconds and head budgets."""
        return dict(self._gen.report())


class Context:
    """A context read once through a press (question-agnostic) and kept compressed in
    memory; each question runs against a copy of its cache, so it answers many."""

    def __init__(self, model: "Model", core: _core.Context, chat: bool) -> None:
        self._model = model
        self._core = core
        self.chat = chat

    def ask(
        self,
        question: str = "",
        max_new_tokens: int = 50,
        *,
        temperature: float = 0.0,
        top_k: int = 40,
        top_p: float = 0.95,
        seed: int = 0,
        stop: Optional[Sequence[str]] = None,
        stream: bool = False,
    ) -> Union[str, TextStream]:
        """The answer to `question` read after the context (greedy unless a temperature
        is given). With a chat template the question closes the user turn the context
        opened, and the answer is the assistant's turn."""
        ids = self._model._question_ids(question, self.chat)
        gen = self._core.ask(ids, max_new_tokens, temperature, top_k, top_p, seed, False, list(stop or []))
        out = TextStream(gen)
        return out if stream else out.read()

    @property
    def n_tokens(self) -> int:
        """Tokens of the context (its positions run 0 .. n_tokens-1)."""
        return self._core.n_tokens

    @property
    def bytes(self) -> int:
        """Bytes the kept KV rows hold (keys, values, positions)."""
        return self._core.bytes

    @property
    def bytes_uncompressed(self) -> int:
        """Bytes the full cache of the context would hold."""
        return self._core.bytes_uncompressed

    @property
    def compression(self) -> float:
        """Fraction of the full cache's bytes kept."""
        return self.bytes / self.bytes_uncompressed if self.bytes_uncompressed else 1.0

    @property
    def press_seconds(self) -> float:
        return self._core.press_seconds

    def budgets(self) -> np.ndarray:
        """Rows kept by each (layer, KV head): int64 array [n_layer, n_head_kv]."""
        return np.asarray(self._core.rows(), dtype=np.int64)

    def selection(self) -> List[List[np.ndarray]]:
        """Kept token positions (int32, ascending) of each layer and KV head:
        ``selection()[layer][head]``."""
        rows = self._core.rows()
        return [[self._core.positions(layer, head) for head in range(len(heads))] for layer, heads in enumerate(rows)]

    def save(self, path: Union[str, os.PathLike[str]]) -> None:
        """Writes the compressed cache (the CLI's --save-cache format); Model.load_context
        reads it back into the same model."""
        self._core.save(os.fspath(path))

    def __repr__(self) -> str:
        return (f"Context({self.n_tokens} tokens, {self.bytes / 2**20:.2f} MiB of "
                f"{self.bytes_uncompressed / 2**20:.2f} MiB, chat={self.chat})")


class Model:
    """A GGUF model: ``Model("smollm2-135m-instruct")`` or ``Model("path/to/model.gguf")``.

    `threads`: CPU threads for this model's work (None: all cores). `kv_type`: storage of
    its KV caches, "f16" (default), "f32" or "q8_0"."""

    def __init__(self, path_or_short_name: Union[str, os.PathLike[str]], threads: Optional[int] = None,
                 kv_type: str = "f16") -> None:
        if threads is not None and int(threads) < 1:
            raise ValueError(f"threads must be >= 1 (got {threads})")
        try:
            path = _core.resolve_model_path(os.fspath(path_or_short_name))
        except RuntimeError as e:  # neither a file nor a fetched known model
            raise FileNotFoundError(str(e)) from None
        self._engine = _core.Engine(path, int(threads or 0), kv_type)

    # --- what the model is ---------------------------------------------------------
    @property
    def path(self) -> str:
        return self._engine.path

    @property
    def architecture(self) -> str:
        return self._engine.architecture

    @property
    def n_layer(self) -> int:
        return self._engine.n_layer

    @property
    def n_head(self) -> int:
        return self._engine.n_head

    @property
    def n_head_kv(self) -> int:
        return self._engine.n_head_kv

    @property
    def head_dim(self) -> int:
        return self._engine.head_dim

    @property
    def n_ctx(self) -> int:
        """The trained context length."""
        return self._engine.n_ctx

    @property
    def n_vocab(self) -> int:
        return self._engine.n_vocab

    @property
    def kv_type(self) -> str:
        return self._engine.kv_type

    @property
    def threads(self) -> Optional[int]:
        return self._engine.threads or None

    @threads.setter
    def threads(self, n: Optional[int]) -> None:
        if n is not None and int(n) < 1:
            raise ValueError(f"threads must be >= 1 (got {n})")
        self._engine.threads = int(n or 0)

    @property
    def has_chat_template(self) -> bool:
        """The GGUF carries a chat template (chat=None means "use it" wherever it is)."""
        return self._engine.has_chat_template

    @property
    def chat_format(self) -> str:
        """The chat format messages are rendered in (llama3, chatml, mistral, gemma)."""
        return self._engine.chat_format

    def __repr__(self) -> str:
        return f"Model({self.path!r}, {self.architecture}, {self.n_layer} layers)"

    # --- text and ids --------------------------------------------------------------
    def tokenize(self, text: str, add_bos: bool = True, parse_special: bool = True) -> List[int]:
        """Token ids of `text`; BOS first when add_bos and the model wants one; special
        tokens written in the text (e.g. <|im_start|>) become their ids when parse_special."""
        return self._engine.tokenize(text, add_bos, parse_special)

    def detokenize(self, ids: Sequence[int], special: bool = False) -> str:
        """The text of `ids` (special tokens spelled out when `special`)."""
        return self._engine.detokenize([int(i) for i in ids], special).decode("utf-8", errors="replace")

    def apply_chat_template(self, messages: Sequence[Message], add_generation_prompt: bool = True) -> str:
        """`messages` ({"role": system|user|assistant, "content": ...}) in the model's chat
        format, followed (add_generation_prompt) by the opening of the assistant's turn."""
        return self._engine.render_chat(_message_pairs(messages), add_generation_prompt)

    # --- running it ----------------------------------------------------------------
    def logits(self, ids: Sequence[int], compress_at: Optional[int] = None,
               press: Optional[PressLike] = None) -> np.ndarray:
        """float32 logits after every id, [len(ids), n_vocab]. With `compress_at` the first
        compress_at ids are one prompt compressed by `press` and the rest are read one by
        one against its cache (what the fidelity metrics measure)."""
        return self._engine.logits([int(i) for i in ids], int(compress_at or 0), _press_options(press))

    def generate(
        self,
        prompt: Union[str, Sequence[int]],
        max_tokens: int = 64,
        temperature: float = 0.8,
        top_k: int = 40,
        top_p: float = 0.95,
        seed: int = 0,
        *,
        stop: Optional[Sequence[str]] = None,
        press: Optional[PressLike] = None,
        compress_every: Optional[int] = None,
        ignore_eos: bool = False,
        stream: bool = False,
    ) -> Union[str, TextStream]:
        """Continues `prompt` (text, or token ids as given) with up to `max_tokens` tokens.
        temperature 0 is greedy. The prompt is read through `press` (question-aware: it is
        compressed as a whole); `compress_every` N also evicts while decoding, once a head
        is N rows over its budget. Returns the text, or a TextStream when `stream`."""
        ids = self.tokenize(prompt) if isinstance(prompt, str) else [int(i) for i in prompt]
        gen = self._engine.start(ids, _press_options(press, compress_every), max_tokens, temperature, top_k, top_p,
                                 seed, ignore_eos, list(stop or []))
        out = TextStream(gen)
        return out if stream else out.read()

    def chat(self, messages: Sequence[Message], max_tokens: int = 256, temperature: float = 0.8, top_k: int = 40,
             top_p: float = 0.95, seed: int = 0, *, stop: Optional[Sequence[str]] = None,
             press: Optional[PressLike] = None, stream: bool = False) -> Union[str, TextStream]:
        """The assistant's reply to `messages`, rendered through the model's chat template.
        The template's markup is tokenized with its special tokens and the messages' text
        as plain text, so a message cannot close its turn or open another."""
        ids = self._engine.chat_ids(_message_pairs(messages), True)
        return self.generate(ids, max_tokens, temperature, top_k, top_p, seed, stop=stop, press=press, stream=stream)

    def compress(self, context: str, press: Optional[PressLike] = None, *, chat: Optional[bool] = None) -> Context:
        """Reads `context` alone through `press` and keeps its compressed cache, to answer
        questions with ``ctx.ask(...)``. chat (None: when the GGUF has a template) opens a
        user turn with the context; each question then closes it."""
        use_chat = self._use_chat(chat)
        if use_chat:
            # The template's markup is special; the document is plain text (a "</s>" or
            # "<|im_end|>" inside it cannot end the turn).
            ids, _ = self._engine.split_chat_ids(context, "")
        else:
            ids = self.tokenize(context, add_bos=True, parse_special=False)
        return Context(self, self._engine.compress(ids, _press_options(press)), use_chat)

    def load_context(self, path: Union[str, os.PathLike[str]], *, chat: Optional[bool] = None) -> Context:
        """A context saved by Context.save (or --save-cache) for this same model."""
        if not os.path.exists(path):
            raise FileNotFoundError(f"no saved context '{os.fspath(path)}'")
        return Context(self, self._engine.load_context(os.fspath(path)), self._use_chat(chat))

    # --- helpers -------------------------------------------------------------------
    def _use_chat(self, chat: Optional[bool]) -> bool:
        if chat is None:
            return self.has_chat_template
        if chat:
            self._engine.chat_format  # raises ValueError when the model has no format kvsqueeze renders
        return bool(chat)

    def _question_ids(self, question: str, chat: bool) -> List[int]:
        if chat:
            # The question closes the user turn: the rest of one rendered turn after its context.
            _, tail = self._engine.split_chat_ids("CONTEXT", question)
            return list(tail)
        return self.tokenize(question, add_bos=False, parse_special=False) if question else []
