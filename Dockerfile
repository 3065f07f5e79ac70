# syntax=docker/dockerfile:1
# The one image of every stage (docker-compose.yml builds it once, as
# mockstagram:local). Distroless: no shell, so container healthchecks run
# `mockstagram healthcheck`.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -o /mockstagram ./cmd/mockstagram

FROM gcr.io/distroless/static-debian12
COPY --from=build /mockstagram /mockstagram
USER nonroot
EXPOSE 8080
ENTRYPOINT ["/mockstagram"]
