"""The grid phase's work: its configs and estimators (``configs``) and the sequential and Ray
runners that fit and score them (``runners``)."""
