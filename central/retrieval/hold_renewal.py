"""How long a retrieval job's holds at the site last, and when they are placed again.

A hold at the site keeps the site's retention off a job's span until it expires. A link can
outlive a hold (a site on a stable line whose job waits for a nightly window under a tight
cap, or works through a large backlog), so while a job is unfinished its holds are placed
again (renewed) during the link, not only when a new link starts:

- after a placement the site accepted for every device, the next one falls due when half
  the lifetime has passed: the other half is the margin for a renewal that is late (a busy
  run, a slow answer) or that the site refuses;
- after a placement the site refused for some device, the next one falls due after an
  eighth of the lifetime: a renewal the site refuses is tried three more times before the
  hold it would have replaced expires (the job is flagged at risk meanwhile). A first
  placement refused (no hold at all) is tried again the same way.

The instants are the central's wall clock, as the holds' expiry is.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.clock import NS_PER_S

HOLD_DAYS = 7
HOLD_LIFETIME_S = HOLD_DAYS * 86_400.0
"""How long a job's holds last at the site, by default."""
MAX_HOLD_LIFETIME_S = 90 * 86_400.0
"""The longest a site lets a hold last."""
RENEW_AFTER_FRACTION = 0.5
RETRY_AFTER_FRACTION = 0.125


@dataclass(frozen=True, slots=True)
class HoldRenewal:
    """See the module docstring. `lifetime_s`: how long each placed hold lasts."""

    lifetime_s: float = HOLD_LIFETIME_S

    def __post_init__(self) -> None:
        if not 0 < self.lifetime_s <= MAX_HOLD_LIFETIME_S:
            raise ValueError(
                f"a hold's lifetime must be more than 0 s and at most {MAX_HOLD_LIFETIME_S:g} s "
                f"(90 days, what a site accepts), not {self.lifetime_s!r} s"
            )

    @property
    def lifetime_ns(self) -> int:
        return round(self.lifetime_s * NS_PER_S)

    def expires_ns(self, placed_ns: int) -> int:
        """When holds placed at `placed_ns` expire."""
        return placed_ns + self.lifetime_ns

    def next_placement_ns(self, placed_ns: int, *, refused: bool) -> int:
        """When the holds placed at `placed_ns` are placed again; `refused`: the site
        refused some of them."""
        fraction = RETRY_AFTER_FRACTION if refused else RENEW_AFTER_FRACTION
        return placed_ns + max(1, round(self.lifetime_ns * fraction))
