"""Where the work runs: a Ray session on any cluster (``session``), a multi-node cluster on this
machine (``local``), isolated nodes in network namespaces (``isolated``, on hosts set up by
``isolated_host``) and node counts changed through KubeRay (``kuberay``)."""
