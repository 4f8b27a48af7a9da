"""``python -m radpipe`` runs the command line."""

from radpipe.cli import main

main()
