// Command heapstacks writes a heap profile with a very large number of
// distinct allocation stacks, for benchmarking heap-profile analysis.
//
// Every allocation is recorded (MemProfileRate=1) and reached through its own
// path of left/right calls, so 2^depth paths give 2^depth samples.
package main

import (
	"flag"
	"log"
	"os"
	"runtime"
	"runtime/pprof"
)

var keep [][]byte

//go:noinline
func left(path, depth int) {
	if depth == 0 {
		alloc(path)
		return
	}
	if path>>uint(depth-1)&1 == 0 {
		left(path, depth-1)
	} else {
		right(path, depth-1)
	}
}

//go:noinline
func right(path, depth int) {
	if depth == 0 {
		alloc(path)
		return
	}
	if path>>uint(depth-1)&1 == 0 {
		left(path, depth-1)
	} else {
		right(path, depth-1)
	}
}

//go:noinline
func alloc(path int) {
	keep = append(keep, make([]byte, 16+path%64))
}

func main() {
	depth := flag.Int("depth", 17, "call depth: 2^depth distinct stacks")
	out := flag.String("o", "heap.pb.gz", "where to write the heap profile")
	flag.Parse()
	runtime.MemProfileRate = 1
	for p := 0; p < 1<<uint(*depth); p++ {
		left(p, *depth)
	}
	runtime.GC()
	runtime.GC()
	f, err := os.Create(*out)
	if err != nil {
		log.Fatal(err)
	}
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		log.Fatal(err)
	}
	if err := f.Close(); err != nil {
		log.Fatal(err)
	}
	runtime.KeepAlive(keep)
}
