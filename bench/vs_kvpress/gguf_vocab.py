"""Token ids -> text straight from a GGUF's vocabulary.

The harness feeds kvsqueeze's token ids to the model, so it needs no tokenizer to
encode; it only turns generated ids back into text for scoring. transformers' GGUF
tokenizer conversion is slow and, for some models (gemma3), encodes differently from
llama.cpp, so we read the vocabulary ourselves: byte-level BPE ("gpt2") and
SentencePiece ("llama") cover the models this project ships.
"""
from __future__ import annotations

import gguf

CONTROL, BYTE = 3, 6  # llama.cpp token types


def _gpt2_byte_decoder() -> dict[str, int]:
    # GPT-2 maps every byte to a printable character; printable bytes map to themselves
    # and the rest are shifted past 255, in byte order.
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[chr(b)] = b
        else:
            table[chr(256 + extra)] = b
            extra += 1
    return table


def _field(reader: gguf.GGUFReader, key: str, default=None):
    f = reader.fields.get(key)
    return default if f is None else f.contents()


class GgufVocab:
    def __init__(self, path: str):
        r = gguf.GGUFReader(path)
        self.kind = _field(r, "tokenizer.ggml.model")
        self.tokens: list[str] = _field(r, "tokenizer.ggml.tokens")
        self.types: list[int] = _field(r, "tokenizer.ggml.token_type", [1] * len(self.tokens))
        self.bos = _field(r, "tokenizer.ggml.bos_token_id")
        self.eos = _field(r, "tokenizer.ggml.eos_token_id")
        self.eot = _field(r, "tokenizer.ggml.eot_token_id")
        self._bytes = _gpt2_byte_decoder() if self.kind == "gpt2" else None

    def id_of(self, text: str) -> int | None:
        try:
            return self.tokens.index(text)
        except ValueError:
            return None

    def stop_ids(self) -> set[int]:
        """End of sequence and end of turn: where an answer stops."""
        ids = {self.eos, self.eot, self.id_of("<|im_end|>"), self.id_of("<end_of_turn>"), self.id_of("<|eot_id|>")}
        return {i for i in ids if i is not None}

    def decode(self, ids: list[int]) -> str:
        out = bytearray()
        for i in ids:
            t, kind = self.tokens[i], self.types[i]
            if kind == CONTROL:
                continue  # like skip_special_tokens
            if self.kind == "gpt2":
                out += bytes(self._bytes.get(ch, 63) for ch in t)
            elif kind == BYTE and t.startswith("<0x"):
                out.append(int(t[3:-1], 16))
            else:
                out += t.replace("\u2581", " ").encode()
        return out.decode("utf-8", errors="replace")
