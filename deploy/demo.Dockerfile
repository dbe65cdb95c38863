# The leaky demo Go service (deploy/demo-service/), built the way the tests
# build it: GOPATH mode against Debian's client_golang. Build from the repository root:
#   docker build -f deploy/demo.Dockerfile -t cardguard-demo .
# Go 1.27 serves /debug/pprof/goroutineleak, so confirmed leaks show up.
FROM golang:1.27-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends golang-github-prometheus-client-golang-dev \
 && rm -rf /var/lib/apt/lists/*
ENV GOPATH=/go:/usr/share/gocode GO111MODULE=off GOFLAGS= GOTOOLCHAIN=local CGO_ENABLED=0
COPY deploy/demo-service /go/src/demo-service
RUN cd /go/src/demo-service && go build -o /demo-service .

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /demo-service /demo-service
EXPOSE 6060
ENTRYPOINT ["/demo-service", "-listen", "0.0.0.0:6060"]
