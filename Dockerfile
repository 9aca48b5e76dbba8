# ldap-gateway container image: multi-stage (the build toolchain stays out of the runtime image),
# runs as the unprivileged `node` user, with a health check on /healthz.
#   docker build -t ldap-gateway .
#   docker run -v /etc/ldap-gateway:/etc/ldap-gateway:ro -v ldap-gateway-data:/var/lib/ldap-gateway \
#     -p 389:1389 -p 636:1636 -p 127.0.0.1:9090:9090 ldap-gateway
# The config must listen on 0.0.0.0 inside the container and keep http.listen on port 9090 for the
# health check; put provisioning.outbox under /var/lib/ldap-gateway (a volume: the outbox must persist).
FROM node:20-bookworm-slim AS build
WORKDIR /app
# better-sqlite3 (the outbox) compiles a native module
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build && npm prune --omit=dev

FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY bin ./bin
COPY config ./config
RUN mkdir -p /var/lib/ldap-gateway /etc/ldap-gateway && chown node:node /var/lib/ldap-gateway
USER node
VOLUME ["/var/lib/ldap-gateway"]
EXPOSE 1389 1636 9090
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:9090/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
STOPSIGNAL SIGTERM
# 64 MiB semi-spaces (young generation): fewer, shorter scavenge pauses under load (README: Benchmarks)
ENTRYPOINT ["node", "--max-semi-space-size=64", "bin/ldap-gateway.js"]
CMD ["--config", "/etc/ldap-gateway/config.yaml"]
