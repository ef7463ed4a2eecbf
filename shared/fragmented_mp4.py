"""Fragmented MP4 from a video stream's `CodecConfig` and packets, for players that take a
stream in pieces: a browser's Media Source Extensions fed over HTTP or a WebSocket, or a
file for ffprobe and PyAV.

Theory of operation. One `FragmentedMp4Writer` serves one output timeline. It starts with
an init segment (`ftyp` + `moov`: the track's avcC/hvcC record, see
`shared/decoder_configuration.py`) and turns packets into media segments (`moof` + `mdat`,
see `shared/mp4_boxes.py`). Rules it keeps:

1. Every fragment holds packets of one GOP: a keyframe always starts a new fragment, so a
   viewer can join at any fragment whose `keyframe` is set (init segment first). Given a
   whole GOP per call, it makes exactly one fragment per GOP; given smaller batches (live
   video), a GOP spans several fragments and only its first starts with a keyframe.
2. Output starts at a keyframe: packets before the first one, and after a codec change
   until the next one, are dropped and counted (`dropped_packets`).
3. Decode times increase strictly. The first packet decodes at 0; when the input's decode
   time goes backwards or repeats (a camera restarted, a codec change, recordings joined)
   the output continues right after the previous sample instead; a jump forwards is kept
   (it is real time without pictures).
4. A sample lasts until the next one's decode time. The last sample of a call has not
   met its successor: it lasts its packet's `duration`, else the last step seen, else 1/25 s.
5. A codec change (`change_codec`) gives a new init segment; the timeline goes on.

Sample data is rewritten with 4-byte NAL lengths (from Annex B start codes, or from 1- or
2-byte lengths); 4-byte length-prefixed input passes through untouched. In-band parameter
sets stay in the samples, as cameras send them.

Pure logic: no I/O, no clock, no threads; the agent and the central each feed it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from math import ceil
from typing import Protocol

from shared.decoder_configuration import DecoderConfiguration, decoder_configuration
from shared.media import CodecConfig
from shared.mp4_boxes import FragmentSample, init_segment, media_segment
from shared.nal_units import BitstreamError, annexb_units, length_prefixed_units

__all__ = [
    "EncodedPacket",
    "Fragment",
    "FragmentedMp4Writer",
    "gop_segments",
    "mime_type",
]

FALLBACK_FRAME_S = Fraction(1, 25)
MAX_TIMESCALE = 0xFFFFFFFF
FALLBACK_TIMESCALE = 90_000
_LENGTH = struct.Struct(">I")


class EncodedPacket(Protocol):
    """A packet in its codec's time base (`MediaPacket` and the link's `LivePacket` are)."""

    @property
    def pts(self) -> int: ...
    @property
    def dts(self) -> int: ...
    @property
    def duration(self) -> int: ...
    @property
    def keyframe(self) -> bool: ...
    @property
    def data(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Fragment:
    """One media segment (`moof` + `mdat`)."""

    data: bytes
    keyframe: bool  # starts with a keyframe: a viewer given the init segment may start here


def mime_type(codec: CodecConfig) -> str:
    """`video/mp4; codecs="..."` for the stream, from its SPS; `MediaFormatError` if the
    codec cannot be carried."""
    return decoder_configuration(codec).mime_type


def gop_segments(codec: CodecConfig, packets: Iterable[EncodedPacket]) -> Iterator[bytes]:
    """The init segment, then one media segment per GOP (holding one GOP in memory)."""
    writer = FragmentedMp4Writer(codec)
    yield writer.init_segment
    gop: list[EncodedPacket] = []
    for packet in packets:
        if packet.keyframe and gop:
            yield from (fragment.data for fragment in writer.fragments(gop))
            gop = []
        gop.append(packet)
    if gop:
        yield from (fragment.data for fragment in writer.fragments(gop))


@dataclass(slots=True)
class _Pending:
    dts: int  # output ticks
    composition_offset: int
    keyframe: bool
    data: bytes
    duration_guess: int


class FragmentedMp4Writer:
    """See the module docstring. Raises `MediaFormatError` (naming the packet) for a codec
    it cannot carry or a packet whose NAL units do not parse."""

    def __init__(self, codec: CodecConfig) -> None:
        self.dropped_packets = 0
        self._sequence = 0
        self._continue_at = 0  # output ticks where a rebased packet goes
        self._last_dts: int | None = None  # output ticks of the last sample
        self._step: int | None = None  # the last decode time step seen, in output ticks
        self._offset: int | None = None  # output ticks minus input ticks; None: not yet set
        self._timescale = 0
        self._awaiting_keyframe = True
        self._adopt(codec)

    @property
    def init_segment(self) -> bytes:
        """`ftyp` + `moov` of the current codec."""
        return self._init

    @property
    def configuration(self) -> DecoderConfiguration:
        return self._config

    @property
    def mime_type(self) -> str:
        return self._config.mime_type

    @property
    def timescale(self) -> int:
        """Ticks per second of the track's decode times and durations."""
        return self._timescale

    def change_codec(self, codec: CodecConfig) -> bytes:
        """Switch to new codec parameters; the new init segment, to send before the next
        fragment. Output resumes at the next keyframe."""
        self._adopt(codec)
        return self._init

    def fragments(self, packets: Sequence[EncodedPacket]) -> list[Fragment]:
        """Media segments of `packets` (consecutive, in decode order), cut at keyframes."""
        out: list[Fragment] = []
        run: list[_Pending] = []
        for packet in packets:
            if self._awaiting_keyframe:
                if not packet.keyframe:
                    self.dropped_packets += 1
                    continue
                self._awaiting_keyframe = False
            pending = self._place(packet)
            if run and pending.keyframe:
                out.append(self._fragment(run, pending.dts))
                run = []
            run.append(pending)
        if run:
            out.append(self._fragment(run, None))
        return out

    # -- internals ----------------------------------------------------------------------

    def _adopt(self, codec: CodecConfig) -> None:
        config = decoder_configuration(codec)
        time_base = codec.time_base
        timescale = time_base.denominator
        if timescale > MAX_TIMESCALE:
            timescale = FALLBACK_TIMESCALE
        if self._timescale and timescale != self._timescale:
            ratio = Fraction(timescale, self._timescale)
            self._continue_at = ceil(self._continue_at * ratio)
            if self._last_dts is not None:
                self._last_dts = self._continue_at - 1
            if self._step is not None:
                self._step = max(1, round(self._step * ratio))
        self._config = config
        self._timescale = timescale
        ticks_per_unit = time_base * timescale
        self._ticks_per_unit = ticks_per_unit
        # The common case (time base 1/timescale) multiplies integers, not fractions.
        self._int_ticks = ticks_per_unit.numerator if ticks_per_unit.denominator == 1 else None
        self._init = init_segment(config, timescale)
        self._awaiting_keyframe = True
        self._offset = None

    def _ticks(self, value: int) -> int:
        if self._int_ticks is not None:
            return value * self._int_ticks
        return int(value * self._ticks_per_unit)

    def _place(self, packet: EncodedPacket) -> _Pending:
        dts = self._ticks(packet.dts)
        if self._offset is None:
            self._offset = self._continue_at - dts
        out_dts = dts + self._offset
        if self._last_dts is not None:
            if out_dts <= self._last_dts:  # backwards or repeated: continue after the last
                self._offset = self._continue_at - dts
                out_dts = self._continue_at
            else:
                self._step = out_dts - self._last_dts
        duration = self._ticks(packet.duration) if packet.duration > 0 else 0
        if duration <= 0:
            duration = self._step or max(1, round(self._timescale * FALLBACK_FRAME_S))
        self._last_dts = out_dts
        self._continue_at = out_dts + duration
        composition_offset = self._ticks(packet.pts) + self._offset - out_dts
        return _Pending(
            out_dts, composition_offset, packet.keyframe, self._sample(packet), duration
        )

    def _sample(self, packet: EncodedPacket) -> bytes:
        length_size = self._config.packet_length_size
        if length_size == 4:
            return packet.data
        try:
            if length_size is None:
                units = annexb_units(packet.data)
            else:
                units = length_prefixed_units(packet.data, length_size)
        except BitstreamError as exc:
            raise BitstreamError(f"packet at dts {packet.dts}: {exc}") from None
        return b"".join([part for unit in units for part in (_LENGTH.pack(len(unit)), unit)])

    def _fragment(self, run: list[_Pending], next_dts: int | None) -> Fragment:
        samples = []
        for index, pending in enumerate(run):
            following = run[index + 1].dts if index + 1 < len(run) else next_dts
            duration = pending.duration_guess if following is None else following - pending.dts
            samples.append(
                FragmentSample(duration, pending.keyframe, pending.composition_offset, pending.data)
            )
        self._sequence += 1
        data = media_segment(self._sequence, run[0].dts, samples)
        return Fragment(data, run[0].keyframe)
