"""The run loop and its observers: the loop of phase objects (``loop``), the phases (``phases``),
the observers as callbacks (``observers``) of the journal (``journal``) and the Prometheus metrics
(``prometheus``)."""
