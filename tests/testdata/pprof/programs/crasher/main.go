// Command crasher starts thousands of goroutines parked in different ways and
// then crashes, so a test can read the dump Go prints on stderr.
//
// With -mode=panic main panics once every goroutine has started; with
// -mode=wait it prints "ready" on stdout and waits for a signal (SIGQUIT makes
// the runtime dump every goroutine and exit). Run it with GOTRACEBACK=all or
// system to get every goroutine.
//
// Goroutines (-n is the total, split across the kinds):
//
//   - receivers: parked on a package-level channel;
//   - selecters: select on two package-level channels;
//   - lockers: blocked on a locked sync.Mutex;
//   - sleepers: time.Sleep for an hour;
//   - wgwaiters: sync.WaitGroup.Wait;
//   - one goroutine locked to its OS thread, parked on a channel;
//   - one goroutine 300 calls deep, parked on a channel (the dump elides
//     its middle frames);
//   - one goroutine started through a method value (a compiler wrapper).
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"sync"
	"time"
)

var (
	stop    = make(chan struct{})
	other   = make(chan int)
	mu      sync.Mutex
	never   sync.WaitGroup
	started sync.WaitGroup
)

func receiver() {
	started.Done()
	<-stop
}

func selecter() {
	started.Done()
	select {
	case <-stop:
	case <-other:
	}
}

func locker() {
	started.Done()
	mu.Lock()
}

func sleeper() {
	started.Done()
	time.Sleep(time.Hour)
}

func wgWaiter() {
	started.Done()
	never.Wait()
}

func lockedToThread() {
	runtime.LockOSThread()
	started.Done()
	<-stop
}

//go:noinline
func deep(n int) int {
	if n == 0 {
		started.Done()
		<-stop
		return 0
	}
	return deep(n-1) + 1
}

type worker struct{ id int }

func (w worker) run() {
	started.Done()
	<-stop
}

func spawn(n int, f func()) {
	for i := 0; i < n; i++ {
		started.Add(1)
		go f()
	}
}

func main() {
	n := flag.Int("n", 3000, "goroutines to start")
	mode := flag.String("mode", "panic", "panic or wait")
	flag.Parse()

	mu.Lock()
	never.Add(1)
	per := *n / 5
	spawn(per, receiver)
	spawn(per, selecter)
	spawn(per, locker)
	spawn(per, sleeper)
	spawn(*n-4*per, wgWaiter)
	spawn(1, lockedToThread)
	started.Add(1)
	go deep(300)
	w := worker{7}
	started.Add(1)
	go w.run()
	started.Wait()

	if *mode == "panic" {
		panic(fmt.Sprintf("crasher: %d goroutines started", *n))
	}
	fmt.Fprintln(os.Stdout, "ready")
	<-stop
}
