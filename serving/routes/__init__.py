"""One module per resource: health and metrics, predictions, pushed features, events."""
