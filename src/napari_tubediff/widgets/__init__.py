"""napari widgets: thin panels over the core (one module per panel)."""
