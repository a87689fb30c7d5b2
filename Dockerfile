# Ringvakt as a container: non-root, read-only root filesystem, state only in /var/lib/ringvakt.
# Not built in CI on the project's own machines (they have no container engine); see
# docs/production.md for how to run it.
#
#   docker build -t ringvakt .
#   docker run --read-only --tmpfs /tmp --cap-drop ALL --security-opt no-new-privileges \
#     -v ringvakt-data:/var/lib/ringvakt -p 8080:8080 \
#     -e RINGVAKT_PUBLIC_URL=https://ringvakt.example.com ringvakt

FROM node:20-bookworm-slim AS build
WORKDIR /opt/ringvakt
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
# The web application, built once here (npm start then finds it current and writes nothing).
RUN npm run build && npm prune --omit=dev --no-audit --no-fund

FROM node:20-bookworm-slim
RUN groupadd --system ringvakt \
 && useradd --system --gid ringvakt --home-dir /var/lib/ringvakt --shell /usr/sbin/nologin ringvakt \
 && install -d -o ringvakt -g ringvakt -m 0700 /var/lib/ringvakt
WORKDIR /opt/ringvakt
# Code owned by root: the service account can read it, never change it.
COPY --from=build /opt/ringvakt /opt/ringvakt
ENV NODE_ENV=production \
    RINGVAKT_DATA_DIR=/var/lib/ringvakt \
    RINGVAKT_HOST=0.0.0.0 \
    RINGVAKT_PORT=8080
USER ringvakt
VOLUME ["/var/lib/ringvakt"]
EXPOSE 8080
# Give `docker stop` a --time (or Kubernetes terminationGracePeriodSeconds) above the drains:
# calls in progress are followed for RINGVAKT_SHUTDOWN_CALL_DRAIN_MS (60 s by default).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s \
  CMD ["node", "-e", "fetch('http://127.0.0.1:8080/readyz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["node", "--import", "tsx/esm", "src/serve-main.ts"]
