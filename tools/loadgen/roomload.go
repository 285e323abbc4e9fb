package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// runRoom publishes -room-rate messages a second of -room-size bytes into the rooms the connections
// joined (round-robin over them), through push-route's room API, for warm-up + duration, with
// -callers callers taking the messages from one pacer.
func (r *report) runRoom(ctx context.Context, o options, st stack, pool *workers, w *watch, open []int, stderr io.Writer) error {
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
	var mu sync.Mutex
	callErrs := map[string]int{}
	byRoom := make([]int64, o.rooms) // published in the window, by room
	var wg sync.WaitGroup
	for range o.callers {
		c, err := newRawCaller(base+"/v1/rooms", st.APIKey, 30*time.Second)
		if err != nil {
			return err
		}
		defer c.close()
		wg.Go(func() {
			var body []byte
			var buf bytes.Buffer
			for seq := range jobs {
				room := seq % o.rooms
				sent := time.Now()
				body = appendRoomBody(body[:0], sent.UnixNano(), o.roomSize)
				_, fail := c.postTo(fmt.Sprintf("/v1/rooms/%s-%d/push", prefix, room), body, &buf)
				if sent.Before(start) || !sent.Before(end) {
					continue
				}
				mu.Lock()
				if fail != "" {
					callErrs[fail]++
				} else {
					byRoom[room]++
				}
				mu.Unlock()
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
	if err := w.window(ctx, start, end, wg.Wait, o.drain); err != nil {
		return err
	}
	got, lat, _, err := gather(ctx, pool)
	if err != nil {
		return err
	}
	lr.CallErrors = callErrs
	lr.RoomFrames, lr.RoomBytes, lr.Sampled = got.RoomFrames, got.RoomBytes, got.Sampled
	for _, n := range byRoom {
		lr.Published += n
	}
	// A sampled member (every -sample-every-th connection) should get what its room got.
	for _, i := range open {
		if i%o.sampleEvery == 0 {
			lr.SampleExpected += byRoom[i%o.rooms]
		}
	}
	if lr.Conns > 0 {
		lr.FramesPerConnS = float64(lr.RoomFrames) / float64(lr.Conns) / lr.Seconds
	}
	lr.fill(got, lat)
	return nil
}
