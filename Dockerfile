# rayscale image for KubeRay: the official Ray image (same Ray and Python as the pinned
# dependency) plus rayscale and its pinned dependencies.
#
#   docker build -t rayscale:0.1.0 .
#   kind load docker-image rayscale:0.1.0      # for a kind cluster
ARG RAY_VERSION=2.60.0
ARG PYTHON_TAG=py311

# Build stage: turn the source tree into a wheel; nothing from here but the wheel is kept. It runs
# as root: the legacy builder (DOCKER_BUILDKIT=0) creates WORKDIR owned by root whatever USER is,
# and setuptools writes build/ and *.egg-info into the source tree.
FROM rayproject/ray:${RAY_VERSION}-${PYTHON_TAG}-cpu AS build
USER 0
WORKDIR /tmp/rayscale
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-deps --no-cache-dir --wheel-dir /tmp/wheels .

# Final image: Ray's own image, rayscale installed against constraints.txt (exact versions).
FROM rayproject/ray:${RAY_VERSION}-${PYTHON_TAG}-cpu
COPY --from=build --chown=1000:100 /tmp/wheels /tmp/wheels
COPY --chown=1000:100 constraints.txt /tmp/constraints.txt
RUN pip install --no-cache-dir --constraint /tmp/constraints.txt /tmp/wheels/rayscale-*.whl "kubernetes" \
    && rm -rf /tmp/wheels /tmp/constraints.txt \
    && rayscale --version
# The rayproject/ray images run as the non-root user "ray" (uid 1000, group users = 100). By number:
# the kubelet can only verify runAsNonRoot for a numeric USER.
USER 1000:100
WORKDIR /home/ray
