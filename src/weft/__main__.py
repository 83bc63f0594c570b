"""``python -m weft``: the command line (also what ``torchrun -m weft`` runs)."""

from weft.cli import main

main()
