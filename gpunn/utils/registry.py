"""Turning a name or a config dict into an object: how ``'relu'`` becomes ``ReLU()``."""


def from_identifier(identifier, registry, what):
    """``registry[name](**config)`` for ``'name'`` or ``{'name': ..., **config}``; an error lists the valid names."""
    if isinstance(identifier, str):
        identifier = {"name": identifier.lower()}
    if isinstance(identifier, dict) and identifier.get("name") in registry:
        config = dict(identifier)
        return registry[config.pop("name")](**config)
    raise ValueError(f"Unknown {what} {identifier!r}; valid {what}s are: {', '.join(registry)}")
