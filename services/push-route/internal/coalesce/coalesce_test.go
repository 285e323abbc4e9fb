package coalesce

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// recorder is a RunFunc that records its batches and, while gate is set, blocks each batch until the
// test releases it.
type recorder struct {
	once    sync.Once
	mu      sync.Mutex
	batches [][]int
	started chan struct{}
	gate    chan struct{}
	err     error
}

func newRecorder(gated bool) *recorder {
	r := &recorder{started: make(chan struct{}, 100)}
	if gated {
		r.gate = make(chan struct{})
	}
	return r
}

func (r *recorder) run(ctx context.Context, reqs []int) ([]int, error) {
	r.mu.Lock()
	r.batches = append(r.batches, slices.Clone(reqs))
	r.mu.Unlock()
	r.started <- struct{}{}
	if r.gate != nil {
		<-r.gate
	}
	if r.err != nil {
		return nil, r.err
	}
	out := make([]int, len(reqs))
	for i, v := range reqs {
		out[i] = v * 10
	}
	return out, nil
}

// open lets every batch through, now and later.
func (r *recorder) open() {
	r.once.Do(func() {
		if r.gate != nil {
			close(r.gate)
		}
	})
}

func (r *recorder) seen() [][]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.batches)
}

func start(t *testing.T, cfg Config, weight func(int) int, r *recorder) *Batcher[int, int] {
	t.Helper()
	b, err := New(cfg, weight, r.run)
	if err != nil {
		t.Fatal(err)
	}
	cancel, done := runBatcher(b)
	t.Cleanup(func() {
		r.open()
		cancel()
		<-done
	})
	return b
}

// runBatcher runs b until cancel; done is closed once Run has returned.
func runBatcher(b *Batcher[int, int]) (cancel context.CancelFunc, done <-chan struct{}) {
	ctx, cancel := context.WithCancel(context.Background())
	d := make(chan struct{})
	go func() { b.Run(ctx); close(d) }()
	return cancel, d
}

var cfg1 = Config{MaxInFlight: 1, MaxWeight: 100, MaxQueue: 100, Timeout: 5 * time.Second}

func TestLoneRequestGoesAtOnce(t *testing.T) {
	r := newRecorder(false)
	b := start(t, cfg1, nil, r)
	got, err := b.Do(context.Background(), 7)
	if err != nil || got != 70 {
		t.Fatalf("Do = %d, %v; want 70", got, err)
	}
	if s := r.seen(); len(s) != 1 || !slices.Equal(s[0], []int{7}) {
		t.Fatalf("batches %v, want [[7]]", s)
	}
}

// doAll calls Do for each value in its own goroutine and returns the results by value.
func doAll(b *Batcher[int, int], vals []int) (wait func() map[int]int, errs func() []error) {
	var mu sync.Mutex
	res := map[int]int{}
	var es []error
	var wg sync.WaitGroup
	for _, v := range vals {
		wg.Go(func() {
			got, err := b.Do(context.Background(), v)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				es = append(es, err)
				return
			}
			res[v] = got
		})
	}
	return func() map[int]int { wg.Wait(); return res }, func() []error { wg.Wait(); return es }
}

// waitQueued waits until n requests sit in b's queue.
func waitQueued(t *testing.T, b *Batcher[int, int], n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for queued(b) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d requests queued, want %d", queued(b), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestRequestsArrivingDuringABatchGoTogether(t *testing.T) {
	r := newRecorder(true)
	b := start(t, cfg1, nil, r)
	firstDone, _ := doAll(b, []int{1})
	<-r.started // batch [1] is in flight and holds the only slot

	wait, _ := doAll(b, []int{2, 3, 4, 5, 6})
	waitQueued(t, b, 5) // all wait for the only slot
	r.open()
	got := wait()
	firstDone()

	s := r.seen()
	if len(s) != 2 {
		t.Fatalf("batches %v, want two: the first alone, then the five that waited", s)
	}
	second := slices.Sorted(slices.Values(s[1]))
	if !slices.Equal(second, []int{2, 3, 4, 5, 6}) {
		t.Fatalf("second batch %v, want 2..6", s[1])
	}
	for _, v := range []int{2, 3, 4, 5, 6} {
		if got[v] != v*10 {
			t.Fatalf("result for %d = %d, want %d", v, got[v], v*10)
		}
	}
}

func TestWeightSplitsBatches(t *testing.T) {
	r := newRecorder(true)
	b := start(t, Config{MaxInFlight: 1, MaxWeight: 10, MaxQueue: 100, Timeout: 5 * time.Second}, func(v int) int { return v }, r)
	firstDone, _ := doAll(b, []int{1})
	<-r.started
	wait, _ := doAll(b, []int{4, 5, 6, 20})
	waitQueued(t, b, 4)
	r.open()
	wait()
	firstDone()
	for _, batch := range r.seen() {
		sum := 0
		for _, v := range batch {
			sum += v
		}
		if sum > 10 && len(batch) > 1 {
			t.Fatalf("batch %v weighs %d, over the bound of 10", batch, sum)
		}
	}
	var all []int
	for _, batch := range r.seen() {
		all = append(all, batch...)
	}
	if slices.Sort(all); !slices.Equal(all, []int{1, 4, 5, 6, 20}) {
		t.Fatalf("sent %v, want every request exactly once", all)
	}
}

func TestAbandonedRequestIsNeverSent(t *testing.T) {
	r := newRecorder(true)
	b := start(t, cfg1, nil, r)
	firstDone, _ := doAll(b, []int{1})
	<-r.started

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := b.Do(ctx, 2)
		errc <- err
	}()
	waitQueued(t, b, 1) // 2 waits for the slot
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Do after cancel = %v, want context.Canceled", err)
	}
	r.open()
	firstDone()
	if got, err := b.Do(context.Background(), 3); err != nil || got != 30 {
		t.Fatalf("Do(3) = %d, %v", got, err)
	}
	for _, batch := range r.seen() {
		if slices.Contains(batch, 2) {
			t.Fatalf("abandoned request 2 was sent: %v", r.seen())
		}
	}
}

func TestRequestWaitingTooLongExpiresUnsent(t *testing.T) {
	r := newRecorder(true)
	b := start(t, Config{MaxInFlight: 1, MaxWeight: 10, MaxQueue: 10, Timeout: 5 * time.Second, MaxWait: 10 * time.Millisecond}, nil, r)
	wait1, _ := doAll(b, []int{1})
	<-r.started
	_, errs := doAll(b, []int{2})
	time.Sleep(50 * time.Millisecond) // 2 waits for the slot longer than MaxWait
	r.open()
	wait1()
	if e := errs(); len(e) != 1 || !errors.Is(e[0], ErrExpired) {
		t.Fatalf("errors %v, want ErrExpired", e)
	}
	for _, batch := range r.seen() {
		if slices.Contains(batch, 2) {
			t.Fatalf("expired request was sent: %v", r.seen())
		}
	}
}

func TestCancelledRequestIsNotSent(t *testing.T) {
	r := newRecorder(false)
	b := start(t, cfg1, nil, r)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := b.Do(ctx, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("Do with a cancelled context = %v", err)
	}
	if s := r.seen(); len(s) != 0 {
		t.Fatalf("batches %v, want none", s)
	}
}

func TestFullQueueFailsFast(t *testing.T) {
	r := newRecorder(true)
	b := start(t, Config{MaxInFlight: 1, MaxWeight: 1, MaxQueue: 2, Timeout: 5 * time.Second}, nil, r)
	wait1, _ := doAll(b, []int{1})
	<-r.started // 1 holds the only slot
	wait23, _ := doAll(b, []int{2, 3})
	waitQueued(t, b, 2)
	if _, err := b.Do(context.Background(), 4); !errors.Is(err, ErrFull) {
		t.Fatalf("Do on a full queue = %v, want ErrFull", err)
	}
	r.open()
	wait1()
	if got := wait23(); got[2] != 20 || got[3] != 30 {
		t.Fatalf("queued requests got %v", got)
	}
}

func TestRunErrorReachesEveryCaller(t *testing.T) {
	r := newRecorder(false)
	r.err = errors.New("node down")
	b := start(t, cfg1, nil, r)
	_, errs := doAll(b, []int{1, 2, 3})
	e := errs()
	if len(e) != 3 {
		t.Fatalf("errors %v, want one per caller", e)
	}
	for _, err := range e {
		if err.Error() != "node down" {
			t.Fatalf("error %v, want the batch's", err)
		}
	}
}

func TestClosedBatcher(t *testing.T) {
	r := newRecorder(false)
	b, err := New(cfg1, nil, r.run)
	if err != nil {
		t.Fatal(err)
	}
	cancel, done := runBatcher(b)
	if _, err := b.Do(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	cancel()
	<-done
	if _, err := b.Do(context.Background(), 2); !errors.Is(err, ErrClosed) {
		t.Fatalf("Do after Run ended = %v, want ErrClosed", err)
	}
}

func TestNewRejectsZeroBounds(t *testing.T) {
	if _, err := New(Config{MaxInFlight: 1, MaxWeight: 1, MaxQueue: 0, Timeout: time.Second}, nil, newRecorder(false).run); err == nil {
		t.Fatal("New accepted a zero queue")
	}
}

// Closing fails what is still queued with ErrClosed, lets the batch in flight finish and answer, and
// Run returns only after it.
func TestCloseFailsQueuedAndWaitsForInFlight(t *testing.T) {
	r := newRecorder(true)
	b, err := New(cfg1, nil, r.run)
	if err != nil {
		t.Fatal(err)
	}
	cancel, done := runBatcher(b)
	wait1, _ := doAll(b, []int{1})
	<-r.started
	_, errs := doAll(b, []int{2, 3})
	waitQueued(t, b, 2)
	cancel()
	for _, err := range errs() {
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("queued request got %v, want ErrClosed", err)
		}
	}
	select {
	case <-done:
		t.Fatal("Run returned with a batch in flight")
	case <-time.After(20 * time.Millisecond):
	}
	r.open()
	if got := wait1(); got[1] != 10 {
		t.Fatalf("the batch in flight answered %v", got)
	}
	<-done
}

// Many callers, some giving up: every request that was not abandoned is answered with its own result,
// none is sent twice, and no more than MaxInFlight batches ever run at once.
func TestConcurrentCallersKeepTheBounds(t *testing.T) {
	var running, most atomic.Int32
	var mu sync.Mutex
	sent := map[int]int{}
	run := func(ctx context.Context, reqs []int) ([]int, error) {
		n := running.Add(1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		defer running.Add(-1)
		mu.Lock()
		for _, v := range reqs {
			sent[v]++
		}
		mu.Unlock()
		time.Sleep(200 * time.Microsecond)
		out := make([]int, len(reqs))
		for i, v := range reqs {
			out[i] = v * 10
		}
		return out, nil
	}
	b, err := New(Config{MaxInFlight: 2, MaxWeight: 8, MaxQueue: 10000, Timeout: 5 * time.Second}, nil, run)
	if err != nil {
		t.Fatal(err)
	}
	cancel, done := runBatcher(b)
	defer func() { cancel(); <-done }()

	var wg sync.WaitGroup
	var answered, gaveUp atomic.Int32
	for i := range 2000 {
		wg.Go(func() {
			callCtx := context.Background()
			if i%7 == 0 {
				var stop context.CancelFunc
				callCtx, stop = context.WithTimeout(callCtx, time.Duration(i%5)*100*time.Microsecond)
				defer stop()
			}
			got, err := b.Do(callCtx, i)
			switch {
			case err == nil && got == i*10:
				answered.Add(1)
			case errors.Is(err, context.DeadlineExceeded):
				gaveUp.Add(1)
			default:
				t.Errorf("Do(%d) = %d, %v", i, got, err)
			}
		})
	}
	wg.Wait()
	if most.Load() > 2 {
		t.Errorf("%d batches ran at once, want at most 2", most.Load())
	}
	mu.Lock()
	defer mu.Unlock()
	for v, n := range sent {
		if n > 1 {
			t.Errorf("request %d sent %d times", v, n)
		}
	}
	if int(answered.Load()) != len(sent) || answered.Load()+gaveUp.Load() != 2000 {
		t.Errorf("answered %d, gave up %d, sent %d; want every sent request answered", answered.Load(), gaveUp.Load(), len(sent))
	}
	if queued(b) != 0 {
		t.Errorf("%d requests left queued", queued(b))
	}
}

// BenchmarkContended measures what coalescing costs per request when 64 callers share one slot and
// each batch takes about a Redis round trip: the CPU of the hand-offs, not the batch's work.
func BenchmarkContended(b *testing.B) {
	run := func(ctx context.Context, reqs []int) ([]int, error) {
		time.Sleep(50 * time.Microsecond)
		return make([]int, len(reqs)), nil
	}
	bt, err := New(Config{MaxInFlight: 1, MaxWeight: 2000, MaxQueue: 10000, Timeout: 5 * time.Second}, nil, run)
	if err != nil {
		b.Fatal(err)
	}
	cancel, done := runBatcher(bt)
	defer func() { cancel(); <-done }()
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := bt.Do(context.Background(), 1); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// queued counts the requests waiting in b's queue.
func queued(b *Batcher[int, int]) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.queue)
}
