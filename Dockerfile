# Static, non-root images of reversald and the QFPay sandbox.
#   docker build -t reversald .          (ENTRYPOINT reversald run)
#   docker run --entrypoint /usr/local/bin/qfpay-sandbox reversald -addr 0.0.0.0:8089
# Plain Dockerfile syntax (no BuildKit-only features) so that every builder takes it.

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-trimpath
# Modules first: this layer is reused while go.mod/go.sum do not change.
COPY go.mod go.sum ./
RUN go mod download && go mod verify
COPY . .
ARG VERSION=dev
# ./cmd/... builds every command there is (reversald, qfpay-sandbox); healthprobe is the
# healthcheck for images without a shell.
RUN mkdir -p /out \
 && go build -ldflags="-s -w -X main.version=${VERSION}" -o /out/ ./cmd/... ./build/healthprobe \
 && ls -l /out

# distroless/static: CA certificates, /etc/passwd with nonroot (65532), tzdata; no shell.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
USER 65532:65532
# 9090: /healthz, /readyz, /metrics of reversald; 8089: the sandbox.
EXPOSE 9090 8089
ENTRYPOINT ["/usr/local/bin/reversald"]
CMD ["run"]
