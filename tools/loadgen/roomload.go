package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// runRoom publishes -room-rate messages a second of -room-size bytes into the rooms the connections
// joined (round-robin over them), through push-route's room API, for warm-up + duration, with
// -callers callers taking the messages from one pacer.
func (r *report) runRoom(ctx context.Context, o options, st stack, pool *workers, w *watch, stderr io.Writer) error {
	lr := r.Load
	lr.Rooms, lr.Callers = o.rooms, o.callers
	from := time.Now().Add(200 * time.Millisecond)
	start, end := from.Add(o.warmup), from.Add(o.warmup+o.duration)
	sendMeasure(pool, measureCmd{From: from.UnixNano(), Start: start.UnixNano(), End: end.UnixNano()})
	lr.Start, lr.Seconds = start.UTC(), o.duration.Seconds()
	fmt.Fprintf(stderr, "loadgen: room: %g messages/s of %d bytes into %d room(s) of %d connections: %s warm-up, %s measured\n",
		o.roomRate, o.roomSize, o.rooms, lr.Conns, o.warmup, o.duration)

	base := strings.TrimRight(st.PushAPIURL, "/")
	prefix := roomPrefix(o)
	jobs := make(chan int, 1024) // the message's sequence number; its room is seq mod rooms
	var published, errs atomic.Int64
	var mu sync.Mutex
	callErrs := map[string]int{}
	var wg sync.WaitGroup
	for range o.callers {
		callers := map[int]*rawCaller{}
		wg.Go(func() {
			defer func() {
				for _, c := range callers {
					c.close()
				}
			}()
			var body []byte
			var buf bytes.Buffer
			for seq := range jobs {
				room := seq % o.rooms
				c := callers[room]
				if c == nil {
					var err error
					if c, err = newRawCaller(fmt.Sprintf("%s/v1/rooms/%s-%d/push", base, prefix, room), st.APIKey, 30*time.Second); err != nil {
						errs.Add(1)
						continue
					}
					callers[room] = c
				}
				sent := time.Now()
				body = appendRoomBody(body[:0], sent.UnixNano(), o.roomSize)
				_, fail := c.post(body, &buf)
				if sent.Before(start) || !sent.Before(end) {
					continue
				}
				if fail != "" {
					errs.Add(1)
					mu.Lock()
					callErrs[fail]++
					mu.Unlock()
					continue
				}
				published.Add(1)
			}
		})
	}
	// The pacer: message n goes at from + n/rate.
	go func() {
		defer close(jobs)
		every := time.Duration(float64(time.Second) / o.roomRate)
		for n := 0; ; n++ {
			at := from.Add(time.Duration(n) * every)
			if !at.Before(end) || sleepUntil(ctx, at) != nil {
				return
			}
			jobs <- n
		}
	}()
	if err := sleepUntil(ctx, start); err != nil {
		return err
	}
	w.begin()
	if err := sleepUntil(ctx, end); err != nil {
		return err
	}
	w.end()
	wg.Wait()
	if err := sleepUntil(ctx, time.Now().Add(o.drain)); err != nil {
		return err
	}
	got, lat, _, err := gather(ctx, pool)
	if err != nil {
		return err
	}
	lr.Published = published.Load()
	lr.CallErrors = callErrs
	lr.RoomFrames, lr.RoomBytes, lr.Sampled = got.RoomFrames, got.RoomBytes, got.Sampled
	// Round-robin: each room got Published/rooms of the messages (give or take one).
	lr.SampleExpected = int64(got.Sampled) * lr.Published / int64(o.rooms)
	if lr.Conns > 0 {
		lr.FramesPerConnS = float64(lr.RoomFrames) / float64(lr.Conns) / lr.Seconds
	}
	lr.fill(got, lat)
	return nil
}
