package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/heraldpush/herald/pkg/httpapi"
	"github.com/heraldpush/herald/pkg/ratelimit"
)

// authInfo is who made a request that passed the gate.
type authInfo struct {
	User    string
	Session session // zero for API calls with Basic credentials
	CSRF    string  // the session's CSRF token
}

type authKey struct{}

// currentAuth is the request's authInfo; zero before the gate.
func currentAuth(r *http.Request) authInfo {
	a, _ := r.Context().Value(authKey{}).(authInfo)
	return a
}

func withAuth(r *http.Request, a authInfo) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), authKey{}, a))
}

func (g *gate) sessionAuth(sess session) authInfo {
	return authInfo{User: sess.User, Session: sess, CSRF: g.sessions.csrfToken(sess)}
}

// gate decides who may use the console: a logged-in browser (cookie, plus the CSRF token on every
// POST), or a script with an admin's credentials in Authorization: Basic on the JSON API.
type gate struct {
	sessions *sessions
	admins   *adminStore
	limit    *ratelimit.Keyed // login attempts per client address
	ipHeader string
	maxBody  int64
	logger   *slog.Logger
	metrics  *metrics

	// mu guards verified.
	mu       sync.Mutex
	verified map[[32]byte]time.Time // hash of Basic credentials → when to check them again
}

// basicCacheTTL is how long checked Basic credentials are trusted: a script polling the API costs one
// bcrypt comparison (and one login attempt) a minute, not one per call.
const basicCacheTTL = time.Minute

func newGate(s *sessions, admins *adminStore, cfg Config, logger *slog.Logger, m *metrics) *gate {
	return &gate{
		sessions: s, admins: admins, ipHeader: cfg.ClientIPHeader, maxBody: cfg.MaxBody, logger: logger, metrics: m,
		limit:    ratelimit.NewKeyed(cfg.LoginPerIP, time.Minute, cfg.LoginPerIP, 0),
		verified: map[[32]byte]time.Time{},
	}
}

// requirePage lets a logged-in browser through; anyone else is sent to the login page. A POST must
// carry the session's CSRF token, or it is refused with 403.
func (g *gate) requirePage(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sess, ok := g.sessions.load(r)
		if !ok || !sess.loggedIn() {
			http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, g.maxBody)
			if err := g.sessions.checkCSRF(r.PostFormValue(csrfField), sess); err != nil {
				g.metrics.csrfRejected.Inc()
				renderStatus(w, r, http.StatusForbidden, "Forbidden", "The form was missing its security token or it was wrong (did you log in again in another tab?). Go back, reload the page and try again.")
				return
			}
		}
		h.ServeHTTP(w, withAuth(r, g.sessionAuth(sess)))
	})
}

// requireAPI lets through a logged-in browser (with the CSRF token in X-CSRF-Token on every POST) or
// a caller with an admin's username and password in Authorization: Basic. It never answers with a
// WWW-Authenticate challenge, so browsers do not start sending Basic credentials on their own.
func (g *gate) requireAPI(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if user, pass, ok := r.BasicAuth(); ok {
			if err := g.checkBasic(r, user, pass); err != nil {
				httpapi.WriteError(w, err)
				return
			}
			h.ServeHTTP(w, withAuth(r, authInfo{User: user}))
			return
		}
		sess, ok := g.sessions.load(r)
		if !ok || !sess.loggedIn() {
			httpapi.WriteError(w, httpapi.Errorf(httpapi.CodeUnauthorized, "log in first, or send an admin's credentials in Authorization: Basic"))
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if err := g.sessions.checkCSRF(r.Header.Get(csrfHeader), sess); err != nil {
				g.metrics.csrfRejected.Inc()
				httpapi.WriteError(w, httpapi.Errorf(httpapi.CodeForbidden, "missing or wrong %s header", csrfHeader))
				return
			}
		}
		h.ServeHTTP(w, withAuth(r, g.sessionAuth(sess)))
	})
}

func (g *gate) checkBasic(r *http.Request, user, pass string) error {
	h := sha256.Sum256([]byte(user + "\x00" + pass))
	now := time.Now()
	g.mu.Lock()
	until, ok := g.verified[h]
	g.mu.Unlock()
	if ok && now.Before(until) {
		return nil
	}
	if err := g.login(r, user, pass); err != nil {
		return err
	}
	g.mu.Lock()
	if len(g.verified) > 1000 {
		clear(g.verified) // admins are few; this only bounds memory
	}
	g.verified[h] = now.Add(basicCacheTTL)
	g.mu.Unlock()
	return nil
}

// login checks an admin's credentials under the per-address rate limit. Its errors are *httpapi.Error.
func (g *gate) login(r *http.Request, user, pass string) error {
	if ok, wait := g.limit.Allow(httpapi.ClientIP(r, g.ipHeader), time.Now()); !ok {
		g.metrics.logins.WithLabelValues("rate_limited").Inc()
		return &httpapi.Error{Code: httpapi.CodeRateLimited, Message: "too many login attempts from this address", RetryAfter: wait}
	}
	if user == "" || pass == "" || len(user) > 64 || len(pass) > 1024 {
		g.metrics.logins.WithLabelValues("bad_credentials").Inc()
		return httpapi.Errorf(httpapi.CodeBadCredentials, "unknown user or wrong password")
	}
	err := g.admins.authenticate(r.Context(), user, pass)
	switch {
	case errors.Is(err, errBadLogin):
		g.metrics.logins.WithLabelValues("bad_credentials").Inc()
		g.logger.Warn("admin login failed", "user", user, "client", httpapi.ClientIP(r, g.ipHeader))
		return httpapi.Errorf(httpapi.CodeBadCredentials, "unknown user or wrong password")
	case err != nil:
		g.metrics.logins.WithLabelValues("error").Inc()
		g.logger.Error("admin login", "err", err)
		return httpapi.Errorf(httpapi.CodeUnavailable, "admin store unavailable, retry later")
	}
	g.metrics.logins.WithLabelValues("ok").Inc()
	return nil
}

// localPath returns next when it is a path on this site, else "/": a login must not redirect elsewhere.
func localPath(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") {
		return "/"
	}
	return next
}
