"""Prompt registry: named templates with per-task slots, rendered once per task of a store.

Slots: `{task}` (the task's sentence), `{name}` (MetaWorld id), `{object}` (its main object).
A template not in the registry is accepted with `custom:` in front (`--prompt 'custom:Look at {object}.'`).
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.vlm.backbones import UnknownName

PROMPTS: dict[str, str] = {
    "none": "",
    "task": "The robot's task: {task}.",
    "ignore_distractors": "Do not describe background features. Focus on the robot arm and the {object}.",
    "describe": "Describe the scene.",
    "robot": "Focus on the robot arm.",
    "object": "Focus on the {object}.",
}
SLOTS = {"task", "name", "object"}
DEFAULT_PROMPT = "none"  # `embed --prompt` (and `train-lam --prompt`) when none is named


@dataclass(frozen=True)
class Prompt:
    name: str  # registry name, or "custom-<hash8>" for a custom template
    template: str

    def render(self, task) -> str:
        """The text for one task (a cache_schemas TaskInfo); an empty slot is refused, not rendered."""
        values = {"task": task.description.rstrip("."), "name": task.name, "object": task.object}
        for slot in sorted(_slots(self.template)):
            if not values.get(slot):
                fix = (
                    "ingest the dataset again with --object NAME"
                    if slot == "object"
                    else "the dataset gives none; for a folder of videos, ingest it again with --tasks FILE "
                    "or --task-from-folder"
                )
                plain = ", ".join(n for n, t in PROMPTS.items() if slot not in _slots(t))
                raise UnknownName(
                    f"prompt {self.name!r} uses {{{slot}}}, but task {task.name!r} of this store has no {slot} "
                    f"({fix}); use a prompt without it: {plain}"
                )
        return self.template.format(**values)

    def render_all(self, tasks: Sequence) -> tuple[str, ...]:
        return tuple(self.render(t) for t in tasks)


def get_prompt(name: str) -> Prompt:
    if name.startswith("custom:"):
        import hashlib

        template = name[len("custom:") :]
        _check_slots(template)
        return Prompt("custom-" + hashlib.sha256(template.encode()).hexdigest()[:8], template)
    if name not in PROMPTS:
        raise UnknownName(
            f"unknown prompt {name!r}; valid: {', '.join(sorted(PROMPTS))}, or 'custom:<template with {{task}}/{{object}}>'"
        )
    return Prompt(name, PROMPTS[name])


def parse_prompts(spec: str) -> list[Prompt]:
    """`a,b,c` -> three prompts (a custom template is always the last item: it may contain commas)."""
    if "custom:" in spec:
        head, _, custom = spec.partition("custom:")
        parts = [p for p in head.split(",") if p.strip()] + ["custom:" + custom]
    else:
        parts = [p for p in spec.split(",") if p.strip()]
    if not parts:
        raise UnknownName(f"no prompt given; valid: {', '.join(sorted(PROMPTS))}")
    return [get_prompt(p.strip() if not p.startswith("custom:") else p) for p in parts]


def _slots(template: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(template) if f}


def _check_slots(template: str) -> None:
    bad = _slots(template) - SLOTS
    if bad:
        raise UnknownName(f"unknown prompt slot(s) {sorted(bad)}; valid: {sorted(SLOTS)}")
