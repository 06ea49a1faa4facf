# pystrib base image for CPU hosts: Debian 12, Python 3, Open MPI, mpi4py.
# It matches the test bed's base (integration/base-image.sh builds the same
# package set with mmdebstrap, without network access to a registry).
#   docker build -t REGISTRY/pystrib/base:bookworm -f cpu.Dockerfile .
#   docker push REGISTRY/pystrib/base:bookworm
# then set [image] base = REGISTRY/pystrib/base:bookworm in the config.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 openmpi-bin python3-mpi4py \
 && rm -rf /var/lib/apt/lists/*
# Open MPI refuses to run as root without these; containers often are root.
ENV OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 PYTHONUNBUFFERED=1
CMD ["python3"]
