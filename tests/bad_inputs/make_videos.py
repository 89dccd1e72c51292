"""Write the corpus's video files (good and broken) into a folder, with PyAV; no binaries live in the repo.

    python -m tests.bad_inputs.make_videos OUT_DIR

Broken files are cut or overwritten from a good clip with a seeded generator, so every run writes
the same bytes. `missing.mp4` is deliberately not written.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

GOOD = "good.mp4"


def _write_clip(path: Path, codec: str, fmt: str, frames: int, pix_fmt: str = "yuv420p") -> None:
    import av

    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=8)
        stream.width, stream.height, stream.pix_fmt = 64, 48, pix_fmt
        for i in range(frames):
            img = np.zeros((48, 64, 3), np.uint8)
            img[:, : 8 * (i + 1)] = (40 * i) % 256  # a moving edge: frames differ
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        if frames:
            for packet in stream.encode():
                out.mux(packet)
        else:
            out.start_encoding()  # header only: a video stream without a single packet


def _write_audio_only(path: Path) -> None:
    import av

    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=8000)
        for _ in range(4):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate = 8000
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def make_videos(out: Path) -> dict[str, Path]:
    """name -> path of every video file the corpus names (plus the good ones)."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    good = out / GOOD
    _write_clip(good, "mpeg4", "mp4", frames=8)
    _write_clip(out / "good_mjpeg.avi", "mjpeg", "avi", frames=8, pix_fmt="yuvj420p")
    data = good.read_bytes()

    def overwrite(start: int, stop: int) -> bytes:
        b = bytearray(data)
        b[start:stop] = rng.integers(0, 256, stop - start, dtype=np.uint8).tobytes()
        return bytes(b)

    (out / "empty.mp4").write_bytes(b"")
    (out / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (out / "corrupt_header.mp4").write_bytes(overwrite(0, 64))
    (out / "corrupt_index.mp4").write_bytes(overwrite(200, 900))
    (out / "text.mp4").write_text("this is not a video\n")
    (out / "random.mp4").write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    # An AVI whose codec tag no decoder knows: the container opens, the stream cannot be decoded.
    (out / "unknown_codec.avi").write_bytes((out / "good_mjpeg.avi").read_bytes().replace(b"MJPG", b"QQQQ"))
    _write_audio_only(out / "audio_only.mp4")
    _write_clip(out / "no_frames.avi", "mpeg4", "avi", frames=0)
    (out / "folder.mp4").mkdir(exist_ok=True)
    return {p.name: p for p in out.iterdir()} | {"missing.mp4": out / "missing.mp4"}


if __name__ == "__main__":
    for name, path in sorted(make_videos(Path(sys.argv[1])).items()):
        print(name, path.stat().st_size if path.is_file() else "-")
