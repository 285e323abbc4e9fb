package wsconn

const (
	pauseNone = iota
	pauseAsked
	pauseParked
)

// Pause stops reading c after the message being handled: back-pressure for a client with too much in
// flight. Only the handler may call it (from OnMessage). Frames already received wait, nothing is
// dropped; the kernel's buffers then push back on the client. Close does not end a paused connection's
// reading: its handler must Resume it, which it does when the work it waits for completes.
func (c *Conn) Pause() { c.pause.CompareAndSwap(pauseNone, pauseAsked) }

// Resume undoes Pause. Any goroutine may call it.
func (e *Engine) Resume(c *Conn) {
	if c.pause.CompareAndSwap(pauseAsked, pauseNone) {
		return // the worker had not stopped yet; it reads on
	}
	if c.pause.CompareAndSwap(pauseParked, pauseNone) {
		e.jobs <- c
	}
}

// park is called by the worker after each batch of frames: it reports whether the connection is paused
// and the worker must let go of it.
func (c *Conn) park() bool { return c.pause.CompareAndSwap(pauseAsked, pauseParked) }
