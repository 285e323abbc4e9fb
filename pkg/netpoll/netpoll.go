//go:build linux

// Package netpoll tells which sockets are ready, through Linux epoll, so an idle connection needs no
// goroutine blocked in a read: the push-server's connections, and the load generator's.
//
// Sockets are registered once, edge-triggered, for reading and writing: an event means the socket
// became readable or writable since it was last drained, and the owner must then read until EAGAIN.
// Registration never changes afterwards, so no epoll_ctl call sits on the hot path.
//
// epoll is Linux's; on other systems New fails with ErrUnsupported, so a push-server built there says
// at start why it cannot run (the rest of Herald builds and runs anywhere).
package netpoll

import (
	"errors"
	"fmt"
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// Detach returns a duplicate of nc's descriptor, so the connection can be served from epoll once the
// caller closes nc (which frees the runtime's own poller state for it: otherwise the runtime's epoll
// would still wake a thread for every byte that arrives). The duplicate shares the original's
// non-blocking mode.
func Detach(nc net.Conn) (int, error) {
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		return -1, fmt.Errorf("not a TCP connection: %T", nc)
	}
	if err := tc.SetDeadline(time.Time{}); err != nil {
		return -1, err
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	var dupErr error
	if err := raw.Control(func(f uintptr) {
		fd, dupErr = unix.FcntlInt(f, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return -1, err
	}
	return fd, dupErr
}

// Event flags as handed to the handler.
const (
	Readable = 1 << iota // data, or the peer closed (read returns 0)
	Writable             // room in the send buffer again
)

// Poller is one epoll instance.
type Poller struct {
	epfd int
	// wake is an eventfd that makes Wait return when the poller is closed.
	wake int
}

// New creates a poller.
func New() (*Poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create: %w", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wake, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wake)}); err != nil {
		unix.Close(epfd)
		unix.Close(wake)
		return nil, fmt.Errorf("epoll_ctl wake: %w", err)
	}
	return &Poller{epfd: epfd, wake: wake}, nil
}

// Add registers fd for edge-triggered read, write and hang-up readiness.
func (p *Poller) Add(fd int) error {
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(fd)}
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return fmt.Errorf("epoll_ctl add %d: %w", fd, err)
	}
	return nil
}

// Remove unregisters fd. Closing fd removes it too; Remove exists so a caller can stop events before
// the close.
func (p *Poller) Remove(fd int) error {
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, fd, nil); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EBADF) {
		return fmt.Errorf("epoll_ctl del %d: %w", fd, err)
	}
	return nil
}

// Wait calls handle for every ready socket until Close. It runs on the calling goroutine, which it
// keeps for as long as the poller lives; handle must not block for long.
func (p *Poller) Wait(handle func(fd int, ev int)) error { return p.WaitEvery(0, handle) }

// WaitEvery is Wait for a caller that would rather see events late than be woken for each: it looks
// every interval and sleeps in between, so a busy peer on the same cores is preempted less (the load
// generator's choice). An interval of 0 blocks in epoll, as Wait does.
func (p *Poller) WaitEvery(interval time.Duration, handle func(fd int, ev int)) error {
	events := make([]unix.EpollEvent, 512)
	timeout := -1
	if interval > 0 {
		timeout = 0
	}
	for {
		n, err := unix.EpollWait(p.epfd, events, timeout)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return fmt.Errorf("epoll_wait: %w", err)
		}
		if n == 0 && interval > 0 {
			time.Sleep(interval)
			continue
		}
		for i := 0; i < n; i++ {
			fd := int(events[i].Fd)
			if fd == p.wake {
				return nil
			}
			e := events[i].Events
			var ev int
			if e&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
				ev |= Readable
			}
			if e&(unix.EPOLLOUT|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
				ev |= Writable
			}
			handle(fd, ev)
		}
	}
}

// Close makes Wait return and releases the poller. Registered sockets stay open.
func (p *Poller) Close() error {
	var one = [8]byte{1}
	if _, err := unix.Write(p.wake, one[:]); err != nil {
		return err
	}
	return nil
}

// Release frees the poller's descriptors once Wait has returned.
func (p *Poller) Release() {
	unix.Close(p.wake)
	unix.Close(p.epfd)
}
