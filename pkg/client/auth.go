package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/heraldpush/herald/pkg/apiclient"
)

// Session is what auth hands out: a token, when it expires, and the push-server picked for the user.
type Session struct {
	Token     string
	ExpiresAt time.Time
	ServerID  string
	WSURL     string
}

// APIError is an error answer of a Herald HTTP API: {"error":{"code","message"}} with a status.
type APIError = apiclient.Error

// Login signs in with a password: POST {authURL}/v1/login.
func Login(ctx context.Context, authURL, uid, password, device string) (Session, error) {
	return login(ctx, http.DefaultClient, authURL, uid, password, device, "")
}

// MintToken gets a token for a user that a business backend has authenticated itself: POST
// {authURL}/v1/tokens with the backend's API key.
func MintToken(ctx context.Context, authURL, apiKey, uid, device string) (Session, error) {
	return mintToken(ctx, http.DefaultClient, authURL, apiKey, uid, device, "")
}

// MintTokenWith is MintToken through hc, for callers that mint many tokens over their own pool of
// kept-alive connections.
func MintTokenWith(ctx context.Context, hc *http.Client, authURL, apiKey, uid, device string) (Session, error) {
	return mintToken(ctx, hc, authURL, apiKey, uid, device, "")
}

// failedNode names, in a login or token request, the push-server that just refused or dropped the
// client: auth then picks another for this request, without waiting for the dead node's ZooKeeper
// session to expire.
func login(ctx context.Context, hc *http.Client, authURL, uid, password, device, failedNode string) (Session, error) {
	body := struct {
		UID        string `json:"uid"`
		Password   string `json:"password"`
		Device     string `json:"device"`
		FailedNode string `json:"failed_node,omitempty"`
	}{uid, password, device, failedNode}
	s, err := postSession(ctx, hc, endpoint(authURL, "/v1/login"), "", body)
	if err != nil {
		return Session{}, fmt.Errorf("login: %w", err)
	}
	return s, nil
}

func mintToken(ctx context.Context, hc *http.Client, authURL, apiKey, uid, device, failedNode string) (Session, error) {
	body := struct {
		UID        string `json:"uid"`
		Device     string `json:"device"`
		FailedNode string `json:"failed_node,omitempty"`
	}{uid, device, failedNode}
	s, err := postSession(ctx, hc, endpoint(authURL, "/v1/tokens"), apiKey, body)
	if err != nil {
		return Session{}, fmt.Errorf("mint token: %w", err)
	}
	return s, nil
}

// endpoint joins a base URL and a path; the base may come from a config file with a trailing slash,
// and "//v1/login" would be a 404.
func endpoint(base, path string) string {
	return strings.TrimRight(base, "/") + path
}

// session gets a new session the way cfg says: password login, else API-key minting. failedNode, when
// set, is the push-server that just failed the client.
func (cfg Config) session(ctx context.Context, failedNode string) (Session, error) {
	if cfg.Password != "" {
		return login(ctx, cfg.httpClient(), cfg.AuthURL, cfg.UID, cfg.Password, cfg.Device, failedNode)
	}
	return mintToken(ctx, cfg.httpClient(), cfg.AuthURL, cfg.APIKey, cfg.UID, cfg.Device, failedNode)
}

// maxAuthBody bounds how much of an auth answer is read: a token response is well under 4 KiB, and a
// misrouted request must not make the client read a large page.
const maxAuthBody = 64 << 10

func postSession(ctx context.Context, hc *http.Client, url, bearer string, body any) (Session, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return Session{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		return Session{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return Session{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Session{}, apiclient.ReadError(resp)
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAuthBody))
	if err != nil {
		return Session{}, fmt.Errorf("read answer: %w", err)
	}
	var tr struct {
		Token     string    `json:"token"`
		ExpiresAt time.Time `json:"expires_at"`
		Server    struct {
			ID    string `json:"id"`
			WSURL string `json:"ws_url"`
		} `json:"server"`
	}
	if err := json.Unmarshal(raw, &tr); err != nil {
		return Session{}, fmt.Errorf("decode answer: %w", err)
	}
	if tr.Token == "" || tr.Server.WSURL == "" {
		return Session{}, errors.New("decode answer: token or server.ws_url missing")
	}
	return Session{Token: tr.Token, ExpiresAt: tr.ExpiresAt, ServerID: tr.Server.ID, WSURL: tr.Server.WSURL}, nil
}
