package main

import (
	"encoding/json"
	"time"

	"github.com/heraldpush/herald/pkg/wire"
	"github.com/heraldpush/herald/services/push-server/internal/wsconn"
)

// drain empties the node: it leaves auth's ring (draining in ZooKeeper), tells every client to
// reconnect, then closes connections with 1012 in paced batches so the other nodes are not hit by every
// client at once. It returns when no connection is left, the timeout passed, or undrain stopped it.
// Drained, the node refuses connections until undrain or its exit.
func (s *server) drain(timeout time.Duration) {
	if !s.draining.CompareAndSwap(false, true) {
		return
	}
	start := time.Now()
	conns, _ := s.hub.Count()
	s.logger.Info("draining", "connections", conns)
	if reg := s.registration.Load(); reg != nil {
		if err := reg.SetDraining(true); err != nil {
			s.logger.Warn("mark draining in zookeeper", "err", err)
		}
	}
	msg, _ := json.Marshal(wire.Reconnect{Type: wire.TypeReconnect, Reason: "node draining"})
	s.broadcast(wsconn.Prepare(msg))

	deadline := start.Add(timeout)
	for time.Now().Before(deadline) && s.draining.Load() {
		var all []*wsconn.Conn
		s.hub.Each(1, func(c *wsconn.Conn) { all = append(all, c) })
		if len(all) == 0 {
			break
		}
		for i, c := range all {
			c.Close(wire.CloseServiceRestart, "node draining")
			if (i+1)%s.cfg.DrainBatch == 0 && i+1 < len(all) {
				time.Sleep(s.cfg.DrainInterval)
			}
		}
		// Closes finish on the workers; give them a moment before looking again.
		time.Sleep(50 * time.Millisecond)
	}
	left, _ := s.hub.Count()
	s.logger.Info("drained", "took", time.Since(start), "left", left)
}

// undrain puts a draining node back into auth's ring and takes connections again; it reports false
// when the node was not draining.
func (s *server) undrain() (bool, error) {
	if !s.draining.CompareAndSwap(true, false) {
		return false, nil
	}
	s.logger.Info("undrained: taking connections again")
	if reg := s.registration.Load(); reg != nil {
		if err := reg.SetDraining(false); err != nil {
			return true, err
		}
	}
	return true, nil
}
