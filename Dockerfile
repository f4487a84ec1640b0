# The reference image: one static binary on an empty base. (CI builds the same image without a
# container engine: see .ci/image.sh.)
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /certguard .

FROM scratch
COPY --from=build /certguard /certguard
# The k0s pki is root-owned (vcluster runs its containers as root): the init container must be too.
USER 0:0
ENTRYPOINT ["/certguard"]
CMD ["repair"]
