"""H.264/H.265 NAL units: cutting them out of Annex B and length-prefixed buffers, and
reading the bit fields of their payloads (RBSP).

Video reaches us in two framings. Annex B puts a start code (00 00 01, often 00 00 00 01)
before each unit, as cameras, RTP depacketizers and raw encoders do; MP4 puts a big-endian
length of 1, 2 or 4 bytes before each unit (the size is in the avcC/hvcC record). A unit's
payload escapes every 00 00 0x (x <= 3) as 00 00 03 0x so no start code can occur inside
it; `rbsp` undoes that before bit fields are read.
"""

from __future__ import annotations

from shared.media import MediaFormatError

ANNEXB_START = b"\x00\x00\x01"


class BitstreamError(MediaFormatError):
    """Bytes that are not the NAL units or parameter sets they claim to be."""


def is_annexb(data: bytes) -> bool:
    """True when `data` starts with a start code."""
    return data.startswith(ANNEXB_START) or data.startswith(b"\x00" + ANNEXB_START)


def annexb_units(data: bytes) -> list[bytes]:
    """The NAL units of an Annex B buffer, without start codes or trailing zero bytes."""
    units: list[bytes] = []
    found = data.find(ANNEXB_START)
    if found < 0:
        raise BitstreamError("no Annex B start code (00 00 01) in the buffer")
    begin = found + 3
    while True:
        found = data.find(ANNEXB_START, begin)
        # A four-byte start code, and trailing_zero_8bits, leave zeros at the unit's end;
        # no unit ends with a zero byte, so stripping them is safe.
        unit = (data[begin:] if found < 0 else data[begin:found]).rstrip(b"\x00")
        if unit:
            units.append(unit)
        if found < 0:
            return units
        begin = found + 3


def length_prefixed_units(data: bytes, length_size: int) -> list[bytes]:
    """The NAL units of a buffer in which each unit follows its `length_size`-byte length."""
    if length_size not in (1, 2, 4):
        raise BitstreamError(f"NAL length size must be 1, 2 or 4 bytes, not {length_size}")
    units: list[bytes] = []
    offset, end = 0, len(data)
    while offset < end:
        if offset + length_size > end:
            raise BitstreamError(f"NAL unit length cut off at byte {offset} of {end}")
        size = int.from_bytes(data[offset : offset + length_size], "big")
        offset += length_size
        if size == 0 or offset + size > end:
            raise BitstreamError(
                f"NAL unit at byte {offset - length_size} claims {size} bytes; "
                f"{end - offset} are left"
            )
        units.append(data[offset : offset + size])
        offset += size
    return units


def h264_unit_type(unit: bytes) -> int:
    return unit[0] & 0x1F


def hevc_unit_type(unit: bytes) -> int:
    return (unit[0] >> 1) & 0x3F


def rbsp(unit: bytes) -> bytes:
    """The unit's payload with emulation prevention bytes (00 00 03 -> 00 00) removed."""
    if b"\x00\x00\x03" not in unit:
        return unit
    out = bytearray()
    begin = 0
    while (found := unit.find(b"\x00\x00\x03", begin)) >= 0:
        out += unit[begin : found + 2]
        begin = found + 3
    out += unit[begin:]
    return bytes(out)


class BitReader:
    """Reads big-endian bit fields and Exp-Golomb codes; raises `BitstreamError` at the end."""

    def __init__(self, data: bytes, what: str) -> None:
        self._value = int.from_bytes(data, "big")
        self._bits = len(data) * 8
        self._position = 0
        self._what = what

    def bits(self, count: int) -> int:
        if self._position + count > self._bits:
            raise BitstreamError(f"{self._what} ends early (at bit {self._position})")
        self._position += count
        return (self._value >> (self._bits - self._position)) & ((1 << count) - 1)

    def flag(self) -> bool:
        return self.bits(1) == 1

    def skip(self, count: int) -> None:
        self.bits(count)

    def ue(self) -> int:
        """An unsigned Exp-Golomb code, ue(v)."""
        zeros = 0
        while self.bits(1) == 0:
            zeros += 1
            if zeros > 31:
                raise BitstreamError(f"{self._what} has an Exp-Golomb code over 32 bits")
        return (1 << zeros) - 1 + self.bits(zeros)

    def se(self) -> int:
        """A signed Exp-Golomb code, se(v)."""
        code = self.ue()
        return (code + 1) // 2 if code % 2 else -(code // 2)


def configuration_units(extradata: bytes, codec: str) -> tuple[bytes, ...]:
    """The NAL units of a codec configuration: Annex B, or an avcC/hvcC record."""
    if not extradata:
        return ()
    if is_annexb(extradata):
        return tuple(annexb_units(extradata))
    if codec == "hevc":
        return _hvcc_units(extradata)
    return _avcc_units(extradata)


def _avcc_units(record: bytes) -> tuple[bytes, ...]:
    # AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.3.3.1): 5 bytes, the SPS count (low 5
    # bits) and 16-bit-length-prefixed SPSs, the PPS count and PPSs; extensions follow.
    if len(record) < 7 or record[0] != 1:
        raise BitstreamError("avcC record does not start with configuration version 1")
    reader = _RecordReader(record, 5)
    units = [reader.unit() for _ in range(reader.byte() & 0x1F)]
    units += [reader.unit() for _ in range(reader.byte())]
    return tuple(units)


def _hvcc_units(record: bytes) -> tuple[bytes, ...]:
    # HEVCDecoderConfigurationRecord (ISO/IEC 14496-15 8.3.3.1): 22 bytes, an array count,
    # then per array a type byte, a 16-bit unit count and 16-bit-length-prefixed units.
    if len(record) < 23 or record[0] != 1:
        raise BitstreamError("hvcC record does not start with configuration version 1")
    reader = _RecordReader(record, 22)
    units: list[bytes] = []
    for _ in range(reader.byte()):
        reader.byte()  # array_completeness, reserved, NAL_unit_type
        units += [reader.unit() for _ in range(reader.u16())]
    return tuple(units)


class _RecordReader:
    """Bounds-checked big-endian reads over a configuration record."""

    def __init__(self, data: bytes, offset: int) -> None:
        self._data = data
        self._offset = offset

    def take(self, size: int) -> bytes:
        end = self._offset + size
        if end > len(self._data):
            raise BitstreamError("codec configuration record is truncated")
        piece = self._data[self._offset : end]
        self._offset = end
        return piece

    def byte(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def unit(self) -> bytes:
        return self.take(self.u16())
