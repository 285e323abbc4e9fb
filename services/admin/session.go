package main

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"
)

// cookieName is the console's only cookie.
const cookieName = "herald_admin"

// csrfField and csrfHeader carry the session's CSRF token: a hidden form field on pages, a header on
// JSON API calls.
const (
	csrfField  = "csrf"
	csrfHeader = "X-CSRF-Token"
)

// session is what the cookie holds, signed. Every visitor of the login page gets one without a user,
// so the login form has a CSRF token too; logging in replaces it with a new id.
type session struct {
	User    string `json:"u,omitempty"`
	ID      string `json:"sid"`
	Expires int64  `json:"exp"` // unix seconds
}

func (s session) loggedIn() bool { return s.User != "" }

// sessions signs and checks session cookies. They are stateless (HMAC-SHA256 over the content), so
// several admin instances sharing -session-key share logins; logging out revokes the id until it
// would have expired anyway, in this process and in the list all instances share.
type sessions struct {
	key          []byte
	ttl          time.Duration // of a login
	alwaysSecure bool
	// shared is the revocation list of every instance (nil: this process's only). A logged-in
	// session is checked against it on every request; when it cannot be read the session is taken
	// as valid (and logged), so a MySQL outage does not lock operators out of the console.
	shared revocationList
	logger *slog.Logger

	// mu guards revoked and nextSweep.
	mu        sync.Mutex
	revoked   map[string]time.Time // session id → its expiry
	nextSweep time.Time
}

// revocationList is where logged-out sessions are shared between admin instances (revokedStore).
type revocationList interface {
	revoke(ctx context.Context, id string, expires time.Time) error
	revoked(ctx context.Context, id string) (bool, error)
}

// visitorTTL is the life of a session without a user: long enough to fill in the login form.
const visitorTTL = time.Hour

// maxRevoked bounds the revocation list; past it, a logged-out cookie stays valid until it expires.
const maxRevoked = 100_000

func newSessions(key string, ttl time.Duration, alwaysSecure bool) (*sessions, error) {
	k := []byte(key)
	if key == "" {
		k = make([]byte, 32)
		if _, err := rand.Read(k); err != nil {
			return nil, err
		}
	}
	return &sessions{key: k, ttl: ttl, alwaysSecure: alwaysSecure, revoked: map[string]time.Time{}}, nil
}

// load returns the request's valid session, if it has one.
func (s *sessions) load(r *http.Request) (session, bool) {
	c, err := r.Cookie(cookieName)
	if err != nil {
		return session{}, false
	}
	payload, mac, ok := strings.Cut(c.Value, ".")
	if !ok || !hmac.Equal([]byte(mac), []byte(s.sign(payload))) {
		return session{}, false
	}
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return session{}, false
	}
	var sess session
	if json.Unmarshal(raw, &sess) != nil || sess.ID == "" || time.Now().Unix() >= sess.Expires {
		return session{}, false
	}
	s.mu.Lock()
	_, revoked := s.revoked[sess.ID]
	s.mu.Unlock()
	if revoked || !sess.loggedIn() || s.shared == nil {
		return sess, !revoked
	}
	revoked, err = s.shared.revoked(r.Context(), sess.ID)
	if err != nil {
		s.logger.Warn("session revocation list unreadable; taking the session as valid", "user", sess.User, "err", err)
		return sess, true
	}
	return sess, !revoked
}

// start makes a new session for user ("" for a visitor who is not logged in) and sets its cookie.
func (s *sessions) start(w http.ResponseWriter, r *http.Request, user string) (session, error) {
	id := make([]byte, 18)
	if _, err := rand.Read(id); err != nil {
		return session{}, err
	}
	ttl := s.ttl
	if user == "" {
		ttl = visitorTTL
	}
	sess := session{User: user, ID: base64.RawURLEncoding.EncodeToString(id), Expires: time.Now().Add(ttl).Unix()}
	raw, err := json.Marshal(sess)
	if err != nil {
		return session{}, err
	}
	payload := base64.RawURLEncoding.EncodeToString(raw)
	s.setCookie(w, r, payload+"."+s.sign(payload), int(ttl/time.Second))
	return sess, nil
}

// end revokes the session and clears its cookie.
func (s *sessions) end(w http.ResponseWriter, r *http.Request, sess session) {
	now := time.Now()
	s.mu.Lock()
	if now.After(s.nextSweep) || len(s.revoked) >= maxRevoked {
		for id, exp := range s.revoked {
			if now.After(exp) {
				delete(s.revoked, id)
			}
		}
		s.nextSweep = now.Add(time.Minute)
	}
	if len(s.revoked) < maxRevoked {
		s.revoked[sess.ID] = time.Unix(sess.Expires, 0)
	}
	s.mu.Unlock()
	if s.shared != nil && sess.loggedIn() {
		if err := s.shared.revoke(r.Context(), sess.ID, time.Unix(sess.Expires, 0)); err != nil {
			s.logger.Error("logout not shared with the other admin instances", "user", sess.User, "err", err)
		}
	}
	s.setCookie(w, r, "", -1)
}

func (s *sessions) setCookie(w http.ResponseWriter, r *http.Request, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name:     cookieName,
		Value:    value,
		Path:     "/",
		MaxAge:   maxAge,
		HttpOnly: true,
		SameSite: http.SameSiteStrictMode,
		Secure:   s.alwaysSecure || overTLS(r),
	})
}

// overTLS reports whether the browser reached us over TLS, directly or through a proxy that says so.
func overTLS(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

func (s *sessions) sign(payload string) string {
	h := hmac.New(sha256.New, s.key)
	h.Write([]byte("session\x00" + payload))
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

// csrfToken is the session's CSRF token: derived from its id, so it needs no storage and changes at
// every login.
func (s *sessions) csrfToken(sess session) string {
	h := hmac.New(sha256.New, s.key)
	h.Write([]byte("csrf\x00" + sess.ID))
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

var errCSRF = errors.New("missing or wrong CSRF token")

// checkCSRF returns errCSRF unless got is the session's CSRF token.
func (s *sessions) checkCSRF(got string, sess session) error {
	if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(s.csrfToken(sess))) != 1 {
		return errCSRF
	}
	return nil
}
