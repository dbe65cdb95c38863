// omserver serves client_golang metrics with OpenMetrics negotiation turned on.
//
// The Debian prometheus, alertmanager and pushgateway binaries only ever
// answer in text format 0.0.4, so this small program is how the tests get an
// OpenMetrics page (and the same page as text, and gzip-encoded) from a real
// Go process: promhttp chooses the format from the Accept header exactly as
// any client_golang service with EnableOpenMetrics does.
//
//	omserver -listen 127.0.0.1:0 -urls 300
//
// prints "listening on HOST:PORT" and serves /metrics with the Go and process
// collectors, an HTTP counter and histogram (with exemplars), an RPC summary,
// and a summary whose start_point label holds -urls distinct request URLs.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	urls := flag.Int("urls", 300, "distinct start_point values in the exploding summary")
	flag.Parse()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector())
	reg.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "omserver_http_requests_total", Help: "HTTP requests by handler, method and code.",
	}, []string{"handler", "method", "code"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "omserver_http_request_duration_seconds", Help: "HTTP request latency.",
		Buckets: prometheus.DefBuckets,
	}, []string{"handler", "method"})
	rpc := prometheus.NewSummaryVec(prometheus.SummaryOpts{
		Name: "omserver_rpc_duration_seconds", Help: "RPC latency.",
		Objectives: map[float64]float64{0.5: 0.05, 0.9: 0.01, 0.99: 0.001},
	}, []string{"service"})
	latency := prometheus.NewSummaryVec(prometheus.SummaryOpts{
		Name: "omserver_api_request_latency_seconds", Help: "Latency by start point (the label explosion).",
		Objectives: map[float64]float64{0.5: 0.05, 0.9: 0.01, 0.99: 0.001},
	}, []string{"start_point"})
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "omserver_build_info", Help: "Build information.",
	}, []string{"version", "revision"})
	reg.MustRegister(requests, duration, rpc, latency, build)

	build.WithLabelValues("1.0.0", "abc123").Set(1)
	handlers := []string{"/api/v1/users", "/api/v1/orders", "/api/v1/items", "/metrics"}
	methods := []string{"GET", "POST"}
	codes := []string{"200", "404", "500"}
	for i, h := range handlers {
		for j, m := range methods {
			for k, c := range codes {
				requests.WithLabelValues(h, m, c).Add(float64(1 + i*100 + j*10 + k))
			}
			obs := duration.WithLabelValues(h, m).(prometheus.ExemplarObserver)
			for n := 0; n < 20; n++ {
				obs.ObserveWithExemplar(float64(n)*0.01*float64(i+1), prometheus.Labels{"trace_id": fmt.Sprintf("%016x", i*1000+n)})
			}
		}
	}
	for s := 0; s < 5; s++ {
		for n := 0; n < 50; n++ {
			rpc.WithLabelValues(fmt.Sprintf("svc%d", s)).Observe(float64(n) * 0.001)
		}
	}
	for u := 0; u < *urls; u++ {
		latency.WithLabelValues(fmt.Sprintf("/api/v1/users/%d/orders/%05d", 10000+u, u*7919%100000)).Observe(float64(u%100) * 0.001)
	}

	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{EnableOpenMetrics: true}))
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("listening on %s\n", ln.Addr())
	log.Fatal(http.Serve(ln, nil))
}
