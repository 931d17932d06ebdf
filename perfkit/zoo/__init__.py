"""Models: ``sources`` (one module per model source, ``sources.resolve`` the one entry point) turn what
the user names into a ``spec.ModelSpec``; ``weights`` loads weights, ``preprocess`` holds the eval transform."""
