"""From formula and data to the core's Problem: formula parsing, names, data checks, random-
effects terms, MixedLM's vocabulary."""
