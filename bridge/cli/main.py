"""The `advbridge` command: run (and resume), aggregate, report, compare, validate, list, ui. Heavy imports happen
inside commands."""

from __future__ import annotations

import argparse
import os
import signal
import sys

from bridge.cli.listing import cmd_list
from bridge.cli.output import UI_HOST, UI_PORT
from bridge.core.errors import BridgeError, ScenarioError, one_line


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="advbridge",
        description="Run adversarial-robustness studies across ART, Foolbox and torchattacks, tracked in MLflow.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sets = {"action": "append", "default": [], "metavar": "KEY.PATH=VALUE", "help": "override a scenario value"}
    uri = {"help": "tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlruns/mlflow.db)"}

    run = sub.add_parser("run", help="run a scenario file and record it in MLflow")
    run.add_argument("scenario")
    run.add_argument("--set", dest="overrides", **sets)
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument(
        "--resume", nargs="?", const=True, default=None, metavar="RUN_ID",
        help="continue the latest unfinished study of this scenario (or the study RUN_ID): finished tasks are reused",
    )  # fmt: skip
    run.add_argument("--executor", choices=["local", "ray"], help="where tasks run (default: the scenario's, local)")
    run.add_argument("--ray-address", metavar="ADDR", help="a Ray cluster (default: $RAY_ADDRESS, else a local one)")

    agg = sub.add_parser("aggregate", help="recompute a study's tables, plots and checks from the store alone")
    agg.add_argument("run_id", metavar="RUN_ID", help="the study's parent run")
    agg.add_argument("--uri", **uri)

    rep = sub.add_parser("report", help="write a study's report (HTML page and markdown), rebuilt from the store alone")
    rep.add_argument(
        "run_id", nargs="?", default="latest", metavar="RUN_ID",
        help="the study's parent run, or latest (the default): the newest study in the store",
    )  # fmt: skip
    rep.add_argument(
        "-o", "--output", default="report.html", metavar="FILE",
        help="the HTML page (default: report.html here); the markdown is written beside it, as FILE with .md",
    )  # fmt: skip
    rep.add_argument("--uri", **uri)

    cmp = sub.add_parser("compare", help="what changed between two studies, beyond noise (read from the store)")
    cmp.add_argument("run_a", metavar="RUN_A", help="the study compared from: a parent run id, or latest")
    cmp.add_argument("run_b", metavar="RUN_B", help="the study compared to (it records compare/RUN_A.md), or latest")
    cmp.add_argument("-o", "--output", metavar="FILE.md", help="also write the comparison (markdown) to FILE.md")
    cmp.add_argument("--alpha", type=float, default=0.05, help="significance level of a change (default: 0.05)")
    cmp.add_argument("--uri", **uri)

    val = sub.add_parser("validate", help="check a scenario file without running it")
    val.add_argument("scenario")
    val.add_argument("--set", dest="overrides", **sets)

    lst = sub.add_parser("list", help="list what advbridge offers")
    lst.add_argument("what", choices=["attacks", "models", "datasets", "defences"])
    lst.add_argument(
        "--format", choices=["text", "markdown"], default="text", help="markdown: docs/attacks.md, docs/defences.md"
    )

    ui = sub.add_parser("ui", help="the MLflow UI on 127.0.0.1 against advbridge's store")
    ui.add_argument("--port", type=int, default=UI_PORT)
    ui.add_argument("--uri", **uri)
    return p


def cmd_validate(args: argparse.Namespace) -> int:
    from bridge.attacks.adapter import get_adapter
    from bridge.data.files import to_download
    from bridge.runner.preflight import preflight
    from bridge.scenario.load import load

    plan = load(args.scenario, args.overrides)
    preflight(plan, log=lambda m: None, fetch=False)
    unsupported = [c for c in plan.cells if c.unsupported]
    n_models = len(plan.scenario.model_list)
    models = f" x {n_models} models" if n_models > 1 else ""
    n_defences = len(plan.scenario.defences)
    defences = f" x {n_defences} defences" if n_defences > 1 else ""
    print(f"{args.scenario}: valid, {len(plan.cells)} cells{models}{defences} ({len(unsupported)} unsupported)")
    if fetched := to_download(plan.scenario.data):
        print(f"  note: `run` downloads {', '.join(fetched)} first; the checks that need the data wait for it")
    for cfg in plan.scenario.model_list:
        refused = [
            c for c in plan.cells if not c.unsupported and cfg.framework not in get_adapter(c.spec.toolkit).frameworks
        ]
        for toolkit in sorted({c.spec.toolkit for c in refused}):
            n = sum(c.spec.toolkit == toolkit for c in refused)
            print(
                f"  note: {toolkit} cannot attack {cfg.framework} models: its {n} cells on {cfg.name} are unsupported"
            )
    for cell in unsupported:
        print(f"  unsupported: {cell.spec.label}: {cell.unsupported}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from bridge.cli.output import print_record, print_summary
    from bridge.runner.study import Execution, Study
    from bridge.scenario.load import load

    plan = load(args.scenario, args.overrides)
    execution = Execution.of(plan.scenario, args.executor, args.ray_address)
    study = Study(plan, execution, progress=not args.no_progress, log=lambda m: print(m, file=sys.stderr))
    table = study.run(args.resume)
    print_summary(table, table.attrs["n_samples"])
    print_record(table, plan.scenario.tracking.experiment or plan.scenario.name)
    return 1 if table.attrs["failed"] else 0


def cmd_aggregate(args: argparse.Namespace) -> int:
    from bridge.cli.output import print_record, print_summary
    from bridge.runner.aggregate import reaggregate
    from bridge.runner.preflight import checked_uri

    table, experiment = reaggregate(checked_uri(args.uri, "--uri"), args.run_id)
    print_summary(table, table.attrs["n_samples"])
    print_record(table, experiment)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from bridge.runner.aggregate import latest_study, report_of
    from bridge.runner.preflight import checked_uri

    html_path = Path(args.output)
    md_path = html_path.with_suffix(".md")
    if html_path.suffix == ".md":
        raise ScenarioError(f"-o {args.output}: give the HTML page's path; the markdown is written beside it (.md)")
    if not html_path.parent.is_dir():
        raise ScenarioError(f"-o {args.output}: {html_path.parent} is not a folder")
    uri = checked_uri(args.uri, "--uri")
    run_id = latest_study(uri) if args.run_id == "latest" else args.run_id
    html, markdown = report_of(uri, run_id)
    html_path.write_text(html)
    md_path.write_text(markdown)
    print(f"Report of study {run_id}: {html_path} and {md_path} (also on the run, as report/report.html)")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from pathlib import Path

    from bridge.runner.compare import compare, log_comparison, markdown
    from bridge.runner.preflight import checked_uri
    from bridge.runner.results import open_study

    out = Path(args.output) if args.output else None
    if out is not None and not out.parent.is_dir():
        raise ScenarioError(f"-o {args.output}: {out.parent} is not a folder")
    if out is not None and out.is_dir():
        raise ScenarioError(f"-o {args.output}: a folder; give the markdown file's path")
    if not 0 < args.alpha < 1:
        raise ScenarioError(f"--alpha {args.alpha:g}: a significance level is between 0 and 1 (e.g. 0.05)")
    uri = checked_uri(args.uri, "--uri")
    a, b = open_study(args.run_a, uri), open_study(args.run_b, uri)
    found = compare(a, b, args.alpha)
    text = markdown(found)
    print(text)
    if out is not None:
        out.write_text(text)
    log_comparison(b, found, text)
    return 0


def ui_command(uri: str, port: int) -> list[str]:
    """The `mlflow server` command line for advbridge's store, bound to 127.0.0.1 only."""
    from bridge.engine.tracking import artifact_root

    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, "--host", UI_HOST]
    cmd += ["--port", str(port), "--workers", "1"]
    root = artifact_root(uri)
    if root is not None:
        cmd += ["--artifacts-destination", str(root)]
    return cmd


def cmd_ui(args: argparse.Namespace) -> int:
    from mlflow.exceptions import MlflowException

    from bridge.engine.tracking import KEY_VIEW_NAME, studies_with_key_view, ui_url
    from bridge.runner.preflight import checked_uri

    uri = checked_uri(args.uri, "--uri")
    print(f"MLflow UI for {uri} at {ui_url(UI_HOST, args.port)} (Ctrl-C stops it)", flush=True)
    # MLflow's runs table shows no metric until columns are picked: each study's experiment gets a saved view that
    # shows them (in its Views menu, as KEY_VIEW_NAME), and a link that opens it.
    try:
        experiments = studies_with_key_view(uri)
    except MlflowException as exc:
        experiments = []
        print(f"(no links to the '{KEY_VIEW_NAME}' views: {one_line(exc)})", flush=True)
    if experiments:
        print("Each study's cells with robust accuracy, success rate, median distance and status:", flush=True)
    for name, eid in experiments[:10]:
        print(f"  {name}: {ui_url(UI_HOST, args.port, eid)}", flush=True)
    if len(experiments) > 10:
        print(f"  ... {len(experiments) - 10} more: each experiment's Views menu has '{KEY_VIEW_NAME}'", flush=True)
    # The job runner is only for MLflow's GenAI features; without it the server needs ~250 MB, not ~2 GB.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    # Become the server, so that a signal to this process stops the server and its workers too.
    cmd = ui_command(uri, args.port)
    os.execve(cmd[0], cmd, env)


def main(argv: list[str] | None = None) -> int:
    """The command's exit status: 0 done, 1 a study whose every cell failed (or a defect, reported in one line
    with the file its traceback went to), 2 bad input (one line, nothing written), 130 interrupted (Ctrl-C),
    143 terminated (SIGTERM)."""
    args = _parser().parse_args(argv)
    commands = {"run": cmd_run, "aggregate": cmd_aggregate, "report": cmd_report, "compare": cmd_compare,
                "validate": cmd_validate, "list": cmd_list, "ui": cmd_ui}  # fmt: skip
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return commands[args.command](args)
    except BridgeError as exc:
        print(f"advbridge: error: {exc}", file=sys.stderr)
        return 2
    except Terminated:
        print("advbridge: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("advbridge: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    except Exception as exc:  # a defect: one line here, the whole traceback in a file
        print(f"advbridge: internal error: {one_line(exc)} (traceback: {_write_traceback()})", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler, `kill`), raised where the command is, so that it ends as Ctrl-C ends it: the study's
    parent run KILLED, partial files removed, Ray shut down."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def _write_traceback() -> str:
    """The current exception's traceback, written to `errors/` in advbridge's folder; the file's path."""
    import time
    import traceback

    from bridge.core.paths import cache_root

    folder = cache_root() / "errors"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.txt"
        path.write_text(f"advbridge {' '.join(sys.argv[1:])}\n\n{traceback.format_exc()}")
    except OSError as exc:
        return f"not written: {exc.strerror}"
    return str(path)


if __name__ == "__main__":
    sys.exit(main())
