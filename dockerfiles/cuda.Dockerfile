# pystrib base image for NVIDIA GPU hosts: CUDA runtime, Python 3, PyTorch,
# Open MPI and mpi4py. Needs the NVIDIA container toolkit on the GPU host
# (pystrib passes the GPUs to docker run when [remote] gpus is set).
#   docker build -t REGISTRY/pystrib/cuda:12 -f cuda.Dockerfile .
#   docker push REGISTRY/pystrib/cuda:12
# then set [image] base = REGISTRY/pystrib/cuda:12 in the config.
# Behind a package mirror: --build-arg PIP_INDEX_URL=... (pip reads it).
# Match the CUDA tag to the hosts' driver; PyTorch's wheels bring their own
# CUDA libraries, the base image the driver-facing runtime.
FROM nvidia/cuda:12.1.1-cudnn8-runtime-ubuntu22.04
ARG PIP_INDEX_URL
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3 python3-pip openmpi-bin python3-mpi4py \
 && rm -rf /var/lib/apt/lists/* \
 && pip3 install --no-cache-dir torch
ENV OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 PYTHONUNBUFFERED=1
CMD ["python3"]
