"""What each command shows, in one place: the views (:mod:`rayscale.views.tables`,
:mod:`rayscale.views.plots`) of a run, a scaling sweep and a forecast, and ``rayscale report`` on an
existing bundle. The CLI and this module are the only callers of views; the work returns results and
never draws."""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree

import typer
from rich.console import Console

from rayscale.errors import RayscaleError
from rayscale.options.files import FORECAST_PLOT, RESULT_FILE
from rayscale.results.bundle import load_result, read_partial
from rayscale.results.compare import Comparison
from rayscale.results.forecast import Forecast
from rayscale.results.scaling import ScaleResult
from rayscale.results.schema import Result
from rayscale.views.plots import dashboard_png, write_forecast_plot, write_plots, write_scale_plot
from rayscale.views.tables import (
    compare_table,
    print_forecast,
    print_partial,
    print_report,
    print_scale_report,
)


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


def show_comparison(comparison: Comparison, junit: Path | None) -> None:
    """The figures side by side on stdout, the verdicts as JUnit XML (``--junit``), and each
    regression as one line on stderr."""
    Console().print(compare_table(comparison.title, comparison.rows))
    if junit is not None:
        write_junit(junit, comparison)
    err = Console(stderr=True)
    for line in comparison.failures:
        err.print(f"[bold red]regression:[/] {line}", highlight=False, soft_wrap=True)


def write_junit(path: Path, comparison: Comparison) -> None:
    """The verdicts as JUnit XML, one test case per gated figure (kube-burner and ClusterLoader2
    report this way)."""
    rows, thresholds, failures = comparison.rows, comparison.thresholds, comparison.failures
    suite = ElementTree.Element("testsuite", name="rayscale compare", tests=str(len(thresholds)))
    failed = {line.split(" ", 1)[0]: line for line in failures}
    for name, limit in thresholds.items():
        row = next(r for r in rows if r.figure == name)
        case = ElementTree.SubElement(
            suite, "testcase", classname="rayscale.results.compare", name=f"{name}:{limit:g}%"
        )
        if name in failed:
            ElementTree.SubElement(case, "failure", message=failed[name]).text = failed[name]
        else:
            ElementTree.SubElement(case, "system-out").text = f"{row.verdict}: {row.a:.4g} → {row.b:.4g}"
    suite.set("failures", str(len(failed)))
    try:
        ElementTree.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)
    except OSError as exc:
        raise RayscaleError(f"--junit {path} cannot be written: {exc.strerror or exc}", 3) from None


def dashboard(bundles: list[Path], output: Path) -> None:
    """``rayscale dashboard``: the Grafana dashboard's panels from result bundles, as one PNG."""
    typer.echo(f"written {dashboard_png([load_result(path) for path in bundles], output)}")
