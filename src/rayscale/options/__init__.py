"""Options: what a command was asked to do, checked before any work — each command's options
(``commands``), the bundle's file names (``files``), the search space (``space``) and the task's
scoring (``scoring``: regression or classification metrics). Imports nothing else of rayscale's."""
