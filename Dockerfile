# rayscale image for KubeRay: the official Ray image (same Ray and Python as the pinned
# dependency) plus rayscale and its pinned dependencies.
#
#   docker build -t rayscale:0.1.0 .
#   kind load docker-image rayscale:0.1.0      # for a kind cluster
#
# BASE_IMAGE: any image with Python 3.11 and pip on PATH, user 1000:100 with a writable home and
# site-packages, bash and wget (KubeRay's probes). tools/k8s/images/build.sh builds the real node's
# image on a Debian base that way, since no registry is reachable there (docs/local-kubernetes.md).
ARG RAY_VERSION=2.60.0
ARG PYTHON_TAG=py311
ARG BASE_IMAGE=rayproject/ray:${RAY_VERSION}-${PYTHON_TAG}-cpu

# Build stage: turn the source tree into a wheel; nothing from here but the wheel is kept. It runs
# as root: the legacy builder (DOCKER_BUILDKIT=0) creates WORKDIR owned by root whatever USER is,
# and setuptools writes build/ and *.egg-info into the source tree.
FROM ${BASE_IMAGE} AS build
USER 0
WORKDIR /tmp/rayscale
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-deps --no-cache-dir --wheel-dir /tmp/wheels .

# Final image: the base, rayscale's pinned dependencies (constraints.txt, exact versions) in a layer
# of their own that a change of rayscale's source does not invalidate, then rayscale itself.
FROM ${BASE_IMAGE}
COPY --chown=1000:100 constraints.txt /tmp/constraints.txt
RUN pip install --no-cache-dir --requirement /tmp/constraints.txt
COPY --from=build --chown=1000:100 /tmp/wheels /tmp/wheels
RUN pip install --no-cache-dir --constraint /tmp/constraints.txt /tmp/wheels/rayscale-*.whl "kubernetes" \
    && rm -rf /tmp/wheels /tmp/constraints.txt \
    && rayscale --version
# The rayproject/ray images run as the non-root user "ray" (uid 1000, group users = 100). By number:
# the kubelet can only verify runAsNonRoot for a numeric USER.
USER 1000:100
WORKDIR /home/ray
