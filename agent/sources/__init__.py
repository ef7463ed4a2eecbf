"""Camera sources: each gives a device's encoded streams (hq, lq, and optionally audio)."""
