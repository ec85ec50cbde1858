"""``python -m enlace.cli``: the ``enlace`` command (how the demo and the bench start services)."""

from enlace.cli import main

main()
