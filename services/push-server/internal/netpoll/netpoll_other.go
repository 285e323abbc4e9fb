//go:build !linux

package netpoll

import "errors"

// Event flags as handed to the handler.
const (
	Readable = 1 << iota
	Writable
)

// ErrUnsupported is New's answer where there is no epoll.
var ErrUnsupported = errors.New("netpoll: the push-server's event loop needs Linux epoll; this system has none")

// Poller is not available on this system.
type Poller struct{}

// New fails: there is no epoll here.
func New() (*Poller, error) { return nil, ErrUnsupported }

func (p *Poller) Add(fd int) error                       { return ErrUnsupported }
func (p *Poller) Remove(fd int) error                    { return ErrUnsupported }
func (p *Poller) Wait(handle func(fd int, ev int)) error { return ErrUnsupported }
func (p *Poller) Close() error                           { return ErrUnsupported }
func (p *Poller) Release()                               {}
