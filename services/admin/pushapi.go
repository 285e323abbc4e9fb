package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/heraldpush/herald/pkg/httpapi"
)

// pushAPI calls push-route's public API (DESIGN.md) with the console's API key.
type pushAPI struct {
	http    *http.Client
	baseURL string
	key     string
}

func newPushAPI(client *http.Client, baseURL, key string) *pushAPI {
	return &pushAPI{http: client, baseURL: strings.TrimSuffix(baseURL, "/"), key: key}
}

type pushRequest struct {
	UIDs []string        `json:"uids"`
	Data json.RawMessage `json:"data"`
	TTLS int64           `json:"ttl_s"`
}

type pushResult struct {
	UID       string `json:"uid"`
	Delivered int    `json:"delivered"`
	Stored    bool   `json:"stored"`
}

type pushResponse struct {
	ID      string       `json:"id"`
	Results []pushResult `json:"results"`
}

type broadcastRequest struct {
	Data json.RawMessage `json:"data"`
}

type broadcastResponse struct {
	ID        string `json:"id"`
	Delivered int    `json:"delivered"`
}

type connection struct {
	ConnID      string    `json:"conn_id"`
	Node        string    `json:"node"`
	Device      string    `json:"device"`
	ConnectedAt time.Time `json:"connected_at"`
}

type connectionsResponse struct {
	UID         string       `json:"uid"`
	Connections []connection `json:"connections"`
}

func (p *pushAPI) push(ctx context.Context, req pushRequest) (pushResponse, error) {
	var resp pushResponse
	return resp, p.call(ctx, http.MethodPost, "/v1/push", req, &resp)
}

func (p *pushAPI) broadcast(ctx context.Context, req broadcastRequest) (broadcastResponse, error) {
	var resp broadcastResponse
	return resp, p.call(ctx, http.MethodPost, "/v1/broadcast", req, &resp)
}

func (p *pushAPI) connections(ctx context.Context, uid string) ([]connection, error) {
	var resp connectionsResponse
	err := p.call(ctx, http.MethodGet, "/v1/users/"+url.PathEscape(uid)+"/connections", nil, &resp)
	return resp.Connections, err
}

// call makes one call. Its errors are *httpapi.Error: push-route's own error when it answered with
// one (a 400 stays a 400 for our caller), else unavailable.
func (p *pushAPI) call(ctx context.Context, method, path string, in, out any) error {
	if p.key == "" {
		return httpapi.Errorf(httpapi.CodeUnavailable, "the console has no push API key: start admin with -push-api-key")
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return httpapi.Errorf(httpapi.CodeInvalidRequest, "encode request: %v", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, p.baseURL+path, body)
	if err != nil {
		return httpapi.Errorf(httpapi.CodeUnavailable, "push-route request: %v", err)
	}
	req.Header.Set("Authorization", "Bearer "+p.key)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return httpapi.Errorf(httpapi.CodeUnavailable, "push-route unreachable: %v", errors.Unwrap(err))
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return httpapi.Errorf(httpapi.CodeUnavailable, "push-route: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error struct{ Code, Message string }
		}
		switch {
		case resp.StatusCode == http.StatusUnauthorized:
			// Our key, not the operator's credentials: a 401 would send the browser to the login page.
			return httpapi.Errorf(httpapi.CodeUnavailable, "push-route refused the console's API key (revoked? check -push-api-key)")
		case json.Unmarshal(b, &e) == nil && e.Error.Code != "":
			return &httpapi.Error{Code: e.Error.Code, Message: "push-route: " + e.Error.Message}
		default:
			return httpapi.Errorf(httpapi.CodeUnavailable, "push-route answered HTTP %d", resp.StatusCode)
		}
	}
	if err := json.Unmarshal(b, out); err != nil {
		return httpapi.Errorf(httpapi.CodeUnavailable, "push-route answer: %v", err)
	}
	return nil
}
