"""`python -m supporttune`: the same entry point as the `supporttune` console script."""

from .entry import main

main()
