"""``model.summary()``: one row per layer -- its output shape, its parameters, and in a graph what it reads."""

from gpunn.models.graph import InputLayer


def summary(model, print_fn=print):
    """Print the table; a graph model (not a chain) gets a 'Connected to' column, as in Keras."""
    if not model.built:
        model.build()
    chain = type(model).__name__ == "Sequential"
    header = ("Layer (type)", "Output Shape", "Param #") + (() if chain else ("Connected to",))
    rows = [header]
    for layer in model.layers:
        nodes = [node for node in model.nodes if node.layer is layer]
        shapes = [(None,) + tuple(t.sample_shape) for t in nodes[0].outputs]
        row = (f"{layer.name} ({type(layer).__name__})", str(shapes[0] if len(shapes) == 1 else shapes),
               f"{layer.count_params():,}")
        if not chain:
            sources = [f"{t.node.layer.name}[{t.node.layer.inbound_nodes.index(t.node)}][{t.index}]"
                       for node in nodes for t in node.inputs]
            row += (", ".join(sources) if sources and not isinstance(layer, InputLayer) else "-",)
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) + 3 for i in range(len(header))]
    line = "_" * sum(widths)
    print_fn(f'Model: "{model.name}"')
    print_fn(line)
    for i, row in enumerate(rows):
        print_fn("".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        print_fn("=" * len(line) if i in (0, len(rows) - 1) else "")
    total = model.count_params()
    trainable = sum(int(w.size) for w in model.trainable_weights)
    print_fn(f"Total params: {total:,}")
    print_fn(f"Trainable params: {trainable:,}")
    print_fn(f"Non-trainable params: {total - trainable:,}")
    print_fn(line)
