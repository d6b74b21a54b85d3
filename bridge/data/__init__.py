"""Datasets: the `data:` section, where the files live, the readers, and the selection a study evaluates on."""
