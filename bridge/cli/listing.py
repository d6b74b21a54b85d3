"""`advbridge list`: the attacks, models, datasets and defences advbridge offers, as text or markdown."""

from __future__ import annotations

import argparse


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
