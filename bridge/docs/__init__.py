"""Generated reference pages (docs/attacks.md, docs/defences.md), built from the adapters' tables and the configs."""
