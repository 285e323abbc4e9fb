package main

import (
	"encoding/json"
	"errors"
	"time"

	"github.com/heraldpush/herald/pkg/wire"
	"github.com/heraldpush/herald/services/push-server/internal/upstream"
	"github.com/heraldpush/herald/services/push-server/internal/wsconn"
)

// maxRefLen bounds the client's ref, which ends up in the record id's derivation and in frames.
const maxRefLen = 128

// handleUp hands an `up` frame to Kafka. The device gets up_ack only after Kafka acknowledged the
// record, else an error frame with the ref and the retryable code "unavailable". With
// -max-up-inflight frames of this connection waiting for Kafka, the connection's reads pause (nothing
// is dropped; the client's writes back up) until one completes.
func (s *server) handleUp(c *wsconn.Conn, in wire.Inbound) {
	switch {
	case in.Ref == "" || len(in.Ref) > maxRefLen:
		s.sendError(c, "", wire.CodeBadRequest, "up needs a ref of 1 to 128 characters")
		return
	case len(in.Data) == 0 || string(in.Data) == "null":
		s.sendError(c, in.Ref, wire.CodeBadRequest, "up needs data (any JSON value but null)")
		return
	case len(in.Data) > s.cfg.MaxUpData:
		s.sendError(c, in.Ref, wire.CodeTooLarge, "data is larger than the limit")
		return
	}
	rec := wire.UpstreamRecord{
		ID:     wire.UpstreamID(c.UID, c.Device, in.Ref),
		UID:    c.UID,
		Device: c.Device,
		ConnID: s.connID(c),
		Node:   s.cfg.NodeID,
		TS:     time.Now().UnixMilli(),
		Data:   in.Data,
	}
	if c.UpInFlight.Add(1) >= int32(s.cfg.MaxUpInFlight) {
		c.Pause()
		s.metrics.upPaused.Inc()
	}
	ref := in.Ref
	s.producer.Publish(rec, func(err error) {
		if err != nil {
			s.metrics.upstream.WithLabelValues("failed").Inc()
			s.logger.Warn("upstream message not stored", "uid", rec.UID, "ref", ref, "err", err)
			msg := "the message could not be stored; send it again with the same ref"
			if errors.Is(err, upstream.ErrTimeout) {
				msg = "storing the message timed out; send it again with the same ref"
			}
			s.sendError(c, ref, wire.CodeUnavailable, msg)
		} else {
			s.metrics.upstream.WithLabelValues("acked").Inc()
			b, _ := json.Marshal(wire.UpAck{Type: wire.TypeUpAck, Ref: ref, ID: rec.ID})
			c.WriteFrame(b)
		}
		if c.UpInFlight.Add(-1) < int32(s.cfg.MaxUpInFlight) {
			s.engine.Resume(c)
		}
	})
}
