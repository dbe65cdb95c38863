// Command labelled parks goroutines under pprof labels and leaks some, then
// serves net/http/pprof so a test can read every goroutine format of one
// quiescent process.
//
// Goroutines (each kind a distinct stack):
//
//   - api: waiters on a package-level channel, under the label set
//     {handler: /api/v1, "tenant id": `a b"c}`, note: "ü\n\t"};
//   - metrics: select on two package-level channels, under
//     {handler: /metrics, "tenant id": t2, empty: ""};
//   - leak: goroutines blocked on a channel only they hold, under
//     {handler: /leak}; the goroutineleak profile confirms them;
//   - plain: waiters on a sync.WaitGroup, without labels;
//   - main waits on a package-level channel.
//
// It prints "listening on HOST:PORT" once every goroutine has started.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"runtime/pprof"
	"sync"
)

var (
	stop    = make(chan struct{})
	other   = make(chan int)
	never   sync.WaitGroup
	started sync.WaitGroup
)

func apiWaiter() {
	started.Done()
	<-stop
}

func metricsWaiter() {
	started.Done()
	select {
	case <-stop:
	case <-other:
	}
}

func leaker() {
	ch := make(chan int) // only this goroutine can reach it: a leak
	started.Done()
	<-ch
}

func plainWaiter() {
	started.Done()
	never.Wait()
}

func spawn(n int, f func()) {
	for i := 0; i < n; i++ {
		started.Add(1)
		go f()
	}
}

func main() {
	api := flag.Int("api", 30, "api waiters")
	metrics := flag.Int("metrics", 20, "metrics waiters")
	leaks := flag.Int("leaks", 15, "leaked goroutines")
	plain := flag.Int("plain", 10, "waiters without labels")
	flag.Parse()

	ctx := context.Background()
	pprof.Do(ctx, pprof.Labels("handler", "/api/v1", "tenant id", `a b"c}`, "note", "ü\n\t"),
		func(context.Context) { spawn(*api, apiWaiter) })
	pprof.Do(ctx, pprof.Labels("handler", "/metrics", "tenant id", "t2", "empty", ""),
		func(context.Context) { spawn(*metrics, metricsWaiter) })
	pprof.Do(ctx, pprof.Labels("handler", "/leak"),
		func(context.Context) { spawn(*leaks, leaker) })
	never.Add(1)
	spawn(*plain, plainWaiter)
	started.Wait()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go func() { log.Fatal(http.Serve(ln, nil)) }()
	fmt.Fprintf(os.Stdout, "listening on %s\n", ln.Addr())
	<-stop
}
