"""Holds: time ranges of one site's stream that retention must not delete until they expire."""

from __future__ import annotations

from dataclasses import dataclass

from shared.store.codec import as_int, as_str, pack_record, unpack_record
from shared.store.errors import StoreFormatError

MAX_OWNER_CHARS = 128
MAX_NAME_CHARS = 128


@dataclass(frozen=True, slots=True)
class Hold:
    """Protects chunks of one stream overlapping [start_ns, end_ns) until `expires_ns`.

    The stream is named in full, site included: in a store of many sites a hold on `cam-1`
    of one site must not protect (or count against the budget) another site's `cam-1`.
    """

    hold_id: int
    site_id: str
    device_id: str
    stream: str
    start_ns: int
    end_ns: int
    expires_ns: int
    owner: str
    placed_at_ns: int

    def is_active(self, now_ns: int) -> bool:
        """A hold protects until its expiry instant, exclusive."""
        return now_ns < self.expires_ns

    def encode(self) -> bytes:
        return pack_record(
            [
                self.site_id,
                self.device_id,
                self.stream,
                self.start_ns,
                self.end_ns,
                self.expires_ns,
                self.owner,
                self.placed_at_ns,
            ]
        )

    @classmethod
    def decode(cls, hold_id: int, data: bytes) -> Hold:
        what = f"hold {hold_id}"
        site_id, device_id, stream, start_ns, end_ns, expires_ns, owner, placed_at = unpack_record(
            data, 8, what
        )
        hold = cls(
            hold_id,
            as_str(site_id, f"{what} site_id"),
            as_str(device_id, f"{what} device_id"),
            as_str(stream, f"{what} stream"),
            as_int(start_ns, f"{what} start_ns"),
            as_int(end_ns, f"{what} end_ns"),
            as_int(expires_ns, f"{what} expires_ns"),
            as_str(owner, f"{what} owner"),
            as_int(placed_at, f"{what} placed_at_ns"),
        )
        problem = hold_problem(hold.start_ns, hold.end_ns, hold.owner)
        if problem is not None:
            raise StoreFormatError(f"{what}: {problem}")
        return hold


def hold_problem(start_ns: int, end_ns: int, owner: str) -> str | None:
    """Why a hold with this range and owner is malformed, or None when it is well-formed."""
    if start_ns < 0 or end_ns <= start_ns:
        return f"range [{start_ns}, {end_ns}) is empty or negative"
    if not owner or len(owner) > MAX_OWNER_CHARS:
        return f"owner must be 1 to {MAX_OWNER_CHARS} characters"
    return None
