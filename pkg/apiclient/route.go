package apiclient

import (
	"context"
	"net/http"

	"github.com/heraldpush/herald/pkg/wire"
)

// maxPendingAnswer bounds a pending list: push-route sends at most 1,000 messages of at most 64 KiB
// data each, plus their envelopes.
const maxPendingAnswer = 80 << 20

// RouteClient calls push-route's internal API: the push-servers' acks and pending lookups.
type RouteClient struct {
	base string
	c    caller
}

// NewRouteClient returns a client of the push-route internal listener at baseURL, calling through hc
// with the internal secret.
func NewRouteClient(hc *http.Client, baseURL, secret string) *RouteClient {
	return &RouteClient{base: baseURL, c: caller{hc: hc, authHeader: wire.SecretHeader, authValue: secret, description: "push-route"}}
}

// Acks hands devices' acks to push-route, which clears the acked pending messages.
func (r *RouteClient) Acks(ctx context.Context, acks []wire.Ack) error {
	return r.c.call(ctx, http.MethodPost, joinURL(r.base, wire.PathAcks), "", wire.AckBatch{Acks: acks}, nil, maxErrorBody)
}

// Pending returns uid's pending messages, oldest first.
func (r *RouteClient) Pending(ctx context.Context, uid string) ([]wire.Message, error) {
	var resp wire.PendingResponse
	if err := r.c.call(ctx, http.MethodPost, joinURL(r.base, wire.PathPending), "", wire.PendingRequest{UID: uid}, &resp, maxPendingAnswer); err != nil {
		return nil, err
	}
	return resp.Messages, nil
}
