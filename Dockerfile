# hpt images, built from this repository:
#   docker build --target server -t hpt:server .
#   docker build --target agent  -t hpt:agent  .
# One static binary; the server image runs it as an unprivileged user with
# nothing else in the image, the agent image runs it as root on Debian
# because provisioning writes files, installs packages and manages users.

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/hpt ./cmd/hpt \
	&& mkdir -p /out/data

# Server node: API, agents and Raft on 7400/tcp, gossip on 7401/tcp+udp,
# metrics and /healthz on 7480 when started with --metrics :7480.
FROM gcr.io/distroless/static-debian12:nonroot AS server
COPY --from=build /out/hpt /usr/local/bin/hpt
# A new volume mounted on /data takes this directory's owner.
COPY --from=build --chown=65532:65532 /out/data /data
USER nonroot:nonroot
VOLUME ["/data"]
EXPOSE 7400/tcp 7401/tcp 7401/udp 7480/tcp
HEALTHCHECK --interval=5s --timeout=3s --retries=12 CMD ["/usr/local/bin/hpt", "healthcheck", "http://127.0.0.1:7480/healthz"]
ENTRYPOINT ["/usr/local/bin/hpt"]
CMD ["server", "--keystore", "/keys/cluster.keystore.db", "--data-dir", "/data", "--metrics", ":7480"]

# Agent: the provisioning engine needs a real userland (apt, useradd,
# visudo, git) and root. Direct provisioning on 6632/tcp, gossip on 7402.
FROM debian:bookworm-slim AS agent
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
		ca-certificates git sudo \
	&& rm -rf /var/lib/apt/lists/*
COPY --from=build /out/hpt /usr/local/bin/hpt
USER root
VOLUME ["/state"]
EXPOSE 6632/tcp 7402/tcp 7402/udp
ENTRYPOINT ["/usr/local/bin/hpt"]
CMD ["serve", "--keystore", "/targets/target.keystore.db", "--journal", "/state/journal.db"]
