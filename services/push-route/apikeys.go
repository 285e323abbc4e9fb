package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/heraldpush/herald/pkg/apikey"
	"github.com/heraldpush/herald/pkg/httpapi"
)

// keyCache remembers verified API keys for a short while, so a busy backend does not cost a MySQL
// query per push. A revoked key therefore keeps working for up to ttl (default 10 s).
type keyCache struct {
	keys    *apikey.Store
	ttl     time.Duration
	timeout time.Duration // of one check in MySQL

	// mu guards seen.
	mu   sync.Mutex
	seen map[[32]byte]time.Time // key hash → when its verification expires
}

func newKeyCache(keys *apikey.Store, ttl, timeout time.Duration) *keyCache {
	return &keyCache{keys: keys, ttl: ttl, timeout: timeout, seen: map[[32]byte]time.Time{}}
}

func (k *keyCache) verify(ctx context.Context, plain string) error {
	h := sha256.Sum256([]byte(plain))
	now := time.Now()
	k.mu.Lock()
	until, ok := k.seen[h]
	k.mu.Unlock()
	if ok && now.Before(until) {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, k.timeout)
	defer cancel()
	if _, err := k.keys.Verify(ctx, plain); err != nil {
		return err
	}
	k.mu.Lock()
	if len(k.seen) > 10_000 {
		clear(k.seen) // keys are few; this only bounds a flood of distinct valid keys
	}
	k.seen[h] = now.Add(k.ttl)
	k.mu.Unlock()
	return nil
}

// requireKey lets a request through only with a valid API key in Authorization: Bearer.
func requireKey(keys *keyCache, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key, ok := httpapi.BearerToken(r)
		if !ok {
			httpapi.WriteError(w, httpapi.Errorf(httpapi.CodeUnauthorized, "an API key is required: Authorization: Bearer <key>"))
			return
		}
		err := keys.verify(r.Context(), key)
		switch {
		case errors.Is(err, apikey.ErrInvalid):
			httpapi.WriteError(w, httpapi.Errorf(httpapi.CodeUnauthorized, "invalid or revoked API key"))
			return
		case err != nil:
			httpapi.WriteError(w, httpapi.Errorf(httpapi.CodeUnavailable, "key store unavailable, retry later"))
			return
		}
		h.ServeHTTP(w, r)
	})
}
