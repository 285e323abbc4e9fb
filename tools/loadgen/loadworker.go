package main

import (
	"encoding/binary"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/gobwas/ws"

	"github.com/heraldpush/herald/tools/loadgen/internal/latency"
)

// The worker's side of the load modes: it records the push frames its connections receive (push and
// broadcast) and, in upstream mode, sends up frames with a bounded window per connection and records
// their up_acks. The parent says when the measured window starts and ends ("measure") and asks for
// what was seen ("report").

// recorder accumulates what a worker's connections receive. Readers call it concurrently.
type recorder struct {
	mu  sync.Mutex
	win measureCmd
	res loadResult
	lat *latency.Hist
	// byStamp: broadcast mode, one distribution per send stamp (each broadcast has its own).
	byStamp map[int64]*latency.Hist
}

func (r *recorder) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.res = loadResult{Errors: map[string]int{}, Frames: map[string]int{}}
	r.lat = latency.New()
	r.byStamp = map[int64]*latency.Hist{}
}

// inWindow reports whether a message sent at unix ns sent belongs to the measured window.
func (r *recorder) inWindow(sent int64) bool {
	return r.win.Start > 0 && sent >= r.win.Start && sent < r.win.End
}

// perSecond counts one receipt at now in its second after the window start.
func (r *recorder) perSecond(now int64) {
	if r.win.Start <= 0 || now < r.win.Start {
		return
	}
	i := int((now - r.win.Start) / int64(time.Second))
	if i >= 3600 {
		return
	}
	for len(r.res.PerSecond) <= i {
		r.res.PerSecond = append(r.res.PerSecond, 0)
	}
	r.res.PerSecond[i]++
}

// onFrame handles one text frame received at unix ns now.
func (w *worker) onFrame(c *conn, p []byte, now int64) {
	if p == nil {
		w.rec.mu.Lock()
		w.rec.res.Frames["oversized"]++
		w.rec.mu.Unlock()
		return
	}
	f := parseFrame(p)
	r := &w.rec
	switch f.kind {
	case kindPush:
		r.mu.Lock()
		r.res.Pushes++
		switch {
		case !f.ok:
			r.res.Frames["push_without_stamp"]++
		case w.spec.Mode == modeBroadcast:
			h := r.byStamp[f.sent]
			if h == nil {
				h = latency.New()
				r.byStamp[f.sent] = h
			}
			h.Record((now - f.sent) / 1000)
		case r.inWindow(f.sent):
			r.res.InWindow++
			r.lat.Record((now - f.sent) / 1000)
			r.perSecond(now)
		default:
			r.res.OutOfWindow++
		}
		r.mu.Unlock()
	case kindUpAck:
		release(c)
		r.mu.Lock()
		r.res.UpAcks++
		switch {
		case !f.ok:
			r.res.Frames["up_ack_foreign_ref"]++
		case r.inWindow(f.sent):
			r.res.InWindow++
			r.lat.Record((now - f.sent) / 1000)
			r.perSecond(now)
		default:
			r.res.OutOfWindow++
		}
		r.mu.Unlock()
	case kindError:
		if w.spec.Mode == modeUpstream {
			// Every refused up frame gets exactly one error frame, with its ref or (rate_limited)
			// without: either way one message is no longer in flight.
			release(c)
			if f.code == "rate_limited" {
				c.backoff.Store(now + int64(w.spec.Backoff))
			}
		}
		r.mu.Lock()
		r.res.Errors[f.code]++
		r.mu.Unlock()
	case kindRoom:
		r.mu.Lock()
		if now >= r.win.Start && now < r.win.End {
			r.res.RoomFrames++
			r.res.RoomBytes += int64(len(p))
		}
		if c.sample {
			eachStamp(p, func(sent int64) {
				if r.inWindow(sent) {
					r.res.InWindow++
					r.lat.Record((now - sent) / 1000)
					r.perSecond(now)
				} else {
					r.res.OutOfWindow++
				}
			})
		}
		r.mu.Unlock()
	case kindPong:
	default:
		r.mu.Lock()
		r.res.Frames[f.kind]++
		r.mu.Unlock()
	}
}

// release frees one slot of c's upstream window.
func release(c *conn) {
	if c.slots == nil {
		return
	}
	select {
	case <-c.slots:
	default:
	}
}

// measure starts the measured window; in upstream mode it also starts every connection's sender.
func (w *worker) measure(m measureCmd) {
	w.rec.mu.Lock()
	w.rec.win = m
	w.rec.mu.Unlock()
	if w.spec.Mode != modeUpstream {
		return
	}
	w.mu.Lock()
	conns := w.conns
	w.mu.Unlock()
	pad := strings.Repeat("x", max(0, w.spec.UpPad))
	for _, c := range conns {
		w.senders.Go(func() { w.sendUp(c, m, pad) })
	}
}

// report sends what was recorded so far.
func (w *worker) report() {
	r := &w.rec
	r.mu.Lock()
	res := r.res
	res.Latency = r.lat
	if len(r.byStamp) > 0 {
		res.ByStamp = map[int64]*latency.Hist{}
		for k, h := range r.byStamp {
			res.ByStamp[k] = h
		}
	}
	r.mu.Unlock()
	w.mu.Lock()
	for _, c := range w.conns {
		if !c.ended.Load() {
			res.Open++
		}
	}
	res.Lost = addCounts(nil, w.lost)
	w.mu.Unlock()
	w.emit(event{Kind: evResult, Result: &res})
}

// sendUp sends c's upstream messages from m.From until m.End: at most Window in flight, at most
// UpRate a second when that is set, pausing after a rate_limited error.
func (w *worker) sendUp(c *conn, m measureCmd, pad string) {
	interval := int64(0)
	if w.spec.UpRate > 0 {
		interval = int64(float64(time.Second) / w.spec.UpRate)
	}
	// Spread the connections' first sends over one interval (or 10 ms) so they do not all fire at once.
	next := m.From + rand.Int64N(max(interval, int64(10*time.Millisecond)))
	if !w.sleepUntil(c, next) {
		return
	}
	payload := make([]byte, 0, 128+len(pad))
	frame := make([]byte, 0, 160+len(pad))
	var seq int64
	for {
		select { // take a slot of the window
		case c.slots <- struct{}{}:
		case <-c.done:
			return
		case <-w.quit:
			return
		}
		if interval > 0 {
			if !w.sleepUntil(c, next) {
				return
			}
			next += interval
			if now := time.Now().UnixNano(); next < now-int64(time.Second) {
				next = now // do not catch up on more than a second of lateness
			}
		}
		if b := c.backoff.Load(); b > 0 && !w.sleepUntil(c, b) {
			return
		}
		now := time.Now().UnixNano()
		if now >= m.End {
			release(c)
			return
		}
		seq++
		payload = appendUpFrame(payload[:0], seq, now, pad)
		frame = appendMaskedText(frame[:0], payload, ws.NewMask())
		if err := c.write(frame); err != nil {
			w.end(c, failureKind("write", err))
			return
		}
		w.rec.mu.Lock()
		w.rec.res.UpSent++
		if w.rec.inWindow(now) {
			w.rec.res.UpSentInWindow++
		}
		w.rec.mu.Unlock()
	}
}

// sleepUntil waits until unix ns t; false when the connection ended or the worker stops first.
func (w *worker) sleepUntil(c *conn, t int64) bool {
	d := time.Duration(t - time.Now().UnixNano())
	if d <= 0 {
		return true
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-c.done:
		return false
	case <-w.quit:
		return false
	}
}

// appendMaskedText writes payload as one final, masked text frame, as a client must send it.
func appendMaskedText(dst, payload []byte, mask [4]byte) []byte {
	n := len(payload)
	dst = append(dst, 0x80|byte(ws.OpText))
	switch {
	case n < 126:
		dst = append(dst, 0x80|byte(n))
	case n <= 0xFFFF:
		dst = append(dst, 0x80|126)
		dst = binary.BigEndian.AppendUint16(dst, uint16(n))
	default:
		dst = append(dst, 0x80|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	dst = append(dst, mask[:]...)
	start := len(dst)
	dst = append(dst, payload...)
	ws.Cipher(dst[start:], mask, 0)
	return dst
}
