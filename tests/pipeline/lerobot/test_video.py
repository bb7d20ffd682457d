"""`video`: frames by timestamp in any order of calls, squares, codecs this PyAV can use."""

import numpy as np
import pytest
from lerobot_data import FPS, centre, encode_mp4, episode_frames, identify

from pipeline.lerobot.format import LeRobotError
from pipeline.lerobot.video import CODECS, PtsOrder, SquareFit, VideoReader, VideoWriter, get_codec


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


def test_square_fit_keeps_colour_detail_at_the_output_resolution():
    """Red and green columns one output pixel wide stay red and green. A resize straight to packed
    rgb24 shares one colour between two output pixels and blends them to yellow (error 61)."""
    import av

    img = np.zeros((96, 144, 3), np.uint8)
    stripe = (np.arange(144) - 24) // 3 % 2  # 3 source columns = 1 output column of the centre square
    img[:, stripe == 0], img[:, stripe == 1] = (200, 40, 40), (40, 200, 40)
    frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
    out = SquareFit(32)(frame).astype(int)
    want = img[:, 24:120].reshape(32, 3, 32, 3, 3).mean(axis=(1, 3))
    assert np.abs(out - want).mean() < 30
    assert (out[:, 0::2, 0] > out[:, 0::2, 1] + 60).all() and (out[:, 1::2, 1] > out[:, 1::2, 0] + 60).all()


def test_square_fit_of_an_rgb_image_is_its_exact_area_average():
    """Parquet images come in as rgb24: 3x3 blocks of random colours resize to those colours
    (swscale's default halves the width of RGB input's colour on the way in: mean error 12)."""
    import av

    blocks = np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    img = blocks.repeat(3, axis=0).repeat(3, axis=1)  # 96 x 144
    out = SquareFit(32)(av.VideoFrame.from_ndarray(img, format="rgb24")).astype(int)
    assert np.abs(out - blocks[:, 8:40]).max() <= 1


def test_codec_registry():
    assert set(CODECS) == {"av1", "h264"}
    assert get_codec("av1").encoder == "libsvtav1"  # LeRobot's default, usable with this PyAV
    with pytest.raises(LeRobotError, match="unknown codec 'vp9'; valid: av1, h264"):
        get_codec("vp9")


class _Packet:
    def __init__(self, pts, dts=None):
        self.pts, self.dts = pts, pts if dts is None else dts


def test_pts_order_holds_an_early_packet_until_its_turn(tmp_path):
    order = PtsOrder(tmp_path / "v.mp4")
    assert [p.pts for p in order.push([_Packet(0), _Packet(3)])] == [0]
    assert order.push([_Packet(4)]) == []
    assert [p.pts for p in order.push([_Packet(2), _Packet(1)])] == [1, 2, 3, 4]
    order.finish(5)
    with pytest.raises(LeRobotError, match="the encoder gave 5 of 6 frames"):
        order.finish(6)
    for bad in (_Packet(4), _Packet(None), _Packet(7, dts=6)):  # a repeat, no pts, a reordered frame
        with pytest.raises(LeRobotError, match="v.mp4: the encoder gave a packet with pts"):
            order.push([bad])
    order.push([_Packet(6)])
    with pytest.raises(LeRobotError, match=r"gave 6 of 7 frames \(missing from frame 5\)"):
        order.finish(7)


class _EarlyWriter(VideoWriter):
    """Hands frame 3's packet out before those of frames 1 and 2, as SVT-AV1 sometimes does."""

    def _encode(self, frame):
        packets, out = list(super()._encode(frame)), []
        for p in packets:
            if p.pts in (1, 2):
                self._stash = [*getattr(self, "_stash", []), p]
            elif p.pts == 3:
                out.append(p)
            else:
                out += [*getattr(self, "_stash", []), p]
                self._stash = []
        return out


def test_an_encoder_giving_a_packet_early_still_makes_the_same_file(tmp_path):
    from dataclasses import replace

    frames = episode_frames(0, 12, 32, 32)
    plain = VideoWriter(tmp_path / "plain.mp4", CODECS["av1"], FPS, (32, 32))
    plain.write(frames)
    plain.close()
    early = _EarlyWriter(tmp_path / "early.mp4", CODECS["av1"], FPS, (32, 32))
    early.write(frames)
    early.close()
    assert (tmp_path / "early.mp4").read_bytes() == (tmp_path / "plain.mp4").read_bytes()
    out = np.empty((12, 32, 32, 3), np.uint8)
    VideoReader(tmp_path / "early.mp4", FPS).read(np.arange(12) / FPS, SquareFit(32), out)
    np.testing.assert_array_equal(identify(out, frames), np.arange(12))

    unordered = _EarlyWriter(tmp_path / "unordered.mp4", replace(CODECS["av1"], in_pts_order=False), FPS, (32, 32))
    with pytest.raises(Exception, match="Invalid argument"):  # what the muxer says without PtsOrder
        unordered.write(frames)
        unordered.close()
    unordered.abort()
    assert not (tmp_path / "unordered.mp4").exists()
