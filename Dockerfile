# The one image of recycle-pipeline: every role runs from it, chosen by RECYCLE_ROLE.
#   docker build -t recycle-workers:0.1.0 .
#   docker run --rm -e RECYCLE_ROLE=analyzer recycle-workers:0.1.0
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A fixed numeric id, so Kubernetes can check runAsNonRoot against the image.
RUN groupadd --system --gid 10001 recycle \
    && useradd --system --uid 10001 --gid recycle --home-dir /tmp --no-create-home \
        --shell /usr/sbin/nologin recycle

WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install . && rm -rf /src

# The root file system is read-only in the cluster; /tmp is the pod's writable scratch space,
# so the worker starts there.
WORKDIR /tmp
USER 10001:10001

ENTRYPOINT ["recycle-workers"]
CMD ["run"]
