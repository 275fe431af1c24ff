# rayscale image for KubeRay: the official Ray image (same Ray and Python as the pinned
# dependency) plus rayscale and its pinned dependencies.
#
#   docker build -t rayscale:0.1.0 .
#   kind load docker-image rayscale:0.1.0      # for a kind cluster
ARG RAY_VERSION=2.60.0
ARG PYTHON_TAG=py311

# Build stage: turn the source tree into a wheel; nothing from here but the wheel is kept.
FROM rayproject/ray:${RAY_VERSION}-${PYTHON_TAG}-cpu AS build
WORKDIR /tmp/rayscale
COPY --chown=ray:users pyproject.toml README.md ./
COPY --chown=ray:users src ./src
RUN pip wheel --no-deps --no-cache-dir --wheel-dir /tmp/wheels .

# Final image: Ray's own image, rayscale installed against constraints.txt (exact versions).
FROM rayproject/ray:${RAY_VERSION}-${PYTHON_TAG}-cpu
COPY --from=build --chown=ray:users /tmp/wheels /tmp/wheels
COPY --chown=ray:users constraints.txt /tmp/constraints.txt
RUN pip install --no-cache-dir --constraint /tmp/constraints.txt /tmp/wheels/rayscale-*.whl "kubernetes" \
    && rm -rf /tmp/wheels /tmp/constraints.txt \
    && rayscale --version
# The rayproject/ray images run as the non-root user "ray" (uid 1000, group users).
USER ray
WORKDIR /home/ray
