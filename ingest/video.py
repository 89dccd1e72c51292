"""Decode a video file and sample F frames uniformly in time (PyAV, or OpenCV as a fallback).

Returns RGB uint8 frames already resized (shorter side = size) and centre-cropped to size x size,
the input the image encoder wants; scaling happens in the decoder's C code (swscale / cv2.resize).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ingest.download import DownloadError, downloaded, is_url
from ingest.features import uniform_indices

# Beyond this many frames (20 s at 30 fps), seek to each sample instead of decoding the whole stream: below
# it, decoding every frame costs less than the seeks.
SEEK_ABOVE_FRAMES = 600


class VideoError(Exception):
    """The file cannot be opened or yields no frames; the message is the per-record reason."""


def _scaled_size(width: int, height: int, size: int) -> tuple[int, int]:
    scale = size / min(width, height)
    return max(size, round(width * scale)), max(size, round(height * scale))


def _centre_crop(img: np.ndarray, size: int) -> np.ndarray:
    h, w = img.shape[:2]
    top, left = (h - size) // 2, (w - size) // 2
    return img[top:top + size, left:left + size]


def _av_frames(path: Path, n: int, size: int) -> list[np.ndarray]:
    import av

    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        raise VideoError(f"unreadable video: {exc}") from None
    with container:
        if not container.streams.video:
            raise VideoError("unreadable video: no video stream")
        stream = container.streams.video[0]
        if stream.codec_context is None:
            raise VideoError("unreadable video: unsupported codec (FFmpeg has no decoder for its video stream)")
        if not (stream.codec_context.width and stream.codec_context.height):
            raise VideoError("unreadable video: the video stream has no frame size")
        stream.thread_type = "AUTO"
        w, h = _scaled_size(stream.codec_context.width, stream.codec_context.height, size)

        def rgb(frame) -> np.ndarray:
            return _centre_crop(frame.to_ndarray(format="rgb24", width=w, height=h), size)

        try:
            total = stream.frames
            if total > SEEK_ABOVE_FRAMES and stream.duration and stream.time_base:
                return _av_seek_samples(container, stream, n, rgb)
            # Short video: one sequential pass, converting only the sampled frames.
            if total > 0:
                wanted = set(uniform_indices(total, n).tolist())
                last = max(wanted)
                picked: dict[int, np.ndarray] = {}
                for i, frame in enumerate(container.decode(stream)):
                    if i in wanted:
                        picked[i] = rgb(frame)
                    if i >= last:
                        break
                if picked:  # the header may overstate the count: sample what was decoded
                    have = sorted(picked)
                    return [picked[have[j]] for j in uniform_indices(len(have), n)]
            frames = [rgb(f) for f in container.decode(stream)]  # unknown length
        except av.error.FFmpegError as exc:
            raise VideoError(f"unreadable video: {exc}") from None
    if not frames:
        raise VideoError("unreadable video: no frames decoded")
    return [frames[j] for j in uniform_indices(len(frames), n)]


def _av_seek_samples(container, stream, n: int, rgb) -> list[np.ndarray]:
    """Long video: seek to the keyframe before each sample time, decode up to it."""
    start = stream.start_time or 0
    out: list[np.ndarray] = []
    for frac in (np.arange(n) + 0.5) / n:
        target = start + int(frac * stream.duration)
        container.seek(target, stream=stream, backward=True, any_frame=False)
        for frame in container.decode(stream):
            if frame.pts is None or frame.pts >= target:
                out.append(rgb(frame))
                break
    if not out:
        raise VideoError("unreadable video: seeking yielded no frames")
    return [out[j] for j in uniform_indices(len(out), n)]


def _cv2_frames(path: Path, n: int, size: int) -> list[np.ndarray]:
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise VideoError("unreadable video: OpenCV cannot open it")
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        out: list[np.ndarray] = []
        for idx in uniform_indices(max(total, 1), n):
            cap.set(cv2.CAP_PROP_POS_FRAMES, int(idx))
            ok, bgr = cap.read()
            if ok:
                w, h = _scaled_size(bgr.shape[1], bgr.shape[0], size)
                img = cv2.cvtColor(cv2.resize(bgr, (w, h), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
                out.append(_centre_crop(img, size))
    finally:
        cap.release()
    if not out:
        raise VideoError("unreadable video: no frames decoded")
    return [out[j] for j in uniform_indices(len(out), n)]


def read_frames(path: str | Path, n: int, size: int, backend: str = "auto") -> np.ndarray:
    """-> uint8 [n, size, size, 3] RGB frames sampled uniformly over the video.

    backend: "av" (PyAV), "cv2" (OpenCV) or "auto" (PyAV if installed, else OpenCV).
    path: a file, or an http(s) URL (fetched into a temporary file first).
    """
    if isinstance(path, str) and is_url(path):
        try:
            with downloaded(path) as local:
                return read_frames(local, n, size, backend)
        except DownloadError as exc:
            raise VideoError(f"unreadable video: {exc}") from None
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"unreadable video: {path} " + ("is not a file" if path.exists() else "does not exist"))
    if backend == "auto":
        try:
            import av  # noqa: F401
            backend = "av"
        except ImportError:
            backend = "cv2"
    try:
        frames = _av_frames(path, n, size) if backend == "av" else _cv2_frames(path, n, size)
    except VideoError:
        raise
    except Exception as exc:  # noqa: BLE001 - decoders raise assorted types on hostile files; one must not sink a batch
        raise VideoError(f"unreadable video: {type(exc).__name__}: {exc}") from exc
    return np.stack(frames)
