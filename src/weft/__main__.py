"""``python -m weft``: the command line (also what ``torchrun -m weft`` runs)."""

from weft.cli import main

if __name__ == "__main__":  # not when a spawned process (the serving batch's) imports it
    main()
