"""Read and write attention-head components with plain torch hooks on unmodified Hugging Face modules.

A component is one head's output before the output projection at one token position (SPEC section 3).
Every primitive is a context manager that removes its hooks on exit, also after an exception:

- `capture_head_outputs` / `capture_qkv`: record heads at chosen positions during a forward pass.
- `patch_head_outputs` / `patch_qkv`: overwrite heads (where a mask says so) with given values.
- `mean_ablate`: `patch_head_outputs` with per-position means from a reference set.
- `stop_after`: end a forward pass as soon as a module has run, when nothing later is read.
- `expand_rows`: run the layers below one on one row per input, and the rest on many rows of each input.

Shapes: `positions` is [batch, site] (token index of each site in each row; None = every position);
head values are [batch, site, layer, head, head_dim]; masks broadcast to [batch, site, layer, head].
A batch dimension of 1 broadcasts over the batch. Hooks nest: the one entered last wins.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from benchmark.models.adapter import QKV, ArchitectureAdapter

# Edit of one layer's heads at the sites: [batch, site, head, d] -> same shape.
SiteEdit = Callable[[torch.Tensor, int], torch.Tensor]


def _resolve_layers(adapter: ArchitectureAdapter, layers: Sequence[int] | None) -> list[int]:
    return list(range(adapter.shape.n_layers)) if layers is None else list(layers)


def _edit_sites(x: torch.Tensor, positions: torch.Tensor | None, edit: Callable) -> torch.Tensor:
    """Apply `edit` to x [batch, pos, head, d] at `positions` [batch or 1, site]; return a new tensor."""
    if positions is None:
        return edit(x)
    batch = x.shape[0]
    positions = positions.to(x.device).expand(batch, -1)
    rows = torch.arange(batch, device=x.device)[:, None]
    out = x.clone()
    out[rows, positions] = edit(x[rows, positions])
    return out


@contextmanager
def _hooks(register: Callable[[nn.Module, Callable], torch.utils.hooks.RemovableHandle], targets) -> Iterator:
    """Register one hook per (module, hook) pair and remove them all on exit, whatever happens."""
    handles = []
    try:
        for module, hook in targets:
            handles.append(register(module, hook))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _head_output_hook(adapter: ArchitectureAdapter, index: int, positions, edit: SiteEdit):
    n_heads, d = adapter.shape.n_heads, adapter.shape.head_dim

    def hook(module, args):
        x, *rest = args  # [batch, pos, head * d]
        heads = x.view(*x.shape[:-1], n_heads, d)
        new = _edit_sites(heads, positions, lambda sites: edit(sites, index))
        return (new.reshape(x.shape).contiguous(), *rest)

    return hook


@contextmanager
def edit_head_outputs(
    adapter: ArchitectureAdapter, edit: SiteEdit, positions: torch.Tensor | None = None, layers=None
) -> Iterator[None]:
    """Edit head outputs (input of each layer's output projection) at `positions` with `edit(sites, i)`.

    `i` indexes `layers` (all layers by default); `edit` gets and returns [batch, site, head, d].
    """
    layers = _resolve_layers(adapter, layers)
    targets = [
        (adapter.out_proj(layer), _head_output_hook(adapter, i, positions, edit))
        for i, layer in enumerate(layers)
    ]
    with _hooks(lambda m, h: m.register_forward_pre_hook(h), targets):
        yield


def _qkv_hook(adapter: ArchitectureAdapter, kind: QKV, index: int, positions, edit: SiteEdit):
    def hook(module, args, output):
        new = output.clone()
        view = adapter.qkv_view(kind, new)  # [batch, pos, qkv_heads, d], a view into `new`
        view.copy_(_edit_sites(view, positions, lambda sites: edit(sites, index)))
        return new

    return hook


@contextmanager
def edit_qkv(
    adapter: ArchitectureAdapter,
    kind: QKV,
    edit: SiteEdit,
    positions: torch.Tensor | None = None,
    layers=None,
) -> Iterator[None]:
    """Edit the q, k or v vectors of each layer's heads (k, v: one per key-value group) at `positions`."""
    layers = _resolve_layers(adapter, layers)
    targets = [
        (adapter.qkv_projection(layer, kind), _qkv_hook(adapter, kind, i, positions, edit))
        for i, layer in enumerate(layers)
    ]
    with _hooks(lambda m, h: m.register_forward_hook(h), targets):
        yield


class _Stopped(Exception):
    """Raised by `stop_after`'s hook to end a forward pass early; caught by `stop_after` itself."""


@contextmanager
def stop_after(module: nn.Module) -> Iterator[None]:
    """A forward pass run as the last statement of the block ends once `module` has run: the layers above
    it and the unembedding are skipped (what hooks recorded up to there is complete), and the pass returns
    nothing. The modules stay unmodified; a hook raises and this context manager catches it."""

    def hook(module, args, output):
        raise _Stopped

    handle = module.register_forward_hook(hook)
    try:
        yield
    except _Stopped:
        pass
    finally:
        handle.remove()


def _pick_rows(value, index: torch.Tensor, n_inputs: int):
    """A block argument (a tensor, or a tuple, list or dict of them) with every tensor batched like the
    model's input (first dimension `n_inputs`, two or more dimensions) indexed by `index` along it."""
    if isinstance(value, torch.Tensor):
        batched = value.ndim >= 2 and value.shape[0] == n_inputs
        return value.index_select(0, index.to(value.device)) if batched else value
    if isinstance(value, tuple | list):
        return type(value)([_pick_rows(item, index, n_inputs) for item in value])
    if isinstance(value, dict):
        return {key: _pick_rows(item, index, n_inputs) for key, item in value.items()}
    return value


@contextmanager
def expand_rows(
    adapter: ArchitectureAdapter, from_layer: int, index: torch.Tensor, n_inputs: int
) -> Iterator[None]:
    """A forward pass of `n_inputs` rows whose blocks from `from_layer` on run on the rows `index` [rows]
    picks from them (`index`: input row of each; more rows than inputs), so that rows that only differ
    from that layer on are computed once below it. Each of those blocks gets its batched arguments picked
    likewise (the hidden states at the first; position embeddings and masks, which the model built for
    its input rows, at every one); the output has len(index) rows. A key-value cache must hold that
    many rows from `from_layer` on (`ModelUnderStudy.repeat_cached_rows`)."""
    if len(index) <= n_inputs:
        raise ValueError(f"expand_rows needs more rows than the {n_inputs} inputs, got {len(index)}")

    def hook(module, args, kwargs):
        return _pick_rows(args, index, n_inputs), _pick_rows(kwargs, index, n_inputs)

    blocks = [adapter.block(layer) for layer in range(from_layer, adapter.shape.n_layers)]
    with _hooks(lambda m, h: m.register_forward_pre_hook(h, with_kwargs=True), [(b, hook) for b in blocks]):
        yield


def repeat_rows(adapter: ArchitectureAdapter, from_layer: int, n_inputs: int, k: int):
    """`expand_rows` from `from_layer` on where each of the n_inputs rows becomes k consecutive rows (row
    i * k + j: input i's j-th copy), as the path-patching sweep and DCM's joint masks fan out."""
    return expand_rows(adapter, from_layer, torch.arange(n_inputs).repeat_interleave(k), n_inputs)


@dataclass
class Recording:
    """Values captured during a forward pass; `stack()` gives [batch, site, layer, head, d]."""

    per_layer: list[torch.Tensor | None] = field(default_factory=list)

    def stack(self) -> torch.Tensor:
        if any(t is None for t in self.per_layer):
            raise RuntimeError("nothing was recorded for some layer: run a forward pass inside the context")
        return torch.stack(self.per_layer, dim=2)


def _recorder(recording: Recording, detach_to: torch.device | None, keep_graph: bool = False) -> SiteEdit:
    def edit(sites: torch.Tensor, index: int) -> torch.Tensor:
        kept = sites if keep_graph else sites.detach().to(detach_to or sites.device, copy=True)
        recording.per_layer[index] = kept
        return sites

    return edit


@contextmanager
def capture_head_outputs(
    adapter: ArchitectureAdapter, positions: torch.Tensor | None = None, layers=None, to_device=None
) -> Iterator[Recording]:
    """Record head outputs at `positions`; the recording stacks to [batch, site, layer, head, d]."""
    recording = Recording([None] * len(_resolve_layers(adapter, layers)))
    with edit_head_outputs(adapter, _recorder(recording, to_device), positions, layers):
        yield recording


@contextmanager
def capture_qkv(
    adapter: ArchitectureAdapter,
    kind: QKV,
    positions: torch.Tensor | None = None,
    layers=None,
    to_device=None,
    keep_graph: bool = False,
) -> Iterator[Recording]:
    """Record q, k or v at `positions`; the recording stacks to [batch, site, layer, qkv_head, d]. With
    `keep_graph` the recorded tensors stay in the autograd graph (attribution patching differentiates
    through them)."""
    recording = Recording([None] * len(_resolve_layers(adapter, layers)))
    with edit_qkv(adapter, kind, _recorder(recording, to_device, keep_graph), positions, layers):
        yield recording


def _replacer(values: torch.Tensor, mask: torch.Tensor | None) -> SiteEdit:
    """Replace sites by values[:, :, i] where mask[..., i, :] is true (everywhere without a mask)."""

    def edit(sites: torch.Tensor, index: int) -> torch.Tensor:
        new = values[:, :, index].to(sites.device, sites.dtype)  # [batch, site, head, d]
        if mask is None:
            return new.expand_as(sites)
        layer = index if mask.shape[-2] > 1 else 0  # a layer dimension of 1 broadcasts
        keep = mask[..., layer, :].to(sites.device)[..., None]  # [batch, site, head, 1]
        return torch.where(keep, new, sites)

    return edit


@contextmanager
def patch_head_outputs(
    adapter: ArchitectureAdapter,
    values: torch.Tensor,
    positions: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    layers=None,
) -> Iterator[None]:
    """Overwrite head outputs with `values` [batch|1, site, layer, head, d] where `mask` is true."""
    with edit_head_outputs(adapter, _replacer(values, mask), positions, layers):
        yield


@contextmanager
def patch_qkv(
    adapter: ArchitectureAdapter,
    kind: QKV,
    values: torch.Tensor,
    positions: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    layers=None,
) -> Iterator[None]:
    """Overwrite q, k or v with `values` [batch|1, site, layer, qkv_head, d] where `mask` is true."""
    with edit_qkv(adapter, kind, _replacer(values, mask), positions, layers):
        yield


@contextmanager
def mean_ablate(
    adapter: ArchitectureAdapter, means: torch.Tensor, keep: torch.Tensor | None = None
) -> Iterator[None]:
    """Replace every head at every position by its mean [pos, layer, head, d], except where `keep` is true.

    `keep` broadcasts to [batch, pos, layer, head]: the components left at their own value (a circuit).
    """
    mask = None if keep is None else ~keep.bool()
    with patch_head_outputs(adapter, means[None], positions=None, mask=mask):
        yield


@torch.inference_mode()
def head_output_means(
    model: nn.Module, adapter: ArchitectureAdapter, input_ids: torch.Tensor, batch_size: int = 32
) -> torch.Tensor:
    """Mean head outputs over a reference set of equal-length prompts: [pos, layer, head, d] (float32)."""
    device = next(model.parameters()).device
    total = None
    for start in range(0, len(input_ids), batch_size):
        batch = input_ids[start : start + batch_size].to(device)
        with capture_head_outputs(adapter, to_device=device) as recording:
            model(batch)
        part = recording.stack().float().sum(dim=0)  # [pos, layer, head, d]
        total = part if total is None else total + part
    return total / len(input_ids)


def _residual_hook(positions: torch.Tensor, edit: Callable[[torch.Tensor], torch.Tensor]):
    """A block's forward hook editing its output residual [batch, pos, d] at `positions` [batch]."""

    def hook(module, args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        new = hidden.clone()
        new[rows, positions.to(hidden.device)] = edit(hidden[rows, positions.to(hidden.device)])
        return (new, *output[1:]) if isinstance(output, tuple) else new

    return hook


@contextmanager
def capture_residual(adapter: ArchitectureAdapter, positions: torch.Tensor) -> Iterator[list]:
    """Record the residual stream after every layer at `positions` [batch]; the list fills with one
    [batch, d] tensor per layer (on the CPU, float32)."""
    recorded: list = [None] * adapter.shape.n_layers

    def recorder(layer: int):
        def keep(sites: torch.Tensor) -> torch.Tensor:
            recorded[layer] = sites.detach().float().cpu()
            return sites

        return keep

    targets = [
        (adapter.block(layer), _residual_hook(positions, recorder(layer)))
        for layer in range(adapter.shape.n_layers)
    ]
    with _hooks(lambda m, h: m.register_forward_hook(h), targets):
        yield recorded


@contextmanager
def patch_residual(
    adapter: ArchitectureAdapter, layer: int, positions: torch.Tensor, values: torch.Tensor
) -> Iterator[None]:
    """Overwrite the residual stream after `layer` at `positions` [batch] with `values` [batch, d]."""
    replace = lambda sites: values.to(sites.device, sites.dtype)  # noqa: E731
    with _hooks(
        lambda m, h: m.register_forward_hook(h), [(adapter.block(layer), _residual_hook(positions, replace))]
    ):
        yield
