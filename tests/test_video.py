"""Videos, animations and stickers: real media made here from the test photos, decoded for real.

Every file is generated in the test with PyAV (MP4 h264/mpeg4, WebM vp8/vp9, VP9 with alpha) or
Pillow (GIF, WebP), holding one gallery photo among frames of photos the gallery lacks.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import threading
import time
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from av.video.codeccontext import VideoCodecContext
from PIL import Image

from bot.composition import build_engine, build_service
from bot.settings import Settings
from core.chat.context import Chat, Context, User
from core.chat.service import ChatService
from core.chat.texts import CAPTION_BUDGET, moment_text, result_caption
from core.chat.threads import Thread
from core.errors import (
    AnimatedStickerError,
    ClipbotError,
    CorruptVideoError,
    ImageError,
    VideoTimeoutError,
    VideoTooLargeError,
    VideoTooLongError,
)
from core.galleries import GLOBAL_COLLECTION
from core.gallery.engine import Engine
from core.media.images import decode_image, refusal_before_download
from core.media.kinds import gif_durations, media_kind, sniff, webp_durations
from core.media.video import DecodedMedia, VideoLimits, decode_media
from core.models.clip import ClipEncoder
from core.search.frames import merge_frame_results
from core.search.words import SearchResult
from tests.conftest import PHOTO_FILES

Timeline = Sequence[tuple["str | Image.Image", float]]  # (photo name or picture, seconds shown)
# Photos the gallery fixture lacks: the frames around the one it holds.
BEFORE, AFTER = "motorcycle", "hubble"
FAST_VP = {"deadline": "realtime", "cpu-used": "8"}


# -- making media --------------------------------------------------------------------------------


def picture(item: str | Image.Image, size: tuple[int, int]) -> Image.Image:
    if isinstance(item, Image.Image):
        return item if item.size == size else item.resize(size, Image.Resampling.LANCZOS)
    return Image.open(PHOTO_FILES[item]).convert("RGB").resize(size, Image.Resampling.LANCZOS)


def sticker(name: str, side: int = 512) -> Image.Image:
    """A photo cut out in a circle, black and fully transparent outside: a sticker."""
    rgba = picture(name, (side, side)).convert("RGBA")
    yy, xx = np.mgrid[:side, :side]
    inside = (xx - side / 2) ** 2 + (yy - side / 2) ** 2 < (side * 0.45) ** 2
    pixels = np.asarray(rgba).copy()
    pixels[~inside] = (0, 0, 0, 0)
    return Image.fromarray(pixels)


def video(timeline: Timeline, *, size: tuple[int, int] = (480, 320), fps: int = 5, codec: str = "libx264",
          fmt: str = "mp4", pix_fmt: str = "yuv420p", options: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as box:
        stream = box.add_stream(codec, rate=fps, options=options or {})
        stream.width, stream.height = size
        stream.pix_fmt = pix_fmt
        for item, seconds in timeline:
            img = picture(item, size)
            frame = av.VideoFrame.from_ndarray(np.asarray(img), format="rgba" if img.mode == "RGBA" else "rgb24")
            for _ in range(round(seconds * fps)):
                box.mux(stream.encode(frame))
        box.mux(stream.encode(None))
    return buf.getvalue()


def animation(timeline: Timeline, fmt: str, *, size: tuple[int, int] = (240, 160), **options: object) -> bytes:
    """An animated GIF or WebP, each picture shown for its seconds."""
    frames = [picture(item, size) for item, _ in timeline]
    buf = io.BytesIO()
    frames[0].save(buf, fmt, save_all=True, append_images=frames[1:], loop=0,
                   duration=[round(seconds * 1000) for _, seconds in timeline], **options)
    return buf.getvalue()


def many_frames(count: int, codec: str, fmt: str, *, gop: int = 100, fps: int = 1000, side: int = 16) -> bytes:
    """A long video made fast: one GOP of ``gop`` tiny frames encoded once, its packets muxed
    again and again with shifted timestamps (decoders see an ordinary stream of ``count`` frames)."""
    enc = av.CodecContext.create(codec, "w")
    assert isinstance(enc, VideoCodecContext)
    enc.width = enc.height = side
    enc.pix_fmt = "yuv420p"
    enc.time_base = Fraction(1, fps)
    enc.framerate = Fraction(fps)
    enc.gop_size, enc.max_b_frames = gop, 0
    enc.options = {**FAST_VP, "g": str(gop)} if codec.startswith("libvpx") else {}
    packets = []
    for i in range(gop):
        frame = av.VideoFrame.from_ndarray(np.full((side, side, 3), i * 2 % 256, np.uint8), format="rgb24")
        frame.pts, frame.time_base = i, Fraction(1, fps)
        packets += enc.encode(frame)
    packets += enc.encode(None)
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as box:
        stream = box.add_stream(codec, rate=fps)
        stream.width = stream.height = side
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, fps)
        stream.codec_context.extradata = enc.extradata
        for r in range(count // gop):
            for p in packets:
                copy = av.Packet(bytes(p))
                copy.pts = copy.dts = r * gop + (p.pts or 0)
                copy.time_base, copy.is_keyframe, copy.stream = Fraction(1, fps), p.is_keyframe, stream
                box.mux(copy)
    return buf.getvalue()


def big_video(middle: str) -> bytes:
    """Four seconds at 10 fps, 1024x576, intra-coded at 400 Mbit/s: fresh random
    noise in every frame (noise does not compress), but ``middle`` from 1.6 s to 2.4 s. Over 20 MB."""
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as box:
        stream = box.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 1024, 576, "yuv420p"
        stream.codec_context.gop_size, stream.bit_rate = 1, 400_000_000
        photo = np.asarray(picture(middle, (1024, 576)))
        for n in range(40):
            pixels = photo if 16 <= n < 24 else rng.integers(0, 256, (576, 1024, 3), np.uint8)
            box.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        box.mux(stream.encode(None))
    return buf.getvalue()


def tgs() -> bytes:
    lottie = {"v": "5.5.2", "fr": 60, "ip": 0, "op": 180, "w": 512, "h": 512, "layers": []}
    return gzip.compress(json.dumps(lottie).encode())


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def ctx() -> Context:
    return Context(Chat("telegram", "100", private=True), User("telegram", "1", "alice"))


@pytest.fixture
def service(gallery: Engine, settings: Settings) -> ChatService:
    return build_service(settings.model_copy(update={"rate_limit_per_minute": 0}), gallery)


async def stored(engine: Engine) -> tuple[int, int]:
    """Images in the gallery and files in its media folder."""
    root = Path(engine.picture_file(""))
    files = [p for p in root.rglob("*") if p.is_file()] if root.exists() else []
    return sum((await engine.collection_counts()).values()), len(files)


# -- telling media apart -------------------------------------------------------------------------


def test_kind_is_told_by_content() -> None:
    clip = video([("coffee", 0.4)], size=(64, 48))
    assert sniff(clip[:64]) == "mp4" and media_kind(clip) == "video"
    assert media_kind(video([("coffee", 0.4)], size=(64, 48), codec="libvpx-vp9", fmt="webm",
                            options=FAST_VP)) == "video"
    assert media_kind(animation([("coffee", 1), ("rocket", 1)], "GIF")) == "animation"
    assert media_kind(animation([("coffee", 1)], "GIF")) == "image"  # one frame: a still GIF
    assert media_kind(animation([("coffee", 1), ("rocket", 1)], "WEBP")) == "animation"
    assert media_kind(png(picture("coffee", (64, 48)))) == "image"
    assert media_kind(tgs()) == "tgs"
    assert media_kind(gzip.compress(b"not json")) == "image"  # for core.media.images to call not an image
    assert media_kind(b"\x00\x00\x00\x18ftypheic" + bytes(64)) == "image"  # HEIC: core.media.images names it


def test_frame_durations_are_read_without_decoding() -> None:
    gif = animation([("coffee", 2), ("rocket", 0.5), ("chelsea", 0)], "GIF")
    assert gif_durations(gif) == [2.0, 0.5, 0.1]  # 0 ms shows for 100 ms, as in browsers
    assert webp_durations(animation([("coffee", 1.5), ("rocket", 0.25)], "WEBP")) == [1.5, 0.25]
    assert webp_durations(png(picture("coffee", (8, 8)))) == [] and gif_durations(b"GIF89a") == []


# -- matching ------------------------------------------------------------------------------------


MATCHES: dict[str, tuple[str, Callable[[str], bytes]]] = {
    "gif": ("chelsea", lambda p: animation([(BEFORE, 2), (p, 2), (AFTER, 2)], "GIF")),
    "mp4-h264": ("coffee", lambda p: video([(BEFORE, 2), (p, 2), (AFTER, 2)], options={"preset": "ultrafast"})),
    "mp4-mpeg4": ("coffee", lambda p: video([(BEFORE, 2), (p, 2), (AFTER, 2)], codec="mpeg4")),
    "webm-vp9": ("rocket", lambda p: video([(BEFORE, 2), (p, 2), (AFTER, 2)], size=(320, 480),
                                           codec="libvpx-vp9", fmt="webm", options=FAST_VP)),
    "webm-vp8": ("rocket", lambda p: video([(BEFORE, 2), (p, 2), (AFTER, 2)], size=(320, 480), codec="libvpx",
                                           fmt="webm", options=FAST_VP)),
    "webp-animated": ("astronaut", lambda p: animation([(BEFORE, 2), (p, 2), (AFTER, 2)], "WEBP",
                                                       size=(256, 256), lossless=True)),
    "webm-video-sticker": ("astronaut", lambda p: video(
        [(sticker(BEFORE), 2), (sticker(p), 2), (sticker(AFTER), 2)], size=(512, 512), codec="libvpx-vp9",
        fmt="webm", pix_fmt="yuva420p", options=FAST_VP)),
}


@pytest.mark.parametrize("case", MATCHES)
async def test_media_match_the_photo_they_show_at_its_moment(gallery: Engine, case: str) -> None:
    expected, make = MATCHES[case]
    results, vector = await gallery.match_media(make(expected), k=4)
    assert results[0].label == expected
    assert all(r.moment is not None for r in results)
    best = results[0]
    assert best.moment is not None and 2.0 <= best.moment < 4.0  # the photo shows from 0:02 to 0:04
    caption = result_caption(best, 0, len(results))
    assert f"Matched at 0:0{int(best.moment)}." in caption.splitlines()
    # The query remembered for feedback is the frame that matched best: it scores that match.
    assert float(vector @ (await gallery.image_vectors([best.id], [GLOBAL_COLLECTION]))[best.id]) == \
        pytest.approx(best.score, abs=2e-3)


async def test_a_photo_matches_exactly_as_before(gallery: Engine, photos: dict[str, Path]) -> None:
    data = photos["coffee"].read_bytes()
    results, vector = await gallery.match_media(data, k=3)
    before = await gallery.search_vector(await gallery.image_vector(data), k=3)
    assert [(r.id, r.moment) for r in results] == [(r.id, None) for r in before]
    assert [r.score for r in results] == pytest.approx([r.score for r in before], abs=1e-5)
    assert np.allclose(vector, await gallery.image_vector(data), atol=1e-5)
    assert "Matched at" not in result_caption(results[0], 0, 3)


async def test_static_webp_sticker_matches_and_is_flattened_like_a_png(gallery: Engine) -> None:
    cut_out = sticker("astronaut")
    buf = io.BytesIO()
    cut_out.save(buf, "WEBP", lossless=True)
    as_sticker = await gallery.decode_media(buf.getvalue())
    as_png = decode_image(png(cut_out))
    assert as_sticker.kind == "image" and as_sticker.moments == (None,)
    assert np.array_equal(np.asarray(as_sticker.frames[0]), np.asarray(as_png.image))
    assert as_sticker.frames[0].getpixel((2, 2)) == (255, 255, 255)  # transparent black became white
    results, _ = await gallery.match_media(buf.getvalue(), k=4)
    assert results[0].label == "astronaut" and results[0].moment is None


async def test_animation_and_video_sticker_transparency_is_flattened_like_a_png(gallery: Engine) -> None:
    frames = [sticker(BEFORE, 256), sticker("astronaut", 256)]
    animated = await gallery.decode_media(animation([(frames[0], 1), (frames[1], 1)], "WEBP", size=(256, 256),
                                                    lossless=True))
    assert animated.kind == "animation" and animated.moments == (0.0, 1.0)
    for frame, cut_out in zip(animated.frames, frames, strict=True):
        assert np.array_equal(np.asarray(frame), np.asarray(decode_image(png(cut_out)).image))
    clip = await gallery.decode_media(video([(frames[1], 1)], size=(256, 256), codec="libvpx-vp9", fmt="webm",
                                            pix_fmt="yuva420p", options=FAST_VP))
    flat = np.asarray(decode_image(png(frames[1])).image).astype(int)
    got = np.asarray(clip.frames[0]).astype(int)
    assert got[:8, :8].min() >= 250  # the transparent corner is white, not the black under it
    assert np.abs(got - flat).mean() < 8  # lossy VP9, but the same picture


async def test_large_one_frame_and_long_videos(gallery: Engine) -> None:
    big = big_video("coffee")
    assert len(big) >= 20 * 1024 * 1024
    results, _ = await gallery.match_media(big, k=2)
    assert results[0].label == "coffee" and results[0].moment is not None and 1.6 <= results[0].moment < 2.4

    single = video([("chelsea", 0.2)])  # one frame at 5 fps
    media = await gallery.decode_media(single)
    assert (media.kind, media.moments) == ("video", (0.0,))
    results, _ = await gallery.match_media(single, k=2)
    assert results[0].label == "chelsea" and "Matched at 0:00." in result_caption(results[0], 0, 2)


@pytest.mark.parametrize(("codec", "fmt"), [("libvpx-vp9", "webm"), ("mpeg4", "mp4")])
async def test_a_video_of_100000_frames_is_sampled_not_decoded(gallery: Engine, codec: str, fmt: str) -> None:
    data = many_frames(100_000, codec, fmt)  # 100 s at 1000 fps; vp9: one keyframe per 100 frames
    gallery.video_limits = VideoLimits(decode_seconds=5)
    started = time.monotonic()
    media = await gallery.decode_media(data)
    elapsed = time.monotonic() - started
    assert elapsed < 5 + 3
    assert media.complete and media.duration == pytest.approx(100, abs=0.1)
    assert media.decoded < 1000  # at most about half a keyframe interval per sample
    moments = [m for m in media.moments if m is not None]
    assert len(moments) == 8 and moments == sorted(moments)
    assert moments[0] < 10 and moments[-1] > 90
    assert np.diff(moments) == pytest.approx([12.5] * 7, abs=0.1)  # evenly over the duration


@pytest.mark.parametrize(("codec", "fmt", "options"), [("libx264", "mp4", {"preset": "ultrafast", "g": "250"}),
                                                       ("libvpx-vp9", "webm", {**FAST_VP, "g": "250"})])
async def test_sparse_keyframes_are_never_decoded_twice(gallery: Engine, codec: str, fmt: str,
                                                        options: dict[str, str]) -> None:
    # 60 s at 25 fps with a keyframe every 10 s: 8 samples 7.5 s apart, fewer keyframes than samples.
    data = video([(BEFORE, 20), ("coffee", 20), (AFTER, 20)], size=(96, 64), fps=25, codec=codec, fmt=fmt,
                 options=options)
    media = await gallery.decode_media(data)
    assert len(media.frames) == 8 and media.decoded <= 1500
    assert media.moments == pytest.approx([3.75, 11.25, 18.75, 26.25, 33.75, 41.25, 48.75, 56.25], abs=0.05)


async def test_video_without_a_duration_is_scanned_evenly(gallery: Engine) -> None:
    buf = io.BytesIO()
    # A live WebM (as browsers record them) says nothing of its duration up front.
    with av.open(buf, "w", format="webm", container_options={"live": "1"}) as box:
        stream = box.add_stream("libvpx-vp9", rate=10, options=FAST_VP)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(100):
            box.mux(stream.encode(av.VideoFrame.from_ndarray(np.full((48, 64, 3), 2 * i, np.uint8),
                                                             format="rgb24")))
        box.mux(stream.encode(None))
    media = await gallery.decode_media(buf.getvalue())
    assert media.duration is None and media.decoded == 100 and len(media.frames) == 8
    moments = [m for m in media.moments if m is not None]
    assert moments[0] == 0.0 and moments[-1] >= 9.0 and max(np.diff(moments)) < 2.5  # 10 s, spread over


class Ticking:
    """A clock that moves ``step`` seconds each time it is read."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


@pytest.mark.parametrize("fmt", ["mp4", "gif"])
def test_the_decode_budget_keeps_the_frames_found_in_time(fmt: str) -> None:
    names = ["coffee", "rocket", "chelsea"]
    if fmt == "mp4":  # 9 s at 5 fps: 45 packets
        data = video([(name, 3) for name in names], size=(64, 48))
    else:  # 18 s in 36 frames
        data = animation([(names[i % 3], 0.5) for i in range(36)], "GIF", size=(64, 48))
    limits = VideoLimits(decode_seconds=10)
    partial = decode_media(data, limits=limits, clock=Ticking(0.5))
    assert not partial.complete and 1 <= len(partial.frames) < 8
    assert all(m is not None and m < 9 for m in partial.moments)  # the part read in time
    assert decode_media(data, limits=limits).complete
    noun = "video" if fmt == "mp4" else "animation"
    with pytest.raises(VideoTimeoutError, match=f"^I can't read this {noun} in time.$"):
        decode_media(data, limits=limits, clock=Ticking(100))


# -- refusals, and nothing stored ----------------------------------------------------------------


async def test_unreadable_and_over_limit_media_are_refused_and_nothing_is_stored(
        gallery: Engine, service: ChatService) -> None:
    clip = video([(BEFORE, 2), ("coffee", 2), (AFTER, 2)])
    before = await stored(gallery)

    async def refused(data: bytes) -> str:
        reply = await service.add(ctx(), data, "clip")
        assert reply is not None and reply.kind == "error"
        again = await service.match(ctx(), data)
        assert again is not None and again.text == reply.text
        assert await stored(gallery) == before
        return reply.text

    assert await refused(clip[: len(clip) // 2]) == "I can't read this video."  # its index was at the end
    assert await refused(tgs()) == "Animated stickers (TGS) aren't supported; send it as a GIF or video."
    gallery.video_limits = VideoLimits(max_seconds=5)
    assert await refused(clip) == "The video is 6 seconds long; the limit is 5 seconds. Send a shorter one."
    gallery.video_limits = VideoLimits(max_bytes=100_000)
    assert (await refused(clip)).startswith(f"The video is {len(clip) / 2**20:.1f} MB; the limit is 0.0954 MB.")
    gallery.video_limits = VideoLimits()
    gallery.max_pixels = 100_000
    assert (await refused(clip)).startswith("The video is 480x320 (0.2 megapixels); the limit is 0.1 megapixels")
    gallery.max_pixels = 40_000_000
    gallery.video_limits = VideoLimits(decode_seconds=1e-9)
    assert await refused(clip) == "I can't read this video in time."
    with pytest.raises(AnimatedStickerError):
        await gallery.match_media(tgs())
    for error in (CorruptVideoError, VideoTooLargeError, VideoTooLongError, VideoTimeoutError, AnimatedStickerError):
        assert issubclass(error, ImageError)


def test_refusals_before_download_let_videos_through() -> None:
    mb = 1024 * 1024
    for mime in ("video/mp4", "video/webm", "video/quicktime", "image/gif", "image/webp", "video/mp4; codecs=avc1"):
        assert refusal_before_download(mime, 5 * mb, 20 * mb, video_max_bytes=50 * mb) is None
    assert refusal_before_download("application/x-tgsticker", 30_000, 20 * mb) == AnimatedStickerError.USER_MESSAGE
    assert refusal_before_download("video/mp4", 30 * mb, 100 * mb, "clip.mp4", video_max_bytes=25 * mb) == (
        "clip.mp4 is 30.0 MB; the limit is 25 MB. Send a smaller video.")
    assert refusal_before_download("video/mp4", 21 * mb, 20 * mb, video_max_bytes=50 * mb) == (
        "That file is 21.0 MB; the limit is 20 MB. Send a smaller video.")  # the platform's limit still holds
    assert (refusal_before_download("video/x-msvideo", 1000, 20 * mb) or "").startswith(
        "That file is X-MSVIDEO, not an image or a video")


async def test_a_video_named_like_a_photo_is_a_video(gallery: Engine, tmp_path: Path) -> None:
    path = tmp_path / "holiday.jpg"
    path.write_bytes(video([(BEFORE, 2), ("coffee", 2), (AFTER, 2)]))
    results, _ = await gallery.match_media(path, k=1)
    assert results[0].label == "coffee" and results[0].moment is not None
    added = await gallery.add_image(path, collection="telegram:100", label="holiday")
    kept = decode_image(gallery.picture_file(added.record.file or ""))
    assert kept.format == "JPEG" and (added.record.width, added.record.height) == (480, 320)


def fuzzed(data: bytes, seed: int) -> list[bytes]:
    """Truncations, and copies with a few bytes flipped past the signature."""
    rng = np.random.default_rng(seed)
    cases = [data[:n] for n in (12, 64, 200, len(data) // 3, len(data) - 100)]
    for _ in range(10):
        damaged = bytearray(data)
        for at in rng.integers(16, len(data), 12):
            damaged[at] ^= 1 << int(rng.integers(0, 8))
        cases.append(bytes(damaged))
    return cases


def test_damaged_media_never_hang_a_worker() -> None:
    timeline = [("coffee", 1), ("rocket", 1), ("chelsea", 1)]
    sources = [video(timeline, size=(96, 64), options={"preset": "ultrafast"}),
               video(timeline, size=(96, 64), codec="libvpx-vp9", fmt="webm", options=FAST_VP),
               animation(timeline, "GIF", size=(96, 64)), animation(timeline, "WEBP", size=(96, 64))]
    limits = VideoLimits(decode_seconds=5)
    for n, source in enumerate(sources):
        for case in fuzzed(source, n):
            outcome: list[object] = []

            def decode(data: bytes = case, out: list[object] = outcome) -> None:
                try:
                    out.append(decode_media(data, limits=limits))
                except ClipbotError as exc:
                    out.append(exc)
                except BaseException as exc:  # reported by the assertion below
                    out.append(exc)

            worker = threading.Thread(target=decode, daemon=True)  # a hang cannot hold the test run
            worker.start()
            worker.join(30)
            assert not worker.is_alive(), f"decoding a damaged file {n} did not end"
            assert isinstance(outcome[0], DecodedMedia | ClipbotError), repr(outcome[0])


# -- adding, and the other photo commands --------------------------------------------------------


async def test_adding_a_video_stores_its_most_representative_frame(gallery: Engine, service: ChatService) -> None:
    clip = video([(BEFORE, 1.5), ("chelsea", 6), (AFTER, 1.5)])  # the cat fills most of it
    reply = await service.add(ctx(), clip, "cat video", "a cat, mostly")
    assert reply is not None and reply.kind == "info" and reply.result_id is not None
    record = await gallery.get_image(reply.result_id)
    path = gallery.path_of(record)
    assert path is not None and path.endswith(".jpg")
    kept = decode_image(path)
    assert kept.format == "JPEG" and kept.image.size == (480, 320) == (record.width, record.height)
    [nearest] = await gallery.search_image(path, collections=[GLOBAL_COLLECTION], k=1)
    assert nearest.label == "chelsea"
    again = await service.add(ctx(), clip, "cat video")  # the same video: the same frame, updated
    assert again is not None and again.result_id == record.id and again.text.startswith("Updated")

    colors = await service.colors(ctx(), clip)
    assert colors is not None and colors.kind != "error" and colors.image is not None
    scores = await service.scores(ctx(), clip)
    assert scores is not None and scores.kind != "error" and scores.image is not None
    match = await service.match(ctx(), clip)
    assert match is not None and match.kind == "result"


async def test_describe_looks_at_the_representative_frame(settings: Settings, encoder: ClipEncoder,
                                                          captioner: object) -> None:
    clip = video([(BEFORE, 1), ("chelsea", 3), (AFTER, 1)], size=(160, 96))
    async with build_engine(settings, encoder, captioner=captioner) as engine:  # type: ignore[arg-type]
        frame = await engine.decode(clip)
        assert (await engine.describe(clip)) == (await engine.caption_images([frame.image]))[0]


# -- results, captions and threads ---------------------------------------------------------------


def result(image_id: int, score: float, moment: float | None = None) -> SearchResult:
    return SearchResult(image_id, f"image {image_id}", "", None, score, "global", moment=moment)


def test_frames_merge_into_each_images_best_score_and_moment() -> None:
    per_frame = [[result(1, 0.5), result(2, 0.4)], [result(2, 0.9), result(3, 0.3)], [result(1, 0.6)]]
    merged, best = merge_frame_results(per_frame, [0.5, 2.5, 4.5], k=2)
    assert [(r.id, r.score, r.moment) for r in merged] == [(2, 0.9, 2.5), (1, 0.6, 4.5)]
    assert best == 1
    assert merge_frame_results([[], []], [0.0, 1.0], k=3) == ([], None)


def test_the_caption_says_when_it_matched_within_the_budget() -> None:
    assert [moment_text(s) for s in (0, 3.9, 59.99, 61, 600, 3599, 3723.5)] == [
        "0:00", "0:03", "0:59", "1:01", "10:00", "59:59", "1:02:03"]
    long = dataclasses.replace(result(7, 0.91, 3723.5), label="L" * 2000, description="D" * 5000)
    caption = result_caption(long, 0, 5, verdict="weak")
    lines = caption.splitlines()
    assert len(caption) <= CAPTION_BUDGET
    assert lines[-2:] == ["Matched at 1:02:03.", "Score: 0.91 \u00b7 #7 \u00b7 match 1 of 5"]
    assert "Matched at" not in result_caption(result(7, 0.91), 0, 5)


def test_the_moment_survives_a_threads_json_and_the_cli_json() -> None:
    thread = Thread("telegram:1", "telegram:2", (result(1, 0.9, 2.625), result(2, 0.8)), "photo")
    back = Thread.from_json(thread.to_json())
    assert back.results == thread.results and back.results[0].moment == 2.625
    old = json.loads(thread.to_json())
    for r in old["results"]:
        del r["moment"]  # stored before videos were searched
    assert Thread.from_json(json.dumps(old)).results[0].moment is None
    assert result(1, 0.9, 2.6254).to_dict()["moment"] == 2.625 and "moment" not in result(1, 0.9).to_dict()
