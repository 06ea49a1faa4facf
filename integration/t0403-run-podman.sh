#!/usr/bin/env bash
# t0403: t0402 (run in a container) with runtime podman.
ENGINE=podman . "$(dirname "$0")/t0402-run-docker.sh"
