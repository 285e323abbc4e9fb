package main

import (
	"net/http"

	"github.com/heraldpush/herald/pkg/httpapi"
)

type loginView struct {
	Next     string
	Username string
}

// handleLoginPage shows the login form. A visitor without a session gets one (without a user) first,
// so the form carries a CSRF token like every other.
func handleLoginPage(g *gate) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next := localPath(r.URL.Query().Get("next"))
		sess, ok := g.sessions.load(r)
		if ok && sess.loggedIn() {
			http.Redirect(w, r, next, http.StatusSeeOther)
			return
		}
		if !ok {
			var err error
			if sess, err = g.sessions.start(w, r, ""); err != nil {
				g.logger.Error("start session", "err", err)
				renderStatus(w, r, http.StatusInternalServerError, "Log in", errText(err))
				return
			}
		}
		render(w, r, http.StatusOK, "login", view{Title: "Log in", CSRF: g.sessions.csrfToken(sess), Data: loginView{Next: next}})
	})
}

func handleLogin(g *gate) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, g.maxBody)
		form := loginView{Next: localPath(r.PostFormValue("next")), Username: r.PostFormValue("username")}
		again := func(status int, msg string) {
			sess, ok := g.sessions.load(r)
			if !ok {
				var err error
				if sess, err = g.sessions.start(w, r, ""); err != nil {
					g.logger.Error("start session", "err", err)
					renderStatus(w, r, http.StatusInternalServerError, "Log in", errText(err))
					return
				}
			}
			render(w, r, status, "login", view{Title: "Log in", CSRF: g.sessions.csrfToken(sess), Error: msg, Data: form})
		}
		visitor, ok := g.sessions.load(r)
		if !ok {
			again(http.StatusForbidden, "The login form had expired (or cookies are blocked). Please try again.")
			return
		}
		if err := g.sessions.checkCSRF(r.PostFormValue(csrfField), visitor); err != nil {
			g.metrics.csrfRejected.Inc()
			again(http.StatusForbidden, "The form was missing its security token or it was wrong. Please try again.")
			return
		}
		if err := g.login(r, form.Username, r.PostFormValue("password")); err != nil {
			again(statusOf(err), errText(err))
			return
		}
		if _, err := g.sessions.start(w, r, form.Username); err != nil {
			g.logger.Error("start session", "err", err)
			renderStatus(w, r, http.StatusInternalServerError, "Log in", errText(err))
			return
		}
		g.logger.Info("admin logged in", "user", form.Username, "client", httpapi.ClientIP(r, g.ipHeader))
		http.Redirect(w, r, form.Next, http.StatusSeeOther)
	})
}

// handleLogout ends the session; requirePage has checked its CSRF token.
func handleLogout(g *gate) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.sessions.end(w, r, currentAuth(r).Session)
		http.Redirect(w, r, "/login", http.StatusSeeOther)
	})
}
