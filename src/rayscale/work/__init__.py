"""Work: what the commands do, lowest first — ``stopping``/``environment``/``data`` → ``cluster`` →
``grid`` → ``sim`` → ``tune`` → ``execution`` → ``run`` → ``scale``, ``predict``. A module imports
only its own subpackage and those below it; one command never imports another."""
