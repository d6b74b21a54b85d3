"""`batch_size: auto`: the batch an attack cell runs in, found where the cell runs, on its device.

On a CPU, and for a Keras model, `auto` is DEFAULT. On a CUDA device it is the largest batch the cell's attack fits
in the device's memory (`attack_batch`): probed once per (network, attack, device, precision, input shape, versions)
and cached in `$ADVBRIDGE_CACHE/batch_sizes.json`, so later cells, studies and processes on the machine read it
instead of probing. The probe's search (`largest_fitting`) is a pure function of a `fits(batch) -> bool` callable.

Nothing else is probed: where a scenario's batch_size sizes something other than an attack (the clean predictions of
a victim, an extraction's queries, the planned progress), `auto` means DEFAULT (`fixed`).
"""

from __future__ import annotations

import gc
import itertools
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import torch
from pydantic import BeforeValidator

from bridge.core.identity import digest, version
from bridge.core.paths import cache_root, write_whole

if TYPE_CHECKING:
    from torch import nn

    from bridge.attacks.spec import AttackSpec
    from bridge.models.keras import KerasModel
    from bridge.models.shared import SharedModel

AUTO = "auto"
# `auto` on a CPU: the default batch_size before `auto` existed, so a CPU study gives the same numbers with either;
# and where a CPU's throughput levels off: PGD-10 on the digits CNN (one thread, docs/performance.md) runs within 8 %
# of its best at 128 samples a batch with each toolkit, in three runs; 25 to 40 % slower at 16, 15 to 28 % at 540.
DEFAULT = 128
# The batch run is MARGIN x the largest batch the probe saw fit: the probe sees the attack's first passes on one
# batch, while the cell then runs every batch of its samples, keeps the examples of the batches done on the device,
# and reuses memory the allocator has fragmented. A fifth of headroom is kept for that; rounding down to a power of
# two instead would give away up to half of the largest batch.
MARGIN = 0.8
# The probe stops the attack at the network's PROBE_PASSES + 1-th forward pass: an attack allocates its state (start,
# best so far, momentum, ART's numpy copies) on its first step and its steps reuse it; a gradient step is a forward
# and a backward pass, and a first pass may be a prediction alone, so 4 forward passes hold at least 3 whole steps
# (ART's DeepFool: a prediction, then one forward and a backward per class in its first step).
PROBE_PASSES = 4
CACHE_FILE = "batch_sizes.json"


def _batch_size(value: Any) -> Any:
    if value == AUTO or (isinstance(value, int) and not isinstance(value, bool) and value > 0):
        return value
    raise ValueError(f"Input should be a valid batch size: a positive integer or {AUTO} (got {value!r})")


BatchSize = Annotated[int | Literal["auto"], BeforeValidator(_batch_size)]


def fixed(batch_size: int | str) -> int:
    """`batch_size` where nothing is probed: as written, DEFAULT for `auto`."""
    return DEFAULT if batch_size == AUTO else int(batch_size)


def largest_fitting(fits: Callable[[int], bool], cap: int) -> tuple[int, int | None]:
    """The largest batch from 1 to `cap` that `fits`, found by doubling from 1, then bisecting between the last batch
    that fit and the first that did not. Returns it (0 when not even 1 fits) and the smallest batch seen not to fit
    (None when `cap` fits). A batch is assumed to fit whenever a larger one does."""
    largest, batch = 0, 1
    while fits(batch):
        largest = batch
        if batch == cap:
            return largest, None
        batch = min(2 * batch, cap)
    failed = batch
    while failed - largest > 1:
        middle = (largest + failed) // 2
        if fits(middle):
            largest = middle
        else:
            failed = middle
    return largest, failed


def choose(largest: int, failed: int | None, cap: int) -> int:
    """The batch to run `cap` samples in, from a probe's outcome: all of them when the probe never ran out of memory
    up to `cap`; else MARGIN x the largest batch that fit (at least 1), at most `cap`."""
    if failed is None:
        return min(largest, cap)
    return min(cap, max(1, int(largest * MARGIN)))


def cached_batch(what: dict[str, Any], cap: int, fits: Callable[[int], bool]) -> int:
    """The batch for the probe `what` (JSON: what the memory depends on) and `cap` samples. An earlier probe of `what`
    in the cache decides it when it found the limit or went as far as `cap`; otherwise `fits` is probed and the
    outcome written to the cache file, under a file lock so that concurrent writers keep each other's entries."""
    path = cache_root() / CACHE_FILE
    key = digest(what)
    entry = _entries(path).get(key)
    if entry is None or (entry["failed"] is None and entry["largest"] < cap):
        largest, failed = largest_fitting(fits, cap)
        if largest == 0:
            raise torch.OutOfMemoryError(f"batch_size auto: not even a batch of 1 fits on {what['device']}")
        entry = {"largest": largest, "failed": failed, "what": what}
        from filelock import FileLock

        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(f"{path}.lock"):
            entries = _entries(path) | {key: entry}
            write_whole(path, lambda part: part.write_text(json.dumps(entries, indent=1, sort_keys=True)))
    return choose(entry["largest"], entry["failed"], cap)


def _entries(path: Path) -> dict[str, Any]:
    """The cache file's entries; none when it is absent, or damaged (the next probe rewrites it whole)."""
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}


def attack_batch(
    spec: AttackSpec,
    model: SharedModel | KerasModel,
    x: torch.Tensor,
    y: torch.Tensor,
    targets: torch.Tensor | None,
) -> int:
    """The batch `auto` resolves to for cell `spec` attacking samples (x, y) on `model`: DEFAULT on a CPU, and for a
    Keras model (TensorFlow's memory is not torch's to probe); on CUDA, the largest batch the cell's own attack fits
    (`attack_fits`), with MARGIN, at most the number of samples, probed once per `probe_key`."""
    device = model.device
    if device.type != "cuda" or model.framework != "torch":
        return DEFAULT
    props = torch.cuda.get_device_properties(device)
    what = probe_key(spec, model, f"{props.name} ({props.total_memory} bytes)")
    return cached_batch(what, len(y), attack_fits(spec, model, x, y, targets))


def probe_key(spec: AttackSpec, model: SharedModel, device: str) -> dict[str, Any]:
    """What the memory cell `spec` takes on `model` depends on, the probe's identity: the network's structure (not
    its weights' values, which take the same memory), the attack (its spec but for its budget, seed and batch size: a
    grid's budgets share one probe), the device's model and memory, the precision, the input shape, and torch's and
    the toolkit's versions."""
    return {
        "network": structure(model.net),
        "attack": spec.model_dump(mode="json", exclude={"batch_size", "seed", "eps", "step_size"}),
        "device": device,
        "precision": model.precision,
        "input_shape": list(model.input_shape),
        "versions": {name: version(name) for name in ("torch", spec.toolkit)},
    }


def structure(net: nn.Module) -> str:
    """What a network's memory depends on: its modules as printed (a defence's layer prints its settings, EOT draws
    included) and the name, shape and dtype of every parameter and buffer."""
    tensors = itertools.chain(net.named_parameters(), net.named_buffers())
    return digest({"modules": repr(net), "tensors": [(name, list(t.shape), str(t.dtype)) for name, t in tensors]})


def attack_fits(
    spec: AttackSpec, model: SharedModel, x: torch.Tensor, y: torch.Tensor, targets: torch.Tensor | None
) -> Callable[[int], bool]:
    """`fits(batch)`: whether the cell's attack fits on `model`'s device at `batch`. The real attack runs as the cell
    runs it (its toolkit's class built on the model, in eval mode with frozen weights) on the cell's first `batch`
    samples, stopped at the network's PROBE_PASSES + 1-th forward pass: the memory it takes is that of its first
    steps. An attack whose later steps hold more than its first (HopSkipJump's gradient estimates grow with the
    step) is covered by MARGIN only."""
    from bridge.attacks.adapter import get_adapter

    adapter = get_adapter(spec.toolkit)

    def attempt(batch: int) -> None:
        at = spec.model_copy(update={"batch_size": batch})
        with model.eval_mode(), model.frozen(), _stopped_after(model.net, PROBE_PASSES):
            run = adapter.build(adapter.translate(at, model.n_classes), at, model)
            run(x[:batch], y[:batch], None if targets is None else targets[:batch])

    return lambda batch: runs_in_memory(lambda: attempt(batch), model.device)


class _Stop(BaseException):
    """Ends a probe's attack from inside the network: not an Exception, so that no toolkit's `except Exception`
    (torchattacks' JSMA has one) takes it for a failure of its own and goes on."""


@contextmanager
def _stopped_after(net: nn.Module, passes: int) -> Iterator[None]:
    """Inside the block, `net`'s forward pass number `passes` + 1 raises `_Stop`, which ends the block quietly."""
    seen = 0

    def count(_module: nn.Module, _inputs: tuple) -> None:
        nonlocal seen
        seen += 1
        if seen > passes:
            raise _Stop

    handle = net.register_forward_pre_hook(count)
    try:
        yield
    except _Stop:
        pass
    finally:
        handle.remove()


def runs_in_memory(attempt: Callable[[], None], device: torch.device) -> bool:
    """Whether `attempt()` runs without running out of memory (any other error propagates). On CUDA, what it allocated
    is freed either way, so the next attempt starts from the same free memory: the attempt's frames go with it (or
    with its exception), their cycles with gc, and the cached blocks are handed back to the device."""
    try:
        attempt()
    except torch.OutOfMemoryError:
        ok = False
    else:
        ok = True
    if device.type == "cuda":
        gc.collect()
        torch.cuda.empty_cache()
    return ok
