# A pystrib cell image as a Docker build context, written by `pystrib build`
# from this template (placeholders in double braces are filled in), with the
# directories project/ and cell/ beside it. Build and run it with:
#   docker build -t NAME - < pystrib-context.tar && docker run --rm NAME
# It holds what `pystrib push` assembles without Docker: the base image, the
# project files (slow-changing), then the cell, the rank bootstrap and the
# inputs (fast-changing). For N ranks: mpirun -np N inside the container.
FROM {{BASE}}
{{COPY_PROJECT}}
COPY cell/ /pystrib/cell/
WORKDIR {{WORKDIR}}
{{ENV}}
{{LABELS}}
CMD ["python3", "/pystrib/cell/bootstrap.py", "/pystrib/cell/user_code.py"]
