"""A plain description of a neutral model, for ``inspect`` (text or JSON)."""

from __future__ import annotations

from .convert import BACKWARD_INITS, check_convertible, preservation
from .errors import LstmConvertError
from .model import MERGE_MODES, SequenceModel


def describe(model: SequenceModel, source: str) -> dict:
    """Everything ``inspect`` shows, as JSON-ready values."""
    layers = []
    for k, layer in enumerate(model.layers):
        fwd = layer.directions[0]
        layers.append({
            "index": k,
            "direction": _direction_name(layer),
            "merge": layer.merge if layer.bidirectional else None,
            "input_size": layer.input_size,
            "hidden_size": layer.hidden_size,
            "proj_size": layer.proj_size,
            "output_size": layer.output_size,
            "bias": fwd.has_bias,
            "activations": [str(a) for a in fwd.activations],
            **({"reverse_activations": [str(a) for a in layer.directions[1].activations]}
               if layer.bidirectional and layer.directions[1].activations != fwd.activations else {}),
            "dtype": str(fwd.w_ih.dtype),
            "parameters": sum(a.size for d in layer.directions for a in d.arrays().values()),
            **({"clip": layer.clip} if layer.clip is not None else {}),
            **({"input_forget": True} if layer.input_forget else {}),
            **({"peepholes": True} if fwd.peephole is not None else {}),
        })
    report = {
        "file": source,
        "format": model.meta.get("source_format"),
        "input": {
            "kind": model.input_kind,
            "layout": "batch-first" if model.batch_first else "time-first",
            "masked": model.masked,
            **({"vocab_size": model.embedding.vocab_size, "embedding_dim": model.embedding.dim}
               if model.embedding is not None else {"features": model.input_size}),
        },
        "readout": model.readout,
        "layers": layers,
        "head": [{"in": d.in_features, "out": d.out_features, "bias": d.bias is not None,
                  "activation": d.activation} for d in model.head],
        "output_size": model.output_size,
        "dtype": str(model.dtype),
        "parameters": model.parameter_count(),
        "bidirectional": model.bidirectional,
        "conversion": _conversion_outlook(model),
    }
    return report


def _direction_name(layer) -> str:
    if layer.bidirectional:
        return "bidirectional"
    if layer.reverse:
        return "reverse (output in reversed time order)" if layer.reversed_output else "reverse"
    return "forward"


def _conversion_outlook(model: SequenceModel) -> dict:
    try:
        check_convertible(model)
    except LstmConvertError as exc:
        return {"possible": False, "reason": str(exc)}
    outlook = {}
    for merge in MERGE_MODES:
        for backward in BACKWARD_INITS:
            verdict = preservation(model, backward=backward, merge=merge)
            outlook[f"{merge}/{backward}"] = {"status": verdict.status, "reason": verdict.reason}
    return {"possible": True, "preservation": outlook}


def render_text(report: dict) -> str:
    inp = report["input"]
    lines = [f"{report['file']}  ({report['format']}, {report['dtype']}, {report['parameters']:,} parameters)"]
    if inp["kind"] == "tokens":
        lines.append(f"  input     token ids, {inp['layout']}; embedding {inp['vocab_size']} x {inp['embedding_dim']}"
                     + (", masked (id 0 is padding)" if inp["masked"] else ""))
    else:
        lines.append(f"  input     {inp['features']} features, {inp['layout']}" + (", masked" if inp["masked"] else ""))
    for layer in report["layers"]:
        extra = f", proj {layer['proj_size']}" if layer["proj_size"] else ""
        merge = f", merge {layer['merge']}" if layer["merge"] else ""
        lines.append(
            f"  lstm {layer['index']}    {layer['direction']}{merge}: {layer['input_size']} -> hidden {layer['hidden_size']}"
            f"{extra} -> out {layer['output_size']}; bias {'yes' if layer['bias'] else 'no'}; "
            f"activations {'/'.join(layer['activations'])}"
            + (f" (reverse: {'/'.join(layer['reverse_activations'])})" if "reverse_activations" in layer else "")
            + f"; {layer['parameters']:,} parameters"
        )
    for j, dense in enumerate(report["head"]):
        lines.append(f"  head {j}    dense {dense['in']} -> {dense['out']}, {dense['activation']}")
    lines.append(f"  readout   {report['readout']}; output width {report['output_size']}")
    conv = report["conversion"]
    if not conv["possible"]:
        lines.append(f"  uni->bi   not possible: {conv['reason']}")
    else:
        lines.append("  uni->bi   function preservation by --merge/--backward:")
        for key, verdict in conv["preservation"].items():
            lines.append(f"            {key:<15} {verdict['status']:<13} {verdict['reason']}")
    return "\n".join(lines)


def assumptions(model: SequenceModel) -> str:
    """The layout and readout a reader had to assume (``meta["assumed"]``), as one sentence; "" if none.

    A PyTorch state_dict records neither how its ``forward`` lays out the input nor what it returns.
    """
    assumed = model.meta.get("assumed") or {}
    said, flags = [], []
    if "batch_first" in assumed:
        said.append("batch-first" if assumed["batch_first"] else "seq-first")
        flags.append("--seq-first" if assumed["batch_first"] else "--batch-first")
    if "readout" in assumed:
        said.append(f"readout {assumed['readout']}")
        flags.append("--readout " + ("sequence" if assumed["readout"] == "last" else "last"))
    if not said:
        return ""
    kind = (model.meta.get("torch") or {}).get("kind", "state_dict")
    holder = {"state_dict": "a state_dict", "torchscript": "a TorchScript archive", "export": "this file"}.get(kind, "this file")
    return (f"read as {', '.join(said)}: {holder} does not record {'these' if len(said) > 1 else 'this'}; "
            f"pass {' / '.join(flags)} if your forward differs")
