"""The site agent: camera sources, dual-stream recording into the edge store, motion, events."""
