"""Data: reading corpora and cutting token streams into training batches."""
