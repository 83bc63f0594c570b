"""Training: the generic loop, its schedule and metrics, and the language-model task."""
