package wsconn

// Queued returns how many bytes wait in the connection's write queue for the socket, and the limit
// above which a write closes the connection as a slow consumer. A sender of many frames in a row (the
// replay of pending messages at connect) uses it to pace itself instead of overflowing the queue.
func (c *Conn) Queued() (bytes, limit int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.wq != nil {
		bytes = c.wq.bytes
	}
	return bytes, c.maxQueue
}
