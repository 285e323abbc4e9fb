//go:build !linux

package netpoll

import (
	"errors"
	"net"
	"time"
)

// Event flags as handed to the handler.
const (
	Readable = 1 << iota
	Writable
)

// ErrUnsupported is New's answer where there is no epoll.
var ErrUnsupported = errors.New("netpoll: serving sockets from epoll needs Linux; this system has none")

// Poller is not available on this system.
type Poller struct{}

// New fails: there is no epoll here.
func New() (*Poller, error) { return nil, ErrUnsupported }

func (p *Poller) Add(fd int) error                                    { return ErrUnsupported }
func (p *Poller) Remove(fd int) error                                 { return ErrUnsupported }
func (p *Poller) Wait(handle func(fd int, ev int)) error              { return ErrUnsupported }
func (p *Poller) WaitEvery(time.Duration, func(fd int, ev int)) error { return ErrUnsupported }

// Detach fails: a detached descriptor has nothing to serve it here.
func Detach(net.Conn) (int, error) { return -1, ErrUnsupported }
func (p *Poller) Close() error     { return ErrUnsupported }
func (p *Poller) Release()         {}
