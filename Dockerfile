# syntax=docker/dockerfile:1
# Build: a wheel of the package with only its runtime dependencies.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway_apiserver ./gateway_apiserver
RUN pip install --no-cache-dir --upgrade pip \
 && pip wheel --no-cache-dir --wheel-dir /wheels .

# Run: the wheels installed into a clean slim image, as a non-root user.
FROM python:3.11-slim
RUN useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin gateway \
 && install -d -o 10001 -g 10001 /var/lib/gateway-apiserver
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
 && ln -s "$(command -v gateway-apiserver)" /apiserver
# /apiserver: the reference image's command, for manifests that name it (KubeVela's chart passes `apiserver` first).
# A working directory the user may write: without TLS flags (cluster-gateway's own chart passes none)
# the self-signed certificate goes under it, in apiserver.local.config/, as the reference's does.
WORKDIR /var/lib/gateway-apiserver
USER 10001:10001
EXPOSE 9443
ENTRYPOINT ["gateway-apiserver"]
