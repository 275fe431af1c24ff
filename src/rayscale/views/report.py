"""What each command shows, in one place: the views (:mod:`rayscale.views.tables`, :mod:`rayscale.views.plots`)
of a run, a scaling sweep and a forecast, and ``rayscale report`` on an existing bundle. The CLI
and this module are the only callers of views; the work returns results and never draws."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from rayscale.errors import RayscaleError
from rayscale.options.files import FORECAST_PLOT, RESULT_FILE
from rayscale.results.bundle import load_result, read_partial
from rayscale.results.forecast import Forecast
from rayscale.results.scaling import ScaleResult
from rayscale.results.schema import Result
from rayscale.views.plots import write_forecast_plot, write_plots, write_scale_plot
from rayscale.views.tables import print_forecast, print_partial, print_report, print_scale_report


def show_run(result: Result, bundle: Path, json_out: bool, plots: bool = True) -> None:
    """Draw the run's plots into its bundle, then print its JSON or its tables."""
    if plots:
        write_plots(result, bundle)
    if json_out:
        typer.echo(result.to_json(), nl=False)
    else:
        print_report(result, Console(), bundle)


def show_scale(result: ScaleResult, bundle: Path, json_out: bool) -> None:
    write_scale_plot(result, bundle)
    if json_out:
        typer.echo(result.to_json(), nl=False)
    else:
        print_scale_report(result, Console(), bundle)


def show_forecast(forecast: Forecast, bundle: Path, plot: Path | None, json_out: bool) -> None:
    """Draw the forecast (by default ``predict.png`` in the bundle), then print its JSON or tables."""
    folder = bundle if bundle.is_dir() else bundle.parent
    png = write_forecast_plot(forecast, plot or folder / FORECAST_PLOT)
    if json_out:
        typer.echo(forecast.to_json(), nl=False)
    else:
        print_forecast(forecast, Console(), png)


def report(path: Path, plots: bool, json_out: bool) -> None:
    """``rayscale report``: a finished bundle's tables (and plots), or what an unfinished one holds."""
    bundle = path if path.is_dir() else path.parent
    if not (bundle / RESULT_FILE).exists() and (path.is_dir() or path.name == RESULT_FILE):
        try:  # a run that crashed or is still running: show what it finished, marked partial
            partial = read_partial(bundle)
        except RayscaleError:
            partial = None
        if partial is not None:
            print_partial(partial, Console(), as_json=json_out)
            return
    show_run(load_result(path), bundle, json_out, plots)
