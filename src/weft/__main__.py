"""``python -m weft``: the command line (also what ``torchrun -m weft`` runs)."""

from weft.cli.main import main

main()
