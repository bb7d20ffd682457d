"""Distracting MetaWorld: the task registry (`tasks`), deterministic episodes and experts (`env`),
headless rendering (`render`), distractors (`distractors`), the GL backend probe (`glcheck`) and
the per-process env/scene/distractor caches that collect and the policy rollouts share (`resources`)."""
