"""`video`: frames by timestamp in any order of calls, squares, codecs this PyAV can use."""

import numpy as np
import pytest

from lerobot_data import FPS, centre, encode_mp4, episode_frames, identify
from pipeline.lerobot.format import LeRobotError
from pipeline.lerobot.video import CODECS, SquareFit, VideoReader, get_codec


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """60 distinct frames (6 s at 10 fps), keyframes far apart (libx264's default GOP)."""
    frames = episode_frames(0, 60)
    path = tmp_path_factory.mktemp("v") / "clip.mp4"
    encode_mp4(path, frames)
    return path, centre(frames)


def read(reader, idx, size=32):
    out = np.empty((len(idx), size, size, 3), np.uint8)
    reader.read(np.asarray(idx) / FPS, SquareFit(size), out, "test")
    return out


def test_reads_forward_backward_and_far_ahead(clip):
    path, originals = clip
    r = VideoReader(path, FPS)
    for idx in ([10, 11, 12], [13, 14], [2, 3], [55, 58], [0], [30, 31, 33]):  # on, back, far ahead, back to 0
        np.testing.assert_array_equal(identify(read(r, idx), originals), idx)
    r.close()


def test_timestamps_outside_the_file_or_between_frames(clip):
    path, _ = clip
    r = VideoReader(path, FPS)
    with pytest.raises(LeRobotError, match=r"test: timestamp 6.0000 s is outside video file .*clip.mp4"):
        read(r, [58, 59, 60])
    with pytest.raises(LeRobotError, match=r"has no frame at 1.0500 s"):
        read(r, [10.5])
    with pytest.raises(LeRobotError, match="do not increase"):
        read(r, [3, 2])


def test_square_fit_resizes_the_centre(clip):
    path, originals = clip
    small = read(VideoReader(path, FPS), [20], size=16)[0].astype(float)
    want = originals[20].reshape(16, 2, 16, 2, 3).mean(axis=(1, 3))  # the centre square, 2x2 area average
    assert np.abs(small - want).mean() < 6


def test_codec_registry():
    assert set(CODECS) == {"av1", "h264"}
    assert get_codec("av1").encoder == "libsvtav1"  # LeRobot's default, usable with this PyAV
    with pytest.raises(LeRobotError, match="unknown codec 'vp9'; valid: av1, h264"):
        get_codec("vp9")
