# The Prometheus Pushgateway from Debian's package (prometheus-pushgateway), on the node's base image:
# what the real node runs for the chart's Pushgateway (values pushgateway.image in
# deploy/helm/rayscale/ci/local-node-values.yaml), named for what it is, not as upstream's prom/pushgateway.
ARG BASE_IMAGE=rayscale-base:bookworm
FROM ${BASE_IMAGE}
ARG PUSHGATEWAY_VERSION
USER 0
RUN apt-get update -qq \
    && apt-get install -y -qq --no-install-recommends "prometheus-pushgateway=${PUSHGATEWAY_VERSION}" \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
# nobody, as upstream's image and the chart's podSecurityContext (65534).
USER 65534:65534
WORKDIR /
ENTRYPOINT ["/usr/bin/prometheus-pushgateway"]
