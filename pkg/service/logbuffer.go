package service

import (
	"io"
	"sync"
	"time"
)

// logBuffer holds log lines for up to delay after the first of them, or until size bytes wait. Its
// timer is armed only while lines wait (buf is not empty): a ticker flushing on a fixed period (zap's buffered writer,
// used before) woke an idle service's runtime ten times a second, which cost each service about
// 0.3 % of a core with nothing to do.
type logBuffer struct {
	mu      sync.Mutex
	w       io.Writer
	buf     []byte
	size    int
	delay   time.Duration
	timer   *time.Timer
	stopped bool
}

func newLogBuffer(w io.Writer, size int, delay time.Duration) *logBuffer {
	b := &logBuffer{w: w, size: size, delay: delay, buf: make([]byte, 0, size)}
	b.timer = time.AfterFunc(time.Hour, b.flush)
	b.timer.Stop()
	return b
}

// Write buffers p. It never fails: a log line that cannot be written is lost, as an unbuffered
// handler would lose it, and the caller (slog) could do nothing better.
func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopped {
		b.w.Write(p)
		return len(p), nil
	}
	if len(b.buf)+len(p) > b.size {
		b.writeOut()
		if len(p) > b.size {
			b.w.Write(p)
			return len(p), nil
		}
	}
	if len(b.buf) == 0 {
		b.timer.Reset(b.delay)
	}
	b.buf = append(b.buf, p...)
	return len(p), nil
}

func (b *logBuffer) flush() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.writeOut()
}

// writeOut writes what waits; b.mu is held.
func (b *logBuffer) writeOut() {
	if len(b.buf) > 0 {
		b.w.Write(b.buf)
		b.buf = b.buf[:0]
		b.timer.Stop()
	}
}

// stop writes what waits; later lines go straight to w.
func (b *logBuffer) stop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.writeOut()
	b.stopped = true
}
