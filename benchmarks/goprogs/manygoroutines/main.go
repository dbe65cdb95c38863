// Command manygoroutines parks a large number of goroutines on channels
// nobody sends to, from a handful of call stacks, and writes the goroutine
// profile in the formats net/http/pprof serves (debug=0, 1 and 2).
package main

import (
	"flag"
	"log"
	"os"
	"runtime/pprof"
	"time"
)

var block = make(chan struct{})

//go:noinline
func waitTicker(d time.Duration) {
	t := time.NewTicker(d)
	t.Stop()
	for range t.C {
	}
}

//go:noinline
func waitChan() { <-block }

//go:noinline
func waitSelect(c chan int) {
	select {
	case <-c:
	case <-block:
	}
}

//go:noinline
func nested(depth int) {
	if depth == 0 {
		waitChan()
		return
	}
	nested(depth - 1)
}

func write(name string, debug int) {
	f, err := os.Create(name)
	if err != nil {
		log.Fatal(err)
	}
	if err := pprof.Lookup("goroutine").WriteTo(f, debug); err != nil {
		log.Fatal(err)
	}
	if err := f.Close(); err != nil {
		log.Fatal(err)
	}
}

func main() {
	n := flag.Int("n", 100000, "goroutines to park")
	prefix := flag.String("o", "goroutine", "output prefix: PREFIX.pb.gz, PREFIX.debug1.txt, PREFIX.debug2.txt")
	flag.Parse()
	started := make(chan struct{}, 1024)
	for i := 0; i < *n; i++ {
		i := i
		go func() {
			started <- struct{}{}
			switch i % 4 {
			case 0:
				waitTicker(time.Hour)
			case 1:
				waitChan()
			case 2:
				waitSelect(make(chan int))
			default:
				nested(i % 7)
			}
		}()
		<-started
	}
	time.Sleep(100 * time.Millisecond) // let the last ones park
	write(*prefix+".pb.gz", 0)
	write(*prefix+".debug1.txt", 1)
	write(*prefix+".debug2.txt", 2)
}
