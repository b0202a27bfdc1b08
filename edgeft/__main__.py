"""``python -m edgeft`` — the same CLI as ``edgeft``; also what ``torchrun -m edgeft train`` runs."""

from edgeft.cli import main

if __name__ == "__main__":
    main()
