# Static, non-root images: reversald alone (the default, production target), and the QFPay
# sandbox in an image of its own, so a production image never ships a fake gateway.
#   docker build -t reversald .                                 (ENTRYPOINT reversald run)
#   docker build --target sandbox -t qfpay-sandbox .           (ENTRYPOINT qfpay-sandbox)
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
# ./cmd/... builds every command there is (reversald, qfpay-sandbox, pos-producer); healthprobe is the
# healthcheck for images without a shell.
RUN mkdir -p /out \
 && go build -ldflags="-s -w -X main.version=${VERSION}" -o /out/ ./cmd/... ./build/healthprobe \
 && ls -l /out

# distroless/static: CA certificates, /etc/passwd with nonroot (65532), tzdata; no shell.
FROM gcr.io/distroless/static-debian12:nonroot AS sandbox
COPY --from=build /out/qfpay-sandbox /out/healthprobe /usr/local/bin/
USER 65532:65532
# 8089: the sandbox's API and admin endpoints.
EXPOSE 8089
ENTRYPOINT ["/usr/local/bin/qfpay-sandbox"]

# The POS producer of docker-compose.yml (demo only: it seeds the sandbox and emits events).
FROM gcr.io/distroless/static-debian12:nonroot AS pos-producer
COPY --from=build /out/pos-producer /usr/local/bin/
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/pos-producer"]

# The production image, last so that a plain `docker build` makes it: reversald and its
# healthcheck, nothing else.
FROM gcr.io/distroless/static-debian12:nonroot AS reversald
COPY --from=build /out/reversald /out/healthprobe /usr/local/bin/
USER 65532:65532
# 9090: /healthz, /readyz, /metrics.
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/reversald"]
CMD ["run"]
