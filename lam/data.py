"""From an episode store to device-resident tensors: frames, transition rows, the episode split.

Everything here is read once per process (a `FrameCache` shares reads across the configs of a
sweep); training then indexes these tensors and never touches Zarr inside a step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from cache_schemas import EpisodeStore, EpisodeTable

FRAME_ARRAYS = ("frames", "frames_clean")


# -- pure index arithmetic ---------------------------------------------------------------
def transition_rows(table: EpisodeTable, k: int, episodes: np.ndarray | None = None) -> np.ndarray:
    """Rows t whose o_t+k (and so o_t+1) lie in the same episode, in row order (int64); only the
    episodes of the bool mask `episodes` where given."""
    keep = np.ones(len(table), bool) if episodes is None else episodes
    rows = [
        np.arange(s, s + max(0, int(n) - k), dtype=np.int64)
        for s, n, kept in zip(table.start, table.length, keep)
        if kept
    ]
    return np.concatenate(rows) if rows else np.zeros(0, np.int64)


def training_episodes(table: EpisodeTable, heldout: np.ndarray, per_task: int | str) -> np.ndarray:
    """Bool mask over episodes: the LAM's training data for `episodes_per_task` = `per_task`.
    'all': every episode (the LAM never sees actions, so runs have always trained on the probe's
    held-out episodes' frames too). A number n: the first n episodes, in store order, of each
    task's episodes outside `heldout` (all of them where a task has fewer), so subsets are nested
    (the 8 of a task are among its 32) and never hold a probe episode."""
    if per_task == "all":
        return np.ones(len(table), bool)
    mask = np.zeros(len(table), bool)
    for task in np.unique(table.task):
        eps = np.flatnonzero((table.task == task) & ~heldout)
        mask[eps[: int(per_task)]] = True
    return mask


def episodes_digest(mask: np.ndarray) -> str:
    """sha256 of the sorted episode indices of a mask, as comma-separated decimals."""
    import hashlib

    return hashlib.sha256(",".join(map(str, np.flatnonzero(mask))).encode()).hexdigest()


def stack_index(table: EpisodeTable, frame_stack: int) -> np.ndarray:
    """(N, s) rows making up observation t: t-s+1..t, clamped to the episode's first frame."""
    n = int(np.sum(table.length))
    first = np.repeat(table.start, table.length).astype(np.int64)
    rows = np.arange(n, dtype=np.int64)
    offsets = np.arange(frame_stack - 1, -1, -1, dtype=np.int64)
    return np.maximum(rows[:, None] - offsets[None, :], first[:, None])


def heldout_episodes(table: EpisodeTable, fraction: float) -> np.ndarray:
    """Bool mask over episodes: the last ceil(fraction * n) episodes of every task are held out
    (deterministic, so every run on one store is probed on the same split), one at least and never
    a task's last. Tasks with a single episode (an ingested dataset whose every episode has its
    own instruction) are pooled and split the same way as one group."""
    mask = np.zeros(len(table), bool)
    groups, singles = [], []
    for task in np.unique(table.task):
        eps = np.flatnonzero(table.task == task)
        if len(eps) > 1:
            groups.append(eps)
        else:
            singles.append(int(eps[0]))
    if singles:
        groups.append(np.array(sorted(singles)))
    for eps in groups:
        n_hold = min(len(eps) - 1, max(1, int(np.ceil(fraction * len(eps)))))
        if n_hold > 0:
            mask[eps[-n_hold:]] = True
    return mask


def row_episode(table: EpisodeTable) -> np.ndarray:
    """Episode number of every frame row (N,)."""
    return np.repeat(np.arange(len(table)), table.length)


# -- reading frames ------------------------------------------------------------------------
MAX_EXACT_FACTOR = 16  # block sums of up to 16 x 16 uint8 values, in int32 past 11 x 11


def resize_frames(frames: np.ndarray, size: int) -> torch.Tensor:
    """uint8 (n,H,W,3) -> uint8 (n,3,size,size); area averaging when shrinking: the bytes of
    `resize_frames_reference`, faster. Where H = W = f x size (f <= 16), torch's area resize is the
    mean of each f x f block rounded half to even: here the block sums are exact integers and so is
    the rounding (about three times faster on a CPU). Any other shape goes through the reference."""
    n, h, w, c = frames.shape
    f = h // size if h == w and size > 0 and h % size == 0 else 0
    if not 1 <= f <= MAX_EXACT_FACTOR:
        return resize_frames_reference(frames, size)
    x = torch.from_numpy(np.ascontiguousarray(frames))
    if f == 1:
        return x.permute(0, 3, 1, 2).contiguous()
    acc = torch.int16 if 256 * f * f < 2**15 else torch.int32
    rows = x.view(n, size, f, w * c)  # the rows of one block side by side
    s = rows[:, :, 0].to(acc)
    for i in range(1, f):
        s += rows[:, :, i]
    cols = s.view(n, size, size, f, c)  # then the columns of one block
    s = cols[:, :, :, 0] + cols[:, :, :, 1]
    for j in range(2, f):
        s += cols[:, :, :, j]
    out = torch.empty((n, c, size, size), dtype=torch.uint8)
    out.copy_(_round_half_even_div(s, f * f).permute(0, 3, 1, 2))
    return out


def _round_half_even_div(s: torch.Tensor, d: int) -> torch.Tensor:
    """round(s / d), ties to even (torch.round), for non-negative integers s; in place where it can."""
    b = d.bit_length() - 1
    if d == 1 << b:  # a power of two: add half minus one, plus one more when the quotient is odd
        odd = (s >> b) & 1
        s += (1 << (b - 1)) - 1
        s += odd
        s >>= b
        return s
    if d % 2:  # odd: s / d is never exactly half-way
        s += d // 2
        return torch.div(s, d, rounding_mode="floor")
    q = torch.div(s, d, rounding_mode="floor")
    r2 = (s - q * d) * 2
    return q + ((r2 > d) | ((r2 == d) & (q & 1).bool())).to(q.dtype)


def resize_frames_reference(frames: np.ndarray, size: int) -> torch.Tensor:
    """The float path of `resize_frames`: torch's area interpolation (bilinear when growing), rounded."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
    if x.shape[-1] == size and x.shape[-2] == size:
        return x.contiguous()
    mode = "area" if size < x.shape[-1] else "bilinear"
    y = F.interpolate(x.float(), size=(size, size), mode=mode)
    return y.round_().clamp_(0, 255).to(torch.uint8)


def read_frames(store: EpisodeStore, name: str, size: int, progress: bool = False) -> torch.Tensor:
    """One frames array of the store, chunk by chunk, resized to `size`: uint8 (N,3,size,size)."""
    if name not in FRAME_ARRAYS:
        raise ValueError(f"unknown frames array {name!r}; valid: {', '.join(FRAME_ARRAYS)}")
    arr = store.array(name)
    out = torch.empty((store.n_frames, 3, size, size), dtype=torch.uint8)
    chunks = range(store.n_chunks)
    if progress:
        from tqdm.auto import tqdm

        chunks = tqdm(chunks, desc=f"read {name} @{size}px", unit="chunk", leave=False)
    for c in chunks:
        lo, hi = store.chunk_range(c)
        out[lo:hi] = resize_frames(arr[lo:hi], size)
    return out


@dataclass
class FrameCache:
    """Per-process memo of (store, array, size) -> frames, so a sweep reads each array once."""

    progress: bool = False
    _items: dict[tuple[str, str, int], torch.Tensor] = field(default_factory=dict)

    def frames(self, store: EpisodeStore, name: str, size: int) -> torch.Tensor:
        key = (store.fingerprint, name, size)
        if key not in self._items:
            self._items[key] = read_frames(store, name, size, self.progress)
        return self._items[key]
