"""Image IO, dataset readers and synthetic vessels."""
