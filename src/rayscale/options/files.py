"""The files of a bundle, by name: what a run or scale writes and every reader looks for."""

from __future__ import annotations

RESULT_FILE = "result.json"  # a finished run, written last and atomically
SCALE_FILE = "scale.json"  # a node-count sweep, rewritten as each node count finishes
MANIFEST_FILE = "run.json"  # written when a run starts (rayscale.work.execution.journal)
JOURNAL_FILE = "trials.jsonl"  # finished trials, appended as they finish
TRIALS_FILE = "trials.csv"
PHASES_DIR = "phases"  # one JSON file per finished phase, for --resume
PLOTS = ("rmse_vs_trees.png", "r2_vs_trees.png", "timeline.png")
TUNE_PLOTS = ("tune_timeline.png", "tune_score_vs_rounds.png")
WATERFALL_PLOT = "speedup_waterfall.png"
SCALE_PLOT = "scaling.png"
FORECAST_PLOT = "predict.png"
