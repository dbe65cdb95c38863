// nhserver serves client_golang metrics of every type, native histograms
// included, in whichever exposition format the Accept header asks for.
//
// It is how the tests get a protobuf page from a real Go process: promhttp
// answers Prometheus' protobuf-first Accept header (sent when native
// histograms are on) with delimited MetricFamily messages, and the text
// Accept header with text 0.0.4, from the same registry.
//
//	nhserver -listen 127.0.0.1:0 -users 20
//
// prints "listening on HOST:PORT" and serves /metrics with: the Go
// collector; a counter, gauge and untyped vector; a summary with quantiles
// and one without; a classic histogram whose bounds test how le values are
// spelt; a native histogram (observations above, below and at zero), an
// empty native histogram, an empty one with a zero threshold of 0, and one
// histogram with both classic and native buckets (with exemplars). -users
// multiplies the children of the counter and both kinds of latency
// histogram, for pages of any size.
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
	users := flag.Int("users", 20, "distinct user label values on the vectors that explode")
	flag.Parse()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector())

	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "nh_requests_total", Help: "Requests by user and code.",
	}, []string{"user", "code"})
	inflight := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "nh_inflight_requests", Help: "Requests in flight by handler.",
	}, []string{"handler"})
	queue := prometheus.NewUntypedFunc(prometheus.UntypedOpts{
		Name: "nh_queue_length", Help: "An untyped value.",
	}, func() float64 { return 7 })
	rpc := prometheus.NewSummaryVec(prometheus.SummaryOpts{
		Name: "nh_rpc_duration_seconds", Help: "RPC latency with quantiles.",
		Objectives: map[float64]float64{0.5: 0.05, 0.9: 0.01, 0.99: 0.001},
	}, []string{"service"})
	plain := prometheus.NewSummaryVec(prometheus.SummaryOpts{
		Name: "nh_payload_bytes", Help: "A summary without quantiles.",
	}, []string{"direction"})
	classic := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "nh_classic_duration_seconds", Help: "A classic histogram per user.",
		Buckets: []float64{2.5e-05, 0.0001, 0.005, 0.25, 1, 2, 60, 123456, 1e6, 1.5e7},
	}, []string{"user"})
	native := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "nh_native_duration_seconds", Help: "A native histogram per user.",
		NativeHistogramBucketFactor: 1.1,
	}, []string{"user"})
	emptyNative := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "nh_native_empty_seconds", Help: "A native histogram without observations.",
		NativeHistogramBucketFactor: 1.1,
	})
	zeroNative := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "nh_native_empty_zero_threshold_seconds", Help: "Empty, zero threshold 0.",
		NativeHistogramBucketFactor:  1.1,
		NativeHistogramZeroThreshold: prometheus.NativeHistogramZeroThresholdZero,
	})
	both := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "nh_both_duration_seconds", Help: "Classic and native buckets at once.",
		Buckets:                     []float64{0.01, 0.1, 1, 10},
		NativeHistogramBucketFactor: 1.1,
	}, []string{"method"})
	reg.MustRegister(requests, inflight, queue, rpc, plain, classic, native, emptyNative, zeroNative, both)

	codes := []string{"200", "404", "500"}
	for u := 0; u < *users; u++ {
		user := fmt.Sprintf("user-%04d", u)
		for c, code := range codes {
			requests.WithLabelValues(user, code).Add(float64(1 + u + c))
		}
		for n := 0; n < 10; n++ {
			v := float64(n*(u+1)) * 0.003
			classic.WithLabelValues(user).Observe(v)
			native.WithLabelValues(user).Observe(v)
		}
		native.WithLabelValues(user).Observe(-0.5) // a negative bucket
		native.WithLabelValues(user).Observe(0)    // the zero bucket
	}
	for i, h := range []string{"/", "/api", "/metrics"} {
		inflight.WithLabelValues(h).Set(float64(i))
	}
	for s := 0; s < 3; s++ {
		for n := 0; n < 50; n++ {
			rpc.WithLabelValues(fmt.Sprintf("svc%d", s)).Observe(float64(n) * 0.001)
		}
	}
	plain.WithLabelValues("in").Observe(512)
	plain.WithLabelValues("out").Observe(2048)
	for i, m := range []string{"GET", "POST"} {
		obs := both.WithLabelValues(m).(prometheus.ExemplarObserver)
		for n := 0; n < 20; n++ {
			obs.ObserveWithExemplar(float64(n*(i+1))*0.05, prometheus.Labels{"trace_id": fmt.Sprintf("%016x", i*100+n)})
		}
	}

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("listening on %s\n", ln.Addr())
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	log.Fatal(http.Serve(ln, mux))
}
