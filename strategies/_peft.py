"""What the peft-based strategies share: adapter injection (their option checks are in `_checks`).

Every peft strategy freezes the backbone, lets peft add its adapter to the targeted modules in place
(the model stays the timm model, so the runner, `get_classifier` and the counts see it unchanged),
and leaves the new head to `prepare_model`, which trains it in place. The head is never put in peft's
`modules_to_save`, which would keep a second copy of it and count the head twice.
"""

from __future__ import annotations

from collections.abc import Sequence

from peft import PeftConfig, inject_adapter_in_model
from peft.tuners.tuners_utils import BaseTuner
from torch import nn

ADAPTER = "default"  # peft's adapter name; one adapter per model here


def _is_target(name: str, targets: Sequence[str]) -> bool:
    """peft's rule for a list of targets: the module's qualified name is, or ends with `.`, a target."""
    return any(name == target or name.endswith(f".{target}") for target in targets)


def targeted_linears(model: nn.Module, targets: Sequence[str]) -> list[tuple[str, nn.Linear]]:
    """The linear layers that peft will adapt."""
    return [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and _is_target(name, targets)
    ]


def _check_targets_exist(strategy: str, model: nn.Module, targets: Sequence[str]) -> None:
    if not any(_is_target(name, targets) for name, _ in model.named_modules()):
        raise ValueError(f"{strategy}.targets {list(targets)} match no module of the model")


def _peft_error(strategy: str, error: ValueError) -> ValueError:
    """peft's ValueError as one line that names the strategy."""
    message = str(error).splitlines()[0] if str(error) else type(error).__name__
    return ValueError(f"{strategy} cannot adapt this model: {message}")


def inject(strategy: str, config: PeftConfig, model: nn.Module, targets: Sequence[str]) -> nn.Module:
    """Freeze `model` and add peft's adapter described by `config` in place."""
    _check_targets_exist(strategy, model, targets)
    model.requires_grad_(False)  # the backbone frozen (base.freeze; not imported: base imports this module)
    try:
        model = inject_adapter_in_model(config, model, adapter_name=ADAPTER)
    except ValueError as error:  # e.g. a target of a type the method cannot adapt
        raise _peft_error(strategy, error) from None
    return model


def attach_tuner(
    strategy: str, tuner_class: type[BaseTuner], config: PeftConfig, model: nn.Module, targets: Sequence[str]
) -> BaseTuner:
    """As `inject`, through peft's tuner class, for methods whose state lives on the tuner (VeRA's shared
    random projections, AdaLoRA's rank allocator). The tuner adapts `model` in place and is returned;
    `model` itself (`tuner.model`) is what trains."""
    _check_targets_exist(strategy, model, targets)
    model.requires_grad_(False)  # the backbone frozen (base.freeze; not imported: base imports this module)
    try:
        tuner = tuner_class(model, config, ADAPTER)
    except ValueError as error:
        raise _peft_error(strategy, error) from None
    return tuner


def target_widths(model: nn.Module, targets: Sequence[str]) -> list[tuple[int, int]]:
    """(input, output) widths of the linear layers that peft will adapt, for options that must fit them."""
    return [(module.in_features, module.out_features) for _, module in targeted_linears(model, targets)]


def merged(model: nn.Module) -> nn.Module | None:
    """A copy of `model` with every peft tuner layer merged into its base layer and removed (what peft's
    `merge_and_unload()` does, layer by layer, for a model that `inject_adapter_in_model` adapted in place),
    or None when the model holds no tuner layer or a layer's method has no merge: peft's `merge` raises
    NotImplementedError then, or ValueError for a layer it cannot merge. `model` itself is left as it is."""
    import copy

    from peft.tuners.tuners_utils import BaseTunerLayer

    from strategies._qkv import fuse_qkv

    merged_model = copy.deepcopy(model)
    layers = [
        (name, module) for name, module in merged_model.named_modules() if isinstance(module, BaseTunerLayer)
    ]
    if not layers:
        return None
    try:
        for name, layer in layers:
            layer.merge(adapter_names=[ADAPTER])
            merged_model.set_submodule(name, layer.get_base_layer())
    except (NotImplementedError, ValueError):
        return None
    if any(isinstance(module, BaseTunerLayer) for module in merged_model.modules()):
        return None  # a tuner layer nested in another one's base: not a plain model
    fuse_qkv(merged_model)  # q, k and v split for the method (strategies/_qkv.py) are one layer again
    return merged_model
