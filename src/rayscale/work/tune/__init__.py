"""The Tune phase: the model families it tunes (``families``), the Ray Tune sweep (``sweep``) and
ASHA's outcomes for a finished sweep (``outcomes``)."""
