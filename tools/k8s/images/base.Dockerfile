# The base the real node's images are built on when no registry is reachable: a Debian bookworm
# minbase root filesystem (mmdebstrap, rootfs.tar in the build context) with what the rayproject/ray
# images give Ray's pods: user ray (1000, group users = 100) with /home/ray, Python 3.11 in a
# virtualenv on PATH (Debian's system Python refuses pip installs), wget and bash for KubeRay's
# probes. Built by tools/k8s/images/build.sh; the project's Dockerfile takes it as BASE_IMAGE.
FROM scratch
ADD rootfs.tar /
RUN echo 'ray:x:1000:100:ray:/home/ray:/bin/bash' >>/etc/passwd \
    && echo 'ray:*:20000:0:99999:7:::' >>/etc/shadow \
    && mkdir -p /home/ray \
    && python3 -m venv /home/ray/venv \
    && chown -R 1000:100 /home/ray
ENV HOME=/home/ray PATH=/home/ray/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
USER 1000:100
WORKDIR /home/ray
