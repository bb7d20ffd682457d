import numpy as np
import torch

from cache_schemas import EpisodeTable
from lam.data import heldout_episodes, resize_frames, row_episode, stack_index, transition_rows


def table(lengths, tasks):
    lengths = np.asarray(lengths)
    start = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    n = len(lengths)
    return EpisodeTable(start, lengths, np.asarray(tasks), np.arange(n), np.ones(n, bool))


def test_transitions_never_cross_episodes():
    t = table([3, 4], [0, 0])
    assert transition_rows(t, 1).tolist() == [0, 1, 3, 4, 5]
    assert transition_rows(t, 2).tolist() == [0, 3, 4]
    assert transition_rows(t, 4).tolist() == []


def test_stack_index_clamps_at_episode_start():
    t = table([3, 2], [0, 0])
    assert stack_index(t, 3).tolist() == [[0, 0, 0], [0, 0, 1], [0, 1, 2], [3, 3, 3], [3, 3, 4]]
    assert stack_index(t, 1)[:, 0].tolist() == [0, 1, 2, 3, 4]


def test_heldout_is_per_task_and_keeps_training_episodes():
    t = table([2] * 7, [0, 0, 0, 0, 1, 1, 1])
    held = heldout_episodes(t, 0.25)
    assert held.tolist() == [False, False, False, True, False, False, True]
    assert row_episode(t).tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6]


def test_resize_frames_channels_first_and_area_average():
    frames = np.zeros((1, 4, 4, 3), np.uint8)
    frames[0, :2, :2, 0] = 200
    out = resize_frames(frames, 2)
    assert out.shape == (1, 3, 2, 2) and out.dtype == torch.uint8
    assert out[0, 0].tolist() == [[200, 0], [0, 0]]
    assert resize_frames(frames, 4).permute(0, 2, 3, 1).numpy().tolist() == frames.tolist()


def test_single_episode_tasks_are_pooled_for_the_holdout():
    """An ingested dataset whose every episode has its own instruction: one episode per task."""
    t = table([2] * 5, [0, 1, 2, 3, 4])
    assert heldout_episodes(t, 0.25).tolist() == [False, False, False, True, True]
    mixed = table([2] * 6, [0, 0, 0, 1, 2, 3])  # a task with several episodes keeps its own split
    assert heldout_episodes(mixed, 0.25).tolist() == [False, False, True, False, False, True]
    assert not heldout_episodes(table([2], [0]), 0.25).any()  # one episode: nothing to hold out
