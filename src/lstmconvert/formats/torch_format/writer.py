"""``write``: neutral model -> ``.pt``/``.pth`` state_dict or ``.pt2`` torch.export program.

``.pt``: a plain state_dict (``torch.save``) with the same dtypes and bits as the model. When the
model was read from a PyTorch file, the keys are the source's own (wrapper prefixes such as
``module.`` dropped), so the user's module, widened to ``bidirectional=True`` with its head taking
the wider output, loads it with ``strict=True``; otherwise SequenceLSTM's canonical naming is used.
The SequenceLSTM config rides along in the state_dict's ``_metadata`` (see ``config``).

``.pt2``: SequenceLSTM exported with ``torch.export`` (dynamic batch and time) and saved with
``torch.export.save``; ``torch.export.load(path).module()(x)`` runs it without lstmconvert.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
import torch

from ...model import SequenceModel
from ...options import WriteOptions
from .config import EXTRA_FILE, METADATA_KEY, SequenceLSTMConfig, config_from_model, metadata_blob
from .module import SequenceLSTM
from .naming import canonical_naming, source_naming, state_arrays
from .tensors import tensor_view

PROGRAM_SUFFIX = ".pt2"
# Example sizes for tracing; 0 and 1 are avoided because torch.export specialises on them.
EXAMPLE_BATCH, EXAMPLE_STEPS = 2, 3


def write(model: SequenceModel, path: Path, options: WriteOptions) -> None:
    """Write ``model`` to ``path`` (.pt2: a torch.export program; otherwise a state_dict)."""
    config = config_from_model(model)  # refuses what PyTorch's LSTM cannot compute
    if path.suffix.lower() == PROGRAM_SUFFIX:
        write_program(model, config, path)
    else:
        write_state_dict(model, config, path)


def write_state_dict(model: SequenceModel, config: SequenceLSTMConfig, path: Path) -> None:
    """torch.save a state_dict named like the source (if it was PyTorch) or canonically."""
    source = source_naming(model, config)
    naming = source or canonical_naming(config)
    state = OrderedDict((key, tensor_view(array)) for key, array in state_arrays(model, naming).items())
    if source is not None:
        versions = model.meta["torch"].get("module_versions") or {}
    else:
        versions = SequenceLSTM(config).state_dict()._metadata
    metadata = OrderedDict((k, dict(v)) for k, v in versions.items())
    metadata[METADATA_KEY] = {"config": metadata_blob(config, naming)}
    state._metadata = metadata
    torch.save(state, path)


def write_program(model: SequenceModel, config: SequenceLSTMConfig, path: Path) -> None:
    """Export SequenceLSTM for ``model`` with dynamic batch and time, and save it."""
    module = SequenceLSTM.from_model(model)
    example = example_input(config)
    batch = torch.export.Dim("batch", min=1)
    steps = torch.export.Dim("time", min=1)
    dims = {0: batch, 1: steps} if config.batch_first else {0: steps, 1: batch}
    with torch.no_grad():
        program = torch.export.export(module, (example,), dynamic_shapes={"x": dims})
    blob = metadata_blob(config, canonical_naming(config))
    torch.export.save(program, path, extra_files={EXTRA_FILE: blob})


def example_input(config: SequenceLSTMConfig) -> torch.Tensor:
    """A tracing input in the module's layout: token ids (int64) or features of the model's dtype."""
    shape = (EXAMPLE_BATCH, EXAMPLE_STEPS) if config.batch_first else (EXAMPLE_STEPS, EXAMPLE_BATCH)
    if config.vocab_size is not None:
        return torch.zeros(shape, dtype=torch.int64)
    return torch.zeros(shape + (config.input_size,), dtype=getattr(torch, config.dtype))
