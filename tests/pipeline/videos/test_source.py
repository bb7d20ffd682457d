"""pipeline.videos.source on folders the tests write: which episodes a folder holds and in what
order, the task text of each from every manifest format (and each manifest error, named), the
frame times and checks of a probe, resampling, the content digest."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from video_data import write_images, write_video

from pipeline.videos.source import (
    VideoIngestError,
    assign_tasks,
    content_digest,
    discover,
    natural_key,
    probe,
    probe_images,
    probe_video,
    resample_picks,
)


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """src/
    b.mp4  a/z.mkv  a/10.avi  a/2.avi  seq/{0..11}.png  seq/inner/{0..2}.jpg  .hidden/x.mp4  notes.txt"""
    root = tmp_path_factory.mktemp("tree") / "src"
    write_video(root / "b.mp4", 0, 4, 10)
    write_video(root / "a" / "z.mkv", 1, 4, 10)
    write_video(root / "a" / "10.avi", 2, 4, 10)
    write_video(root / "a" / "2.avi", 3, 4, 10)
    write_images(root / "seq", 4, 12)
    write_images(root / "seq" / "inner", 5, 3, ext=".jpg")
    write_video(root / ".hidden" / "x.mp4", 0, 2, 10)
    (root / "notes.txt").write_text("not media")
    (root / "a" / ".x.mp4").write_bytes(b"macOS resource fork")
    return root


RELS = ["a/10.avi", "a/2.avi", "a/z.mkv", "b.mp4", "seq", "seq/inner"]


def test_discovery_sorts_by_relative_path_and_frames_naturally(tree):
    eps = discover(tree)
    assert [e.rel for e in eps] == RELS  # episodes by plain path order; hidden names skipped
    assert [e.kind for e in eps] == ["video"] * 4 + ["images"] * 2
    assert [e.position for e in eps] == list(range(6))
    assert [f.name for f in eps[4].files] == [f"{k}.png" for k in range(12)]  # 2.png before 10.png
    assert [e.stem for e in eps] == ["10", "2", "z", "b", "seq", "inner"]
    assert [e.folder for e in eps] == ["a", "a", "a", "", "", "seq"]
    assert sorted(["10.png", "2.png", "1.png"], key=natural_key) == ["1.png", "2.png", "10.png"]


def test_a_folder_of_images_given_as_src_is_one_episode(tree):
    (ep,) = discover(tree / "seq" / "inner")
    assert (ep.rel, ep.kind, len(ep.files)) == (".", "images", 3)


def test_nothing_to_ingest(tmp_path):
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(VideoIngestError, match=r"no videos under .*: expected files ending in .mp4"):
        discover(tmp_path)
    with pytest.raises(VideoIngestError, match="no folder at"):
        discover(tmp_path / "nope")


# -- tasks ---------------------------------------------------------------------------------
def tasks_of(tree, manifest=None, from_folder=False):
    return assign_tasks(tree, discover(tree), manifest, from_folder)


def test_task_from_folder_and_none(tree):
    t = tasks_of(tree, from_folder=True)
    assert t.texts == ("a", "a", "a", "", "", "seq") and t.source == "folder" and t.unmatched == 0
    t = tasks_of(tree)
    assert t.texts == ("",) * 6 and t.source == "none"


def test_csv_manifest_relative_and_absolute_paths_and_fallback(tree, tmp_path):
    m = tmp_path / "tasks.csv"
    m.write_text(f'path,task\na/2.avi,"open the drawer, slowly"\n{tree / "seq"}/,wipe\n\nb.mp4,\n')
    t = tasks_of(tree, m)
    assert t.texts == ("", "open the drawer, slowly", "", "", "wipe", "")
    import hashlib

    assert t.source == f"manifest:{hashlib.sha256(m.read_bytes()).hexdigest()[:16]}"
    # unlisted episodes (and an empty task) fall back to the folder's name
    t = tasks_of(tree, m, from_folder=True)
    assert t.texts == ("a", "open the drawer, slowly", "a", "", "wipe", "seq") and t.source.endswith("+folder")


def test_jsonl_manifest(tree, tmp_path):
    m = tmp_path / "tasks.jsonl"
    m.write_text('{"path": "a/z.mkv", "task": "stack"}\n\n{"path": "seq/inner", "task": "pour"}\n')
    assert tasks_of(tree, m).texts == ("", "", "stack", "", "", "pour")


def test_something_something_labels(tree, tmp_path):
    m = tmp_path / "train.json"
    items = [
        {"id": "2", "label": "Pushing cup from left to right", "template": "Pushing [something] from left to right"},
        {"id": "inner", "template": "Putting [something] on [something]"},
        {"id": "99999", "label": "not here"},
        {"id": "88888", "label": "nor here"},
    ]
    m.write_text(json.dumps(items))
    t = tasks_of(tree, m)
    assert t.texts == ("", "Pushing cup from left to right", "", "", "", "Putting something on something")
    assert t.unmatched == 2  # counted, not refused


@pytest.mark.parametrize(
    "name, text, needles",
    [
        ("t.csv", "path,task\nb.mp4,x\ngone.mp4,y\n", ["t.csv row 3", "gone.mp4 does not exist"]),
        ("t.csv", "file,label\nb.mp4,x\n", ["needs the header row path,task"]),
        ("t.csv", "path,task\nnotes.txt,x\n", ["row 2", "notes.txt is not an episode"]),
        ("t.csv", "path,task\nb.mp4,x\nb.mp4,y\n", ["row 3", "b.mp4 has another task at row 2"]),
        ("t.jsonl", '{"path": "b.mp4", "task": "x"}\n{"path": "missing/clip.webm"}\n', ["t.jsonl line 2", "clip.webm"]),
        ("t.jsonl", '{"path": "b.mp4"}\nnot json\n', ["line 2 is not JSON"]),
        ("t.jsonl", '["b.mp4"]\n', ["line 1 needs an object"]),
        ("t.json", '[{"id": "nope", "label": "x"}]', ["names no episode of"]),
        ("t.json", '{"Pushing [something]": "0"}', ["expected a list of objects with id and label"]),
        ("t.json", '[{"id": "2"}]', ["item 1 has no id and label"]),
        ("t.txt", "b.mp4 x", ["expected a .csv"]),
    ],
)
def test_manifest_errors_name_the_file_and_row(tree, tmp_path, name, text, needles):
    m = tmp_path / name
    m.write_text(text)
    with pytest.raises(VideoIngestError) as err:
        tasks_of(tree, m)
    msg = str(err.value)
    assert str(m) in msg and "\n" not in msg, msg
    for n in needles:
        assert n in msg, msg


# -- frames -------------------------------------------------------------------------------
def test_probe_reads_times_from_packets_and_the_first_frame(tree):
    p = probe_video(tree / "b.mp4")
    np.testing.assert_allclose(p.times, np.arange(4) / 10, atol=1e-9)
    assert (p.fps, p.width, p.height) == (10.0, 32, 24)
    eps = discover(tree)
    q = probe(eps[4], 20.0)
    np.testing.assert_allclose(q.times, np.arange(12) / 20)
    assert (q.fps, q.width, q.height) == (20.0, 32, 24)
    with pytest.raises(VideoIngestError, match=r"seq is an image sequence, .* give it with --fps F"):
        probe(eps[4], None)


@pytest.mark.parametrize("ext", [".webm", ".mov", ".mkv"])
def test_probe_at_another_rate_in_other_containers(tmp_path, ext):
    write_video(tmp_path / f"v{ext}", 0, 9, 20)
    p = probe_video(tmp_path / f"v{ext}")
    np.testing.assert_allclose(p.times, np.arange(9) / 20, atol=1e-9)
    assert p.fps == 20.0


def write_no_frames(path: Path, codec: str) -> None:
    """A container whose video stream holds no frame, or (codec pcm_s16le) that holds only sound."""
    import av

    with av.open(str(path), "w") as c:
        if codec == "pcm_s16le":
            s = c.add_stream(codec, rate=8000)
            sound = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.int16), format="s16", layout="mono")
            sound.sample_rate, sound.pts = 8000, 0
            c.mux([*s.encode(sound), *s.encode(None)])
            return
        s = c.add_stream(codec, rate=10)
        s.width, s.height, s.pix_fmt = 32, 24, "yuv420p"
        c.start_encoding()


def test_empty_missing_and_corrupt_videos_are_named(tmp_path):
    bad = tmp_path / "x.mp4"
    bad.write_bytes(b"\x00garbage" * 200)
    with pytest.raises(VideoIngestError, match=rf"^video file {bad} cannot be decoded \("):
        probe_video(bad)
    with pytest.raises(VideoIngestError, match=rf"^video file {tmp_path / 'gone.mp4'} is missing$"):
        probe_video(tmp_path / "gone.mp4")
    for name, codec, why in [
        ("empty.avi", "mpeg4", "its video stream has no frames"),
        ("empty.mp4", "libx264", "it has no video stream"),  # mp4 keeps no track without samples
        ("sound.mkv", "pcm_s16le", "it has no video stream"),
    ]:
        write_no_frames(tmp_path / name, codec)
        with pytest.raises(VideoIngestError, match=rf"^video file {tmp_path / name} is empty: {why}$"):
            probe_video(tmp_path / name)


def test_packets_that_do_not_decode_are_caught_by_decoding_the_first_frame(tmp_path):
    """Demuxing alone would pass this file: its packets are there, their payload is zeros."""
    import av

    path = tmp_path / "zeros.mp4"
    write_video(path, 0, 6, 10)
    data = bytearray(path.read_bytes())
    with av.open(str(path)) as c:
        packets = [(p.pos, p.size) for p in c.demux(c.streams.video[0]) if p.size]
    for pos, size in packets:
        data[pos : pos + size] = bytes(size)
    path.write_bytes(bytes(data))
    with pytest.raises(VideoIngestError, match=rf"^video file {path} cannot be decoded \(no frame of it decodes"):
        probe_video(path)


def test_image_sequences_of_mixed_sizes_or_unreadable_images_are_refused(tmp_path):
    write_images(tmp_path / "seq", 0, 3)
    write_images(tmp_path / "big", 0, 1, h=30, w=40)
    shutil.copy(tmp_path / "big" / "0.png", tmp_path / "seq" / "7.png")
    (ep,) = discover(tmp_path / "seq")
    with pytest.raises(
        VideoIngestError, match=r"frame folder .*seq mixes image sizes: 32x24 \(0.png\) and 40x30 \(7.png\)"
    ):
        probe_images(ep, 10)
    (tmp_path / "seq" / "7.png").write_bytes(b"not a png")
    (ep,) = discover(tmp_path / "seq")
    with pytest.raises(VideoIngestError, match=r"image .*seq/7.png cannot be read"):
        probe_images(ep, 10)


def test_resample_picks_the_latest_frame_at_or_before_each_target():
    t = np.arange(12) / 10  # 10 fps, 0 .. 1.1 s
    np.testing.assert_array_equal(resample_picks(t, 4), [0, 2, 5, 7, 10])  # 0, .25, .5, .75, 1.0
    np.testing.assert_array_equal(resample_picks(t, 20), np.repeat(np.arange(12), 2)[:-1])  # 0 .. 1.1 by .05
    np.testing.assert_array_equal(resample_picks(t, 10), np.arange(12))
    np.testing.assert_array_equal(resample_picks(t + 3.0, 5), [0, 2, 4, 6, 8, 10])  # from the first frame's time
    uneven = np.array([0.0, 0.09, 0.21, 0.3])
    np.testing.assert_array_equal(resample_picks(uneven, 10), [0, 1, 1, 3])
    np.testing.assert_array_equal(resample_picks(np.array([0.0, 0.1 - 1e-7]), 10), [0, 1])  # within 1e-6


def test_digest_is_names_and_sizes_relative_to_src(tree, tmp_path):
    moved = tmp_path / "elsewhere" / "renamed"
    shutil.copytree(tree, moved)
    assert content_digest(tree, discover(tree)) == content_digest(moved, discover(moved))
    assert content_digest(tree, discover(tree)[:2]) != content_digest(tree, discover(tree))
    with open(moved / "b.mp4", "ab") as f:
        f.write(b"\x00")
    assert content_digest(tree, discover(tree)) != content_digest(moved, discover(moved))
