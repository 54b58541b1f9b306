"""Similarity merge of near-duplicate text states (the recipe's ``enable_similarity`` / ``similarity_thresh``).

SPEC.md, "Similarity merge": two text states are similar when
``difflib.SequenceMatcher(None, new, representative).ratio() >= threshold``. Within one group, a greedy pass
in row order puts each new text into the first cluster (in creation order) whose representative (its first
member) it is similar to, or founds a new cluster. Two separate passes, as in the recipe:

- graph nodes (``node_keys``): for each row its ``state``, then its ``next_state`` (a successful last step
  points to the SUCCESS sink instead, whose node is never merged);
- step groups (``step_keys``): for each row its ``state`` alone.

The passes can disagree (their visiting orders differ), which is the recipe's behaviour. Both return, per
row, the key of its cluster's representative, so unmerged states keep their own key. The result depends on
row order (greedy, first fit): the one exception to the estimators' row-order independence.

Speed (the recipe's pass is quadratic per group: every new text against every representative, each a full
``ratio``): ``fast=True`` evaluates exactly the same predicate on the same pairs in the same order, but skips
pairs that cannot reach the threshold using upper bounds of ``ratio`` that hold for every pair:
``2 * LCS(a, b) / (len(a) + len(b))`` (the matching blocks of SequenceMatcher are a common subsequence, so
its match count is at most the longest common subsequence; computed for all representatives at once by
rapidfuzz's C ``Indel`` similarity when rapidfuzz is installed), then difflib's own ``real_quick_ratio``
(lengths) and ``quick_ratio`` (character multisets). Only pairs that pass get the full ``ratio``, computed with
a SequenceMatcher per representative that keeps its ``b`` index (the same numbers as a fresh matcher). So
the clusters are identical to the recipe's; ``tests/test_similarity.py`` checks it against a direct
SequenceMatcher implementation.
"""

from __future__ import annotations

import difflib
from typing import Hashable

import torch

try:  # optional: an exact C upper bound that prunes most pairs at once
    from rapidfuzz.distance import Indel as _Indel
    from rapidfuzz.process import cdist as _cdist
except ImportError:  # pragma: no cover - rapidfuzz is in the dev extra
    _Indel = _cdist = None

__all__ = ["check_threshold", "similar", "GreedyClusters", "node_keys", "step_keys", "state_texts",
           "similarity_inputs"]

# rapidfuzz's bound is a float; a pair whose bound equals the threshold must not be pruned by rounding.
_BOUND_SLACK = 1e-9


def check_threshold(threshold: float, name: str = "similarity") -> None:
    """The recipe's rule: a similarity threshold lies strictly between 0 and 1."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 < threshold < 1.0:
        raise ValueError(f"{name} must be a number in (0, 1) (the recipe's similarity_thresh), got {threshold!r}")


def similar(a: str, b: str, threshold: float) -> bool:
    """The recipe's predicate: ``SequenceMatcher(None, a, b).ratio() >= threshold``."""
    return difflib.SequenceMatcher(None, a, b).ratio() >= threshold


class GreedyClusters:
    """First-fit greedy clustering of texts under ``similar``; keys seen before keep their cluster."""

    def __init__(self, threshold: float, fast: bool = True):
        check_threshold(threshold)
        self.threshold = threshold
        self.fast = fast
        self.rep_keys: list[Hashable] = []
        self.rep_texts: list[str] = []
        self._matchers: list[difflib.SequenceMatcher] = []
        self._cluster_of: dict[Hashable, Hashable] = {}

    def assign(self, key: Hashable, text: str) -> Hashable:
        """The representative key of ``key``'s cluster (``key`` itself when it founds one)."""
        rep = self._cluster_of.get(key)
        if rep is None:
            found = self._first_similar(text)
            if found is None:
                rep = key
                self.rep_keys.append(key)
                self.rep_texts.append(text)
                if self.fast:
                    matcher = difflib.SequenceMatcher(None)
                    matcher.set_seq2(text)  # b = the representative, as in SequenceMatcher(None, new, rep)
                    self._matchers.append(matcher)
            else:
                rep = self.rep_keys[found]
            self._cluster_of[key] = rep
        return rep

    def _first_similar(self, text: str) -> int | None:
        t = self.threshold
        if not self.fast:
            return next((i for i, rep in enumerate(self.rep_texts) if similar(text, rep, t)), None)
        if not self.rep_texts:
            return None
        if _cdist is not None:
            bounds = _cdist([text], self.rep_texts, scorer=_Indel.normalized_similarity,
                            score_cutoff=max(t - _BOUND_SLACK, 0.0), workers=1)[0]
            candidates = (i for i, bound in enumerate(bounds.tolist()) if bound > 0.0)
        else:
            candidates = range(len(self.rep_texts))
        for i in candidates:
            matcher = self._matchers[i]
            matcher.set_seq1(text)
            if matcher.real_quick_ratio() >= t and matcher.quick_ratio() >= t and matcher.ratio() >= t:
                return i
        return None


def state_texts(batch) -> dict[int, str]:
    """key -> text of every state and next_state of the batch, or ValueError naming the first bad row."""
    objects = getattr(batch, "state_objects", None)
    if objects is None:
        raise ValueError("similarity needs the text of the states: build the batch with StepBatch.from_records "
                         "from str states (a batch from tensors keeps only 64-bit keys)")
    texts: dict[int, str] = {}
    for column in ("state", "next_state"):
        for row, key in enumerate(getattr(batch, column).tolist()):
            if key not in texts:
                obj = objects[key]
                if not isinstance(obj, str):
                    raise ValueError(f"row {row}: field '{column}' is a {type(obj).__name__}; similarity merges "
                                     f"text (str) states only")
                texts[key] = obj
    return texts


def _success_edges(batch) -> list[bool]:
    """Per row: the last step of a successful trajectory (its edge goes to SUCCESS)."""
    traj, step, success = batch.traj.tolist(), batch.step.tolist(), batch.success.tolist()
    length: dict[int, int] = {}
    for t, s in zip(traj, step):
        length[t] = max(length.get(t, 0), s + 1)
    return [bool(success[i]) and step[i] == length[traj[i]] - 1 for i in range(len(traj))]


def node_keys(batch, threshold: float, fast: bool = True) -> tuple[list[int], list[int]]:
    """Graph-node pass: per row, the representative keys of its state and next_state (a success edge's
    next_state is not visited and keeps its own key: its edge goes to SUCCESS)."""
    texts = state_texts(batch)
    group = batch.group.tolist()
    state, next_state = batch.state.tolist(), batch.next_state.tolist()
    to_success = _success_edges(batch)
    passes: dict[int, GreedyClusters] = {}
    state_out, next_out = [], []
    for i, g in enumerate(group):
        clusters = passes.setdefault(g, GreedyClusters(threshold, fast))
        state_out.append(clusters.assign(state[i], texts[state[i]]))
        next_out.append(next_state[i] if to_success[i] else clusters.assign(next_state[i], texts[next_state[i]]))
    return state_out, next_out


def step_keys(batch, threshold: float, fast: bool = True) -> list[int]:
    """Step-group pass: per row, the representative key of its state among the group's states."""
    texts = state_texts(batch)
    passes: dict[int, GreedyClusters] = {}
    return [passes.setdefault(g, GreedyClusters(threshold, fast)).assign(s, texts[s])
            for g, s in zip(batch.group.tolist(), batch.state.tolist())]


def similarity_inputs(batch, method: str, threshold: float, fast: bool = True):
    """The merged keys as the estimator pipeline's graph inputs (``graphgpo.backends.pipeline.GraphInputs``):
    GraphGPO gets node keys and step keys, GiGPO step keys (it has no graph)."""
    from graphgpo.backends.pipeline import GraphInputs

    tensor = lambda keys: torch.tensor(keys, dtype=torch.int64, device=batch.device)  # noqa: E731
    step = tensor(step_keys(batch, threshold, fast))
    if method != "graphgpo":
        return GraphInputs(step_key=step)
    state, next_state = node_keys(batch, threshold, fast)
    return GraphInputs(state_key=tensor(state), next_key=tensor(next_state), step_key=step)
