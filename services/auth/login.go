package main

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/heraldpush/herald/pkg/account"
	"github.com/heraldpush/herald/pkg/apikey"
	"github.com/heraldpush/herald/pkg/httpapi"
	"github.com/heraldpush/herald/pkg/ident"
	"github.com/heraldpush/herald/pkg/ratelimit"
)

type loginRequest struct {
	UID      string `json:"uid"`
	Password string `json:"password"`
	Device   string `json:"device"`
	// FailedNode is the push-server that just refused or dropped this client, to be avoided.
	FailedNode string `json:"failed_node"`
}

type tokenRequest struct {
	UID        string `json:"uid"`
	Device     string `json:"device"`
	FailedNode string `json:"failed_node"`
	// Rooms the device may join: names, or prefixes ending in "*" (the token's rooms claim).
	Rooms []string `json:"rooms"`
}

// maxRoomPatterns bounds a token's rooms claim, which travels in every connect.
const maxRoomPatterns = 64

// tokenResponse is the answer of both /v1/login and /v1/tokens.
type tokenResponse struct {
	Token     string     `json:"token"`
	ExpiresAt time.Time  `json:"expires_at"`
	Server    serverInfo `json:"server"`
}

type serverInfo struct {
	ID    string `json:"id"`
	WSURL string `json:"ws_url"`
}

// maxPasswordLen bounds the work one request can ask of bcrypt (which reads at most 72 bytes anyway).
const maxPasswordLen = 1024

type loginLimits struct {
	perUID, perIP *ratelimit.Keyed
	ipHeader      string
}

func handleLogin(logger *slog.Logger, maxBody int64, limits loginLimits, d serverDeps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req loginRequest
		if err := httpapi.DecodeStrict(w, r, maxBody, &req); err != nil {
			httpapi.WriteError(w, err)
			return
		}
		if err := checkIdentity(req.UID, req.Device); err != nil {
			httpapi.WriteError(w, err)
			return
		}
		if err := checkFailedNode(req.FailedNode); err != nil {
			httpapi.WriteError(w, err)
			return
		}
		if req.Password == "" || len(req.Password) > maxPasswordLen {
			httpapi.WriteError(w, httpapi.Errorf(httpapi.CodeInvalidRequest, "password is required and at most %d bytes", maxPasswordLen))
			return
		}
		// The address is checked first so one client spraying many uids is stopped without touching the
		// per-uid buckets of users it does not own.
		now := time.Now()
		if ok, wait := limits.perIP.Allow(httpapi.ClientIP(r, limits.ipHeader), now); !ok {
			d.metrics.logins.WithLabelValues("rate_limited").Inc()
			httpapi.WriteError(w, &httpapi.Error{Code: httpapi.CodeRateLimited, Message: "too many login attempts from this address", RetryAfter: wait})
			return
		}
		if ok, wait := limits.perUID.Allow(req.UID, now); !ok {
			d.metrics.logins.WithLabelValues("rate_limited").Inc()
			httpapi.WriteError(w, &httpapi.Error{Code: httpapi.CodeRateLimited, Message: "too many login attempts for this uid", RetryAfter: wait})
			return
		}

		ctx, cancel := context.WithTimeout(r.Context(), d.mysqlTimeout)
		err := d.accounts.Authenticate(ctx, req.UID, req.Password)
		cancel()
		switch {
		case errors.Is(err, account.ErrBadCredentials):
			d.metrics.logins.WithLabelValues("bad_credentials").Inc()
			httpapi.WriteError(w, httpapi.Errorf(httpapi.CodeBadCredentials, "unknown uid or wrong password"))
			return
		case errors.Is(err, account.ErrDisabled):
			d.metrics.logins.WithLabelValues("disabled").Inc()
			httpapi.WriteError(w, httpapi.Errorf(httpapi.CodeAccountDisabled, "this account is disabled"))
			return
		case err != nil:
			d.metrics.logins.WithLabelValues("error").Inc()
			logger.Error("login: account store failed", "err", err)
			httpapi.WriteError(w, httpapi.Errorf(httpapi.CodeUnavailable, "account store unavailable, retry later"))
			return
		}
		resp, err := issue(r.Context(), d, req.UID, req.Device, req.FailedNode)
		if err != nil {
			d.metrics.logins.WithLabelValues("no_push_server").Inc()
			httpapi.WriteError(w, err)
			return
		}
		d.metrics.logins.WithLabelValues("ok").Inc()
		logger.Info("login", "uid", req.UID, "device", req.Device, "node", resp.Server.ID)
		httpapi.WriteJSON(w, http.StatusOK, resp)
	})
}

func handleTokens(logger *slog.Logger, maxBody int64, d serverDeps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key, ok := httpapi.BearerToken(r)
		if !ok {
			httpapi.WriteError(w, httpapi.Errorf(httpapi.CodeUnauthorized, "an API key is required: Authorization: Bearer <key>"))
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), d.mysqlTimeout)
		_, err := d.keys.Verify(ctx, key)
		cancel()
		switch {
		case errors.Is(err, apikey.ErrInvalid):
			httpapi.WriteError(w, httpapi.Errorf(httpapi.CodeUnauthorized, "invalid or revoked API key"))
			return
		case err != nil:
			logger.Error("tokens: key store failed", "err", err)
			httpapi.WriteError(w, httpapi.Errorf(httpapi.CodeUnavailable, "key store unavailable, retry later"))
			return
		}
		var req tokenRequest
		if err := httpapi.DecodeStrict(w, r, maxBody, &req); err != nil {
			httpapi.WriteError(w, err)
			return
		}
		if err := checkIdentity(req.UID, req.Device); err != nil {
			httpapi.WriteError(w, err)
			return
		}
		if err := checkFailedNode(req.FailedNode); err != nil {
			httpapi.WriteError(w, err)
			return
		}
		if err := checkRooms(req.Rooms); err != nil {
			httpapi.WriteError(w, err)
			return
		}
		resp, err := issue(r.Context(), d, req.UID, req.Device, req.FailedNode, req.Rooms...)
		if err != nil {
			httpapi.WriteError(w, err)
			return
		}
		d.metrics.tokens.Inc()
		httpapi.WriteJSON(w, http.StatusOK, resp)
	})
}

// issue picks the uid's push-server and signs its token.
func issue(ctx context.Context, d serverDeps, uid, device, failedNode string, rooms ...string) (tokenResponse, error) {
	node, err := d.nodes.pick(ctx, uid, failedNode)
	if err != nil {
		return tokenResponse{}, err
	}
	tok, exp, err := d.signer.Sign(uid, device, rooms...)
	if err != nil {
		return tokenResponse{}, err
	}
	return tokenResponse{Token: tok, ExpiresAt: exp.UTC(), Server: serverInfo{ID: node.ID, WSURL: node.WSURL}}, nil
}

// checkFailedNode checks the optional failed_node of a login or token request.
func checkFailedNode(id string) error {
	if id == "" {
		return nil
	}
	if err := ident.Check("failed_node", id); err != nil {
		return httpapi.Errorf(httpapi.CodeInvalidRequest, "%v", err)
	}
	return nil
}

// checkRooms checks the rooms a token request asks to allow.
func checkRooms(rooms []string) error {
	if len(rooms) > maxRoomPatterns {
		return httpapi.Errorf(httpapi.CodeInvalidRequest, "rooms: at most %d entries", maxRoomPatterns)
	}
	for _, r := range rooms {
		if err := ident.CheckRoomPattern(r); err != nil {
			return httpapi.Errorf(httpapi.CodeInvalidRequest, "rooms: %v", err)
		}
	}
	return nil
}

func checkIdentity(uid, device string) error {
	if err := ident.Check("uid", uid); err != nil {
		return httpapi.Errorf(httpapi.CodeInvalidRequest, "%v", err)
	}
	if err := ident.Check("device", device); err != nil {
		return httpapi.Errorf(httpapi.CodeInvalidRequest, "%v", err)
	}
	return nil
}
