"""The ``weft`` command line (click)."""
