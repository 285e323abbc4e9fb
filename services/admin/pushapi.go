package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/heraldpush/herald/pkg/apiclient"
	"github.com/heraldpush/herald/pkg/httpapi"
	"github.com/heraldpush/herald/pkg/wire"
)

// pushAPI is push-route's public API (DESIGN.md) as the console calls it, with the console's API
// key. Its errors are *httpapi.Error, ready for the console's own answers.
type pushAPI struct {
	client *apiclient.PushClient // nil without an API key
}

func newPushAPI(hc *http.Client, baseURL, key string) *pushAPI {
	if key == "" {
		return &pushAPI{}
	}
	return &pushAPI{client: apiclient.NewPushClient(hc, baseURL, key)}
}

func (p *pushAPI) push(ctx context.Context, req wire.PushRequest) (wire.PushResponse, error) {
	if p.client == nil {
		return wire.PushResponse{}, errNoKey
	}
	resp, err := p.client.Push(ctx, req)
	return resp, consoleError(err)
}

func (p *pushAPI) broadcast(ctx context.Context, data json.RawMessage) (wire.PushBroadcastResponse, error) {
	if p.client == nil {
		return wire.PushBroadcastResponse{}, errNoKey
	}
	resp, err := p.client.Broadcast(ctx, data)
	return resp, consoleError(err)
}

func (p *pushAPI) connections(ctx context.Context, uid string) ([]wire.Connection, error) {
	if p.client == nil {
		return nil, errNoKey
	}
	conns, err := p.client.Connections(ctx, uid)
	return conns, consoleError(err)
}

var errNoKey = httpapi.Errorf(httpapi.CodeUnavailable, "the console has no push API key: start admin with -push-api-key")

// consoleError turns push-route's answer into the console's: push-route's own error when it gave one
// (a 400 stays a 400 for our caller), else unavailable.
func consoleError(err error) error {
	var apiErr *apiclient.Error
	switch {
	case err == nil:
		return nil
	case !errors.As(err, &apiErr):
		return httpapi.Errorf(httpapi.CodeUnavailable, "%v", err)
	case apiErr.Status == http.StatusUnauthorized:
		// Our key, not the operator's credentials: a 401 would send the browser to the login page.
		return httpapi.Errorf(httpapi.CodeUnavailable, "push-route refused the console's API key (revoked? check -push-api-key)")
	case apiErr.Code != "":
		return &httpapi.Error{Code: apiErr.Code, Message: "push-route: " + apiErr.Message}
	default:
		return httpapi.Errorf(httpapi.CodeUnavailable, "push-route answered HTTP %d", apiErr.Status)
	}
}
