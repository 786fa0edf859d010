"""A graph model as JSON-friendly data, and back: what a saved file's header holds (no pickle, no code).

    {"name": ..., "layers": [{"class_name", "config"}, ...],              every layer, Input layers too
     "nodes": [{"layer": name, "arguments": {...}}, ...],                  every call, in the order it runs
     "inputs": ..., "outputs": ...}                                        in the form the model takes them

Inside arguments, inputs and outputs a tensor is ``{"tensor": [layer name, call, output]}``: the
``output``-th result of that layer's ``call``-th call in this model. Loading creates the layers,
then replays the calls on symbolic tensors, which rebuilds the same graph.
"""

import json

from gpunn.models.graph import InputLayer, SymbolicTensor


def graph_config(model):
    calls = {}  # node -> its number among its layer's calls in this model

    def encode(value):
        if isinstance(value, SymbolicTensor):
            return {"tensor": [value.node.layer.name, calls[value.node], value.index]}
        if isinstance(value, (list, tuple)):
            return [encode(v) for v in value]
        if isinstance(value, dict):
            return {k: encode(v) for k, v in value.items()}
        try:
            json.dumps(value)
        except TypeError:
            raise TypeError(f"Model '{model.name}' cannot be saved: a layer was called with {type(value).__name__} "
                            f"{value!r}, which is not a symbolic tensor nor JSON data (give arrays as Model inputs "
                            f"instead)") from None
        return value

    nodes = []
    for node in model.nodes:
        calls[node] = sum(other.layer is node.layer for other in calls)
        if not isinstance(node.layer, InputLayer):
            nodes.append({"layer": node.layer.name, "arguments": encode(node.arguments)})
    from gpunn.layers.base import layer_config

    return {"name": model.name, "layers": [layer_config(layer) for layer in model.layers], "nodes": nodes,
            "inputs": encode(model._pack(model.inputs, inputs=True)),
            "outputs": encode(model._pack(model.outputs))}


def graph_from_config(cls, config):
    from gpunn.saving import ModelFileError, layer_from_config

    layers = {}
    for entry in config["layers"]:
        layer = layer_from_config(entry)
        layers[layer.name] = layer
    produced = {}  # (layer name, call) -> its outputs
    for name, layer in layers.items():
        if isinstance(layer, InputLayer):
            produced[(name, 0)] = [layer.tensor]

    def decode(value):
        if isinstance(value, dict) and set(value) == {"tensor"}:
            name, call, index = value["tensor"]
            if (name, call) not in produced:
                raise ModelFileError(f"the saved graph reads call {call} of layer '{name}' before it is made")
            return produced[(name, call)][index]
        if isinstance(value, list):
            return [decode(v) for v in value]
        if isinstance(value, dict):
            return {k: decode(v) for k, v in value.items()}
        return value

    for entry in config["nodes"]:
        layer = layers.get(entry["layer"])
        if layer is None:
            raise ModelFileError(f"the saved graph calls a layer '{entry['layer']}' it does not define")
        out = layer(**decode(entry["arguments"]))
        call = sum(key[0] == layer.name for key in produced)
        produced[(layer.name, call)] = out if isinstance(out, list) else [out]
    return cls(decode(config["inputs"]), decode(config["outputs"]), name=config.get("name"))
