"""The simulated vision LLM itself: a validated question in, a Chat Completions response body out (no HTTP here)."""

from __future__ import annotations

import hashlib
import time
import uuid
from typing import Any

import numpy as np

from seke_hf.simulate.accounting import Accounting, PromptCache, count_text_tokens, prompt_units
from seke_hf.simulate.answer import REFUSAL, render
from seke_hf.simulate.faults import FaultInjector
from seke_hf.simulate.logprobs import Token, TokenLogprobs, choice_logprobs
from seke_hf.simulate.noise import Belief, NoiseModel, truth_seed
from seke_hf.simulate.request import Question, RequestError
from seke_hf.simulate.truth import TruthTable, UnreadableImage

SYSTEM_FINGERPRINT = "fp_seke_sim"


class SimulatedModel:
    """Answers questions about faces from a truth table through a noise model, with choice faults and accounting."""

    def __init__(
        self,
        truth: TruthTable,
        noise: NoiseModel,
        faults: FaultInjector,
        accounting: Accounting,
        cache: PromptCache,
    ):
        self.truth, self.noise, self.faults, self.accounting, self.cache = truth, noise, faults, accounting, cache

    def complete(self, question: Question) -> dict[str, Any]:
        image_key, known, belief = self._belief(question)
        expressions = list(question.answer.expressions) if question.answer.expressions else None
        aus = list(question.answer.aus) if question.answer.aus is not None else None
        scorer = (
            TokenLogprobs(belief, question.answer, expressions, aus)
            if question.logprobs and self.faults.plan.logprobs == "return"
            else None
        )
        choices = []
        unseeded = np.random.default_rng() if question.seed is None else None
        for index in range(question.n):
            # With a request seed each choice has its own stream: the same request gives the same choices.
            rng = (
                unseeded
                if unseeded is not None
                else np.random.default_rng(truth_seed("sample", question.seed, image_key, question.priors.key(), index))
            )
            sample = self.noise.sample(belief, rng, question.temperature, expressions, aus)
            content = render(sample, question.answer)
            tokens = scorer.tokens(content) if scorer is not None else None
            choices.append(self._choice(index, content, question, tokens))

        units = prompt_units(question.messages, question.answer.schema, [(i.data, i.detail) for i in question.images])
        completion_tokens = sum(count_text_tokens(c["message"]["content"] or c["message"]["refusal"]) for c in choices)
        usage = {
            "prompt_tokens": len(units),
            "completion_tokens": completion_tokens,
            "total_tokens": len(units) + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cache.cached_tokens(units), "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }
        self.accounting.completion(image_key, known, len(choices), usage)
        return {
            "id": f"chatcmpl-sim{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": question.model,
            "choices": choices,
            "usage": usage,
            "service_tier": "default",
            "system_fingerprint": SYSTEM_FINGERPRINT,
        }

    def _belief(self, question: Question) -> tuple[str | None, bool, Belief]:
        if not question.images:
            key = "text/" + hashlib.sha1(question.user_text.encode()).hexdigest()[:16]
            return None, False, self.noise.unknown_belief(key)
        try:
            match = self.truth.identify(question.images[0].data)
        except UnreadableImage as e:
            raise RequestError(
                f"You uploaded an unsupported image. Please make sure your image is valid. ({e})",
                param="messages",
                code="invalid_image_format",
            ) from None
        if match.entry is None:
            return match.image_key, False, self.noise.unknown_belief(match.image_key)
        entry = match.entry
        return entry.key, True, self.noise.belief(entry.labels, entry.difficulty, question.priors, entry.key)

    def _choice(self, index: int, content: str, question: Question, tokens: list[Token] | None) -> dict[str, Any]:
        """One choice, perhaps spoiled by a fault; `tokens` are the scored tokens of the whole answer (or None for
        `"logprobs": null`)."""
        finish_reason, refusal = "stop", None
        fault = self.faults.choice_fault()
        if fault is not None:
            self.accounting.fault(fault)
        if fault == "truncate":
            content, finish_reason = content[: max(1, len(content) // 2)], "length"
        elif fault == "refusal":
            content, refusal = (None, REFUSAL) if question.answer.kind == "json_schema" else (REFUSAL, None)
        if content is not None and question.max_tokens is not None:
            tokens = count_text_tokens(content)
            if tokens > question.max_tokens:
                content, finish_reason = content[: len(content) * question.max_tokens // tokens], "length"
        message = {"role": "assistant", "content": content, "refusal": refusal, "annotations": []}
        logprobs = None if tokens is None else choice_logprobs(tokens, content, refusal, question.top_logprobs)
        return {"index": index, "message": message, "logprobs": logprobs, "finish_reason": finish_reason}
