"""kvpress's ``kv-press-text-generation`` pipeline, over kvsqueeze."""

from __future__ import annotations

import os
from typing import Dict, List, Optional, Sequence, Union

from .model import Model, PressLike

__all__ = ["Pipeline", "pipeline"]


class Pipeline:
    """``Pipeline(model)(context, question=..., press=...)`` → ``{"answer": ...}``.

    As in kvpress, the context is compressed on its own (question-agnostic) and the
    question is read afterwards against the compressed cache; with ``questions=[...]``
    the context is compressed once and every question answered from it
    (``{"answers": [...]}``). Answers are greedy."""

    def __init__(self, model: Union[Model, str, os.PathLike[str]]) -> None:
        self.model = model if isinstance(model, Model) else Model(model)

    def __call__(
        self,
        context: str,
        question: str = "",
        *,
        questions: Optional[Sequence[str]] = None,
        press: Optional[PressLike] = None,
        max_new_tokens: int = 50,
        answer_prefix: str = "",
        chat: Optional[bool] = None,
    ) -> Dict[str, Union[str, List[str]]]:
        if questions is not None and question:
            raise ValueError("give either question or questions, not both")
        ctx = self.model.compress(context, press, chat=chat)
        asked = list(questions) if questions is not None else [question]
        answers = [str(ctx.ask(q + answer_prefix, max_new_tokens)) for q in asked]
        return {"answers": answers} if questions is not None else {"answer": answers[0]}


def pipeline(model: Union[Model, str, os.PathLike[str]]) -> Pipeline:
    """The question-answering pipeline over `model` (a Model, a GGUF path or a short name)."""
    return Pipeline(model)
