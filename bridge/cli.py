"""The `advbridge` command: run, validate, list, ui. Heavy imports happen inside the commands."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

UI_HOST, UI_PORT = "127.0.0.1", 5000


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="advbridge",
        description="Run adversarial-robustness studies across ART, Foolbox and torchattacks, tracked in MLflow.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sets = {"action": "append", "default": [], "metavar": "KEY.PATH=VALUE", "help": "override a scenario value"}

    run = sub.add_parser("run", help="run a scenario file and record it in MLflow")
    run.add_argument("scenario")
    run.add_argument("--set", dest="overrides", **sets)
    run.add_argument("--no-progress", action="store_true", help="no progress bar")

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
    ui.add_argument("--uri", help="tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlruns/mlflow.db)")
    return p


def attack_table() -> list[dict[str, str]]:
    """Canonical attack x norm, with each toolkit's native class (or '-' where it has none)."""
    from bridge.attacks.adapter import ADAPTER_MODULES, get_adapter
    from bridge.attacks.catalogue import CATALOGUE

    adapters = {name: get_adapter(name) for name in ADAPTER_MODULES}
    rows = []
    for attack, info in CATALOGUE.items():
        for norm in info.norms:
            row = {"attack": attack, "norm": norm, "kind": "fixed-eps" if info.kind == "fixed" else "minimum-norm"}
            for name, adapter in adapters.items():
                entry = adapter.table.get((attack, norm))
                row[name] = entry.native if entry else "-"
            rows.append(row)
    return rows


def model_table() -> list[dict[str, str]]:
    """The zoo: each architecture, what it is, the frameworks it is built in, and its options with defaults."""
    from bridge.models.keras_zoo import KERAS_ARCHITECTURES
    from bridge.models.zoo import ARCHITECTURES, DESCRIPTIONS, option_defaults

    return [
        {
            "arch": name,
            "description": DESCRIPTIONS[name],
            "frameworks": "torch, keras" if name in KERAS_ARCHITECTURES else "torch",
            "options": ", ".join(f"{k}={v}" for k, v in option_defaults(name).items()) or "-",
        }
        for name in ARCHITECTURES
    ]


def dataset_table() -> list[dict[str, str]]:
    from bridge.data.config import DATASETS

    return [{"dataset": name, "description": text} for name, text in DATASETS.items()]


def defence_table() -> list[dict[str, str]]:
    from bridge.defences.grid import TRAINING_DEFENCES
    from bridge.defences.preprocessing import describe

    rows = [{"kind": d["kind"], "type": "preprocessing", "gradients": d["gradients"], "parameters": d["parameters"]}
            for d in describe()]  # fmt: skip
    for kind, (value, _) in TRAINING_DEFENCES.items():
        parameters = "method, attack, beta" if kind == "adversarial_training" else f"value: {value}"
        rows.append({"kind": kind, "type": "training", "gradients": "-", "parameters": parameters})
    return rows


def cmd_list(args: argparse.Namespace) -> int:
    if args.what == "defences" and args.format == "markdown":
        from bridge.docs.defences import defences_markdown

        print(defences_markdown(), end="")
        return 0
    if args.what == "defences":
        import pandas as pd

        print(pd.DataFrame(defence_table()).to_string(index=False))
        return 0
    if args.what != "attacks":
        import pandas as pd

        table = pd.DataFrame(model_table() if args.what == "models" else dataset_table())
        print(table.to_markdown(index=False) if args.format == "markdown" else table.to_string(index=False))
        return 0
    if args.format == "markdown":
        from bridge.docs.attacks import attacks_markdown

        print(attacks_markdown(), end="")
        return 0
    import pandas as pd

    print(pd.DataFrame(attack_table()).to_string(index=False))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from bridge.scenario import load

    plan = load(args.scenario, args.overrides)
    unsupported = [c for c in plan.cells if c.unsupported]
    n_models = len(plan.scenario.model_list)
    models = f" x {n_models} models" if n_models > 1 else ""
    n_defences = len(plan.scenario.defences)
    defences = f" x {n_defences} defences" if n_defences > 1 else ""
    print(f"{args.scenario}: valid, {len(plan.cells)} cells{models}{defences} ({len(unsupported)} unsupported)")
    if plan.data_missing:
        print(f"  note: the data is not here yet, so `run` will stop: {plan.data_missing}")
    from bridge.attacks.adapter import get_adapter

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


def print_summary(table: Any, n_samples: int) -> None:
    """The cross-toolkit comparison, then every cell that did not run and why."""
    from rich.console import Console
    from rich.table import Table

    from bridge.report.summary import LEGEND, summary

    pivot = summary(table)
    out = Table(caption=LEGEND, caption_justify="left")
    for name in pivot.columns:
        out.add_column(str(name), no_wrap=True)
    for values in pivot.itertuples(index=False):
        out.add_row(*map(str, values))
    console = Console(width=max(Console().width, 110))
    console.print(out)
    clean = table.dropna(subset=["clean_accuracy"]).groupby("model", sort=False)["clean_accuracy"].first()
    if len(clean):
        per_model = ", ".join(f"{m} {a:.3f}" for m, a in clean.items()) if len(clean) > 1 else f"{clean.iloc[0]:.3f}"
        console.print(f"clean accuracy {per_model} on {n_samples} samples")
    lines = dict.fromkeys(
        f"  {r.attack}-{r.norm} | {r.toolkit}: {r.status}" for r in table.itertuples() if r.status != "ok"
    )
    for line in lines:  # each reason once: several eps of one attack share it
        console.print(line, markup=False, soft_wrap=True)
    if "checks" in table.attrs:
        import pandas as pd

        from bridge.studies.evasion.checks import summary_line

        console.print(summary_line(pd.DataFrame(table.attrs["checks"])), markup=False, soft_wrap=True)


def cmd_run(args: argparse.Namespace) -> int:
    from bridge.runner import Runner
    from bridge.scenario import load

    plan = load(args.scenario, args.overrides)
    table = Runner(plan, progress=not args.no_progress, log=lambda m: print(m, file=sys.stderr)).run()
    print_summary(table, table.attrs["n_samples"])
    eid = table.attrs["experiment_id"]
    experiment = plan.scenario.tracking.experiment or plan.scenario.name
    uri, parent = table.attrs["tracking_uri"], table.attrs["parent_run_id"]
    print(f"\nRecorded in MLflow ({uri}): experiment '{experiment}' (id {eid}), parent run {parent}.")
    from bridge.tracking import ui_url

    print(f"Open it in the MLflow UI: run `advbridge ui`, then visit {ui_url(UI_HOST, UI_PORT, eid)}")
    return 1 if table.attrs["failed"] else 0


def ui_command(uri: str, port: int) -> list[str]:
    """The `mlflow server` command line for advbridge's store, bound to 127.0.0.1 only."""
    from bridge.tracking import artifact_root

    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, "--host", UI_HOST]
    cmd += ["--port", str(port), "--workers", "1"]
    root = artifact_root(uri)
    if root is not None:
        cmd += ["--artifacts-destination", str(root)]
    return cmd


def cmd_ui(args: argparse.Namespace) -> int:
    from bridge.tracking import resolve_uri, ui_url

    uri = resolve_uri(args.uri)
    print(f"MLflow UI for {uri} at {ui_url(UI_HOST, args.port)} (Ctrl-C stops it)", flush=True)
    # The job runner is only for MLflow's GenAI features; without it the server needs ~250 MB, not ~2 GB.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    # Become the server, so that a signal to this process stops the server and its workers too.
    cmd = ui_command(uri, args.port)
    os.execve(cmd[0], cmd, env)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from bridge.scenario import ScenarioError

    commands = {"run": cmd_run, "validate": cmd_validate, "list": cmd_list, "ui": cmd_ui}
    try:
        return commands[args.command](args)
    except ScenarioError as exc:
        print(f"advbridge: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
