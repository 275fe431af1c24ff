"""Simulated schedules, for ``predict`` and ASHA's outcomes: slots and the list schedule
(``slots``), the grid's forecast from a measured trace (``grid_forecast``) and the Tune sweep's
replay through Ray Tune's own ASHA (``tune_replay``)."""
