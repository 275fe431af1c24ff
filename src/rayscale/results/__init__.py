"""Results: the versioned bundle schema and every figure derived from it, once — the pydantic base
(``base``), the stats model (``stats``), a run's schema (``schema``), a scale curve (``scaling``), a
forecast (``forecast``), ASHA's outcomes (``asha_outcomes``), reading and writing bundles
(``bundle``), comparing two (``compare``) and the Grafana dashboard's figures (``dashboard``)."""
