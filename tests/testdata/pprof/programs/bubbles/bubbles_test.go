// Package bubbles leaves goroutines durably blocked inside a synctest bubble,
// so the test binary crashes with Go's dump of them ("[chan receive
// (durable), synctest bubble N]"). Built with go test -c; Go 1.25+.
package bubbles

import (
	"sync"
	"testing"
	"testing/synctest"
)

func TestBubble(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ch := make(chan int)
		for i := 0; i < 5; i++ {
			go func() { <-ch }()
		}
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { wg.Wait() }()
		synctest.Wait()
	})
}
