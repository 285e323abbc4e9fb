package wsconn

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkLoopbackWriteFloor measures what the kernel alone charges for one push: a single write(2)
// of a 90-byte frame to a loopback TCP socket, the system call every delivery and every broadcast
// recipient costs whatever Herald does around it. It reports the CPU time (user + system, the whole
// process) per write next to the wall time, for two cases:
//
//   - idle: the peers are not reading, so a write only queues the bytes on the peer's socket;
//   - reading: each peer has a goroutine blocked in Read, so a write also wakes a thread, as it does
//     when a device is waiting for its next frame.
//
// Run it with: go test -run - -bench LoopbackWriteFloor -benchtime 20000x ./internal/wsconn
// (from services/push-server). The ratio of 18,000 × cpu-ns/write to the cores gives the floor for a
// broadcast to 18,000 connections on this machine.
func BenchmarkLoopbackWriteFloor(b *testing.B) {
	for _, tc := range []struct {
		name    string
		reading bool
	}{{"idle", false}, {"reading", true}} {
		b.Run(tc.name, func(b *testing.B) {
			const pairs = 1000
			fds, closeAll := loopbackPairs(b, pairs, tc.reading)
			defer closeAll()
			frame := make([]byte, 90)
			var before, after syscall.Rusage
			syscall.Getrusage(syscall.RUSAGE_SELF, &before)
			start := time.Now()
			b.ResetTimer()
			for i := range b.N {
				if _, err := unix.Write(fds[i%pairs], frame); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			wall := time.Since(start)
			syscall.Getrusage(syscall.RUSAGE_SELF, &after)
			cpu := time.Duration(after.Utime.Nano()+after.Stime.Nano()-before.Utime.Nano()-before.Stime.Nano()) * time.Nanosecond
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/write")
			b.ReportMetric(float64(wall.Nanoseconds())/float64(b.N), "wall-ns/write")
		})
	}
}

// loopbackPairs opens n loopback TCP connections and returns the raw descriptors of their server
// ends, duplicated out of the Go runtime as the engine does. With reading set, a goroutine reads each
// client end until it closes.
func loopbackPairs(b *testing.B, n int, reading bool) ([]int, func()) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	var clients []net.Conn
	var fds []int
	var files []*os.File
	var wg sync.WaitGroup
	for range n {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			b.Fatal(err)
		}
		f, err := s.(*net.TCPConn).File()
		s.Close()
		if err != nil {
			b.Fatal(err)
		}
		clients = append(clients, c)
		files = append(files, f)
		fds = append(fds, int(f.Fd()))
		if reading {
			wg.Go(func() { io.Copy(io.Discard, c) })
		}
	}
	return fds, func() {
		for _, f := range files {
			f.Close()
		}
		for _, c := range clients {
			c.Close()
		}
		wg.Wait()
	}
}
