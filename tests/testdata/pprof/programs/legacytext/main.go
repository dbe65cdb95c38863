// Command legacytext allocates, contends on a mutex and blocks on channels in
// known places, then writes its heap, mutex and block profiles both as Go's
// legacy text (debug=1) and as profile.proto (debug=0), one right after the
// other, so a test can compare the two forms of the same data and
// go tool pprof's reading of the text.
//
//	legacytext -o DIR   writes DIR/{heap,mutex,block}.{txt,pb.gz}
package main

import (
	"flag"
	"log"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"time"
)

var (
	keep  [][]byte
	index = map[string][]string{}
	mu    sync.Mutex
)

//go:noinline
func small(n int) []byte { return make([]byte, n) }

// inlined into its caller when inlining is on.
func page() []byte { return make([]byte, 3000) }

//go:noinline
func grow(i int) {
	k := strings.Repeat("k", i%50)
	index[k] = append(index[k], k)
}

//go:noinline
func contend(wg *sync.WaitGroup) {
	defer wg.Done()
	for i := 0; i < 200; i++ {
		mu.Lock()
		time.Sleep(10 * time.Microsecond)
		mu.Unlock()
	}
}

//go:noinline
func handoff(n int) {
	ch := make(chan int)
	go func() {
		for i := 0; i < n; i++ {
			time.Sleep(20 * time.Microsecond)
			ch <- i
		}
	}()
	for i := 0; i < n; i++ {
		<-ch
	}
}

func write(dir, name string, debug int, ext string) {
	f, err := os.Create(filepath.Join(dir, name+ext))
	if err != nil {
		log.Fatal(err)
	}
	if err := pprof.Lookup(name).WriteTo(f, debug); err != nil {
		log.Fatal(err)
	}
	if err := f.Close(); err != nil {
		log.Fatal(err)
	}
}

func main() {
	dir := flag.String("o", ".", "output directory")
	flag.Parse()
	runtime.MemProfileRate = 4096
	runtime.SetMutexProfileFraction(1)
	runtime.SetBlockProfileRate(1)

	for i := 0; i < 3000; i++ {
		keep = append(keep, small(100+i))
		keep = append(keep, page())
		grow(i)
	}
	done := make(chan bool)
	go func() { keep = append(keep, small(1<<20)); done <- true }()
	<-done
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go contend(&wg)
	}
	wg.Wait()
	handoff(100)

	runtime.GC()
	// The heap profile shows the last completed GC cycle; both forms are
	// written within this one, with nothing else allocating meanwhile.
	for _, name := range []string{"heap", "mutex", "block"} {
		write(*dir, name, 1, ".txt")
		write(*dir, name, 0, ".pb.gz")
	}
}
