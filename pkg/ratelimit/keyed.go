// Package ratelimit limits how often one key (a uid, a client address) may do something, with a token
// bucket per key and a bounded number of keys.
package ratelimit

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Keyed holds one token bucket per key. Buckets that have refilled completely carry no information and
// are dropped, so memory follows the number of recently active keys, capped at maxKeys.
type Keyed struct {
	limit   rate.Limit
	burst   int
	maxKeys int

	// mu guards buckets and nextSweep.
	mu        sync.Mutex
	buckets   map[string]*rate.Limiter
	nextSweep time.Time
}

// NewKeyed allows each key `burst` events at once and `per` events per `every` after that. maxKeys
// bounds memory (0 means 100,000): when that many keys are active, new keys share one overflow bucket
// rather than growing the map without end.
func NewKeyed(per int, every time.Duration, burst, maxKeys int) *Keyed {
	if maxKeys <= 0 {
		maxKeys = 100_000
	}
	return &Keyed{
		limit:   rate.Limit(float64(per) / every.Seconds()),
		burst:   burst,
		maxKeys: maxKeys,
		buckets: make(map[string]*rate.Limiter),
	}
}

const overflowKey = "\x00overflow"

// Allow takes one token from key's bucket at now. When there is none it returns false and how long
// until one is available (the Retry-After a client should get).
func (k *Keyed) Allow(key string, now time.Time) (bool, time.Duration) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if now.After(k.nextSweep) {
		k.sweep(now)
	}
	b, ok := k.buckets[key]
	if !ok {
		if len(k.buckets) >= k.maxKeys {
			key = overflowKey
			b = k.buckets[key]
		}
		if b == nil {
			b = rate.NewLimiter(k.limit, k.burst)
			k.buckets[key] = b
		}
	}
	r := b.ReserveN(now, 1)
	if !r.OK() {
		return false, time.Hour
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

func (k *Keyed) sweep(now time.Time) {
	for key, b := range k.buckets {
		if b.TokensAt(now) >= float64(k.burst) {
			delete(k.buckets, key)
		}
	}
	k.nextSweep = now.Add(10 * time.Second)
}
