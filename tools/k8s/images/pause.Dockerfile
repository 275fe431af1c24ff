# The pod sandbox's pause container: Kubernetes' own build/pause/linux/pause.c (from the
# k8s.io/kubernetes module tools/k8s/kubernetes pins), compiled statically by build.sh.
FROM scratch
COPY pause /pause
USER 65535:65535
ENTRYPOINT ["/pause"]
