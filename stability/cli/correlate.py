"""``stability correlate``: do the measures of many runs predict their generalization gap?

The statistics' options are the fields of :class:`~stability.analysis.correlate_options.CorrelateOptions`;
the work is :func:`stability.analysis.correlate_runs.read_runs` and :func:`stability.analysis.correlate.correlate`.
The table, the JSON file and the figures are written here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from stability.analysis.correlate_options import GAPS, CorrelateOptions
from stability.cli.app import app, err_console, out_console, user_errors
from stability.cli.options import Options, config_command
from stability.files import check_output_path

CORRELATE = Options(CorrelateOptions, choices={"gap": GAPS})


@app.command(help="Rank measures by how well they predict the generalization gap over many run folders: Kendall's "
                  "τ, the granulated τ and Ψ, and the conditional mutual information of Jiang et al. (2020).")  # fmt: skip
@config_command(options=CORRELATE)
def correlate(
    run_folders: Annotated[list[Path], typer.Argument(help="Run folders (config.json, metrics.jsonl, and measures.json or analysis.json), or a sweep's output folder for all its runs.")],
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Write the results as JSON (schema in docs/correlate.md).")] = None,
    plots: Annotated[Optional[Path], typer.Option(help="Write figures (PNG) into this folder: the ranking and a scatter per measure.")] = None,
    measure: Annotated[Optional[list[str]], typer.Option(help="Keep only this measure (repeat for several). Default: every measure the runs give.")] = None,
    ignore: Annotated[Optional[list[str]], typer.Option(help="A config field not to count as a hyperparameter, by full or last name, e.g. seed (repeat for several).")] = None,
    drop_incomplete: Annotated[bool, typer.Option(help="Leave out a measure that some runs lack, instead of refusing.")] = False,
    color_by: Annotated[Optional[str], typer.Option(help="Colour the scatter plots by this hyperparameter. Default: the one with the most values.")] = None,
    *,
    options: CorrelateOptions,
) -> None:
    # Only these parameters are named in the library's messages; a wider table would rewrite run folder names
    # such as "lr=0.1,seed=0" (seed is also a flag).
    flags = {name: correlate.flags[name] for name in ("measure", "ignore", "drop_incomplete", "color_by")}
    with user_errors(flags):
        if json_path is not None:
            check_output_path(json_path, "--json")
        if plots is not None:
            check_output_path(plots, "--plots", folder=True)
        from stability.analysis.correlate_runs import read_runs

        table = read_runs(run_folders, gap=options.gap, measures=measure or (), ignore=ignore or (),
                          drop_incomplete=drop_incomplete)  # fmt: skip
        for note in table.notes:
            err_console.print(f"note: {note}", highlight=False, soft_wrap=True)
        from stability.analysis.correlate import correlate as rank_measures
        from stability.analysis.correlate import correlation_table, granulated_table

        result = rank_measures(table, options)
        if plots is not None:
            from stability.analysis.correlate_figures import color_hyperparameter

            color_hyperparameter(result, color_by)  # refuse a wrong --color-by before printing anything
    out_console.print(correlation_table(result))
    out_console.print(granulated_table(result))
    hypers = ", ".join(f"{h.name} ({len(h.levels)} values)" for h in table.hyperparameters)
    out_console.print(f"hyperparameters: {hypers}", highlight=False, soft_wrap=True)
    if json_path is not None:
        from stability.serialize import write_json

        write_json(json_path, result.to_json())
        out_console.print(f"JSON: {json_path}", highlight=False)
    if plots is not None:
        from stability.analysis.correlate_figures import correlate_figures

        for fig in correlate_figures(result, plots, color_by=color_by):
            out_console.print(f"figure: {fig}", highlight=False)
