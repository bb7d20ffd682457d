"""Task registry: MetaWorld v3 task names -> a sentence and the task's main object (for prompts).

Like MetaWorld's own name -> scripted policy map, one entry per task; any MetaWorld v3 task
works, MT10 tasks carry hand-written descriptions and objects, others a derived one.
"""

from __future__ import annotations

from cache_schemas import TaskInfo
from cache_schemas.errors import UserError

MT10 = (
    "reach-v3",
    "push-v3",
    "pick-place-v3",
    "door-open-v3",
    "drawer-open-v3",
    "drawer-close-v3",
    "button-press-topdown-v3",
    "peg-insert-side-v3",
    "window-open-v3",
    "window-close-v3",
)

# name -> (description, main object)
DESCRIPTIONS: dict[str, tuple[str, str]] = {
    "reach-v3": ("move the gripper to a goal position", "goal position"),
    "push-v3": ("push the puck to a goal position", "puck"),
    "pick-place-v3": ("pick up the puck and place it at a goal position", "puck"),
    "door-open-v3": ("open the door by pulling its handle", "door"),
    "drawer-open-v3": ("pull the drawer open", "drawer"),
    "drawer-close-v3": ("push the drawer closed", "drawer"),
    "button-press-topdown-v3": ("press the button from the top", "button"),
    "peg-insert-side-v3": ("insert the peg into the hole from the side", "peg"),
    "window-open-v3": ("slide the window open", "window"),
    "window-close-v3": ("slide the window closed", "window"),
}


# Pixels covered by the task's object and by its goal marker in a 64 px corner-camera frame
# (pulled back 0.3 m; MuJoCo segmentation, mean over 5 seeds; docs/study.md).
PIXELS_AT_64: dict[str, tuple[int, int]] = {
    "reach-v3": (3, 3),
    "push-v3": (3, 2),
    "pick-place-v3": (3, 3),
    "door-open-v3": (206, 4),
    "drawer-open-v3": (84, 3),
    "drawer-close-v3": (111, 2),
    "button-press-topdown-v3": (126, 1),
    "peg-insert-side-v3": (159, 1),
    "window-open-v3": (200, 2),
    "window-close-v3": (229, 1),
}
MIN_OBJECT_PIXELS = 20  # below this a 64 px policy cannot see what the task is about


def visible_pixels(task: str, resolution: int) -> tuple[int, int] | None:
    """(object px, goal marker px) at `resolution`, scaled from the 64 px measurement; None if
    the task was not measured."""
    if task not in PIXELS_AT_64:
        return None
    scale = (resolution / 64) ** 2
    return tuple(round(p * scale) for p in PIXELS_AT_64[task])  # type: ignore[return-value]


def visible_tasks(tasks: tuple[str, ...] = MT10) -> tuple[str, ...]:
    """The tasks whose object a 64 px frame shows (the `study` preset's tasks)."""
    return tuple(t for t in tasks if PIXELS_AT_64.get(t, (0, 0))[0] >= MIN_OBJECT_PIXELS)


def all_task_names() -> list[str]:
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    return sorted(ALL_V3_ENVIRONMENTS)


def resolve_task(name: str) -> str:
    """'reach' or 'reach-v3' -> 'reach-v3'; unknown names list the valid ones."""
    full = name if name.endswith("-v3") else f"{name}-v3"
    valid = all_task_names()
    if full not in valid:
        raise UserError(f"unknown task {name!r}; valid tasks: {', '.join(v[:-3] for v in valid)}")
    return full


def resolve_tasks(names: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """A comma list or sequence of task names; 'MT10' expands to the ten MT10 tasks."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    out: list[str] = []
    for n in names:
        out.extend(MT10 if n.upper() == "MT10" else [resolve_task(n)])
    if not out:
        raise UserError("no tasks given")
    if len(set(out)) != len(out):
        raise UserError(f"duplicate tasks in {out}")
    return tuple(out)


def task_info(name: str) -> TaskInfo:
    if name in DESCRIPTIONS:
        desc, obj = DESCRIPTIONS[name]
    else:
        words = name[:-3].replace("-", " ")
        desc, obj = words, words.split()[-1] if words.split() else "object"
    return TaskInfo(name=name, description=desc, object=obj)
