// Command demo-service is a small Go HTTP service that leaks memory on purpose,
// the three ways cardguard is built to catch, each switchable by a flag:
//
//   - label explosion: a summary whose start_point label holds the raw request
//     path, so every new URL creates a new series with its own quantile streams
//     (github.com/beorn7/perks/quantile.newStream);
//   - goroutine leak: subscribe starts a poller that ranges over a ticker
//     channel; closing the subscription stops the ticker, but Stop never closes
//     the channel, so the poller stays parked on it forever and nothing else
//     can reach that channel (the goroutineleak profile confirms it);
//   - unbounded cache: rendered pages are kept in a map that only grows.
//
// Synthetic traffic runs inside the process at a steady rate, so
// demo_http_requests_total grows linearly while the heap and goroutine count
// climb. It serves /metrics, net/http/pprof under /debug/pprof/ and a small
// /api/ handler. On start it prints "listening on HOST:PORT" on stdout.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	_ "net/http/pprof"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

var (
	requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "demo_http_requests_total",
		Help: "Requests served by the demo API, synthetic traffic included.",
	}, []string{"method", "code"})

	latency = prometheus.NewSummaryVec(prometheus.SummaryOpts{
		Name:       "demo_http_request_duration_seconds",
		Help:       "Time to serve a demo API request, by start point.",
		Objectives: map[float64]float64{0.5: 0.05, 0.9: 0.01, 0.99: 0.001},
	}, []string{"method", "start_point"})

	subscriptionsOpen = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "demo_subscriptions_open",
		Help: "Subscriptions the service believes are open.",
	})

	subscriptionsTotal = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "demo_subscriptions_total",
		Help: "Subscriptions opened since start.",
	})

	cacheEntries = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "demo_page_cache_entries",
		Help: "Entries in the rendered-page cache.",
	})
)

// config holds the command-line switches.
type config struct {
	listen          string
	healthy         bool
	leakLabels      bool
	labelRate       float64
	leakGoroutines  bool
	goroutineRate   float64
	tickInterval    time.Duration
	leakCache       bool
	cacheRate       float64
	cacheEntryBytes int
	requestRate     float64
	memProfileRate  int
	leakFor         time.Duration
	steady          bool
	labelBound      int
	goroutineBound  int
	cacheBound      int
}

func parseFlags() config {
	var c config
	flag.StringVar(&c.listen, "listen", "127.0.0.1:6060", "address to listen on (port 0 picks a free port)")
	flag.BoolVar(&c.healthy, "healthy", false, "turn every leak off")
	flag.BoolVar(&c.leakLabels, "leak-labels", true, "record the raw request path in the start_point label")
	flag.Float64Var(&c.labelRate, "label-rate", 20, "requests per second to new, never-seen URLs")
	flag.BoolVar(&c.leakGoroutines, "leak-goroutines", true, "leak one poller goroutine per closed subscription")
	flag.Float64Var(&c.goroutineRate, "goroutine-rate", 5, "subscriptions opened (and closed) per second")
	flag.DurationVar(&c.tickInterval, "tick-interval", 20*time.Millisecond, "poll interval of a subscription")
	flag.BoolVar(&c.leakCache, "leak-cache", true, "keep every rendered page in a map that never evicts")
	flag.Float64Var(&c.cacheRate, "cache-rate", 50, "pages rendered (and cached) per second")
	flag.IntVar(&c.cacheEntryBytes, "cache-entry-bytes", 4096, "size of one rendered page")
	flag.Float64Var(&c.requestRate, "request-rate", 50, "steady requests per second to known routes")
	flag.IntVar(&c.memProfileRate, "mem-profile-rate", 0, "runtime.MemProfileRate (0 keeps Go's default)")
	flag.DurationVar(&c.leakFor, "leak-for", 0, "stop leaking after this long, keeping what leaked (0: never stop)")
	flag.BoolVar(&c.steady, "steady", false, "each leak grows to its bound (-label-bound, -goroutine-bound, -cache-bound) and then holds")
	flag.IntVar(&c.labelBound, "label-bound", 12000, "with -steady: distinct raw paths in start_point, then they repeat")
	flag.IntVar(&c.goroutineBound, "goroutine-bound", 3000, "with -steady: leaked pollers, then no more subscriptions")
	flag.IntVar(&c.cacheBound, "cache-bound", 30000, "with -steady: cached pages, then entries are overwritten")
	flag.Parse()
	if c.healthy {
		c.leakLabels, c.leakGoroutines, c.leakCache = false, false, false
	}
	if !c.steady {
		c.labelBound, c.goroutineBound, c.cacheBound = 0, 0, 0
	}
	return c
}

// bounded maps the i-th event to one of bound slots (0: unbounded, i itself).
func bounded(i, bound int) int {
	if bound > 0 {
		return i % bound
	}
	return i
}

// routeOf maps a concrete path to its route template, what a careful service
// would put in a label.
func routeOf(path string) string {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	for i, p := range parts {
		if p != "" && strings.IndexFunc(p, func(r rune) bool { return r >= '0' && r <= '9' }) >= 0 {
			parts[i] = ":id"
		}
	}
	return "/" + strings.Join(parts, "/")
}

// apiHandler serves /api/. With rawPaths set it labels latency by the
// request's own path: the label-explosion bug.
type apiHandler struct {
	rawPaths bool
}

func (h apiHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	fmt.Fprintf(w, "ok %s\n", r.URL.Path)
	point := routeOf(r.URL.Path)
	if h.rawPaths {
		point = r.URL.Path
	}
	latency.WithLabelValues(r.Method, point).Observe(time.Since(start).Seconds())
	requests.WithLabelValues(r.Method, "200").Inc()
}

// every calls f at rate per second, for the duration d (0: until the
// process exits).
func every(rate float64, d time.Duration, f func(i int)) {
	if rate <= 0 {
		return
	}
	go func() {
		t := time.NewTicker(time.Duration(float64(time.Second) / rate))
		defer t.Stop()
		var stop <-chan time.Time
		if d > 0 {
			stop = time.After(d)
		}
		for i := 0; ; i++ {
			select {
			case <-t.C:
				f(i)
			case <-stop:
				return
			}
		}
	}()
}

// --- goroutine leak -------------------------------------------------------

type subscription struct {
	client string
	ticker *time.Ticker
	polls  int
}

// subscribe starts polling updates for a client until the subscription is
// closed. The poller ranges over the ticker channel, which Stop never closes.
func subscribe(client string, interval time.Duration) *subscription {
	s := &subscription{client: client, ticker: time.NewTicker(interval)}
	subscriptionsOpen.Inc()
	subscriptionsTotal.Inc()
	go func() {
		for range s.ticker.C {
			s.polls++
		}
	}()
	return s
}

// close ends the subscription. The bug: it stops the ticker but leaves the
// poller waiting on a channel that will never receive again.
func (s *subscription) close() {
	s.ticker.Stop()
	subscriptionsOpen.Dec()
}

// --- unbounded cache ------------------------------------------------------

// Cache is a map guarded by a mutex with no eviction at all.
type Cache[K comparable, V any] struct {
	mu sync.Mutex
	m  map[K]V
}

func NewCache[K comparable, V any]() *Cache[K, V] {
	return &Cache[K, V]{m: make(map[K]V)}
}

//go:noinline
func (c *Cache[K, V]) Put(k K, v V) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m[k] = v
	return len(c.m)
}

type page struct {
	key      string
	body     []byte
	rendered time.Time
}

// newPage is small enough to be inlined into its caller, so heap profiles
// show it as an inlined frame.
func newPage(key string, body []byte) *page {
	return &page{key: key, body: body, rendered: time.Now()}
}

//go:noinline
func renderPage(key string, size int) []byte {
	return renderSection(key, 2, size)
}

// renderSection renders nested sections recursively, so heap profiles show
// one function several times on the same stack.
//
//go:noinline
func renderSection(key string, depth, size int) []byte {
	if depth > 0 {
		return renderSection(key, depth-1, size)
	}
	body := make([]byte, size)
	copy(body, key)
	return body
}

var (
	pages   = NewCache[string, *page]()
	byOrder = NewCache[int64, string]()
)

func cachePage(i int, size int) {
	key := fmt.Sprintf("/shop/orders/%d/invoice", i)
	n := pages.Put(key, newPage(key, renderPage(key, size)))
	byOrder.Put(int64(i), key)
	cacheEntries.Set(float64(n))
}

func main() {
	log.SetFlags(0)
	c := parseFlags()
	if c.memProfileRate > 0 {
		runtime.MemProfileRate = c.memProfileRate
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		requests, latency, subscriptionsOpen, subscriptionsTotal, cacheEntries,
	)
	api := apiHandler{rawPaths: c.leakLabels}
	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	http.Handle("/api/", api)

	ln, err := net.Listen("tcp", c.listen)
	if err != nil {
		log.Fatalf("demo-service: %v", err)
	}
	fmt.Fprintf(os.Stdout, "listening on %s\n", ln.Addr())

	serve := func(path string) {
		api.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", path, nil))
	}
	every(c.requestRate, 0, func(i int) { serve(fmt.Sprintf("/api/v1/users/%d/profile", i%10)) })
	if c.leakLabels {
		every(c.labelRate, c.leakFor, func(i int) {
			// Past the bound the same paths come again: the series stay, none are added.
			i = bounded(i, c.labelBound)
			serve(fmt.Sprintf("/api/v1/users/%d/orders/%x", 1000+i, uint32(i)*2654435761))
		})
	}
	if c.leakGoroutines {
		every(c.goroutineRate, c.leakFor, func(i int) {
			if c.goroutineBound > 0 && i >= c.goroutineBound {
				return // the leaked pollers stay parked; no new ones
			}
			// The pollers inherit this profiler label, as goroutines of
			// services that tag work with pprof.Do do.
			pprof.Do(context.Background(), pprof.Labels("feature", "subscriptions"), func(context.Context) {
				s := subscribe(fmt.Sprintf("client-%d", i), c.tickInterval)
				time.AfterFunc(3*c.tickInterval, s.close)
			})
		})
	}
	if c.leakCache {
		every(c.cacheRate, c.leakFor, func(i int) {
			cachePage(bounded(i, c.cacheBound), c.cacheEntryBytes)
		})
	}
	log.Fatal(http.Serve(ln, nil))
}
