"""Prompt templates per environment and the projection from model text to an action.

Templates (``get_template(env_name, style)``) turn an environment's situation into the prompt::

    template.render(PromptContext(task=..., step=..., history=[(obs, action), ...], observation=...,
                                  admissible_actions=[...]))

* ``style="full"`` (LLMs, as the GiGPO/GraphGPO recipes): task, step count, the last ``history_length``
  (K = 2) observations and actions, the current observation, the admissible actions, and the answer
  format: reason inside ``<think>…</think>``, answer inside ``<action>…</action>``.
* ``style="compact"`` (tiny word-level models): the current observation only, nothing else; or, for
  templates with ``numbered_actions`` (TextWorld's compact template), the task and the admissible actions
  as a numbered menu in lower-case words (``compact_words``): ``goal words ; #1 go east #2 take key ...``.
  The model answers with one choice token ``#k``. The room prose is left out on purpose: the admissible
  commands already name the room's exits, the objects in reach and what is carried, and the prose would
  triple the prompt of a model whose cost is its sequence length.

Projection (``project_action(text, vocabulary, mode=...)``) returns ``Projection(action, valid,
reason)``:

* ``mode="tags"``: the text must contain ``<think>…</think>`` (unless ``require_think=False``) and an
  ``<action>…</action>`` block (the last one counts); the action is its content, stripped,
  whitespace-collapsed, compared case-insensitively with ``vocabulary``. Missing tags, an empty action,
  or text outside the vocabulary → invalid.
* ``mode="bare"``: the whole text (stripped) must be one word/phrase of the vocabulary; for tiny models
  that emit a single action token. With ``numbered_actions`` the word is a choice ``#k`` and the action
  is the k-th admissible command; a ``k`` beyond the menu is invalid (``choice_out_of_range``).

What happens to an invalid action is the environment's business (``invalid_action_policy``):
Sokoban's template says ``"noop"``: the move is not executed (the engine sends the empty action, which
Sokoban treats as a no-op step); text tasks say ``"pass"``: the extracted text is sent through and the
environment answers as it does (e.g. "Nothing happens.").
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

__all__ = [
    "PromptContext",
    "PromptTemplate",
    "Projection",
    "project_action",
    "get_template",
    "compact_words",
    "TEMPLATES",
]

_ACTION_RE = re.compile(r"<action>(.*?)</action>", re.DOTALL | re.IGNORECASE)
_THINK_RE = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_MAX_PASSTHROUGH_CHARS = 200  # text tasks: cap on raw text sent through when tags are missing
_WORD_RE = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*")
_CHOICE_RE = re.compile(r"(?<!\S)#(\d+)(?!\S)")


def compact_words(text: str) -> list[str]:
    """Lower-case words of ``text`` without punctuation: what word-level tokenizers see
    ("The key's on the table!" -> ["the", "key's", "on", "the", "table"])."""
    return _WORD_RE.findall(text.lower())


@dataclass(frozen=True)
class Projection:
    """Result of parsing a generation: the action text to execute and whether it was valid."""

    action: str
    valid: bool
    reason: str = ""
    """Why the action is invalid ("" when valid): missing_action_tag, missing_think_tag, empty_action,
    not_in_vocabulary, choice_out_of_range."""


def _normalise(text: str) -> str:
    return " ".join(text.strip().split()).lower()


def project_action(text: str, vocabulary: Sequence[str] | None, *, mode: str = "tags",
                   require_think: bool = True) -> Projection:
    """Parse model text into an action.

    ``vocabulary`` is the set of allowed actions (Sokoban's moves, a task's admissible commands); None
    accepts any non-empty action. A valid action is returned as spelled in the vocabulary.

    Real model answers are matched leniently where the meaning is unambiguous (``resolve_command``): the
    answer may carry quotes, trailing punctuation or an "action:" label; an answer block may hold extra words
    around exactly one admissible command ("<action>move up</action>" -> "up", "<action>I go south
    now.</action>" -> "go south"); an answer without ``<action>`` tags counts when, outside the
    ``<think>`` block, it is exactly one command (then the think rule applies as for a tagged answer).
    """
    if mode not in ("tags", "bare"):
        raise ValueError(f"mode: expected 'tags' or 'bare', got {mode!r}")
    if mode == "bare":
        candidate, contained = text, True
        reason = ""
    else:
        matches = _ACTION_RE.findall(text)
        has_think = bool(_THINK_RE.search(text))
        if matches:
            candidate, contained = matches[-1], True
        else:
            untagged = _THINK_RE.sub(" ", text)
            exact = resolve_command(untagged, vocabulary, contained=False) if vocabulary is not None else None
            if exact is None:
                # No answer block: keep a tail of the raw text for environments that take it anyway.
                return Projection(_normalise(text)[-_MAX_PASSTHROUGH_CHARS:], False, "missing_action_tag")
            candidate, contained = exact, False
        reason = "" if (not require_think or has_think) else "missing_think_tag"
    if not _normalise(candidate):
        return Projection("", False, "empty_action")
    if vocabulary is None:
        return Projection(_normalise(candidate), not reason, reason)
    command = resolve_command(candidate, vocabulary, contained=contained)
    if command is None:
        return Projection(_normalise(candidate), False, reason or "not_in_vocabulary")
    return Projection(command, not reason, reason)


_LABEL_RE = re.compile(r"^(?:the\s+)?(?:next\s+)?(?:action|answer|command|move)\s*(?:is)?\s*[:=-]?\s*", re.IGNORECASE)
_EDGE_PUNCTUATION = "'\"`*.,;:!?()[]{} \t\n"


def resolve_command(text: str, vocabulary: Sequence[str], *, contained: bool = True) -> str | None:
    """The entry of ``vocabulary`` that ``text`` names, or None when it names none or several.

    Exact match first (case and whitespace ignored), then without surrounding quotes/punctuation and an
    "action:" label; with ``contained``, the one entry that appears in ``text`` as whole words (entries
    inside an occurrence of a longer matching entry do not count: "take apple 1 from table 2" names that
    command, not "take apple 1"; "go to cabinet 10" never matches "go to cabinet 1")."""
    lookup = {_normalise(a): a for a in vocabulary}
    candidate = _normalise(text)
    if candidate in lookup:
        return lookup[candidate]
    stripped = _normalise(_LABEL_RE.sub("", candidate.strip(_EDGE_PUNCTUATION)).strip(_EDGE_PUNCTUATION))
    if stripped in lookup:
        return lookup[stripped]
    if not contained:
        return None
    spans = {key: [m.span() for m in re.finditer(rf"(?<![\w#]){re.escape(key)}(?!\w)", candidate)]
             for key in lookup}
    occurrences = [(a, b, key) for key, found in spans.items() for a, b in found]
    named = {key for a, b, key in occurrences
             if not any(a2 <= a and b <= b2 and b2 - a2 > b - a for a2, b2, _ in occurrences)}
    return lookup[named.pop()] if len(named) == 1 else None


@dataclass(frozen=True)
class PromptContext:
    """Everything a template may show for one step of one environment."""

    observation: str
    step: int = 0
    task: str = ""
    history: Sequence[tuple[str, str]] = ()
    """(observation, action taken) of earlier steps, oldest first."""
    admissible_actions: Sequence[str] | None = None


@dataclass(frozen=True)
class PromptTemplate:
    """A prompt format plus the parsing rules that go with it."""

    name: str
    intro: str = ""
    """Opening paragraph describing the environment."""
    style: str = "full"
    """"full" (history, actions, answer format) or "compact" (current observation only)."""
    history_length: int = 2
    """K: earlier (observation, action) pairs shown."""
    parse_mode: str = "tags"
    """Projection mode: "tags" or "bare"."""
    require_think: bool = True
    invalid_action_policy: str = "pass"
    """"noop": invalid actions are not executed; "pass": extracted text goes to the environment."""
    fixed_vocabulary: tuple[str, ...] | None = None
    """Action vocabulary when the environment has a fixed one (Sokoban); else its admissible actions. With
    ``numbered_actions``: the choice tokens ``#1 .. #N``."""
    numbered_actions: bool = False
    """Compact menu: the admissible actions are listed as ``#1 .. #k`` and the answer is a choice token,
    so a model with a fixed output vocabulary can play tasks whose commands change every step."""
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.style not in ("full", "compact"):
            raise ValueError(f"style: expected 'full' or 'compact', got {self.style!r}")
        if self.parse_mode not in ("tags", "bare"):
            raise ValueError(f"parse_mode: expected 'tags' or 'bare', got {self.parse_mode!r}")
        if self.invalid_action_policy not in ("noop", "pass"):
            raise ValueError(f"invalid_action_policy: expected 'noop' or 'pass', got {self.invalid_action_policy!r}")
        if self.history_length < 0:
            raise ValueError(f"history_length: must be >= 0, got {self.history_length}")
        if self.numbered_actions and not self.fixed_vocabulary:
            raise ValueError("numbered_actions needs fixed_vocabulary: the choice tokens #1 .. #N")

    @property
    def max_choices(self) -> int:
        """Longest menu a numbered template can show."""
        return len(self.fixed_vocabulary or ()) if self.numbered_actions else 0

    def vocabulary(self, admissible_actions: Sequence[str] | None) -> Sequence[str] | None:
        return self.fixed_vocabulary if self.fixed_vocabulary is not None else admissible_actions

    def choices(self, admissible_actions: Sequence[str] | None) -> list[str]:
        """The commands a choice policy picks from (``action_mode=choose``): a numbered menu's admissible
        commands, the fixed moves (Sokoban), or the admissible commands."""
        choices = list(admissible_actions or ()) if self.numbered_actions else list(
            self.vocabulary(admissible_actions) or ())
        if not choices:
            raise ValueError(f"{self.name}: the environment lists no admissible actions to choose from")
        return choices

    def for_choice(self) -> "PromptTemplate":
        """The template of ``action_mode=choose``: the same prompt, but the answer is one admissible command
        and nothing else (no <think>/<action> tags: the policy scores the commands themselves)."""
        if self.style == "compact":
            return self
        return replace(self, parse_mode="bare", require_think=False)

    def render(self, ctx: PromptContext, fits: Callable[[str], bool] | None = None) -> str:
        """The prompt of ``ctx``. ``fits`` (e.g. "at most max_prompt_length tokens"): while the prompt does
        not fit, the oldest history turn is dropped (with a warning), so an overlong prompt loses history,
        never part of the current observation."""
        text = self._render(ctx, self.history_length)
        if fits is None or fits(text):
            return text
        shown = min(self.history_length, len(ctx.history)) if self.style == "full" else 0
        for keep in range(shown - 1, -1, -1):
            text = self._render(ctx, keep)
            if fits(text):
                warnings.warn(f"{self.name}: a prompt over the length limit left out its {shown - keep} oldest "
                              f"history turn(s)", stacklevel=2)
                return text
        warnings.warn(f"{self.name}: a prompt is over the length limit even without history", stacklevel=2)
        return text

    def _render(self, ctx: PromptContext, history_length: int) -> str:
        if self.style == "compact" and self.numbered_actions:
            return self._render_menu(ctx)
        if self.style == "compact":
            return ctx.observation
        parts = [self.intro.strip()] if self.intro else []
        if ctx.task:
            parts.append(f"Your task: {ctx.task.strip()}")
        recent = list(ctx.history)[-history_length:] if history_length else []
        if recent:
            first = ctx.step - len(recent)
            lines = [f"Prior to this step, you have taken {ctx.step} step(s). "
                     f"Your last {len(recent)} observation(s) and action(s):"]
            for i, (obs, act) in enumerate(recent):
                lines.append(f"[Observation {first + i + 1}]\n{obs.strip()}\n[Action {first + i + 1}] {act}")
            parts.append("\n".join(lines))
        elif ctx.step == 0:
            parts.append("This is the first step.")
        parts.append(f"You are now at step {ctx.step + 1} and your current observation is:\n{ctx.observation.strip()}")
        vocab = self.vocabulary(ctx.admissible_actions)
        if vocab:
            parts.append("Your admissible actions are: " + ", ".join(f"'{a}'" for a in vocab) + ".")
        if self.parse_mode == "bare":
            parts.append("Answer with one admissible action and nothing else.")
        else:
            think = ("First reason step by step about the situation and what to do inside <think> </think> "
                     "tags. " if self.require_think else "")
            parts.append(think + "Then give exactly one admissible action inside <action> </action> tags.")
        return "\n\n".join(parts)

    def _render_menu(self, ctx: PromptContext) -> str:
        actions = list(ctx.admissible_actions or ())
        if len(actions) > self.max_choices:
            raise ValueError(f"step {ctx.step}: {len(actions)} admissible actions but the {self.name!r} template "
                             f"shows at most {self.max_choices}: use get_template(..., max_choices=N) with a larger "
                             f"N (the embedded model then needs a new tokenizer)")
        menu = " ".join(f"{token} {' '.join(compact_words(action))}"
                        for token, action in zip(self.fixed_vocabulary, actions))
        return f"{' '.join(compact_words(ctx.task))} ; {menu}"

    def listed_choices(self, prompt: str) -> list[str]:
        """The choice tokens a numbered prompt lists (what a uniform-random player picks from)."""
        return [f"#{k}" for k in _CHOICE_RE.findall(prompt.rpartition(" ; ")[2])]

    def project(self, text: str, admissible_actions: Sequence[str] | None) -> Projection:
        projection = project_action(text, self.vocabulary(admissible_actions), mode=self.parse_mode,
                                    require_think=self.require_think)
        if not (self.numbered_actions and projection.valid):
            return projection
        index = self.fixed_vocabulary.index(projection.action)
        actions = list(admissible_actions or ())
        if index >= len(actions):
            return Projection(projection.action, False, "choice_out_of_range")
        return Projection(actions[index], True)

    def action_to_execute(self, projection: Projection) -> str:
        """What the engine sends to the environment for this projection."""
        if projection.valid or self.invalid_action_policy == "pass":
            return projection.action
        return ""  # "noop": environments with a fixed move set treat "" as a not-executed step


_SOKOBAN_INTRO = (
    "You are an expert agent playing Sokoban. The goal is to push every box onto a target. You can move "
    "up, down, left or right; walking into a box pushes it one cell if the cell beyond is free. Boxes "
    "cannot be pulled, and a box pushed into a corner is stuck for good."
)
_TEXTWORLD_INTRO = (
    "You are an expert agent playing a text adventure game. Explore, use objects and complete the task "
    "described below with as few actions as possible."
)
_ALFWORLD_INTRO = "You are an expert agent operating in the ALFRED Embodied Environment."  # the recipe's words
_WEBSHOP_INTRO = "You are an expert autonomous agent shopping on a website to buy a product that fits the instruction."

_SOKOBAN_MOVES = ("up", "down", "left", "right")


def choice_tokens(n: int) -> tuple[str, ...]:
    """``("#1", ..., "#n")``: the answers of a numbered menu."""
    return tuple(f"#{k}" for k in range(1, n + 1))

TEMPLATES: dict[tuple[str, str], PromptTemplate] = {
    ("sokoban", "full"): PromptTemplate("sokoban", _SOKOBAN_INTRO, invalid_action_policy="noop",
                                        fixed_vocabulary=_SOKOBAN_MOVES),
    ("sokoban", "compact"): PromptTemplate("sokoban-compact", style="compact", parse_mode="bare",
                                           invalid_action_policy="noop", fixed_vocabulary=_SOKOBAN_MOVES),
    ("textworld", "full"): PromptTemplate("textworld", _TEXTWORLD_INTRO),
    ("textworld", "compact"): PromptTemplate("textworld-compact", style="compact", parse_mode="bare",
                                             invalid_action_policy="noop", numbered_actions=True,
                                             fixed_vocabulary=choice_tokens(32)),
    ("alfworld", "full"): PromptTemplate("alfworld", _ALFWORLD_INTRO),
    ("webshop", "full"): PromptTemplate("webshop", _WEBSHOP_INTRO),
}


def get_template(env_name: str, style: str = "full", *, max_choices: int | None = None,
                 **overrides) -> PromptTemplate:
    """The template for an environment and style; ``overrides`` replace fields (e.g. history_length=4);
    ``max_choices`` sets the menu length of a numbered template."""
    try:
        template = TEMPLATES[(env_name, style)]
    except KeyError:
        known = ", ".join(f"{e}/{s}" for e, s in sorted(TEMPLATES))
        raise ValueError(f"no prompt template for env {env_name!r} with style {style!r}; known: {known}") from None
    if max_choices is not None:
        if not template.numbered_actions:
            raise ValueError(f"max_choices: template {template.name!r} has no numbered menu")
        if max_choices < 1:
            raise ValueError(f"max_choices: must be >= 1, got {max_choices}")
        overrides["fixed_vocabulary"] = choice_tokens(max_choices)
    if overrides:
        template = replace(template, **overrides)
    return template
