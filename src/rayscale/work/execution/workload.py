"""What a run works on (``rayscale run`` and every point of ``rayscale scale``): the dataset's
split and the grid's configs, checked against each other and against the options."""

from __future__ import annotations

from dataclasses import replace

from rayscale.errors import RayscaleError
from rayscale.options.commands import GRID_PARALLEL, GRID_SEQUENTIAL, TUNE, RunOptions
from rayscale.options.scoring import PROBABILITY_METRICS, check_metric, direction
from rayscale.work.data import Dataset, load_dataset, split_folds
from rayscale.work.grid.configs import TrialSpec, load_grid, make_estimator, per_fold
from rayscale.work.tune.families import family_for


def load_work(opts: RunOptions) -> tuple[RunOptions, Dataset, list[TrialSpec]]:
    """The dataset split and the grid, both validated against each other (task, metric, folds),
    and the options with the sweep's resolved as it will run: its CPUs per trial and seed the
    run's, the metric ASHA judges the run's selection metric (``val_`` prefixed on a validation
    split) in that metric's direction. A bundle stores them so."""
    dataset = load_dataset(
        opts.dataset,
        seed=opts.seed,
        test_size=opts.test_size,
        validation_size=opts.validation_size,
        task=opts.task,
    )
    metric = check_metric(opts.metric, dataset.task)
    if metric == "roc_auc" and len(dataset.classes) != 2:
        raise RayscaleError(f"--metric roc_auc needs two classes; {opts.dataset} has {len(dataset.classes)}")
    if TUNE.option in opts.phases:
        family_for(opts.tune.model, dataset.task, len(dataset.classes)).check(opts.tune.space, metric)
    tune = replace(
        opts.tune,
        cpus_per_trial=opts.cpus_per_trial,
        seed=opts.seed,
        metric=f"val_{metric}" if opts.validation_size else metric,
        mode=direction(metric),  # type: ignore[arg-type]
    )
    opts = replace(opts, tune=tune)
    specs = load_grid(opts.grid, seed=opts.seed, max_trials=opts.max_trials, threads=opts.cpus_per_trial)
    grid_runs = GRID_SEQUENTIAL.option in opts.phases or GRID_PARALLEL.option in opts.phases
    if grid_runs and metric in PROBABILITY_METRICS:
        lacking = next(
            (s for s in specs if not hasattr(make_estimator(s.estimator, s.params), "predict_proba")), None
        )
        if lacking is not None:
            raise RayscaleError(
                f"--metric {metric} needs class probabilities: grid config {lacking.index} has none"
            )
    if opts.cv:
        return opts, split_folds(dataset, opts.cv, opts.seed), per_fold(specs, opts.cv)
    return opts, dataset, specs
