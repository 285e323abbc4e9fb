package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/heraldpush/herald/pkg/account"
	"github.com/heraldpush/herald/pkg/httpapi"
	"github.com/heraldpush/herald/pkg/ident"
)

// pageSize is how many rows a list page or API answer holds.
const pageSize = 50

// accountInfo is an account as the console lists it; the password hash never leaves MySQL.
type accountInfo struct {
	UID       string    `json:"uid"`
	Disabled  bool      `json:"disabled"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

func getAccount(ctx context.Context, db *sql.DB, uid string) (accountInfo, error) {
	var a accountInfo
	err := db.QueryRowContext(ctx, "SELECT uid, disabled, created_at, updated_at FROM accounts WHERE uid = ?", uid).
		Scan(&a.UID, &a.Disabled, &a.CreatedAt, &a.UpdatedAt)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return a, fmt.Errorf("get account: %w", err)
	}
	return a, err
}

// accountPage is one page of accounts in uid order, those starting with Prefix when it is set.
type accountPage struct {
	Accounts []accountInfo `json:"accounts"`
	// NextAfter, when set, is the after= of the next page.
	NextAfter string `json:"next_after,omitempty"`
	Prefix    string `json:"-"`
	After     string `json:"-"`
}

func listAccounts(ctx context.Context, db *sql.DB, prefix, after string) (accountPage, error) {
	p := accountPage{Accounts: []accountInfo{}, Prefix: prefix, After: after}
	// uids hold no LIKE wildcards except "_", which the escape takes care of.
	like := strings.ReplaceAll(prefix, "_", `\_`) + "%"
	rows, err := db.QueryContext(ctx, `
		SELECT uid, disabled, created_at, updated_at FROM accounts
		WHERE uid LIKE ? AND uid > ? ORDER BY uid LIMIT ?`, like, after, pageSize+1)
	if err != nil {
		return p, fmt.Errorf("list accounts: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var a accountInfo
		if err := rows.Scan(&a.UID, &a.Disabled, &a.CreatedAt, &a.UpdatedAt); err != nil {
			return p, fmt.Errorf("list accounts: %w", err)
		}
		p.Accounts = append(p.Accounts, a)
	}
	if len(p.Accounts) > pageSize {
		p.Accounts = p.Accounts[:pageSize]
		p.NextAfter = p.Accounts[pageSize-1].UID
	}
	return p, rows.Err()
}

// newPassword returns password, or a generated one when it is empty (generated reports which).
func newPassword(password string) (pw string, generated bool, err error) {
	if password == "" {
		return rand.Text()[:20], true, nil
	}
	if len(password) < 8 || len(password) > 72 {
		return "", false, httpapi.Errorf(httpapi.CodeInvalidRequest, "a password is 8 to 72 bytes (or leave it empty to have one generated)")
	}
	return password, false, nil
}

func accountError(err error) error {
	switch {
	case errors.Is(err, account.ErrExists):
		return httpapi.Errorf(httpapi.CodeConflict, "an account with that uid exists")
	case errors.Is(err, account.ErrNotFound):
		return httpapi.Errorf(httpapi.CodeNotFound, "no account with that uid")
	}
	return err
}

// accountChange is the result of creating an account or setting its password.
type accountChange struct {
	UID      string `json:"uid"`
	Password string `json:"password,omitempty"` // only when the console generated it: shown once
}

func createAccount(r *http.Request, logger *slog.Logger, d serverDeps, uid, password string) (accountChange, error) {
	if err := ident.Check("uid", uid); err != nil {
		return accountChange{}, httpapi.Errorf(httpapi.CodeInvalidRequest, "%v", err)
	}
	pw, generated, err := newPassword(password)
	if err != nil {
		return accountChange{}, err
	}
	if err := d.accounts.Create(r.Context(), uid, pw); err != nil {
		return accountChange{}, publicError(logger, "create the account", accountError(err))
	}
	done(logger, d, r, "account_create", "uid", uid)
	c := accountChange{UID: uid}
	if generated {
		c.Password = pw
	}
	return c, nil
}

func setPassword(r *http.Request, logger *slog.Logger, d serverDeps, uid, password string) (accountChange, error) {
	pw, generated, err := newPassword(password)
	if err != nil {
		return accountChange{}, err
	}
	if err := d.accounts.SetPassword(r.Context(), uid, pw); err != nil {
		return accountChange{}, publicError(logger, "set the password", accountError(err))
	}
	done(logger, d, r, "account_password", "uid", uid)
	c := accountChange{UID: uid}
	if generated {
		c.Password = pw
	}
	return c, nil
}

func setDisabled(r *http.Request, logger *slog.Logger, d serverDeps, uid string, disabled bool) error {
	if err := d.accounts.SetDisabled(r.Context(), uid, disabled); err != nil {
		return publicError(logger, "change the account", accountError(err))
	}
	action := "account_enable"
	if disabled {
		action = "account_disable"
	}
	done(logger, d, r, action, "uid", uid)
	return nil
}

type accountsView struct {
	Page    accountPage
	Changed *accountChange
	NewUID  string
}

// accountsPage renders the list under the outcome of an action (err, or notice when it went well).
func accountsPage(w http.ResponseWriter, r *http.Request, logger *slog.Logger, d serverDeps, notice string, av accountsView, err error) {
	v := view{Title: "Accounts", Nav: "accounts"}
	status := http.StatusOK
	if err != nil {
		v.Error, status = errText(err), statusOf(err)
	} else {
		v.Notice = notice
	}
	page, listErr := listAccounts(r.Context(), d.db, r.FormValue("q"), r.FormValue("after"))
	if listErr = publicError(logger, "list accounts", listErr); listErr != nil && err == nil {
		v.Error, status = errText(listErr), statusOf(listErr)
	}
	av.Page = page
	v.Data = av
	render(w, r, status, "accounts", v)
}

func handleAccountsPage(logger *slog.Logger, d serverDeps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		accountsPage(w, r, logger, d, "", accountsView{}, nil)
	})
}

func handleAccountCreatePage(logger *slog.Logger, d serverDeps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		uid := strings.TrimSpace(r.PostFormValue("uid"))
		c, err := createAccount(r, logger, d, uid, r.PostFormValue("password"))
		if err != nil {
			accountsPage(w, r, logger, d, "", accountsView{NewUID: uid}, err)
			return
		}
		accountsPage(w, r, logger, d, "Account "+uid+" created.", accountsView{Changed: &c}, nil)
	})
}

func handleAccountDisablePage(logger *slog.Logger, d serverDeps, disabled bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		uid := r.PathValue("uid")
		err := setDisabled(r, logger, d, uid, disabled)
		state := "enabled"
		if disabled {
			state = "disabled"
		}
		accountsPage(w, r, logger, d, "Account "+uid+" "+state+".", accountsView{}, err)
	})
}

func handleAccountPasswordPage(logger *slog.Logger, d serverDeps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		uid := r.PathValue("uid")
		c, err := setPassword(r, logger, d, uid, r.PostFormValue("password"))
		if err != nil {
			accountsPage(w, r, logger, d, "", accountsView{}, err)
			return
		}
		accountsPage(w, r, logger, d, "Password of "+uid+" changed.", accountsView{Changed: &c}, nil)
	})
}

func handleAccountsAPI(logger *slog.Logger, d serverDeps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		page, err := listAccounts(r.Context(), d.db, q.Get("q"), q.Get("after"))
		if err = publicError(logger, "list accounts", err); err != nil {
			httpapi.WriteError(w, err)
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, page)
	})
}

type accountRequest struct {
	UID      string `json:"uid"`
	Password string `json:"password"`
}

func handleAccountCreateAPI(logger *slog.Logger, d serverDeps, maxBody int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req accountRequest
		if err := httpapi.DecodeStrict(w, r, maxBody, &req); err != nil {
			httpapi.WriteError(w, err)
			return
		}
		c, err := createAccount(r, logger, d, req.UID, req.Password)
		if err != nil {
			httpapi.WriteError(w, err)
			return
		}
		httpapi.WriteJSON(w, http.StatusCreated, c)
	})
}

func handleAccountDisableAPI(logger *slog.Logger, d serverDeps, disabled bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		uid := r.PathValue("uid")
		if err := setDisabled(r, logger, d, uid, disabled); err != nil {
			httpapi.WriteError(w, err)
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, map[string]any{"uid": uid, "disabled": disabled})
	})
}

func handleAccountPasswordAPI(logger *slog.Logger, d serverDeps, maxBody int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req accountRequest
		// An empty body asks for a generated password.
		if r.ContentLength != 0 {
			if err := httpapi.DecodeStrict(w, r, maxBody, &req); err != nil {
				httpapi.WriteError(w, err)
				return
			}
		}
		c, err := setPassword(r, logger, d, r.PathValue("uid"), req.Password)
		if err != nil {
			httpapi.WriteError(w, err)
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, c)
	})
}
