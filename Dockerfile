# The reference image: one static binary on an empty base. CI builds the same image without a
# container engine: .ci/image.sh (one platform, a tarball) and .ci/release.sh (the release: a
# linux/amd64 + linux/arm64 OCI index, signed). The same stamps as the release:
#   docker buildx build --platform linux/amd64,linux/arm64 \
#     --build-arg VERSION=$(cat VERSION) --build-arg COMMIT=$(git rev-parse HEAD) \
#     --build-arg DATE=$(date -u -d @$(git log -1 --format=%ct) +%Y-%m-%dT%H:%M:%SZ) -t certguard .
FROM --platform=$BUILDPLATFORM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG TARGETOS=linux
ARG TARGETARCH
ARG VERSION=dev
ARG COMMIT=
ARG DATE=
RUN CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} go build -trimpath -buildvcs=false \
    -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT} -X main.date=${DATE}" -o /certguard .

FROM scratch
COPY --from=build /certguard /certguard
# The k0s pki is root-owned (vcluster runs its containers as root): the init container must be too.
USER 0:0
ENTRYPOINT ["/certguard"]
CMD ["repair"]
